"""`python -m peft_utils <command>`: each command lives in the module that owns its logic.

Heavy imports (torch, transformers) happen inside the commands so `--help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> module exposing register(subparsers); each sets `func` on its parser.
COMMANDS = {
    "data": "peft_utils.data.cli",
    "params": "peft_utils.classification.models",
    "methods": "peft_utils.classification.method_table",
    "train": "peft_utils.classification.training",
    "grid": "peft_utils.grid",
    "model": "peft_utils.modelprep.e5_convert",
    "rerun": "peft_utils.core.rerun",
    "bench-inference": "peft_utils.core.inference_bench",
    "headline": "peft_utils.classification.analysis.headline",
    "export": "peft_utils.core.export",
    "predict": "peft_utils.core.predict",
    "predict-tasks": "peft_utils.classification.multitask",
    "translate": "peft_utils.mt.translate",
    "mt": "peft_utils.mt.cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone: a grid cell's worker starts with
    `grid run-cell`, and importing every command's module (torch, scikit-learn) would cost
    each cell a second."""
    parser = argparse.ArgumentParser(prog="python -m peft_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        if command in COMMANDS and name != command:
            continue
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as err:
            if not module.startswith(err.name or "\0"):
                raise  # a missing dependency inside the command, not a missing command
    return parser


def write_reference(folder: str | None = None) -> list:
    """docs/reference/config.md and cli.md from the code (`make reference`)."""
    from peft_utils.core import reference

    return reference.write(build_parser(), folder)


def main(argv: list[str] | None = None) -> int:
    from peft_utils.core.config import ConfigError
    from peft_utils.data.errors import DataError

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
