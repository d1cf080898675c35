"""What using each method's model costs in the classification study: the inference table and
the Pareto figures per task and scenario (the shared rules: peft_utils.core.cost_of_use)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.load import CELL, CONDITION, Results, sort_cells
from peft_utils.core.outputs import safe_name
from peft_utils.classification.analysis.tables import display_keys
from peft_utils.core.cost_of_use import (K_TASKS, inference_row, measured_storage,
                                         pareto_figure, serving_costs, serving_display)
from peft_utils.core.inference_bench import read_bench
from peft_utils.core.methods import REFERENCE


def inference_runs(results: Results) -> pd.DataFrame:
    """One row per run with an inference block (core.cost_of_use.inference_row)."""
    bench = read_bench(results.root).get("runs", {})
    rows = []
    for run in results.runs.itertuples(index=False):
        row = inference_row(run.run_id, results.records[run.run_id], bench)
        if row is not None:
            rows.append({**{k: getattr(run, k) for k in CELL}, "run_id": run.run_id,
                         "seed": run.seed, **row})
    return pd.DataFrame(rows)


def inference_table(results: Results, k_tasks: int = K_TASKS) -> pd.DataFrame:
    """Per cell: inference figures, their ratios to the condition's FFT and the storage of
    `k_tasks` tasks (core.cost_of_use.serving_costs; measured where benchmarks/multitask.py
    measured the method in the results folder)."""
    runs = inference_runs(results)
    if runs.empty:
        return runs
    return sort_cells(serving_costs(runs, CELL, CONDITION, REFERENCE, k_tasks,
                                    measured_storage(results.root, k_tasks)))


def inference_display(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:   # no run has an inference block
        return table
    return serving_display(table, {key: table[key] for key in display_keys(table)})


def pareto_data(f1: pd.DataFrame, costs: pd.DataFrame, serving: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the overall main-metric mean and the three costs of the Pareto figure, from
    the report's f1_table, cost_table and inference_table."""
    overall = f1.query("lang == 'overall'")[[*CELL, "mean", "metric"]]
    data = overall.merge(costs[[*CELL, "trainable", "train_wall_s"]], on=CELL)
    if not serving.empty:
        data = data.merge(serving[[*CELL, "best_latency_ms"]], on=CELL, how="left")
    data["latency_ms"] = data.get("best_latency_ms", np.nan)
    return sort_cells(data)


def pareto_figures(f1: pd.DataFrame, costs: pd.DataFrame, serving: pd.DataFrame
                   ) -> dict[str, object]:
    """Per task and scenario: the main metric against trainable parameters, training time and
    inference latency, the methods on each panel's Pareto front circled and joined."""
    figures = {}
    data = pareto_data(f1, costs, serving)
    for (task, scenario), cell in data.groupby(["task", "scenario"], sort=False):
        figures[f"pareto_{safe_name(task, scenario)}"] = pareto_figure(
            cell, "mean", "method", f"{cell['metric'].iloc[0]} (overall)", f"{task} · {scenario}")
    return figures
