"""The report's first section: what the study found, before the tables it is read from.

One row per final cell (`findings_table`) and a few sentences (`findings_text`): the verdicts
(method − FFT with their interval over seeds and examples, Holm-adjusted; cells with one seed
get none), whether each run beat the frozen-feature probe, where each run started
(`head_init: probe`: the probe's score) and what it added, what tuning chose, whether the
choice is interior and whether tuning could tell its values apart, the cost ranges and the
runs that failed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.bootstrap import ONE_SEED
from peft_utils.classification.analysis.load import CELL, sort_cells
from peft_utils.classification.analysis.tables import display_keys
from peft_utils.core.methods import REFERENCE
from peft_utils.core.outputs import fmt_mean_sd, fmt_number, fmt_signed


def findings_table(diffs: pd.DataFrame, baselines: pd.DataFrame,
                   chosen: pd.DataFrame) -> pd.DataFrame:
    """Per final cell: test score, method − FFT with its CI and verdict (overall), dev score
    against the probe's and the run's starting score, and the tuned choice's position."""
    if baselines.empty:
        return pd.DataFrame()
    table = baselines[[*CELL, "n_seeds", "dev_mean", "start", "kept_start", "probe",
                       "beats_probe", "test", "test_std", "probe_test"]].copy()
    overall = diffs[diffs["lang"] == "overall"] if not diffs.empty else pd.DataFrame()
    if not overall.empty:
        table = table.merge(overall[[*CELL, *VERDICT_COLUMNS]], on=CELL, how="left")
    for column in VERDICT_COLUMNS:
        if column not in table:
            table[column] = np.nan
    tuned = [c for c in ("position", "separated") if c in chosen]
    for column in ("position", "separated"):
        table[column] = _tuned_value(table, chosen, column) if column in tuned else np.nan
    return sort_cells(table)


VERDICT_COLUMNS = ["diff", "ci_low", "ci_high", "ci_level", "p_value", "p_holm",
                   "prob_improvement", "verdict_unadjusted", "verdict"]


def _tuned_value(table: pd.DataFrame, chosen: pd.DataFrame, column: str) -> list:
    """`chosen[column]` for each final cell: its own scenario's tuning where it had one, else
    the tuning shared across scenarios (recorded at its first scenario)."""
    own = chosen.drop_duplicates(["task", "scenario", "method"]).set_index(
        ["task", "scenario", "method"])[column]
    shared = chosen.drop_duplicates(["task", "method"]).set_index(["task", "method"])[column]
    return [own[(t, s, m)] if (t, s, m) in own.index else shared.get((t, m), np.nan)
            for t, s, m in zip(table["task"], table["scenario"], table["method"])]


