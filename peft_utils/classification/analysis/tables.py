"""Score, cost and baseline tables: numeric (tidy, for CSV) and formatted (for reading).

Every number is a mean over seeds with a sample standard deviation (ddof=1); a single seed has
no spread, shown as "–".
"""
from __future__ import annotations

import re
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.load import (CELL, CONDITION, Results, as_results,
                                                     cell_std, sort_cells)
from peft_utils.core.methods import REFERENCE
from peft_utils.core.outputs import DASH, fmt_mean_sd, fmt_number, fmt_signed

ZERO_SHOT_MARK = "*"   # language without training data in the scenario
DEV_MARK = "†"         # no gold on test: the dev score stands in
# Cost columns of a record -> table columns, in reading order.
COSTS = {"cost_trainable": "trainable", "cost_total": "total",
         "cost_percent_trainable": "percent_trainable", "cost_train_wall_s": "train_wall_s",
         "cost_train_samples_per_s": "samples_per_s", "cost_peak_memory_mb": "peak_memory_mb",
         "cost_checkpoint_mb": "checkpoint_mb"}


# ---- formatting -------------------------------------------------------------
def fmt_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """`mean ± std` (core.outputs.fmt_mean_sd), three digits unless told."""
    return fmt_mean_sd(mean, std, digits)


def display_keys(frame: pd.DataFrame) -> list[str]:
    """The cell keys worth a column: model/setting/variant only where they tell runs apart."""
    keys = ["task", "scenario"]
    if "model" in frame and frame["model"].nunique() > 1:
        keys.append("model")
    if "setting" in frame and frame["setting"].astype(bool).any():
        keys.append("setting")
    keys.append("method")
    if "variant" in frame and frame["variant"].astype(bool).any():
        keys.append("variant")
    return keys


# ---- F1 per language --------------------------------------------------------
def _language_order(results: Results) -> dict[tuple, list[str]]:
    """Languages of each condition in evaluation order (training first), `overall` last."""
    order: dict[tuple, list[str]] = {}
    for key, runs in results.runs.groupby(CONDITION, sort=False):
        langs = list(dict.fromkeys(lang for langs in runs["eval_langs_order"] for lang in langs))
        order[key] = langs
    return order


def _language_position(order: dict[tuple, list[str]], condition: tuple, lang: str) -> int:
    langs = order.get(condition, [])
    if lang == "overall":
        return len(langs) + 1
    return langs.index(lang) if lang in langs else len(langs)


def f1_table(source: Results | str | Path) -> pd.DataFrame:
    """Main-metric score per cell × language on test (dev where test has no gold), mean ± std
    over seeds. Columns: cell keys, lang, zero_shot, split, metric, mean, std, n_seeds, n."""
    results = as_results(source)
    scores = results.scores
    columns = [*CELL, "lang", "zero_shot", "split", "metric", "mean", "std", "n_seeds", "n"]
    if scores.empty:
        return pd.DataFrame(columns=columns)
    # One split per condition and language, the same for every method, so columns compare.
    has_test = (scores.assign(t=scores["split"].eq("test"))
                .groupby([*CONDITION, "lang"])["t"].transform("any"))
    chosen = scores[scores["split"].eq(np.where(has_test, "test", "dev"))]
    table = (chosen.groupby([*CELL, "lang"], sort=False)
             .agg(zero_shot=("zero_shot", "any"), split=("split", "first"),
                  metric=("metric", "first"), mean=("score", "mean"), std=("score", cell_std),
                  n_seeds=("seed", "nunique"), n=("n", "max"))
             .reset_index())
    order = _language_order(results)
    table["_lang_pos"] = [_language_position(order, cond, lang) for cond, lang in
                          zip(table[CONDITION].itertuples(index=False, name=None), table["lang"])]
    table = sort_cells(table, ["_lang_pos"]).drop(columns="_lang_pos")
    return table[columns]


