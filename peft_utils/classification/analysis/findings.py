"""The report's first section: what the study found, before the tables it is read from.

One row per final cell (`findings_table`) and a few sentences (`findings_text`): the verdicts
(method − FFT with their CI), whether each run beat the frozen-feature probe, where each run
started (`head_init: probe`: the probe's score) and what it added, what tuning chose and
whether the choice is interior, the cost ranges and the runs that failed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.load import CELL, sort_cells
from peft_utils.classification.analysis.tables import display_keys
from peft_utils.core.methods import REFERENCE
from peft_utils.core.outputs import fmt_number, fmt_signed


def findings_table(diffs: pd.DataFrame, baselines: pd.DataFrame,
                   chosen: pd.DataFrame) -> pd.DataFrame:
    """Per final cell: test score, method − FFT with its CI and verdict (overall), dev score
    against the probe's and the run's starting score, and the tuned choice's position."""
    if baselines.empty:
        return pd.DataFrame()
    table = baselines[[*CELL, "n_seeds", "dev_mean", "start", "probe", "beats_probe", "test",
                       "probe_test"]].copy()
    overall = diffs[diffs["lang"] == "overall"] if not diffs.empty else pd.DataFrame()
    if not overall.empty:
        table = table.merge(overall[[*CELL, "diff", "ci_low", "ci_high", "verdict"]],
                            on=CELL, how="left")
    for column in ("diff", "ci_low", "ci_high", "verdict"):
        if column not in table:
            table[column] = np.nan
    if not chosen.empty and "position" in chosen:
        table = table.merge(chosen[["task", "scenario", "method", "position"]],
                            on=["task", "scenario", "method"], how="left")
        # A tuning shared across scenarios is recorded at its first scenario: spread it.
        shared = chosen.drop_duplicates(["task", "method"]).set_index(["task", "method"])
        missing = table["position"].isna()
        table.loc[missing, "position"] = [
            shared["position"].get((t, m), np.nan)
            for t, m in zip(table.loc[missing, "task"], table.loc[missing, "method"])]
    else:
        table["position"] = np.nan
    return sort_cells(table)


def findings_display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    if table.empty:
        return table
    def num(v):
        return fmt_number(v, digits)
    return pd.DataFrame({
        **{k: table[k] for k in display_keys(table)},
        "test": table["test"].map(num),
        "Δ test vs FFT [CI]": [
            "reference" if m == REFERENCE else
            "–" if pd.isna(d) else f"{fmt_signed(d, digits)} [{fmt_signed(lo, digits)}, "
                                   f"{fmt_signed(hi, digits)}]"
            for m, d, lo, hi in zip(table["method"], table["diff"], table["ci_low"],
                                    table["ci_high"])],
        "verdict": [("" if m == REFERENCE else v) if isinstance(v, str) else "–"
                    for m, v in zip(table["method"], table["verdict"])],
        "dev start → end": [f"{num(s)} → {num(e)}" if s == s else num(e)
                            for s, e in zip(table["start"], table["dev_mean"])],
        "probe (dev)": table["probe"].map(num),
        "beats probe": table["beats_probe"].map({True: "yes", False: "**no**"}).fillna("–"),
        "test − probe test": (table["test"] - table["probe_test"]).map(
            lambda v: fmt_signed(v, digits)),
        "tuned choice": table["position"].fillna("–"),
    })


def findings_text(table: pd.DataFrame, ranges_display: pd.DataFrame, failed: int,
                  tuning_budget: str, ci_level: float | None) -> list[str]:
    """The findings as Markdown bullet points (one string each)."""
    if table.empty:
        return ["No complete final run to report on."]
    out = []
    peft = table[table["method"] != REFERENCE]
    judged = peft[peft["verdict"].notna()]
    if len(judged):
        counts = judged["verdict"].value_counts()
        level = f"{ci_level:.0%} " if ci_level else ""
        seeds = sorted(set(table["n_seeds"]))
        spread = ("One seed per final: each CI resamples the evaluation examples only and "
                  "shows no seed-to-seed spread; a second seed would show it."
                  if seeds == [1] else f"{'-'.join(map(str, seeds))} seeds per final.")
        out.append(f"**Verdicts** (method − FFT on test, {level}paired bootstrap CI): of "
                   f"{len(judged)} PEFT cells, {counts.get('comparable', 0)} comparable, "
                   f"{counts.get('better', 0)} better, {counts.get('worse', 0)} worse. "
                   + spread)
    probed = table[table["beats_probe"].notna()]
    if len(probed):
        below = probed[~probed["beats_probe"].astype(bool)]
        names = ", ".join(f"{r.task} · {r.scenario} · {r.method}" for r in below.itertuples())
        out.append(f"**Probe check**: {len(probed) - len(below)} of {len(probed)} final cells "
                   "beat the frozen-feature probe on the training languages' dev rows"
                   + (f"; below it: {names}." if len(below) else ".")
                   + _test_against_probe(probed))
    started = table[table["start"].notna()]
    if len(started):
        gains = (started["dev_mean"] - started["start"]).groupby(started["method"],
                                                                 sort=False).mean()
        out.append("**From the probe**: every head started at the probe's score "
                   "(`head_init: probe`); mean dev gain over that start: "
                   + ", ".join(f"{m} {fmt_signed(g, 3)}" for m, g in gains.items()) + ".")
    positions = table.drop_duplicates(["task", "method"])["position"].dropna()
    if len(positions):
        edges = table.drop_duplicates(["task", "method"])
        edges = edges[edges["position"].fillna("").str.contains("edge")]
        out.append(f"**Tuning**: {int((positions == 'interior').sum())} of {len(positions)} "
                   "tuned choices are interior"
                   + ("; at an edge (its optimum may lie beyond): "
                      + ", ".join(f"{r.task} · {r.method} ({r.position})"
                                  for r in edges.itertuples()) + "." if len(edges) else ".")
                   + (f" {tuning_budget}" if tuning_budget else ""))
    if not ranges_display.empty:
        out.append("**Costs** (FFT / method trainable parameters; training time saved): "
                   + "; ".join(f"{r['method']} {r['FFT / method']}, {r['training time saved']}"
                               for _, r in ranges_display.iterrows()) + ".")
    out.append("**Failures**: " + (f"{failed} run(s) failed or are unfinished (section 6)."
                                   if failed else "none."))
    return out


def _test_against_probe(table: pd.DataFrame) -> str:
    scored = table[table["probe_test"].notna() & table["test"].notna()]
    if scored.empty:
        return ""
    ahead = int((scored["test"] > scored["probe_test"]).sum())
    return f" On test, {ahead} of {len(scored)} beat the probe's test score."
