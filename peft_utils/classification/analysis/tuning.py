"""What a tuned grid's first stage did: the trials, the values chosen per method, what tuning
cost, and how sensitive each method is to what was tuned (peft_utils.grid.tuning)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.load import Results, sort_cells
from peft_utils.core.outputs import fmt_number

GROUP = ["task", "scenario", "method"]


def tuned_keys(trials: pd.DataFrame) -> list[str]:
    """The settings the trials varied, in the order they appear."""
    fixed = {"task", "scenario", "method", "group", "trial", "seed", "status", "dev",
             "main_metric", "steps", "train_wall_s", "run_id"}
    return [k for k in trials.columns if k not in fixed]


def trial_table(results: Results) -> pd.DataFrame:
    """One row per trial (its seeds averaged): the values tried and the dev score."""
    trials = results.trials
    if trials.empty:
        return trials
    keys = tuned_keys(trials)
    table = trials.groupby([*GROUP, "group", "trial"], sort=False, dropna=False).agg(
        **{k: (k, "first") for k in keys}, dev=("dev", "mean"), seeds=("seed", "nunique"),
        failed=("status", lambda s: int((s != "complete").sum())),
        steps=("steps", "sum"), train_wall_s=("train_wall_s", "sum")).reset_index()
    best = table.loc[table["dev"].notna()].sort_values("trial").groupby("group")["dev"].idxmax()
    table["chosen"] = table.index.isin(best.values)
    return table


def chosen_table(results: Results, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method and group: the chosen values, their dev score, and what tuning cost (trial
    runs, optimiser steps, training seconds over every trial); `table`: trial_table's."""
    table = trial_table(results) if table is None else table
    if table.empty:
        return table
    keys = tuned_keys(results.trials)
    rows = []
    for group, trials in table.groupby("group", sort=False):
        chosen = trials[trials["chosen"]]
        top = chosen.iloc[0] if len(chosen) else None
        rows.append({**{k: trials.iloc[0][k] for k in GROUP}, "group": group,
                     "trials": len(trials),
                     "failed": int(trials["failed"].sum()),
                     "chosen_trial": top["trial"] if top is not None else np.nan,
                     "position": position(trials, top, keys) if top is not None else np.nan,
                     **{k: top[k] if top is not None else np.nan for k in keys},
                     "dev": top["dev"] if top is not None else np.nan,
                     "tuning_steps": trials["steps"].sum(),
                     "tuning_train_s": trials["train_wall_s"].sum()})
    return sort_cells(pd.DataFrame(rows))


def separability(chosen: pd.DataFrame, trials: pd.DataFrame,
                 baselines: pd.DataFrame) -> pd.DataFrame:
    """`chosen` with whether tuning could tell its values apart: the dev score's standard
    deviation across the values tried (`sd_values`) against its standard deviation across the
    final seeds at the chosen value (`sd_seeds`, the finals of the tuned scenario, from
    `baselines`). `separated` is False where the values' spread does not exceed the seeds'
    (the choice may be noise) and missing where the finals have fewer than two seeds."""
    if chosen.empty:
        return chosen
    spread = trials.groupby("group", sort=False)["dev"].std(ddof=1)
    finals = baselines.groupby(GROUP, sort=False).agg(sd_seeds=("dev_std", "first"),
                                                      final_seeds=("n_seeds", "first"))
    table = chosen.merge(finals.reset_index(), on=GROUP, how="left")
    table["sd_values"] = table["group"].map(spread)
    known = (table["final_seeds"] >= 2) & table["sd_values"].notna()
    table["separated"] = np.where(known, table["sd_values"] > table["sd_seeds"], None)
    return table


def position(trials: pd.DataFrame, chosen: pd.Series, keys: list[str]) -> str:
    """Where the chosen trial lies among the values its group tried: `interior`, or at the
    bottom or top edge of a numeric key (its optimum may lie beyond: tune.extend)."""
    for key in keys:
        values = pd.to_numeric(trials[key], errors="coerce").dropna()
        value = pd.to_numeric(pd.Series([chosen[key]]), errors="coerce").iloc[0]
        if values.nunique() < 2 or value != value:
            continue
        if value <= values.min():
            return f"bottom edge of {key}"
        if value >= values.max():
            return f"top edge of {key}"
    return "interior"


def chosen_display(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    if table.empty:
        return table
    out = table[GROUP + ["trials", "failed", "chosen_trial", "position"]].copy()
    for key in keys:
        out[key] = table[key].map(lambda v: f"{v:.3g}" if isinstance(v, float) else str(v))
    out["dev (chosen)"] = table["dev"].map(lambda v: fmt_number(v, 3))
    if "separated" in table:
        out["dev sd: values / seeds"] = [
            f"{fmt_number(v, 3)} / {fmt_number(sd, 3)}" for v, sd in
            zip(table["sd_values"], table["sd_seeds"])]
        out["values separated"] = table["separated"].map(
            {True: "✓", False: "✗ (within seed noise)"}).fillna("–")
    out["tuning steps"] = table["tuning_steps"].map(lambda v: f"{int(v):,}" if v == v else "–")
    out["tuning train time (s)"] = table["tuning_train_s"].map(lambda v: f"{v:,.0f}")
    return out


def budget_statement(results: Results, table: pd.DataFrame | None = None) -> str:
    """The tuning budget in one sentence, read from the trial records ('' without trials)."""
    table = trial_table(results) if table is None else table
    if table.empty:
        return ""
    per_method = table.groupby("group")["trial"].nunique()
    seeds = sorted(results.trials["seed"].unique())
    steps = sorted(results.trials["steps"].dropna().unique())
    counts = sorted(set(per_method))
    trials = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]} (unequal!)"
    return (f"Tuning budget: {trials} trials per method and group over "
            f"{', '.join(tuned_keys(results.trials))}, seed(s) {', '.join(map(str, seeds))}, "
            f"{', '.join(str(int(s)) for s in steps)} optimiser steps per trial run; "
            f"chosen on the training languages' dev score, never on test. "
            f"{len(results.trials)} trial runs in {per_method.size} groups.")


def sensitivity_figures(results: Results, table: pd.DataFrame | None = None
                        ) -> dict[str, object]:
    """Per task and tuning scenario: dev score against the first tuned value (log scale),
    one line per method, the chosen trial circled (a square where it lies at the edge of
    what the method tried: its optimum may lie beyond)."""
    import matplotlib.pyplot as plt

    from peft_utils.core.outputs import safe_name

    table = trial_table(results) if table is None else table
    if table.empty:
        return {}
    key = tuned_keys(results.trials)[0]
    figures = {}
    for (task, scenario), frame in table.groupby(["task", "scenario"], sort=False):
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for method, rows in frame.groupby("method", sort=False):
            rows = rows.sort_values(key)
            line, = ax.plot(rows[key], rows["dev"], marker="o", label=method)
            chosen = rows[rows["chosen"]]
            edge = len(chosen) and position(rows, chosen.iloc[0], [key]) != "interior"
            ax.scatter(chosen[key], chosen["dev"], s=180, facecolors="none",
                       edgecolors=line.get_color(), linewidths=2, marker="s" if edge else "o")
            if edge:
                line.set_label(f"{method} (chosen at an edge)")
        ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel("dev score, training languages (main metric)")
        ax.set_title(f"{task} · {scenario}: sensitivity (circled: chosen; square: at an edge)",
                     fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        figures[f"sensitivity_{safe_name(task, scenario)}"] = fig
    return figures