def f1_wide(long: pd.DataFrame, digits: int = 3, coverage: pd.DataFrame | None = None
            ) -> pd.DataFrame:
    """One row per cell, one column per language (`overall` last), cells `mean ± std`;
    `*` marks a zero-shot language, `†` a dev score where test has no gold. With `coverage`
    (`coverage_table`), a language evaluated nowhere gets a column saying why (absent, no
    gold, empty) instead of vanishing."""
    if long.empty:
        return pd.DataFrame()
    keys = display_keys(long)
    frame = pd.concat([long.assign(why=""), _unscored_cells(long, coverage)], ignore_index=True)
    frame["cell"] = [(fmt_mean_std(m, s, digits) if not why else why)
                     + (ZERO_SHOT_MARK if z else "") + (DEV_MARK if split == "dev" else "")
                     for m, s, z, split, why in zip(frame["mean"], frame["std"],
                                                    frame["zero_shot"], frame["split"],
                                                    frame["why"])]
    langs = list(dict.fromkeys(l for l in frame["lang"] if l != "overall"))
    if (frame["lang"] == "overall").any():
        langs.append("overall")
    wide = frame.pivot_table(index=[*keys, "metric"], columns="lang", values="cell",
                             aggfunc="first", sort=False)
    wide = wide.reindex(columns=langs).fillna("").reset_index()
    wide.columns.name = None
    return sort_cells(wide)


# ---- what the data held -------------------------------------------------------
UNSCORED = {"absent": "absent", "empty": "empty", "unlabelled": "no gold"}


def coverage_table(source: Results | str | Path) -> pd.DataFrame:
    """Per condition, split and evaluation language, what the runs found (labelled,
    unlabelled, empty, absent), with the languages in evaluation order."""
    results = as_results(source)
    cov = results.coverage
    columns = [*CONDITION, "split", "lang", "zero_shot", "state"]
    if cov.empty:
        return pd.DataFrame(columns=columns)
    table = (cov.groupby([*CONDITION, "split", "lang"], sort=False)
             .agg(zero_shot=("zero_shot", "any"),
                  state=("state", lambda s: ",".join(dict.fromkeys(s))))
             .reset_index())
    return table[columns]


def coverage_display(table: pd.DataFrame) -> pd.DataFrame:
    """One row per condition and split: which languages were scored and which were not."""
    if table.empty:
        return pd.DataFrame()
    keys = [k for k in display_keys(table) if k in table]
    rows = []
    for key, part in table.groupby([*keys, "split"], sort=False):
        named = {state: ", ".join(part.loc[part["state"] == state, "lang"])
                 for state in ("labelled", "unlabelled", "empty", "absent")}
        rows.append({**dict(zip([*keys, "split"], key)), "scored": named["labelled"] or DASH,
                     "no gold (predicted only)": named["unlabelled"] or DASH,
                     "empty after filtering": named["empty"] or DASH,
                     "absent": named["absent"] or DASH})
    return pd.DataFrame(rows)


def _unscored_cells(long: pd.DataFrame, coverage: pd.DataFrame | None) -> pd.DataFrame:
    """Rows for f1_wide naming why a language of a condition has no score at all."""
    if coverage is None or coverage.empty:
        return pd.DataFrame(columns=long.columns)
    scored = set(zip(*[long[k] for k in CONDITION], long["lang"]))
    cells = long[CELL + ["metric"]].drop_duplicates()
    rows = []
    for (*condition, lang), part in coverage.groupby([*CONDITION, "lang"], sort=False):
        if (*condition, lang) in scored:
            continue
        states = set(",".join(part["state"]).split(","))
        why = next(UNSCORED[s] for s in ("unlabelled", "empty", "absent") if s in states)
        for cell in cells[(cells[CONDITION] == condition).all(axis=1)].itertuples(index=False):
            rows.append({**cell._asdict(), "lang": lang, "zero_shot": part["zero_shot"].any(),
                         "split": "test", "why": why})
    return pd.DataFrame(rows)


# ---- costs ------------------------------------------------------------------
def _cell_means(results: Results, columns: dict[str, str]) -> pd.DataFrame:
    runs = results.runs
    present = {k: v for k, v in columns.items() if k in runs}
    grouped = runs.groupby(CELL, sort=False)
    table = grouped[list(present)].mean(numeric_only=True).rename(columns=present)
    table["n_seeds"] = grouped["seed"].nunique()
    return table.reset_index()


