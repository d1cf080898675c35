"""Read a results folder (records + per-example predictions) into tidy frames.

Only `results/<run_id>/record.json` and `predictions/<split>-examples.csv` are read: the
analysis must be reproducible from the results folder alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peft_utils.classification.config import METHODS, NON_IDENTITY, SCENARIOS, RunConfig
from peft_utils.core import report as core_report
from peft_utils.core.runs import scan_runs

# What a comparison is made within: the experimental condition every method shares.
CONDITION = ["task", "scenario", "model", "setting"]
# One cell of the study: a method (with its hyper-parameters) under a condition.
CELL = [*CONDITION, "method", "variant"]
# Config keys that change the data or the evaluation, hence the condition (not the method).
# class_weights, selection and head_init are training settings applied alike to every method:
# a method is compared with FFT under the same ones.
SCOPE_KEYS = ("train_langs", "eval_langs", "max_train_samples", "max_eval_samples",
              "max_length", "long_text", "chunk_stride", "class_weights", "selection",
              "head_init")
_NAMING_KEYS = ("dataset", "subtask", "method", "scenario", "model", "seed", "run_id")
# Derived fields the training adds to run_info next to the config.
_DERIVED_KEYS = ("multilabel", "train_langs_resolved", "eval_langs_resolved", "zero_shot_langs")


def task_name(dataset: str, subtask: Any = None) -> str:
    """`semeval2023-st1`, `sib200`: the same spelling as run ids."""
    return dataset + (f"-st{int(subtask)}" if subtask not in (None, "") and subtask == subtask
                      else "")


def _task(info: dict[str, Any]) -> str:
    """The run's task name: as its record keeps it (a table data set's card name), else
    spelled from the data set (records written before they kept it)."""
    return (info.get("task") or {}).get("name") or task_name(info["dataset"], info.get("subtask"))


def _label_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _varying_label(frame: pd.DataFrame, keys: list[str], by: list[str]) -> pd.Series:
    """For each row, `k=v; ...` over the `keys` whose value differs within its `by` group;
    empty when nothing varies, so a plain grid keeps one cell per method."""
    out = pd.Series("", index=frame.index, dtype=object)
    if frame.empty:
        return out
    for _, group in frame.groupby(by, sort=False, dropna=False):
        varying = [k for k in keys if group[k].map(_label_value).nunique() > 1]
        if varying:
            out[group.index] = group[varying].apply(
                lambda row: "; ".join(f"{k}={_label_value(row[k])}" for k in varying), axis=1)
    return out


@dataclass
class Results(core_report.Results):
    """The complete runs under a results folder (`runs`: config, cell keys, costs), their
    records and the runs that could not be used (`failed`: run_id, folder, status, reason)."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Tuning trials (stage 1 of a tuned grid), complete or failed: never compared, only
    # read for what tuning chose and cost (analysis.tuning).
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)
    _examples: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict, repr=False)

    def examples(self, run_id: str, split: str) -> pd.DataFrame:
        """Per-example predictions of a run with a boolean `has_gold`, as strings."""
        key = (run_id, split)
        if key not in self._examples:
            path = self.root / run_id / "predictions" / f"{split}-examples.csv"
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing; the bootstrap needs each run's per-example predictions "
                    "(written by peft_utils.classification.training); re-run the cell to "
                    "regenerate them")
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
            # An empty gold field is either "no labels" (a valid multilabel answer) or "no gold";
            # the record says which languages were scored, so it decides.
            if "has_gold" in table:
                table["has_gold"] = table["has_gold"].str.lower().isin(("true", "1"))
            else:
                scored = set(self.records[run_id]["metrics"].get(split, {})) - {"overall"}
                table["has_gold"] = table["lang"].isin(scored)
            self._examples[key] = table
        return self._examples[key]

    @cached_property
    def scores(self) -> pd.DataFrame:
        """One row per run × split × language (and `overall`) with the run's main metric."""
        rows = []
        for run in self.runs.itertuples(index=False):
            metrics = self.records[run.run_id]["metrics"]
            for split in ("dev", "test"):
                for lang, values in metrics.get(split, {}).items():
                    rows.append({**{k: getattr(run, k) for k in CELL}, "run_id": run.run_id,
                                 "seed": run.seed, "split": split, "lang": lang,
                                 "zero_shot": lang in run.zero_shot_langs,
                                 "metric": run.main_metric, "score": values.get(run.main_metric),
                                 "n": values.get("n")})
        columns = [*CELL, "run_id", "seed", "split", "lang", "zero_shot", "metric", "score", "n"]
        return pd.DataFrame(rows, columns=columns)

    @cached_property
    def coverage(self) -> pd.DataFrame:
        """One row per run × split × evaluation language: what the split held for it
        (labelled, unlabelled, empty, absent). Records older than this field have no rows."""
        rows = []
        for run in self.runs.itertuples(index=False):
            coverage = self.records[run.run_id]["metrics"].get("coverage") or {}
            for split, langs in coverage.items():
                for lang, state in langs.items():
                    rows.append({**{k: getattr(run, k) for k in CELL}, "run_id": run.run_id,
                                 "seed": run.seed, "split": split, "lang": lang,
                                 "zero_shot": lang in run.zero_shot_langs, "state": state})
        return pd.DataFrame(rows, columns=[*CELL, "run_id", "seed", "split", "lang",
                                           "zero_shot", "state"])