def findings_display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    if table.empty:
        return table
    def num(v):
        return fmt_number(v, digits)
    return pd.DataFrame({
        **{k: table[k] for k in display_keys(table)},
        "test (mean ± sd)": [fmt_mean_sd(m, s, digits)
                             for m, s in zip(table["test"], table["test_std"])],
        "seeds": table["n_seeds"],
        "Δ test vs FFT [CI]": [
            "reference" if m == REFERENCE else
            "–" if pd.isna(d) else f"{fmt_signed(d, digits)} [{fmt_signed(lo, digits)}, "
                                   f"{fmt_signed(hi, digits)}]"
            for m, d, lo, hi in zip(table["method"], table["diff"], table["ci_low"],
                                    table["ci_high"])],
        "P(method > FFT)": [fmt_number(p, 2) if v != ONE_SEED else "–"
                            for p, v in zip(table["prob_improvement"], table["verdict"])],
        "p / Holm": [f"{fmt_number(p, 3)} / {fmt_number(h, 3)}" if p == p else "–"
                     for p, h in zip(table["p_value"], table["p_holm"])],
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
    if peft["verdict"].notna().any():
        out.append(_verdict_line(peft, ci_level))
    probed = table[table["beats_probe"].notna()]
    if len(probed):
        below = probed[~probed["beats_probe"].astype(bool)]
        names = ", ".join(f"{r.task} · {r.scenario} · {r.method}" for r in below.itertuples())
        out.append(f"**Probe check**: {len(probed) - len(below)} of {len(probed)} final cells "
                   "have no run below the frozen-feature probe on the training languages' dev "
                   "rows (a run that kept its start ties it)"
                   + (f"; below it: {names}." if len(below) else ".")
                   + _test_against_probe(probed))
    started = table[table["start"].notna()]
    if len(started):
        gains = (started["dev_mean"] - started["start"]).groupby(started["method"],
                                                                 sort=False).mean()
        out.append("**From the probe**: every head started at the probe's score "
                   "(`head_init: probe`); mean dev gain over that start: "
                   + ", ".join(f"{m} {fmt_signed(g, 3)}" for m, g in gains.items()) + "."
                   + _kept_start(started))
    positions = table.drop_duplicates(["task", "method"])["position"].dropna()
    if len(positions):
        edges = table.drop_duplicates(["task", "method"])
        edges = edges[edges["position"].fillna("").str.contains("edge")]
        out.append(f"**Tuning**: {int((positions == 'interior').sum())} of {len(positions)} "
                   "tuned choices are interior"
                   + ("; at an edge (its optimum may lie beyond): "
                      + ", ".join(f"{r.task} · {r.method} ({r.position})"
                                  for r in edges.itertuples()) + "." if len(edges) else ".")
                   + (f" {tuning_budget}" if tuning_budget else "")
                   + _separation(table))
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


def _verdict_line(peft: pd.DataFrame, ci_level: float | None) -> str:
    """The verdicts' counts (Holm-adjusted, the unadjusted beside), the seeds behind them, and
    the cells with too few seeds for one."""
    level = f"{ci_level:.0%} " if ci_level else ""
    one_seed = peft[peft["verdict"] == ONE_SEED]
    judged = peft[peft["verdict"].notna() & (peft["verdict"] != ONE_SEED)]
    if judged.empty:
        return (f"**No verdicts**: every PEFT cell or its FFT reference ran one seed, so its "
                "difference to FFT (shown below) covers the evaluation examples only and says "
                "nothing of the seed-to-seed spread; run several seeds (`grid: seed: [1, 2, 3]`)"
                " for a verdict.")
    counts, raw = judged["verdict"].value_counts(), judged["verdict_unadjusted"].value_counts()
    seeds = sorted(set(judged["n_seeds"]))
    line = (f"**Verdicts** (method − FFT on test, {level}interval over seeds and examples, "
            f"Holm-adjusted over the report's cells): of {len(judged)} PEFT cells, "
            f"{counts.get('comparable', 0)} comparable, {counts.get('better', 0)} better, "
            f"{counts.get('worse', 0)} worse (unadjusted: {raw.get('comparable', 0)} / "
            f"{raw.get('better', 0)} / {raw.get('worse', 0)}); "
            f"{'-'.join(map(str, seeds))} seeds per final.")
    if len(one_seed):
        line += (f" {len(one_seed)} cell(s) with one seed show their difference, no verdict: "
                 + ", ".join(f"{r.task} · {r.scenario} · {r.method}"
                             for r in one_seed.itertuples()) + ".")
    return line


def _separation(table: pd.DataFrame) -> str:
    """The tuned groups whose tried values scored within the finals' seed-to-seed spread."""
    groups = table.drop_duplicates(["task", "method"])
    blurred = groups[groups["separated"].eq(False)]
    if blurred.empty:
        return ""
    return (" Tuning could not separate the rates (their dev spread does not exceed the "
            "spread across seeds) for: " + ", ".join(f"{r.task} · {r.method}"
                                                  for r in blurred.itertuples()) + ".")


def _kept_start(table: pd.DataFrame) -> str:
    """The cells where some seed's best dev state was its start (step 0)."""
    kept = table[table["kept_start"] > 0]
    if kept.empty:
        return ""
    return (" Training added nothing (the best dev state was the start) in: "
            + ", ".join(f"{r.task} · {r.scenario} · {r.method} ({int(r.kept_start)} of "
                        f"{int(r.n_seeds)} seeds)" for r in kept.itertuples()) + ".")