def reference_variants(source: Results | str | Path) -> pd.DataFrame:
    """The FFT cell each condition compares against. With several FFT variants (e.g. a
    learning-rate sweep) the best on dev stands as the reference, as a tuned baseline would;
    variants without a dev score rank last."""
    results = as_results(source)
    fft = results.runs[results.runs["method"] == REFERENCE] if not results.runs.empty else None
    if fft is None or fft.empty:
        return pd.DataFrame(columns=[*CONDITION, "ref_variant"])
    scores = results.scores
    dev = scores[(scores["split"] == "dev") & (scores["lang"] == "overall")]
    means = dev.groupby([*CONDITION, "variant"])["score"].mean()
    cells = fft[[*CONDITION, "variant"]].drop_duplicates()
    cells["dev"] = [means.get(tuple(row), -np.inf) for row in cells.itertuples(index=False)]
    best = cells.loc[cells.groupby(CONDITION, sort=False)["dev"].idxmax()]
    return best.rename(columns={"variant": "ref_variant"})[[*CONDITION, "ref_variant"]]


def _with_reference(table: pd.DataFrame, results: Results, columns: list[str]) -> pd.DataFrame:
    ref = reference_variants(results)
    fft = table[table["method"] == REFERENCE].merge(
        ref, left_on=[*CONDITION, "variant"], right_on=[*CONDITION, "ref_variant"])
    fft = fft[[*CONDITION, *columns]].rename(columns={c: f"fft_{c}" for c in columns})
    return table.merge(fft, on=CONDITION, how="left")


def cost_table(source: Results | str | Path) -> pd.DataFrame:
    """Costs per cell (mean over seeds) and their ratio to the condition's FFT: trainable
    parameters FFT/method (×), training-time and peak-memory reduction in % of FFT.
    Cells without an FFT counterpart get NaN ratios."""
    results = as_results(source)
    if results.runs.empty:
        return pd.DataFrame(columns=[*CELL, "n_seeds", *COSTS.values()])
    table = _cell_means(results, COSTS)
    table = _with_reference(table, results, ["trainable", "train_wall_s", "peak_memory_mb"])
    table["ratio_to_fft"] = table["fft_trainable"] / table["trainable"]
    table["time_reduction_pct"] = 100 * (1 - table["train_wall_s"] / table["fft_train_wall_s"])
    table["memory_reduction_pct"] = 100 * (1 - table["peak_memory_mb"]
                                           / table["fft_peak_memory_mb"])
    meta = results.runs.groupby(CELL, sort=False).agg(
        peak_memory_kind=("cost_peak_memory_kind", lambda s: ",".join(sorted(set(s.dropna())))),
        device=("device", lambda s: ",".join(sorted(set(map(str, s.dropna())))))).reset_index()
    table = table.merge(meta, on=CELL, how="left")
    order = [*CELL, "n_seeds", "trainable", "total", "percent_trainable", "ratio_to_fft",
             "train_wall_s", "time_reduction_pct", "samples_per_s", "peak_memory_mb",
             "memory_reduction_pct", "peak_memory_kind", "checkpoint_mb", "device"]
    return sort_cells(table[[c for c in order if c in table]])


