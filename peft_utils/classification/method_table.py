"""`python -m peft_utils methods`: every registered method with its status and, for a
classification config, its parameter counts (built on the meta device: no weights)."""
from __future__ import annotations

import json
import sys
from typing import Any

from peft_utils.classification.config import load_config
from peft_utils.classification.models import build_model
from peft_utils.core import methods
from peft_utils.core.config import ConfigError, parse_overrides

DEFAULT_CONFIG = "configs/semeval/st1.yaml"


def method_rows(path: str, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per registry entry: name, library, config class, status, and for runnable
    methods `trainable`, `method_params`, `head` and `fft_ratio` (FFT's trainable / its)."""
    fft = _counts(path, overrides, methods.REFERENCE)
    rows = []
    for entry in methods.REGISTRY.values():
        status = entry.status("classification")
        row = {"name": entry.name, "library": entry.library,
               "config_class": entry.config_class, "status": status, "about": entry.about,
               "merges": entry.merges, "size_knob": entry.size_knob,
               "lr_range": list(entry.lr_range), "seq2seq": entry.status("seq2seq") == "ok"}
        if status == "ok":
            try:
                counts = _counts(path, overrides, entry.name)
            except (ConfigError, ValueError, AssertionError) as err:   # a size it cannot take
                row["status"] = f"does not fit this model at these settings: {err}"
            else:
                row.update(counts, fft_ratio=fft["trainable"] / counts["trainable"])
        rows.append(row)
    return rows


def _counts(path: str, overrides: dict[str, Any], name: str) -> dict[str, int]:
    config = load_config(path, {**overrides, "method": name})
    try:
        report = build_model(config, meta=True).report
    except (NotImplementedError, RuntimeError):
        # It initialises from the weights (an SVD, a QR, a sampled mask): random ones do.
        report = build_model(config, meta=True, device="cpu").report
    return {k: int(report[k]) for k in ("trainable", "method_params", "head")}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table (docs/methods.md's is this output)."""
    lines = ["| method | library (config class) | trainable | method | head | FFT / trainable "
             "| merges | about |", "|---|---|---:|---:|---:|---:|---|---|"]
    for row in rows:
        library = row["library"] + (f" ({row['config_class']})" if row["config_class"] else "")
        if row["status"] != "ok":
            lines.append(f"| {row['name']} | {library} | – | – | – | – | – | "
                         f"not runnable: {row['status']} |")
            continue
        lines.append(f"| {row['name']} | {library} | {row['trainable']:,} | "
                     f"{row['method_params']:,} | {row['head']:,} | {row['fft_ratio']:,.0f} | "
                     f"{'yes' if row['merges'] else 'no'} | {row['about']} |")
    return "\n".join(lines)


# ---- CLI ------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "methods", help="every registered fine-tuning method: status and parameter counts")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help=f"the classification config to count on (default {DEFAULT_CONFIG})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_methods_command)


def _methods_command(args) -> int:
    try:
        rows = method_rows(args.config, parse_overrides(args.set))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=1) if args.json else format_table(rows))
    return 0
