"""What using each trained model costs, as both studies' reports show it: inference speed as
trained, merged and (where `bench-inference` timed it) run by ONNX Runtime, ratios to FFT, the storage of K tasks served from one base model, and the
Pareto front of score against cost. The measurements themselves are peft_utils.core.serving
(each run's own) and peft_utils.core.inference_bench (runs timed side by side).

A run's figures come from the side-by-side bench where it measured the run, else from the
run's own record (timed at the end of its run, beside whatever else the machine was doing);
the `timing` column says which.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peft_utils.core.inference_bench import METRICS
from peft_utils.core.outputs import fmt_number, fmt_signed

VARIANTS = ("unmerged", "merged", "onnx")   # how a model is served (core.inference_bench)
K_TASKS = 10   # tasks served from one base model in the storage projection
# benchmarks/multitask.py's figures in a results folder: where it measured a method's K
# tasks, the storage column is that measurement, not the projection.
MULTITASK_BENCH = "multitask-bench.json"
MEASURED, PROJECTED = "measured", "projected"
BENCH, RECORD = "side by side", "per run"
# Cost axes of the Pareto figures: column -> axis label (lower is better on every one).
PARETO_COSTS = {"trainable": "trainable parameters (log)", "train_wall_s": "training time (s)",
                "latency_ms": "latency at batch 1 (ms; merged where it merges)"}


def inference_row(run_id: str, record: dict[str, Any], bench: dict[str, Any]) -> dict | None:
    """A run's inference figures as trained (`unmerged_*`), merged (`merged_*`) and run by
    ONNX Runtime (`onnx_*`: the bench's alone, NaN where it timed none), its merge status and
    serving bytes; None for a record without an inference block (older runs)."""
    block = record.get("inference")
    if not block:
        return None
    timed = bench.get(run_id) or block
    row = {"merge": block["merge"], "serve_bytes": block["serve_bytes"],
           "full_model_bytes": block["full_model_bytes"],
           "timing": BENCH if run_id in bench else RECORD}
    for variant in VARIANTS:
        for metric in METRICS:
            row[f"{variant}_{metric}"] = (timed.get(variant) or {}).get(metric, np.nan)
    return row


def measured_storage(root, k_tasks: int = K_TASKS) -> dict[str, int]:
    """{method: bytes its `k_tasks` tasks held} where benchmarks/multitask.py measured them
    in `root` ({} where it did not)."""
    path = Path(root) / MULTITASK_BENCH
    if not path.is_file():
        return {}
    figures = json.loads(path.read_text(encoding="utf-8"))["figures"]
    return {f["method"]: int(f["held_bytes"]) for f in figures if f["k"] == k_tasks}


def serving_costs(runs: pd.DataFrame, cell: list[str], condition: list[str], reference: str,
                  k_tasks: int = K_TASKS, measured: dict[str, int] | None = None
                  ) -> pd.DataFrame:
    """Per cell (mean over seeds) of runs with inference rows: throughput and latency as
    trained and merged, their ratios to the `reference` method of the same condition, and the
    bytes of `k_tasks` tasks served from one shared base (base + K × each task's own
    parameters, or what `measured` says for the method: `storage`) against K full fine-tuned
    models."""
    numeric = [c for c in runs.columns if c.startswith(tuple(f"{v}_" for v in VARIANTS))]
    table = runs.groupby(cell, sort=False, dropna=False).agg(
        **{c: (c, "mean") for c in [*numeric, "serve_bytes", "full_model_bytes"]},
        merge=("merge", "first"), timing=("timing", lambda s: ",".join(sorted(set(s)))),
        n_seeds=("seed", "nunique")).reset_index()
    # Served at its best: merged where the method merges.
    table["best_latency_ms"] = table["merged_latency_ms_median"].fillna(
        table["unmerged_latency_ms_median"])
    ref = table[table["method"] == reference].groupby(condition, sort=False, dropna=False).agg(
        ref_latency=("unmerged_latency_ms_median", "mean"),
        ref_throughput=("unmerged_examples_per_s", "mean")).reset_index()
    table = table.merge(ref, on=condition, how="left")
    table["latency_vs_fft"] = table["unmerged_latency_ms_median"] / table["ref_latency"]
    table["merged_latency_vs_fft"] = table["merged_latency_ms_median"] / table["ref_latency"]
    table["onnx_latency_vs_fft"] = table["onnx_latency_ms_median"] / table["ref_latency"]
    table["throughput_vs_fft"] = table["unmerged_examples_per_s"] / table["ref_throughput"]
    table["k_tasks"] = k_tasks
    shared = table["serve_bytes"] < table["full_model_bytes"]
    table["k_tasks_gb"] = np.where(
        shared, table["full_model_bytes"] + k_tasks * table["serve_bytes"],
        k_tasks * table["full_model_bytes"]) / 1e9
    held = table["method"].map(measured or {})
    table["storage"] = np.where(held.notna(), MEASURED, PROJECTED)
    table["k_tasks_gb"] = (held / 1e9).fillna(table["k_tasks_gb"])
    table["k_tasks_vs_fft"] = table["k_tasks_gb"] / (k_tasks * table["full_model_bytes"] / 1e9)
    return table.drop(columns=["ref_latency", "ref_throughput"])


def serving_display(table: pd.DataFrame, keys: dict[str, Any]) -> pd.DataFrame:
    """serving_costs' table for reading, after the `keys` columns that name each cell; the
    ONNX columns only where the bench timed ONNX Runtime for some run."""
    if table.empty:
        return table
    k = int(table["k_tasks"].iloc[0])

    def ratio(v):
        return fmt_number(v, 2, "×")

    onnx = {} if table["onnx_latency_ms_median"].isna().all() else {
        "ONNX latency ms": table["onnx_latency_ms_median"].map(lambda v: fmt_number(v, 1)),
        "ONNX vs FFT": table["onnx_latency_vs_fft"].map(ratio)}
    return pd.DataFrame({
        **keys,
        "examples/s": table["unmerged_examples_per_s"].map(lambda v: fmt_number(v, 1)),
        "vs FFT": table["throughput_vs_fft"].map(ratio),
        "latency ms (p95)": [f"{fmt_number(m, 1)} ({fmt_number(p, 1)})" for m, p in
                             zip(table["unmerged_latency_ms_median"],
                                 table["unmerged_latency_ms_p95"])],
        "latency vs FFT": table["latency_vs_fft"].map(ratio),
        "merge": table["merge"],
        "merged latency ms": table["merged_latency_ms_median"].map(lambda v: fmt_number(v, 1)),
        "merged vs FFT": table["merged_latency_vs_fft"].map(ratio),
        **onnx,
        "serve (MB)": (table["serve_bytes"] / 2**20).map(lambda v: fmt_number(v, 2)),
        f"{k} tasks (GB)": table["k_tasks_gb"].map(lambda v: fmt_number(v, 2)),
        f"{k} tasks vs FFT": table["k_tasks_vs_fft"].map(
            lambda v: fmt_signed(100 * (v - 1), 0, "%")),
        "storage": table["storage"],
        "timing": table["timing"],
    })


def pareto_front(score: pd.Series, cost: pd.Series) -> pd.Series:
    """True where no other point scores at least as well at no more cost, one of them
    strictly (higher score, lower cost are better)."""
    s, c = score.to_numpy(float), cost.to_numpy(float)
    front = []
    for i in range(len(s)):
        better = (s >= s[i]) & (c <= c[i]) & ((s > s[i]) | (c < c[i]))
        front.append(not np.isnan(s[i]) and not np.isnan(c[i]) and not better.any())
    return pd.Series(front, index=score.index)


def pareto_figure(points: pd.DataFrame, score: str, label: str, score_label: str, title: str):
    """One panel per cost of PARETO_COSTS: `score` against the cost, each row of `points` a
    dot named by its `label` column, the panel's Pareto front circled and joined."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PARETO_COSTS), figsize=(4.6 * len(PARETO_COSTS), 3.8))
    for ax, (cost, cost_label) in zip(axes, PARETO_COSTS.items()):
        _pareto_panel(ax, points, score, label, cost, cost_label)
    axes[0].set_ylabel(score_label)
    fig.suptitle(f"{title}: score against cost (circled: Pareto front)")
    fig.tight_layout()
    return fig


def _pareto_panel(ax, points: pd.DataFrame, score: str, label: str, cost: str,
                  cost_label: str) -> None:
    ax.set(xlabel=cost_label)
    points = points.dropna(subset=[cost, score])
    if points.empty:   # e.g. older records without inference figures
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        return
    front = pareto_front(points[score], points[cost])
    for x, y, name, on_front in zip(points[cost], points[score], points[label], front):
        ax.scatter(x, y, s=40, zorder=3)
        ax.annotate(name, (x, y), fontsize="small", xytext=(4, 4), textcoords="offset points")
        if on_front:
            ax.scatter(x, y, s=160, facecolors="none", edgecolors="black", zorder=4)
    line = points[front.to_numpy(bool)].sort_values(cost)
    ax.plot(line[cost], line[score], ls="--", color="grey", zorder=2)
    ax.set(xscale="log" if cost == "trainable" else "linear")
    ax.grid(alpha=0.3)