def cost_display(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    return pd.DataFrame({
        **{k: table[k] for k in keys},
        "seeds": table["n_seeds"],
        "trainable params": table["trainable"].map(lambda v: fmt_number(v, 0)),
        "% of total": table["percent_trainable"].map(lambda v: fmt_number(v, 3)),
        "FFT / method": table["ratio_to_fft"].map(
            lambda v: fmt_number(v, 0 if v >= 10 else 1, "×")),
        "train time (s)": table["train_wall_s"].map(lambda v: fmt_number(v, 1)),
        # Signed change, so "−35%" reads as "35% less than FFT".
        "time vs FFT": table["time_reduction_pct"].map(lambda v: fmt_signed(0.0 - v, 1, "%")),
        "samples/s": table["samples_per_s"].map(lambda v: fmt_number(v, 1)),
        "peak memory (MB)": table["peak_memory_mb"].map(lambda v: fmt_number(v, 0)),
        "memory vs FFT": table["memory_reduction_pct"].map(
            lambda v: fmt_signed(0.0 - v, 1, "%")),
        "memory kind": table["peak_memory_kind"],
        "checkpoint (MB)": table["checkpoint_mb"].map(lambda v: fmt_number(v, 2)),
    })


# ---- trivial baselines ------------------------------------------------------
# A run "clearly" beats the trivial baselines when its dev score exceeds the best of them by
# this much (absolute, in the main metric).
CLEAR_MARGIN = 0.10


PROBE_TIE = 1e-9   # a dev score this close to the probe's is the probe's (a kept start)


def baseline_table(source: Results | str | Path) -> pd.DataFrame:
    """Each cell's dev score (main metric) on its training languages, where the run was
    trained and selected (older records: all dev languages), beside the predictors the record
    scored on the same rows: the strongest trivial one, the margin over it (mean over seeds)
    and whether every run beats it by at least CLEAR_MARGIN; and the frozen-feature probe
    (a logistic regression on the base model's features; records from before it have none),
    and whether every run beats it (a run below it has failed); `start`: the run's score
    before its first step where its head started from the probe (head_init: probe), and
    `kept_start`: in how many seeds that start stayed the best dev state. Test scores of the
    method (mean, sd over seeds) and the probe beside them, where test has gold."""
    results = as_results(source)
    rows = []
    for run in results.runs.itertuples(index=False):
        metrics = results.records[run.run_id]["metrics"]
        dev = metrics.get("selection_dev") or metrics.get("dev", {}).get("overall")
        baselines = {name: values.get(run.main_metric)
                     for name, values in (metrics.get("baselines") or {}).items()}
        if dev is None or not baselines:
            continue
        best_name = max(baselines, key=lambda name: baselines[name])
        same_rows = all(values.get("n") == dev.get("n")
                        for values in metrics["baselines"].values())
        probe = metrics.get("frozen_probe") or {}
        start = (metrics.get("head_init") or {}).get("selection_dev") or {}
        rows.append({**{k: getattr(run, k) for k in CELL}, "seed": run.seed,
                     "metric": run.main_metric, "score": dev[run.main_metric],
                     **{f"baseline_{k}": v for k, v in baselines.items()},
                     "best_baseline": best_name, "baseline": baselines[best_name],
                     "margin": dev[run.main_metric] - baselines[best_name],
                     "same_rows": same_rows,
                     "probe": (probe.get("selection_dev") or {}).get(run.main_metric, np.nan),
                     "start": start.get(run.main_metric, np.nan),
                     # The best dev state was the start itself: training added nothing.
                     "kept_start": metrics.get("best_step") == 0,
                     "test": _overall(metrics.get("test"), run.main_metric),
                     "probe_test": _overall(probe.get("test"), run.main_metric),
                     "class_weights": getattr(run, "class_weights", "none")})
    if not rows:
        return pd.DataFrame(columns=[*CELL, "metric", "n_seeds", "dev_mean", "dev_std",
                                     "baseline", "margin", "min_run_margin", "beats_all",
                                     "probe", "beats_probe", "start", "test", "probe_test"])
    runs = pd.DataFrame(rows)
    runs["probe_margin"] = runs["score"] - runs["probe"]
    named = [c for c in runs if c.startswith("baseline_")]
    table = runs.groupby(CELL, sort=False).agg(
        metric=("metric", "first"), n_seeds=("seed", "nunique"), dev_mean=("score", "mean"),
        dev_std=("score", cell_std), **{c: (c, "mean") for c in named},
        best_baseline=("best_baseline", lambda s: ",".join(sorted(set(s)))),
        baseline=("baseline", "mean"), margin=("margin", "mean"),
        min_run_margin=("margin", "min"), same_rows=("same_rows", "all"),
        probe=("probe", "mean"), min_probe_margin=("probe_margin", "min"),
        start=("start", "mean"), kept_start=("kept_start", "sum"),
        test=("test", "mean"), test_std=("test", cell_std), probe_test=("probe_test", "mean"),
        class_weights=("class_weights", "first")).reset_index()
    table["beats_all"] = table["min_run_margin"] >= CLEAR_MARGIN
    # NaN (no probe in an older record): None. A kept start (step 0) ties the probe: it passes.
    table["beats_probe"] = [None if pd.isna(m) else bool(m >= -PROBE_TIE)
                            for m in table["min_probe_margin"]]
    return sort_cells(table)


def _overall(scores: dict | None, metric: str) -> float:
    return ((scores or {}).get("overall") or {}).get(metric, np.nan)


def baseline_display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    named = [c for c in table if c.startswith("baseline_")]
    return pd.DataFrame({
        **{k: table[k] for k in keys}, "metric": table["metric"],
        "class weights": table["class_weights"],
        "dev score": [fmt_mean_std(m, s, digits) for m, s in zip(table["dev_mean"],
                                                                 table["dev_std"])],
        **{c.removeprefix("baseline_"): table[c].map(lambda v: fmt_number(v, digits))
           for c in named},
        "margin": table["margin"].map(lambda v: f"{v:+.{digits}f}"),
        "worst run margin": table["min_run_margin"].map(lambda v: f"{v:+.{digits}f}"),
        f"every run beats it by ≥ {CLEAR_MARGIN:.2f}": table["beats_all"].map({True: "yes", False: "NO"}),
        "frozen probe": table["probe"].map(lambda v: fmt_number(v, digits)),
        "start (head from the probe)": table["start"].map(lambda v: fmt_number(v, digits)),
        "no run below the probe": table["beats_probe"].map(
            lambda v: DASH if v is None else ("yes" if v else "NO")),
        "test score": table["test"].map(lambda v: fmt_number(v, digits)),
        "probe test": table["probe_test"].map(lambda v: fmt_number(v, digits)),
    })


def failed_display(results: Results) -> pd.DataFrame:
    return results.failed[["run_id", "status", "reason"]].copy()


def cost_ranges(costs: pd.DataFrame) -> pd.DataFrame:
    """Per method, the range over tasks and scenarios of the two headline cost claims:
    FFT/method trainable parameters (×) and training-time reduction (%)."""
    peft = costs[(costs["method"] != REFERENCE) & costs["ratio_to_fft"].notna()]
    if peft.empty:
        return pd.DataFrame(columns=["method", "cells", "ratio_min", "ratio_max",
                                     "time_reduction_min_pct", "time_reduction_max_pct"])
    return sort_cells(peft.groupby("method", sort=False).agg(
        cells=("task", "size"), ratio_min=("ratio_to_fft", "min"),
        ratio_max=("ratio_to_fft", "max"), time_reduction_min_pct=("time_reduction_pct", "min"),
        time_reduction_max_pct=("time_reduction_pct", "max")).reset_index())


def _span(low: float, high: float, digits: int, suffix: str) -> str:
    low_text, high_text = fmt_number(low, digits), fmt_number(high, digits)
    if low_text == high_text:
        return low_text + suffix
    joiner = "–" if low >= 0 else " to "  # a dash after a minus sign reads as a double minus
    return f"{low_text}{joiner}{high_text}{suffix}"


def cost_ranges_display(ranges: pd.DataFrame) -> pd.DataFrame:
    if ranges.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "method": ranges["method"], "cells": ranges["cells"],
        "FFT / method": [_span(lo, hi, 0, "×")
                         for lo, hi in zip(ranges["ratio_min"], ranges["ratio_max"])],
        "training time saved": [_span(lo, hi, 0, "%") for lo, hi in
                                zip(ranges["time_reduction_min_pct"],
                                    ranges["time_reduction_max_pct"])],
    })


