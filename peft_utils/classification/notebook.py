"""What notebooks/train.ipynb calls: build a RunConfig from its papermill parameters, and
show a finished record (learning curve, per-language table). Kept here so it is tested.

Path rule: relative paths given as notebook parameters resolve against the kernel's working
directory (the notebook's folder, in JupyterLab and under `grid run`); relative paths written
in a preset resolve against the project root, as for `python -m peft_utils train --config`.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from peft_utils.classification.config import RunConfig, load_config
from peft_utils.classification.e5_convert import DEFAULT_OUT
from peft_utils.core.config import ConfigError, load_raw, path_like

PATH_KEYS = ("data_root", "translations_dir", "results_dir")


def project_root(*starts: str | Path) -> Path:
    """The nearest folder holding pyproject.toml above any of `starts`, else the cwd."""
    for start in starts:
        for folder in [Path(start).resolve(), *Path(start).resolve().parents]:
            if (folder / "pyproject.toml").is_file():
                return folder
    return Path.cwd()


def build_config(config_file: str | Path | None, params: dict[str, Any],
                 overrides: dict[str, Any] | None = None,
                 results_dir: str | None = None) -> RunConfig:
    """Preset < `params` that are not None < `overrides`. Raises ConfigError naming the bad
    parameter."""
    source = "notebook parameters"
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: overrides must be a dict of RunConfig keys, "
                          f"got {type(overrides).__name__}")
    for name, value in (("config_file", config_file), ("results_dir", results_dir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{source}: {name} must be a path (a string) or None, got "
                              f"{value!r} ({type(value).__name__})")
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: params must be a dict, got {type(params).__name__}")
    cwd = Path.cwd()
    preset = Path(config_file) if config_file else None
    if preset is not None and not preset.is_file():
        raise ConfigError(f"{source}: config_file {str(config_file)!r} not found "
                          f"(relative to {cwd}); set config_file=None to use the "
                          "parameters alone")
    explicit = {**{k: v for k, v in params.items() if v is not None}, **overrides}
    if results_dir is not None:
        explicit["results_dir"] = results_dir
    root = project_root(*([preset.parent] if preset else []), cwd)
    preset_raw = load_raw(preset) if preset else {}
    if "model" not in explicit:
        if "model" not in preset_raw:
            explicit["model"] = _default_model(root)
        else:
            if preset_raw["model"] == DEFAULT_OUT:   # the offline model, maybe not built yet
                _prepare_offline_model(root)
            # A preset's model path means the project root, not the kernel's folder.
            explicit["model"] = _anchor_model(preset_raw["model"], root)
    try:
        config = load_config(preset, explicit)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return _resolve_paths(config, set(explicit), cwd, root)


def _anchor_model(value: Any, root: Path) -> Any:
    if not isinstance(value, str) or Path(value).is_absolute() or value.startswith("~"):
        return value
    local = root / value
    return os.path.abspath(local) if local.exists() or path_like(value, root) else value


def _default_model(root: Path) -> str:
    from peft_utils.classification.e5_convert import default_model_name

    # The offline model is built under models/ of the project, not of the notebook folder.
    with contextlib.chdir(root):
        name = default_model_name()
        return os.path.abspath(name) if Path(name).exists() else name


def _prepare_offline_model(root: Path) -> None:
    from peft_utils.classification.e5_convert import prepare_e5_small

    prepare_e5_small(root / DEFAULT_OUT)   # returns at once when the folder is complete


def _resolve_paths(config: RunConfig, given: set[str], cwd: Path, root: Path) -> RunConfig:
    changes = {}
    for key in (*PATH_KEYS, "model"):
        value = getattr(config, key)
        if not value or Path(value).is_absolute():
            continue
        path = (cwd if key in given else root) / value
        # A model is a local folder only if one exists (else a hub name), as in from_pretrained.
        if key != "model" or path.exists():
            changes[key] = os.path.abspath(path)
    return config.replace(**changes) if changes else config


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