def load_results(root: str | Path) -> Results:
    """Read every run folder under `root`; failed, partial and unreadable ones are listed in
    `Results.failed` instead of raising, so one broken cell never hides the rest
    (core.report.read_run_folders)."""
    root = Path(root)
    folders = core_report.read_run_folders(
        root, RunConfig.record_kind, "results folder",
        "train runs first (`python -m peft_utils train ...` or `make demo`)")
    records = {run.run_id: run.record for run in folders.complete}
    runs, failed = pd.DataFrame([_run_row(record) for record in records.values()]), folders.failed
    if not runs.empty and (runs["stage"] == "final").any():
        # Methods are compared on tuned final runs only: an untuned run beside them (an older
        # grid in the same folder) had a different tuning budget.
        for run_id in runs.loc[runs["stage"] != "final", "run_id"]:
            failed.append({"run_id": run_id, "folder": str(root / run_id), "status": "untuned",
                           "reason": "an untuned run beside tuned final runs: not compared"})
        runs = runs[runs["stage"] == "final"].reset_index(drop=True)
    if not runs.empty:
        runs = _with_cell_labels(runs)
        runs = runs.sort_values(["task", "scenario", "model", "setting", "method", "variant",
                                 "seed"], key=_order_key).reset_index(drop=True)
    return Results(root, runs, pd.DataFrame(failed, columns=core_report.FAILED_COLUMNS),
                   records=records,
                   trials=pd.DataFrame([_trial_row(run.record) for run in folders.trials]))


def _trial_row(record: dict[str, Any]) -> dict[str, Any]:
    from peft_utils.classification.study import selection_score

    info, tuning = record["run_info"], record["run_info"]["tuning"]
    costs = record.get("costs") or {}
    return {"task": _task(info), "scenario": info["scenario"],
            "method": info["method"], "group": tuning["group"], "trial": tuning["trial"],
            "seed": info["seed"], **tuning["values"], "status": record.get("status"),
            "dev": selection_score(record) if record.get("status") == "complete" else np.nan,
            "main_metric": (record.get("metrics") or {}).get("main_metric"),
            "steps": costs.get("train_steps"), "train_wall_s": costs.get("train_wall_s"),
            "run_id": info["run_id"]}


