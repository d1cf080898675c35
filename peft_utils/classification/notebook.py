"""What notebooks/train.ipynb calls: build a RunConfig from its papermill parameters (the
path rules of peft_utils.core.notebook), and show a finished record (learning curve,
per-language table). Kept here so it is tested."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from peft_utils.classification.config import RunConfig, load_config
from peft_utils.modelprep.e5_convert import DEFAULT_OUT
from peft_utils.classification.study import STUDY
from peft_utils.core.config import load_raw, path_like
from peft_utils.core.notebook import load_from_notebook, notebook_inputs, resolve_paths


def build_config(config_file: str | Path | None, params: dict[str, Any],
                 overrides: dict[str, Any] | None = None,
                 results_dir: str | None = None) -> RunConfig:
    """Preset < `params` that are not None < `overrides` (peft_utils.core.notebook's rules);
    without a model anywhere, the offline default. Raises ConfigError naming the bad
    parameter."""
    preset, explicit, root = notebook_inputs(config_file, params, overrides, results_dir)
    preset_raw = load_raw(preset) if preset else {}
    if "model" not in explicit:
        if "model" not in preset_raw:
            explicit["model"] = _default_model(root)
        else:
            if preset_raw["model"] == DEFAULT_OUT:   # the offline model, maybe not built yet
                _prepare_offline_model(root)
            # A preset's model path means the project root, not the kernel's folder.
            explicit["model"] = _anchor_model(preset_raw["model"], root)
    config = load_from_notebook(load_config, preset, explicit)
    return resolve_paths(config, STUDY.path_keys, set(explicit), root)


def _anchor_model(value: Any, root: Path) -> Any:
    if not isinstance(value, str) or Path(value).is_absolute() or value.startswith("~"):
        return value
    local = root / value
    return os.path.abspath(local) if local.exists() or path_like(value, root) else value


def _default_model(root: Path) -> str:
    from peft_utils.modelprep.e5_convert import default_model_name

    # The offline model is built under models/ of the project, not of the notebook folder.
    with contextlib.chdir(root):
        name = default_model_name()
        return os.path.abspath(name) if Path(name).exists() else name


def _prepare_offline_model(root: Path) -> None:
    from peft_utils.modelprep.e5_convert import prepare_e5_small

    prepare_e5_small(root / DEFAULT_OUT)   # returns at once when the folder is complete


# ---- showing a record -----------------------------------------------------
def learning_curve_figure(record: dict[str, Any]):
    """Training loss and dev score against the optimiser step; the best dev step marked."""
    import matplotlib.pyplot as plt

    metrics = record["metrics"]
    fig, loss_ax = plt.subplots(figsize=(7, 3.5))
    train = metrics.get("learning_curve") or []
    loss_ax.plot([e["step"] for e in train], [e["loss"] for e in train], color="tab:blue",
                 label="training loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("training loss", color="tab:blue")
    dev = metrics.get("dev_curve") or []
    if dev:
        dev_ax = loss_ax.twinx()
        dev_ax.plot([e["step"] for e in dev], [e["dev"] for e in dev], "o-", color="tab:orange",
                    label=f"dev {metrics['main_metric']}")
        dev_ax.set_ylabel(f"dev {metrics['main_metric']}", color="tab:orange")
        if metrics.get("best_step") is not None:
            loss_ax.axvline(metrics["best_step"], color="grey", linestyle=":", label="best dev")
    loss_ax.set_title(record["run_info"]["run_id"], fontsize=9)
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def language_table(record: dict[str, Any]):
    """One row per language (and `overall`), dev and test scores side by side, zero-shot
    languages (no training data in this scenario) marked, and what each split held for
    the language (labelled, unlabelled, empty, absent), so that a language with no score is
    listed with the reason."""
    import pandas as pd

    metrics = record["metrics"]
    zero_shot = set(record["run_info"].get("zero_shot_langs", []))
    main = metrics["main_metric"]
    parts = []
    for split in ("dev", "test"):
        scores = metrics.get(split) or {}
        if not scores:
            continue
        part = pd.DataFrame.from_dict(scores, orient="index")
        metric_cols = [main] + sorted(c for c in part if c not in (main, "n"))
        part = part[metric_cols + (["n"] if "n" in part else [])]
        if "n" in part:
            part["n"] = part["n"].astype(int)
        part.columns = [f"{split} {c}" for c in part.columns]
        parts.append(part)
    coverage = metrics.get("coverage") or {}
    if not parts and not coverage:
        return pd.DataFrame()
    table = pd.concat(parts, axis=1) if parts else pd.DataFrame()
    langs = list(dict.fromkeys([*(lang for lang in table.index if lang != "overall"),
                                *(lang for split in coverage.values() for lang in split)]))
    table = table.reindex(langs + (["overall"] if "overall" in table.index else []))
    table.index.name = "lang"
    for split in reversed(list(coverage)):
        table.insert(0, f"{split} data", [coverage[split].get(lang, "") for lang in table.index])
    table.insert(0, "zero-shot", ["yes" if lang in zero_shot else "" for lang in table.index])
    return table


def baseline_summary(record: dict[str, Any]):
    """The run's score on its training languages' dev rows beside what needs no fine-tuning,
    scored on the same rows: the trivial predictors and the frozen-feature probe (test beside,
    where test has gold). A run below the probe has failed."""
    import pandas as pd

    metrics = record["metrics"]
    main = metrics["main_metric"]
    probe = metrics.get("frozen_probe") or {}

    def test_overall(scores):
        return ((scores or {}).get("overall") or {}).get(main)

    rows = {"this run": ((metrics.get("selection_dev") or {}).get(main),
                         test_overall(metrics.get("test"))),
            "frozen-feature probe": ((probe.get("selection_dev") or {}).get(main),
                                     test_overall(probe.get("test")))}
    rows.update({name: (values.get(main), None)
                 for name, values in (metrics.get("baselines") or {}).items()})
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=[f"dev {main} (training languages)",
                                           f"test {main}"])
