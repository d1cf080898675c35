"""PEFT − FFT differences with a paired bootstrap over examples and seeds, and the verdicts
drawn from them.

Each replicate draws examples with replacement (within each language, so the language mix of
the evaluation set stays fixed) and, independently, seeds with replacement, and recomputes the
task's main metric for every run from its per-example predictions: the two crossed sources of
variance (which examples were scored, which seed trained the model) are resampled together, as
the pigeonhole bootstrap does for crossed random effects (Owen, 2007, "The pigeonhole
bootstrap", Annals of Applied Statistics 1(2)), and as Bouthillier et al. (MLSys 2021,
"Accounting for Variance in Machine Learning Benchmarks") ask of a benchmark comparison. Both
methods see the same examples in every replicate, and the same seeds where their seed lists
match: the pairing removes the variance the two methods share. The metric is computed from
weighted confusion counts, which equals `peft_utils.classification.metrics.scores` on unit
weights (tested) and is fast enough for B=1000.

Verdicts: a cell needs at least MIN_SEEDS seeds on both sides (one seed shows a difference,
never a verdict); the cells' bootstrap p-values form one family per scope (the overall scores,
and separately the per-language scores) whose family-wise error is held at 1 − ci by Holm's
step-down correction (statsmodels); the verdict follows the adjusted p-value, the unadjusted
one stands beside it. The probability of improvement (Agarwal et al., NeurIPS 2021, "Deep
Reinforcement Learning at the Edge of the Statistical Precipice") is P(a run of the method
scores above a run of FFT), ties counted half, over every pair of their seeds, with its
bootstrap interval over the same replicates.
"""
from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from peft_utils.classification import metrics as M
from peft_utils.classification.analysis.load import (CELL, CONDITION, Results, as_results,
                                                     sort_cells)
from peft_utils.classification.analysis.tables import reference_variants
from peft_utils.core.methods import REFERENCE

KEY = ["lang", "id", "line"]   # how examples align across runs of one split
MIN_SEEDS = 2                  # per side, for a verdict: one seed shows a difference only
ONE_SEED = "one seed"          # the verdict column of a cell with fewer seeds
_BLOCK_CELLS = 4_000_000       # replicate rows × examples held in memory at once


# ---- the metric on resampling weights -----------------------------------------
def weighted_scores(weights: np.ndarray, gold: np.ndarray, pred: np.ndarray, multilabel: bool,
                    metric: str, zero_div: float = 0.0) -> np.ndarray:
    """`metric` for each row of `weights` ([B, n] example multiplicities).

    Multiclass (`gold`, `pred`: [n] class ids): macro-F1 over the labels present in gold or
    prediction, micro-F1 (= accuracy), as `metrics.multiclass_scores`. Multilabel ([n, L]
    0/1): micro/macro-F1 with `zero_div` where a denominator is zero, as scikit-learn.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if multilabel:
        gold, pred = gold.astype(np.float64), pred.astype(np.float64)
        tp, fp, fn = (weights @ (gold * pred), weights @ ((1 - gold) * pred),
                      weights @ (gold * (1 - pred)))
        if metric == "micro_f1":
            return _divide(2 * tp.sum(1), 2 * tp.sum(1) + fp.sum(1) + fn.sum(1), zero_div)
        if metric == "macro_f1":
            return _divide(2 * tp, 2 * tp + fp + fn, zero_div).mean(1)
    else:
        n_labels = int(max(gold.max(initial=0), pred.max(initial=0))) + 1
        eye = np.eye(n_labels)
        gold_hot, pred_hot = eye[gold], eye[pred]
        tp = weights @ (gold_hot * (gold == pred)[:, None])
        if metric == "micro_f1" or metric == "accuracy":
            return _divide(tp.sum(1), weights.sum(1), 0.0)
        if metric == "macro_f1":
            denom = weights @ gold_hot + weights @ pred_hot
            present = denom > 0
            f1 = np.where(present, 2 * tp / np.where(present, denom, 1), 0.0)
            return _divide(f1.sum(1), present.sum(1).astype(np.float64), 0.0)
    raise ValueError(f"no weighted form of metric {metric!r}; use macro_f1 or micro_f1")


def _divide(num: np.ndarray, den: np.ndarray, zero_div: float) -> np.ndarray:
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1), zero_div)


def comparison_rng(seed: int, cell, *parts) -> np.random.Generator:
    """The resampling stream of one comparison, keyed by what it compares (`cell`'s CELL
    values, then `parts`), the model by its folder's name: the same records give the same
    intervals and verdicts in any clone (an absolute path in the key gave each its own)."""
    values = [Path(str(cell[c])).name if c == "model" else cell[c] for c in CELL]
    key = "|".join(map(str, [*values, *parts]))
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def resample_weights(rng: np.random.Generator, strata: list[np.ndarray], n: int,
                     size: int) -> np.ndarray:
    """[size, n] multiplicities: each stratum's examples drawn with replacement, its size kept."""
    counts = np.zeros(size * n, dtype=np.int64)
    offsets = (np.arange(size) * n)[:, None]
    for members in strata:
        draws = members[rng.integers(0, len(members), size=(size, len(members)))]
        counts += np.bincount((offsets + draws).ravel(), minlength=size * n)
    return counts.reshape(size, n).astype(np.float64)


