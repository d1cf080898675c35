"""What using each method's model costs, beside what it scores: inference speed as trained and
merged, the storage of K tasks served from one base model, and the Pareto front of score
against cost (peft_utils.core.serving, peft_utils.core.inference_bench).

Inference figures come from `bench-inference` (runs timed side by side in one process) where
it measured a run, else from the run's own record (timed at the end of its run, beside
whatever else the machine was doing); the `timing` column says which.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.figures import _plt, safe_name
from peft_utils.classification.analysis.load import (CELL, CONDITION, REFERENCE, Results,
                                                     sort_cells)
from peft_utils.classification.analysis.tables import (cost_table, display_keys, f1_table,
                                                       fmt_number, fmt_signed)
from peft_utils.core.inference_bench import METRICS, read_bench

K_TASKS = 10   # tasks served from one base model in the storage projection
BENCH, RECORD = "side by side", "per run"
# Cost axes of the Pareto figure: column -> axis label (lower is better on every one).
PARETO_COSTS = {"trainable": "trainable parameters (log)", "train_wall_s": "training time (s)",
                "latency_ms": "latency at batch 1 (ms; merged where it merges)"}


def inference_runs(results: Results) -> pd.DataFrame:
    """One row per run with an inference block: its timings as trained (`unmerged_*`) and
    merged (`merged_*`), from the bench where it measured the run, the merge status and the
    serving bytes."""
    bench = read_bench(results.root).get("runs", {})
    rows = []
    for run in results.runs.itertuples(index=False):
        block = results.records[run.run_id].get("inference")
        if not block:
            continue   # older records: no inference block
        timed = bench.get(run.run_id) or block
        row = {**{k: getattr(run, k) for k in CELL}, "run_id": run.run_id, "seed": run.seed,
               "merge": block["merge"], "serve_bytes": block["serve_bytes"],
               "full_model_bytes": block["full_model_bytes"],
               "timing": BENCH if run.run_id in bench else RECORD}
        for variant in ("unmerged", "merged"):
            for metric in METRICS:
                row[f"{variant}_{metric}"] = (timed.get(variant) or {}).get(metric, np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def inference_table(results: Results, k_tasks: int = K_TASKS) -> pd.DataFrame:
    """Per cell (mean over seeds): throughput and latency as trained and merged, their ratios
    to the condition's FFT, and the bytes of `k_tasks` tasks served from one shared base
    (base + K × each task's own parameters) against K full fine-tuned models."""
    runs = inference_runs(results)
    if runs.empty:
        return runs
    numeric = [c for c in runs.columns if c.startswith(("unmerged_", "merged_"))]
    table = runs.groupby(CELL, sort=False).agg(
        **{c: (c, "mean") for c in [*numeric, "serve_bytes", "full_model_bytes"]},
        merge=("merge", "first"), timing=("timing", lambda s: ",".join(sorted(set(s)))),
        n_seeds=("seed", "nunique")).reset_index()
    # Served at its best: merged where the method merges.
    table["best_latency_ms"] = table["merged_latency_ms_median"].fillna(
        table["unmerged_latency_ms_median"])
    fft = table[table["method"] == REFERENCE].groupby(CONDITION, sort=False).agg(
        fft_latency=("unmerged_latency_ms_median", "mean"),
        fft_throughput=("unmerged_examples_per_s", "mean")).reset_index()
    table = table.merge(fft, on=CONDITION, how="left")
    table["latency_vs_fft"] = table["unmerged_latency_ms_median"] / table["fft_latency"]
    table["merged_latency_vs_fft"] = table["merged_latency_ms_median"] / table["fft_latency"]
    table["throughput_vs_fft"] = table["unmerged_examples_per_s"] / table["fft_throughput"]
    table["k_tasks"] = k_tasks
    shared = table["serve_bytes"] < table["full_model_bytes"]
    table["k_tasks_gb"] = np.where(
        shared, table["full_model_bytes"] + k_tasks * table["serve_bytes"],
        k_tasks * table["full_model_bytes"]) / 1e9
    table["k_tasks_vs_fft"] = table["k_tasks_gb"] / (k_tasks * table["full_model_bytes"] / 1e9)
    return sort_cells(table.drop(columns=["fft_latency", "fft_throughput"]))


def inference_display(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table
    k = int(table["k_tasks"].iloc[0])

    def ratio(v):
        return fmt_number(v, 2, "×")

    return pd.DataFrame({
        **{key: table[key] for key in display_keys(table)},
        "examples/s": table["unmerged_examples_per_s"].map(lambda v: fmt_number(v, 1)),
        "vs FFT": table["throughput_vs_fft"].map(ratio),
        "latency ms (p95)": [f"{fmt_number(m, 1)} ({fmt_number(p, 1)})" for m, p in
                             zip(table["unmerged_latency_ms_median"],
                                 table["unmerged_latency_ms_p95"])],
        "latency vs FFT": table["latency_vs_fft"].map(ratio),
        "merge": table["merge"],
        "merged latency ms": table["merged_latency_ms_median"].map(lambda v: fmt_number(v, 1)),
        "merged vs FFT": table["merged_latency_vs_fft"].map(ratio),
        "serve (MB)": (table["serve_bytes"] / 2**20).map(lambda v: fmt_number(v, 2)),
        f"{k} tasks (GB)": table["k_tasks_gb"].map(lambda v: fmt_number(v, 2)),
        f"{k} tasks vs FFT": table["k_tasks_vs_fft"].map(
            lambda v: fmt_signed(100 * (v - 1), 0, "%")),
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


def pareto_data(results: Results) -> pd.DataFrame:
    """Per cell: the overall main-metric mean and the three costs of the Pareto figure."""
    overall = f1_table(results).query("lang == 'overall'")[[*CELL, "mean", "metric"]]
    costs = cost_table(results)[[*CELL, "trainable", "train_wall_s"]]
    data = overall.merge(costs, on=CELL)
    serving = inference_table(results)
    if not serving.empty:
        data = data.merge(serving[[*CELL, "best_latency_ms"]], on=CELL, how="left")
    data["latency_ms"] = data.get("best_latency_ms", np.nan)
    return sort_cells(data)


def pareto_figures(results: Results) -> dict[str, object]:
    """Per task and scenario: the main metric against trainable parameters, training time and
    inference latency, the methods on each panel's Pareto front circled and joined."""
    data = pareto_data(results)
    plt = _plt()
    figures = {}
    for (task, scenario), cell in data.groupby(["task", "scenario"], sort=False):
        fig, axes = plt.subplots(1, len(PARETO_COSTS), figsize=(4.6 * len(PARETO_COSTS), 3.8))
        for ax, (cost, label) in zip(axes, PARETO_COSTS.items()):
            _pareto_panel(ax, cell, cost, label)
        axes[0].set_ylabel(f"{cell['metric'].iloc[0]} (overall)")
        fig.suptitle(f"{task} · {scenario}: score against cost (circled: Pareto front)")
        fig.tight_layout()
        figures[f"pareto_{safe_name(task, scenario)}"] = fig
    return figures


def _pareto_panel(ax, cell: pd.DataFrame, cost: str, label: str) -> None:
    ax.set(xlabel=label)
    points = cell.dropna(subset=[cost, "mean"])
    if points.empty:   # e.g. older records without inference figures
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        return
    front = pareto_front(points["mean"], points[cost])
    for row, on_front in zip(points.itertuples(index=False), front):
        ax.scatter(getattr(row, cost), row.mean, s=40, zorder=3)
        ax.annotate(row.method, (getattr(row, cost), row.mean), fontsize="small",
                    xytext=(4, 4), textcoords="offset points")
        if on_front:
            ax.scatter(getattr(row, cost), row.mean, s=160, facecolors="none",
                       edgecolors="black", zorder=4)
    line = points[front.to_numpy(bool)].sort_values(cost)
    ax.plot(line[cost], line["mean"], ls="--", color="grey", zorder=2)
    ax.set(xscale="log" if cost == "trainable" else "linear")
    ax.grid(alpha=0.3)
