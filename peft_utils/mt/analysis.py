"""Tables and figures of the MT study, from the MT results folder alone (one `record.json`
per run). The questions (Üstün & Cooper Stickland, 2022):

1. BLEU/chrF against the parameter budget, per pair: does PEFT approach FFT as the budget grows?
2. Close vs distant pairs: does PEFT lose more, relative to FFT, on distant pairs?
3. Data size: does PEFT beat FFT with little data?
4. Model size: does PEFT on a larger model beat FFT on a smaller one?

And what using each model costs (peft_utils.core.cost_of_use): translation speed as trained and
merged, the storage of K pairs served from one base, and the Pareto front of BLEU against cost.

Scores are test-set means over seeds (sample sd, ddof=1; one seed: no spread, "–").
Differences to FFT compare runs of the same model, pair and training size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from peft_utils.core.cost_of_use import (K_TASKS, inference_row, pareto_figure, serving_costs,
                                         serving_display)
from peft_utils.core.inference_bench import read_bench
from peft_utils.core.methods import REFERENCE
from peft_utils.core.outputs import DASH, fmt_mean_sd, safe_name
from peft_utils.core.report import Report, Results, read_run_folders
from peft_utils.mt.config import MTConfig
from peft_utils.mt.figures import (METHOD_ORDER, budget_figure, close_distant_figure,
                                   data_size_figure, model_size_figure, setting_label)

METRICS = ("bleu", "chrf")
CONDITION = ["model", "train_sentences", "pair"]
SETTING = ["method", "budget"]
CAPTIONS = {
    "mt_scores": "Test BLEU and chrF per model, training size, language pair, method and "
                 "parameter budget (mean ± sd over seeds).",
    "mt_budgets": "Parameter budgets: the method size chosen for each target fraction of the "
                  "model's parameters, the fraction reached and its relative error.",
    "mt_vs_fft": "Method − FFT on test BLEU and chrF, same model, pair and training size.",
    "mt_close_vs_distant": "Mean method − FFT difference over close and over distant pairs.",
    "mt_data_size": "Test BLEU by training size (sentences), per model, pair and method.",
    "mt_model_size": "FFT on the smaller model vs each PEFT setting on the larger one (test).",
    "mt_inference": "Translation cost per setting: sentences/s at the evaluation batch size and "
                    "latency at batch 1 (median, p95), as trained and merged, against FFT of "
                    "the same model, size and pair; bytes to serve, and K pairs served from one "
                    "base model against K full models.",
    "mt_failed_runs": "MT runs left out of every table: failed, unreadable or unfinished.",
}

# Tables computed from the results alone, written after the built-in ones: name ->
# builder(results) -> (numeric, display); captions in CAPTIONS (docs/contributing.md).
TABLES: dict[str, Callable[[Results], tuple[pd.DataFrame, pd.DataFrame]]] = {}


# The MT study's results and report hold nothing beyond every study's (core.report).
MTResults, MTReport = Results, Report


# ---- loading ---------------------------------------------------------------------------
def _model_name(model: str) -> str:
    return Path(str(model)).name


def load_mt_results(root: str | Path) -> MTResults:
    """The complete MT runs under `root`, one row each, with their inference figures (from
    `bench-inference` where it ran); the rest listed in `failed`. Tuning trials are left out:
    their final runs are compared (core.report.read_run_folders)."""
    root = Path(root)
    folders = read_run_folders(
        root, MTConfig.record_kind, "MT results folder",
        "run an MT grid first (`python -m peft_utils grid run configs/mt/<grid>.yaml`)")
    bench = read_bench(root).get("runs", {})
    runs = pd.DataFrame([_run_row(run.record, bench) for run in folders.complete])
    if not runs.empty:
        runs["budget"] = runs["budget"].astype(float)
    return MTResults(root, runs, pd.DataFrame(folders.failed,
                                              columns=["run_id", "status", "reason"]))


def _run_row(record: dict, bench: dict) -> dict:
    """One complete run: its setting, budget, costs, dev and test scores, inference."""
    info = record["run_info"]
    budget, costs, metrics = record["budget"], record["costs"], record["metrics"]
    row = {"run_id": info["run_id"], "model": _model_name(info["model"]),
           "base_params": budget["base"], "pair": info["pair"], "tgt": info["tgt_lang"],
           "group": info["group"], "method": info["method"], "budget": info["budget"],
           "knob": budget["knob"], "size": budget["value"], "fraction": budget["fraction"],
           "relative_error": budget["relative_error"], "seed": info["seed"],
           "train_sentences": costs["train_sentences"], "trainable": costs["trainable"],
           "train_wall_s": costs["train_wall_s"], "peak_memory_mb": costs["peak_memory_mb"]}
    for split in ("dev", "test"):
        for metric in METRICS:
            row[f"{split}_{metric}"] = metrics[split]["overall"][metric]
    return {**row, **(inference_row(info["run_id"], record, bench) or {})}


# ---- formatting ----------------------------------------------------------------------------
def _order(frame: pd.DataFrame) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return frame.assign(_m=frame["method"].map(rank).fillna(99),
                        _b=frame["budget"].fillna(-1)).sort_values(
        [c for c in ("model", "train_sentences", "pair") if c in frame] + ["_m", "_b"]).drop(
        columns=["_m", "_b"]).reset_index(drop=True)


# ---- tables ------------------------------------------------------------------------------
def score_table(results: MTResults) -> pd.DataFrame:
    """Mean and sd over seeds of test (and dev) BLEU/chrF per model × size × pair × setting."""
    runs = results.runs
    keys = CONDITION + ["group"] + SETTING
    stats = {f"{split}_{m}": ["mean", "std"] for split in ("test", "dev") for m in METRICS}
    table = runs.groupby(keys, dropna=False).agg({**stats, "seed": "count",
                                                  "fraction": "mean", "trainable": "mean",
                                                  "train_wall_s": "mean"})
    table.columns = ["_".join(c) if c[1] not in ("", "count") else
                     ("n_seeds" if c[0] == "seed" else c[0]) for c in table.columns]
    table = table.rename(columns={"fraction_mean": "fraction", "trainable_mean": "trainable",
                                  "train_wall_s_mean": "train_wall_s"})
    return _order(table.reset_index())


def score_display(scores: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({
        "model": scores["model"], "sentences": scores["train_sentences"],
        "pair": scores["pair"], "setting": [setting_label(m, b) for m, b in
                                            zip(scores["method"], scores["budget"])],
        "trained": [f"{f:.3%}" for f in scores["fraction"]],
        "BLEU": [fmt_mean_sd(m, s, 1) for m, s in zip(scores["test_bleu_mean"],
                                                      scores["test_bleu_std"])],
        "chrF": [fmt_mean_sd(m, s, 1) for m, s in zip(scores["test_chrf_mean"],
                                                      scores["test_chrf_std"])],
        "seeds": scores["n_seeds"]})
    return out


def budget_table_from_runs(results: MTResults) -> pd.DataFrame:
    runs = results.runs[results.runs["method"].ne(REFERENCE)]
    table = runs.groupby(["model", "method", "budget"], dropna=False).agg(
        knob=("knob", "first"), size=("size", "first"), trainable=("trainable", "first"),
        base_params=("base_params", "first"), fraction=("fraction", "first"),
        relative_error=("relative_error", "first")).reset_index()
    return _order(table)


def budget_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "model": table["model"], "method": table["method"],
        "budget": [DASH if pd.isna(b) else f"{b:.2%}" for b in table["budget"]],
        "size": [f"{k}={int(v)}" if isinstance(k, str) else "(fixed)"
                 for k, v in zip(table["knob"], table["size"])],
        "trainable": [f"{int(t):,}" for t in table["trainable"]],
        "reached": [f"{f:.3%}" for f in table["fraction"]],
        "error": [DASH if pd.isna(e) else f"{e:.1%}" for e in table["relative_error"]]})


def vs_fft(scores: pd.DataFrame) -> pd.DataFrame:
    """Every non-FFT setting minus FFT of the same model, size and pair (seed means)."""
    fft = scores[scores["method"] == REFERENCE].set_index(CONDITION)
    rows = []
    for row in scores[scores["method"] != REFERENCE].itertuples(index=False):
        key = tuple(getattr(row, k) for k in CONDITION)
        if key not in fft.index:
            continue
        ref = fft.loc[key]
        rows.append({**{k: getattr(row, k) for k in CONDITION + ["group"] + SETTING},
                     "fraction": row.fraction,
                     **{f"delta_{m}": getattr(row, f"test_{m}_mean") - ref[f"test_{m}_mean"]
                        for m in METRICS},
                     **{f"fft_{m}": ref[f"test_{m}_mean"] for m in METRICS}})
    return pd.DataFrame(rows, columns=CONDITION + ["group"] + SETTING + [
        "fraction", "delta_bleu", "delta_chrf", "fft_bleu", "fft_chrf"])


def close_vs_distant(deltas: pd.DataFrame) -> pd.DataFrame:
    """Mean difference to FFT over the close and the distant pairs, per setting."""
    part = deltas[deltas["group"].isin(["close", "distant"])]
    if part.empty:
        return pd.DataFrame(columns=["model", "train_sentences", "method", "budget", "group",
                                     "pairs", "delta_bleu", "delta_chrf"])
    table = part.groupby(["model", "train_sentences", "method", "budget", "group"],
                         dropna=False).agg(pairs=("pair", "nunique"),
                                           delta_bleu=("delta_bleu", "mean"),
                                           delta_chrf=("delta_chrf", "mean")).reset_index()
    return _order(table)


def data_size_table(scores: pd.DataFrame) -> pd.DataFrame:
    cols = ["model", "pair", "method", "budget", "train_sentences", "test_bleu_mean",
            "test_chrf_mean"]
    return _order(scores[cols]).sort_values(["model", "pair", "method", "budget",
                                             "train_sentences"]).reset_index(drop=True)


def model_size_table(scores: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """For every pair of models (smaller, larger by parameters): FFT on the smaller beside
    each non-FFT setting on the larger, same pair and training size."""
    sizes = runs.groupby("model")["base_params"].first().sort_values()
    rows = []
    for i, small in enumerate(sizes.index):
        for large in sizes.index[i + 1:]:
            fft = scores[(scores["model"] == small) & (scores["method"] == REFERENCE)]
            peft = scores[(scores["model"] == large) & (scores["method"] != REFERENCE)]
            for ref in fft.itertuples(index=False):
                same = peft[(peft["pair"] == ref.pair) &
                            (peft["train_sentences"] == ref.train_sentences)]
                for row in same.itertuples(index=False):
                    rows.append({"pair": ref.pair, "train_sentences": ref.train_sentences,
                                 "small_model": small, "large_model": large,
                                 "large_setting": setting_label(row.method, row.budget),
                                 "fft_small_bleu": ref.test_bleu_mean,
                                 "peft_large_bleu": row.test_bleu_mean,
                                 "delta_bleu": row.test_bleu_mean - ref.test_bleu_mean,
                                 "fft_small_chrf": ref.test_chrf_mean,
                                 "peft_large_chrf": row.test_chrf_mean,
                                 "delta_chrf": row.test_chrf_mean - ref.test_chrf_mean})
    return pd.DataFrame(rows, columns=["pair", "train_sentences", "small_model", "large_model",
                                       "large_setting", "fft_small_bleu", "peft_large_bleu",
                                       "delta_bleu", "fft_small_chrf", "peft_large_chrf",
                                       "delta_chrf"])


def inference_table(results: MTResults, k_tasks: int = K_TASKS) -> pd.DataFrame:
    """Per setting (mean over seeds) of the runs with inference figures: speed as trained and
    merged, ratios to FFT of the same model, size and pair, and the storage of `k_tasks` pairs
    (core.cost_of_use.serving_costs)."""
    runs = results.runs
    if "merge" not in runs:   # no run has an inference block
        return pd.DataFrame()
    return _order(serving_costs(runs[runs["merge"].notna()], CONDITION + SETTING, CONDITION,
                                REFERENCE, k_tasks))


def inference_display(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return table
    return serving_display(table, {
        "model": table["model"], "sentences": table["train_sentences"], "pair": table["pair"],
        "setting": [setting_label(m, b) for m, b in zip(table["method"], table["budget"])]})


def pareto_figures(scores: pd.DataFrame, serving: pd.DataFrame) -> dict[str, object]:
    """Per model and training size: test BLEU against trainable parameters, training time and
    latency, each setting a point averaged over the pairs (settings run on every pair only)."""
    data = scores.copy()
    data["latency_ms"] = float("nan")
    if not serving.empty:
        data = data.drop(columns="latency_ms").merge(
            serving[CONDITION + SETTING + ["best_latency_ms"]].rename(
                columns={"best_latency_ms": "latency_ms"}), on=CONDITION + SETTING, how="left")
    figures = {}
    for (model, n), part in data.groupby(["model", "train_sentences"], sort=False):
        pairs = part["pair"].nunique()
        points = part.groupby(SETTING, dropna=False, sort=False).agg(
            bleu=("test_bleu_mean", "mean"), trainable=("trainable", "mean"),
            train_wall_s=("train_wall_s", "mean"), latency_ms=("latency_ms", "mean"),
            pairs=("pair", "nunique")).reset_index()
        points = points[points["pairs"] == pairs]
        points["setting"] = [setting_label(m, b) for m, b in
                             zip(points["method"], points["budget"])]
        figures[safe_name("mt_pareto", model, f"n{n}")] = pareto_figure(
            points, "bleu", "setting", f"test BLEU (mean of {pairs} pair(s))",
            f"{model} · {n} sentences")
    return figures


def _rounded(frame: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f" and col not in ("budget", "fraction"):
            out[col] = out[col].map(lambda v: DASH if pd.isna(v) else f"{v:.{digits}f}")
    if "budget" in out:
        out["budget"] = out["budget"].map(lambda b: DASH if pd.isna(b) else f"{b:.2%}")
    if "fraction" in out:
        out["fraction"] = out["fraction"].map(lambda f: f"{f:.3%}")
    return out


# ---- the report --------------------------------------------------------------------------
def write_mt_report(results_dir: str | Path, tables_dir: str | Path = "tables/mt",
                    figures_dir: str | Path = "figures/mt", k_tasks: int = K_TASKS) -> MTReport:
    """Analyse the MT results folder; write tables (csv, md, tex) and figures (png, pdf).
    `k_tasks`: the pairs served from one base model in the inference table's storage."""
    results = load_mt_results(results_dir)
    report = MTReport(results, tables_dir=tables_dir, figures_dir=figures_dir, captions=CAPTIONS)
    add = report.add
    report.add_failed("mt_failed_runs", results.failed, "MT run records")
    scores = score_table(results)
    add("mt_scores", scores, score_display(scores))
    budgets = budget_table_from_runs(results)
    add("mt_budgets", budgets, budget_display(budgets))
    deltas = vs_fft(scores)
    add("mt_vs_fft", deltas, _rounded(deltas))
    groups = close_vs_distant(deltas)
    add("mt_close_vs_distant", groups, _rounded(groups))
    sizes = data_size_table(scores)
    add("mt_data_size", sizes, _rounded(sizes))
    models = model_size_table(scores, results.runs)
    add("mt_model_size", models, _rounded(models))
    serving = inference_table(results, k_tasks)
    add("mt_inference", serving, inference_display(serving))
    report.add_tables(TABLES)

    figures = {}
    for (model, n), part in scores.groupby(["model", "train_sentences"], sort=False):
        for metric in METRICS:
            figures[safe_name("mt_budget", metric, model, f"n{n}")] = budget_figure(part, metric)
    for (model, n), part in groups.groupby(["model", "train_sentences"], sort=False):
        figures[safe_name("mt_close_vs_distant", model, f"n{n}")] = close_distant_figure(part)
    for model, part in sizes.groupby("model", sort=False):
        if part["train_sentences"].nunique() > 1:
            figures[safe_name("mt_data_size", model)] = data_size_figure(part)
    if not models.empty:
        figures["mt_model_size"] = model_size_figure(models)
    figures.update(pareto_figures(scores, serving))
    report.add_figures(figures)
    return report