def provenance(results: Results) -> pd.DataFrame:
    """Which code, packages and devices produced the runs (one row per distinct combination)."""
    rows = []
    for run_id, record in results.records.items():
        meta = record.get("meta", {})
        packages = meta.get("packages") or {}
        rows.append({"git_commit": (meta.get("git_commit") or "")[:10],
                     "device": meta.get("device"), "precision": meta.get("precision"),
                     **{name: packages.get(name) for name in
                        ("torch", "transformers", "peft", "adapters")}})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows).fillna("")
    return frame.groupby(list(frame.columns)).size().rename("runs").reset_index()


# ---- HTML: the tables as the rendered report shows them ---------------------------
# A table with more rows than this starts folded in the report (HTML <details>).
LONG_TABLE = 24
# A cell reads as a number (right-aligned, never wrapped) when it starts like one: "0.466 ± 0.009",
# "+0.012 [-0.010, +0.031]", "159×", "-38.1%", "0.600 → 1.000", "22.1 (36.6)".
_NUMBER = re.compile(r"^[+\-−]?(\d[\d,]*\.?\d*|\.\d+)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_MARKS = re.compile(r"(?<=[^*\s])([*†]+)$")   # trailing zero-shot / dev marks (not a bold's)
_TICKS = {"yes": '<span class="mark ok" title="yes">✓ yes</span>',
          "no": '<strong class="mark bad" title="no">✗ no</strong>'}
# The report's style sheet for html_table (the notebook shows it once, before any table).
TABLE_CSS = """
<style>
.peft-table-wrap { overflow-x: auto; margin: 0.4em 0 1.2em 0; }
.peft-table-wrap > summary { cursor: pointer; font-size: 0.95em; color: #333;
  margin-bottom: 0.3em; }
.peft-table-wrap > summary .rows { color: #777; }
.jp-RenderedHTMLCommon table.peft-table, table.peft-table {
  table-layout: auto; border-collapse: collapse; margin: 0; font-size: 0.85em; width: auto; }
.jp-RenderedHTMLCommon table.peft-table th, table.peft-table th {
  text-align: left; vertical-align: bottom; padding: 0.3em 0.6em; border-bottom: 1px solid #444;
  white-space: normal; font-weight: 600; }
.jp-RenderedHTMLCommon table.peft-table td, table.peft-table td {
  text-align: left; padding: 0.25em 0.6em; white-space: nowrap; border: none; }
.jp-RenderedHTMLCommon table.peft-table th.num, .jp-RenderedHTMLCommon table.peft-table td.num,
table.peft-table th.num, table.peft-table td.num {
  text-align: right; font-variant-numeric: tabular-nums; }
table.peft-table tbody tr:nth-child(odd) { background: #f6f6f6; }
table.peft-table tbody tr:hover { background: #e8f0fe; }
table.peft-table sup { font-size: 0.75em; margin-left: 0.1em; }
table.peft-table .mark.ok { color: #1b7837; }
table.peft-table .mark.bad { color: #b2182b; }
</style>
"""


def html_cell(value) -> str:
    """One formatted cell as HTML: escaped; `**x**` bold, `yes` / `no` as ticks, trailing
    zero-shot and dev marks (`*`, `†`) raised, ` ± ` kept on the line."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return DASH
    if isinstance(value, (bool, np.bool_)):
        return _TICKS["yes" if value else "no"]
    text = str(value)
    plain = _BOLD.sub(r"\1", text).strip()
    if plain in ("yes", "no", "NO"):
        return _TICKS[plain.lower()]
    html = escape(text, quote=False)
    html = _BOLD.sub(r"<strong>\1</strong>", html)
    html = _MARKS.sub(r"<sup>\1</sup>", html)
    return html.replace(" ± ", "&nbsp;±&nbsp;")


def _numeric_column(column: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    cells = [str(v).strip() for v in column if v is not None and v == v and str(v).strip()
             not in ("", DASH)]
    # Mostly numbers ("reference" or "absent" in a few cells of a number column): numbers.
    return bool(cells) and sum(bool(_NUMBER.match(c)) for c in cells) >= 0.5 * len(cells)


def html_table(display: pd.DataFrame, caption: str = "", name: str = "",
               fold_after: int = LONG_TABLE) -> str:
    """`display` (a formatted table of the report) as the HTML the rendered report shows:
    no index column, marks rendered (html_cell), numbers right-aligned and never wrapped, in a
    `<details>` block headed by `caption` that starts folded when the table has more than
    `fold_after` rows."""
    if display is None or display.empty:
        body = "<p><em>(no rows)</em></p>"
        rows = 0
    else:
        rows = len(display)
        numeric = [_numeric_column(display[c]) for c in display.columns]
        head = "".join(f'<th{" class=num" if num else ""}>{escape(str(c))}</th>'
                       for c, num in zip(display.columns, numeric))
        lines = []
        for values in display.itertuples(index=False, name=None):
            cells = "".join(f'<td{" class=num" if num else ""}>{html_cell(v)}</td>'
                            for v, num in zip(values, numeric))
            lines.append(f"<tr>{cells}</tr>")
        body = (f'<table class="peft-table"><thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(lines)}</tbody></table>')
    title = f"<strong>{escape(name)}</strong>" if name else ""
    text = _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<strong>\1</strong>",
                                                  escape(caption, quote=False)))
    summary = " · ".join(p for p in (title, text) if p)
    count = f'<span class="rows"> ({rows} row{"s" if rows != 1 else ""})</span>'
    return (f'<details class="peft-table-wrap"{"" if rows > fold_after else " open"}>'
            f"<summary>{summary}{count}</summary>{body}</details>")