@dataclass
class BootstrapResult:
    method_score: float     # mean over the method's seeds, all examples
    reference_score: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float          # two-sided: how often replicates fall on either side of 0
    method_runs: np.ndarray       # per-run point scores (seed order)
    reference_runs: np.ndarray
    prob_improvement: float       # P(method run > FFT run), ties half, over all seed pairs
    pi_low: float
    pi_high: float


def improvement_probability(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 for a run X of the method and a run Y of the reference, over
    every pair of their runs (the normalised Mann-Whitney statistic of Agarwal et al. 2021):
    `a` [B, k] and `b` [B, m] scores -> [B]."""
    a, b = np.atleast_2d(a)[:, :, None], np.atleast_2d(b)[:, None, :]
    return (a > b).mean((1, 2)) + 0.5 * (a == b).mean((1, 2))


def paired_bootstrap(score: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     method_preds: list[np.ndarray], reference_preds: list[np.ndarray],
                     strata: list[np.ndarray], n: int, paired_seeds: bool, n_boot: int = 1000,
                     ci: float = 0.95, rng: np.random.Generator | None = None) -> BootstrapResult:
    """Percentile CI of mean(method) − mean(reference) over replicates of examples and seeds,
    and of the probability of improvement. `score(weights, pred)` gives the metric of one run
    for each row of weights."""
    rng = rng or np.random.default_rng(0)
    ones = np.ones((1, n))
    a_runs = np.array([score(ones, p)[0] for p in method_preds])
    b_runs = np.array([score(ones, p)[0] for p in reference_preds])
    diffs, improves = np.empty(n_boot), np.empty(n_boot)
    block = max(1, min(n_boot, _BLOCK_CELLS // max(n, 1)))
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        weights = resample_weights(rng, strata, n, size)
        a = np.stack([score(weights, p) for p in method_preds], axis=1)
        b = np.stack([score(weights, p) for p in reference_preds], axis=1)
        a_idx = rng.integers(0, a.shape[1], size=a.shape)
        b_idx = a_idx if paired_seeds else rng.integers(0, b.shape[1], size=b.shape)
        a, b = np.take_along_axis(a, a_idx, 1), np.take_along_axis(b, b_idx, 1)
        diffs[start:start + size] = a.mean(1) - b.mean(1)
        improves[start:start + size] = improvement_probability(a, b)
    alpha = (1 - ci) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    pi_low, pi_high = np.quantile(improves, [alpha, 1 - alpha])
    return BootstrapResult(float(a_runs.mean()), float(b_runs.mean()),
                           float(a_runs.mean() - b_runs.mean()), float(low), float(high),
                           bootstrap_p_value(diffs), a_runs, b_runs,
                           float(improvement_probability(a_runs[None], b_runs[None])[0]),
                           float(pi_low), float(pi_high))


def bootstrap_p_value(diffs: np.ndarray) -> float:
    """Two-sided p-value of "no difference": twice the smaller share of replicates on either
    side of 0, each share counted as (count + 1) / (B + 1) so that B replicates never claim a
    p-value below what they can resolve (Davison & Hinkley 1997, §4.4)."""
    b = len(diffs)
    below, above = ((diffs <= 0).sum() + 1) / (b + 1), ((diffs >= 0).sum() + 1) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def holm_verdicts(table: pd.DataFrame, ci: float) -> pd.DataFrame:
    """`p_holm` and `verdict` for the rows with enough seeds: Holm's correction over each
    family (the overall rows; the per-language rows), the verdict from the adjusted p-value
    and the side of 0 the difference lies on. `verdict_unadjusted` follows the CI alone.
    Rows with fewer than MIN_SEEDS seeds on a side get ONE_SEED in both and no p_holm."""
    from statsmodels.stats.multitest import multipletests

    table = table.copy()
    eligible = (table["n_seeds"] >= MIN_SEEDS) & (table["n_reference_seeds"] >= MIN_SEEDS)
    side = np.where(table["diff"] > 0, "better", "worse")
    table["verdict_unadjusted"] = np.where(
        ~eligible, ONE_SEED, np.where(table["contains_zero"], "comparable", side))
    table["p_holm"] = np.nan
    for family in (table["lang"] == "overall", table["lang"] != "overall"):
        rows = family & eligible
        if rows.any():
            table.loc[rows, "p_holm"] = multipletests(table.loc[rows, "p_value"],
                                                      alpha=1 - ci, method="holm")[1]
    significant = table["p_holm"] < 1 - ci
    table["verdict"] = np.where(~eligible, ONE_SEED,
                                np.where(significant, side, "comparable"))
    return table


# ---- from results folders -----------------------------------------------------
def task_of(record: dict) -> dict:
    """The run's task as its record keeps it (labels, metric, zero_division); records written
    before they kept it are built-in data sets, read from the registry."""
    info = record["run_info"]
    if "task" in info:
        return info["task"]
    from peft_utils.data.registry import get

    return get(info["dataset"]).task(_subtask(info.get("subtask"))).info(info["dataset"])


def _label_list(task: dict, observed: set[str]) -> list[str]:
    labels = list(task["labels"])
    # Labels outside the head's vocabulary cannot come from the trainer; keep them scoreable.
    return labels + sorted(observed - set(labels))


def _split_labels(values: pd.Series) -> list[list[str]]:
    return [[x for x in v.split(",") if x] for v in values]


def _aligned(results: Results, run_ids: list[str], split: str) -> tuple[pd.DataFrame, list]:
    """Gold rows present in every run, in one order, and each run's predictions on them."""
    tables = []
    for run_id in run_ids:
        table = results.examples(run_id, split)
        table = table[table["has_gold"]]
        duplicated = table.duplicated(KEY)
        if duplicated.any():
            row = table[duplicated].iloc[0]
            raise ValueError(f"{results.root / run_id}/predictions/{split}-examples.csv: "
                             f"example {tuple(row[KEY])} appears twice; ids must be unique "
                             "per language and line")
        tables.append(table.set_index(KEY))
    common = tables[0].index
    for table in tables[1:]:
        common = common.intersection(table.index, sort=False)
    common = common.sort_values()
    gold = tables[0].loc[common, "gold"]
    for run_id, table in zip(run_ids[1:], tables[1:]):
        if not table.loc[common, "gold"].equals(gold):
            raise ValueError(f"{run_id}: gold labels of {split} differ from {run_ids[0]}; "
                             "runs compared must share one evaluation set")
    frame = gold.reset_index()
    return frame, [table.loc[common, "pred"].to_numpy() for table in tables]


def _encode(frame: pd.DataFrame, preds: list[np.ndarray], multilabel: bool,
            task: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    if multilabel:
        gold_sets = _split_labels(frame["gold"])
        pred_sets = [_split_labels(pd.Series(p)) for p in preds]
        observed = {x for rows in [gold_sets, *pred_sets] for row in rows for x in row}
        labels = _label_list(task, observed)
        return M.multihot(gold_sets, labels), [M.multihot(p, labels) for p in pred_sets]
    observed = set(frame["gold"]) | {x for p in preds for x in p}
    lookup = {label: i for i, label in enumerate(_label_list(task, observed))}
    return (frame["gold"].map(lookup).to_numpy(np.int64),
            [np.array([lookup[x] for x in p], dtype=np.int64) for p in preds])


def _choose_split(results: Results, run_ids: list[str]) -> str:
    has_test = all("overall" in results.records[r]["metrics"].get("test", {}) for r in run_ids)
    return "test" if has_test else "dev"


def bootstrap_differences(source: Results | str | Path, n_boot: int = 10_000, ci: float = 0.95,
                          seed: int = 0, by_language: bool = False) -> pd.DataFrame:
    """Method − FFT on the main metric for every non-FFT cell with an FFT counterpart, on test
    (dev where test has no gold), overall (and per language with `by_language`).

    `contains_zero` says whether the CI includes 0 (`verdict_unadjusted`); `verdict` is
    "better" or "worse" where the Holm-adjusted p-value of its family lies below 1 − ci, else
    "comparable", and ONE_SEED where a side has fewer than MIN_SEEDS seeds (`holm_verdicts`).
    `seeds`, `method_seed_scores`, `reference_seed_scores`: each run's point score, in seed
    order (`seed_differences` lays them out). `matches_record` checks the recomputed point
    scores against the records.
    """
    results = as_results(source)
    rows = []
    if results.runs.empty:
        return pd.DataFrame(rows)
    refs = reference_variants(results)
    for _, ref in refs.iterrows():
        condition = results.runs[(results.runs[CONDITION] == ref[CONDITION]).all(axis=1)]
        reference = condition[(condition["method"] == REFERENCE)
                              & (condition["variant"] == ref["ref_variant"])]
        for _, runs in condition[condition["method"] != REFERENCE].groupby(
                ["method", "variant"], sort=False):
            rows.extend(_compare(results, runs, reference, n_boot, ci, seed, by_language))
    if not rows:
        return pd.DataFrame(rows)
    table = sort_cells(pd.DataFrame(rows), ["_lang_pos"]).drop(columns="_lang_pos")
    return holm_verdicts(table, ci)


def _compare(results: Results, runs: pd.DataFrame, reference: pd.DataFrame, n_boot: int,
             ci: float, seed: int, by_language: bool) -> list[dict]:
    runs, reference = runs.sort_values("seed"), reference.sort_values("seed")
    first = runs.iloc[0]
    run_ids = [*runs["run_id"], *reference["run_id"]]
    split = _choose_split(results, run_ids)
    frame, preds = _aligned(results, run_ids, split)
    if frame.empty:
        return []
    task = task_of(results.records[first["run_id"]])
    gold, encoded = _encode(frame, preds, bool(first["multilabel"]), task)
    metric = first["main_metric"]
    zero_div = task["zero_division"]
    paired = list(runs["seed"]) == list(reference["seed"])
    k = len(runs)
    langs = frame["lang"].to_numpy()
    scopes = [("overall", np.ones(len(frame), bool))]
    if by_language:
        order = [l for l in first["eval_langs_order"] if l in set(langs)]
        order += sorted(set(langs) - set(order))
        scopes = [(lang, langs == lang) for lang in order] + scopes
    out = []
    for position, (lang, mask) in enumerate(scopes):
        sub_gold = gold[mask]
        strata = [np.flatnonzero(langs[mask] == l) for l in dict.fromkeys(langs[mask])]

        def score(weights, pred):
            return weighted_scores(weights, sub_gold, pred, bool(first["multilabel"]), metric,
                                   zero_div)

        rng = comparison_rng(seed, first, split, lang)
        res = paired_bootstrap(score, [p[mask] for p in encoded[:k]],
                               [p[mask] for p in encoded[k:]], strata, int(mask.sum()), paired,
                               n_boot, ci, rng)
        matches = _matches_record(results, run_ids, split, lang, metric,
                                  [*res.method_runs, *res.reference_runs], int(mask.sum()))
        contains_zero = res.ci_low <= 0 <= res.ci_high
        out.append({**{c: first[c] for c in CELL}, "reference": REFERENCE,
                    "reference_variant": reference["variant"].iloc[0], "split": split,
                    "lang": lang, "_lang_pos": position, "metric": metric,
                    "n_examples": int(mask.sum()), "n_seeds": k,
                    "n_reference_seeds": len(reference), "paired_seeds": paired,
                    "method_score": res.method_score, "reference_score": res.reference_score,
                    "diff": res.diff, "ci_low": res.ci_low, "ci_high": res.ci_high,
                    "ci_level": ci, "n_boot": n_boot, "contains_zero": contains_zero,
                    "p_value": res.p_value, "prob_improvement": res.prob_improvement,
                    "pi_low": res.pi_low, "pi_high": res.pi_high,
                    "seeds": list(runs["seed"]), "reference_seeds": list(reference["seed"]),
                    "method_seed_scores": list(res.method_runs),
                    "reference_seed_scores": list(res.reference_runs),
                    "matches_record": matches})
    return out


def _subtask(value):
    return None if value is None or value != value else int(value)


def _matches_record(results: Results, run_ids: list[str], split: str, lang: str, metric: str,
                    recomputed: list[float], n: int) -> bool | None:
    """Whether the recomputed scores equal the records' (None when rows were dropped in
    alignment, so the two are not computed on the same examples)."""
    recorded = [results.records[r]["metrics"][split].get(lang, {}) for r in run_ids]
    if any(values.get("n") != n for values in recorded):
        return None
    ok = bool(np.allclose([v[metric] for v in recorded], recomputed, rtol=0, atol=1e-9))
    if not ok:
        warnings.warn(f"recomputed {metric} on {split}/{lang} differs from the records of "
                      f"{', '.join(run_ids)}: the examples tables and records disagree")
    return ok


SEED_COLUMNS = ["seeds", "reference_seeds", "method_seed_scores", "reference_seed_scores"]


def seed_differences(table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, scope and seed of the method: its score and its difference to FFT,
    to FFT's run of the same seed where the seed lists match (paired), else to FFT's mean."""
    rows = []
    for row in table.itertuples(index=False):
        paired = list(row.seeds) == list(row.reference_seeds)
        reference = np.mean(row.reference_seed_scores)
        for i, (seed, score) in enumerate(zip(row.seeds, row.method_seed_scores)):
            base = row.reference_seed_scores[i] if paired else reference
            rows.append({**{c: getattr(row, c) for c in CELL}, "lang": row.lang,
                         "seed": seed, "score": score, "reference_score": base,
                         "diff": score - base, "paired": paired})
    return pd.DataFrame(rows)


def numeric_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table as written to CSV: the per-seed lists go to `seed_differences`."""
    return table.drop(columns=[c for c in SEED_COLUMNS if c in table])


def bootstrap_display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    from peft_utils.classification.analysis.tables import display_keys

    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    level = f"{table['ci_level'].iloc[0]:.0%}"
    return pd.DataFrame({
        **{k: table[k] for k in keys}, "split": table["split"], "lang": table["lang"],
        "metric": table["metric"], "seeds": table["n_seeds"].astype(str) + " vs "
        + table["n_reference_seeds"].astype(str),
        "score": table["method_score"].map(lambda v: f"{v:.{digits}f}"),
        "FFT score": table["reference_score"].map(lambda v: f"{v:.{digits}f}"),
        "Δ (method − FFT)": table["diff"].map(lambda v: f"{v:+.{digits}f}"),
        f"{level} CI": [f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"
                        for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "P(method > FFT)": ["–" if v == ONE_SEED else f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
                            for p, lo, hi, v in zip(table["prob_improvement"], table["pi_low"],
                                                    table["pi_high"], table["verdict"])],
        "p": table["p_value"].map(lambda v: f"{v:.3f}"),
        "p (Holm)": table["p_holm"].map(lambda v: "–" if v != v else f"{v:.3f}"),
        "verdict (unadjusted)": table["verdict_unadjusted"],
        "verdict": table["verdict"],
    })


def verdict_counts(table: pd.DataFrame) -> pd.DataFrame:
    """How many task × scenario cells each method is comparable to, better or worse than FFT
    (Holm-adjusted), or has too few seeds to judge."""
    overall = table[table["lang"] == "overall"] if not table.empty else table
    if overall.empty:
        return pd.DataFrame()
    counts = overall.groupby(["method", "verdict"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=["better", "comparable", "worse", ONE_SEED], fill_value=0)
    return sort_cells(counts.reset_index().rename_axis(columns=None))