def _run_row(record: dict[str, Any]) -> dict[str, Any]:
    info, costs, meta = record["run_info"], record["costs"], record.get("meta", {})
    # Settings added later: older records ran with their defaults.
    added = {k: v for k, v in RunConfig().to_dict().items() if k in RunConfig.identity_if_set}
    return {
        **added, **{k: v for k, v in info.items() if k not in _DERIVED_KEYS},
        "stage": (info.get("tuning") or {}).get("stage", "untuned"),
        "task": _task(info),
        "main_metric": record["metrics"]["main_metric"],
        "multilabel": bool(info.get("multilabel", False)),
        "zero_shot_langs": tuple(info.get("zero_shot_langs") or ()),
        "eval_langs_order": tuple(info.get("eval_langs_resolved") or ()),
        "device": meta.get("device"),
        **{f"cost_{k}": v for k, v in costs.items() if not isinstance(v, (dict, list))},
    }


def _with_cell_labels(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    # `tuning` is provenance: what it chose shows in the tuned keys themselves.
    identity = [k for k in runs.columns if k not in (*_NAMING_KEYS, *NON_IDENTITY, "task",
                                                     "stage", "tuning",
                                                     "main_metric", "multilabel", "device",
                                                     "zero_shot_langs", "eval_langs_order")
                and not k.startswith("cost_")]
    scope = [k for k in SCOPE_KEYS if k in runs]
    hyper = [k for k in identity if k not in scope]
    runs["setting"] = _varying_label(runs, scope, ["task", "scenario", "model"])
    runs["variant"] = _varying_label(runs, hyper, ["task", "scenario", "model", "setting",
                                                   "method"])
    return runs


def _order_key(column: pd.Series) -> pd.Series:
    """Methods and scenarios in the study's order (FFT first), the rest alphabetically."""
    orders = {"method": METHODS, "scenario": SCENARIOS}
    if column.name in orders:
        known = {v: i for i, v in enumerate(orders[column.name])}
        return column.map(lambda v: f"{known.get(v, len(known)):03d}{v}")
    if column.dtype == object:
        return column.astype(str)
    return column


def sort_cells(frame: pd.DataFrame, extra: list[str] | None = None) -> pd.DataFrame:
    keys = [k for k in [*CELL, *(extra or [])] if k in frame]
    return frame.sort_values(keys, key=_order_key, kind="stable").reset_index(drop=True)


def as_results(source: "Results | str | Path") -> Results:
    return source if isinstance(source, Results) else load_results(source)


def cell_std(values: pd.Series) -> float:
    """Sample standard deviation over seeds (ddof=1); NaN for a single seed."""
    values = values.dropna()
    return float(values.std(ddof=1)) if len(values) > 1 else np.nan


def collect(root: str | Path = "results", include_failed: bool = False):
    """All records under `root` as one row per (run, split, language) with cost columns."""
    import pandas as pd

    rows = []
    for run in scan_runs(root):
        record = run.record
        if record is None or (run.status != "complete" and not include_failed):
            continue
        info, costs = record["run_info"], record.get("costs", {})
        base = {
            "run_id": info["run_id"], "dataset": info["dataset"], "subtask": info.get("subtask"),
            "method": info["method"], "scenario": info["scenario"], "seed": info["seed"],
            "model": info["model"], "status": record.get("status"),
            "trainable_params": costs.get("trainable"), "total_params": costs.get("total"),
            "train_wall_s": costs.get("train_wall_s"), "peak_memory_mb": costs.get("peak_memory_mb"),
            "samples_per_s": costs.get("train_samples_per_s"),
            "checkpoint_mb": costs.get("checkpoint_mb"),
            "main_metric": record.get("metrics", {}).get("main_metric"),
        }
        zero_shot = set(info.get("zero_shot_langs", []))
        for split in ("dev", "test"):
            for lang, values in record.get("metrics", {}).get(split, {}).items():
                rows.append({**base, "split": split, "lang": lang,
                             "zero_shot": lang in zero_shot, **values})
        if not record.get("metrics"):
            rows.append(base)
    return pd.DataFrame(rows)
