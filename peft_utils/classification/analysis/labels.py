"""Per-label scores of the final cells, their differences to FFT, and the labels no method learns.

Every label is scored as a binary decision (is it in the gold / in the prediction), so one set
of formulas covers multiclass (one label per example) and multilabel tasks: per run,
precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2tp / (2tp + fp + fn), each
`zero_division` (the task's) where its denominator is 0, and support = tp + fn: scikit-learn's
`precision_recall_fscore_support(average=None)` (tested). A cell's score is the mean ± sd over
its seeds, overall and per language.

Too little support: a label with fewer than MIN_SUPPORT gold positives in a scope (a language,
or all of them) is not scored there: its scores are NaN with `too_few` set, shown "n<5".

Prior-rate baseline: a predictor that ignores the text and predicts a label with probability q
has expected precision p (the label's gold prevalence in the scored rows) and recall q, so an
F1 of 2pq / (p + q), highest at q = 1 (always predict the label): PRIOR_F1 = 2p / (1 + p). A
label is *learned* by a cell when its mean F1 lies above 2p / (1 + p); a label *no method
learns* is one that no cell of the condition (FFT included) learns. The prevalence is the
evaluation split's, the only one the results folder holds (the training split's is not kept).

Differences: method − FFT on each supported label's F1 with the paired bootstrap over seeds
and examples of `bootstrap.paired_bootstrap`, overall only. The per-label p-values are a
family of their own for Holm's correction, one family per condition (task × scenario ×
model × setting: every method and label there), apart from the main verdicts' families.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.bootstrap import (KEY, ONE_SEED, _aligned,
                                                          _choose_split, _label_list,
                                                          _split_labels, comparison_rng,
                                                          holm_verdicts, paired_bootstrap,
                                                          task_of)
from peft_utils.classification.analysis.load import (CELL, CONDITION, Results, as_results,
                                                     cell_std, sort_cells)
from peft_utils.classification.analysis.tables import display_keys, reference_variants
from peft_utils.core.methods import REFERENCE
from peft_utils.core.outputs import DASH

MIN_SUPPORT = 5            # gold positives a label needs in a scope to be scored there
TOO_FEW = f"n<{MIN_SUPPORT}"
N_BOOT = 2000              # at least; more where a family needs it (enough_boot)
SCORES = ("precision", "recall", "f1")


# ---- the formulas -------------------------------------------------------------------------
def onehot(ids: np.ndarray, n_labels: int) -> np.ndarray:
    """Class ids [n] -> 0/1 [n, n_labels]."""
    return np.eye(n_labels, dtype=np.int64)[np.asarray(ids, dtype=np.int64)]


def label_counts(gold: np.ndarray, pred: np.ndarray,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """tp, fp, fn per label of 0/1 [n, L] matrices; with `weights` [B, n], per row [B, L]."""
    gold, pred = gold.astype(np.float64), pred.astype(np.float64)
    w = np.ones(len(gold)) if weights is None else weights
    return w @ (gold * pred), w @ ((1 - gold) * pred), w @ (gold * (1 - pred))


def _ratio(num: np.ndarray, den: np.ndarray, zero_div: float) -> np.ndarray:
    ok = den > 0
    return np.where(ok, num / np.where(ok, den, 1), zero_div)


def f1_from_counts(tp, fp, fn, zero_div: float = 0.0) -> np.ndarray:
    return _ratio(2 * tp, 2 * tp + fp + fn, zero_div)


def prior_f1(prevalence) -> np.ndarray:
    """F1 of always predicting the label: the best a predictor blind to the text expects."""
    p = np.asarray(prevalence, dtype=np.float64)
    return 2 * p / (1 + p)


def label_scores(gold: np.ndarray, pred: np.ndarray, labels: list[str], multilabel: bool,
                 zero_div: float = 0.0) -> pd.DataFrame:
    """Per label: precision, recall, F1, support (gold positives), predicted, tp, fp, fn and
    prevalence. `gold`, `pred`: class ids [n] (multiclass) or 0/1 [n, L] (multilabel)."""
    if not multilabel:
        gold, pred = onehot(gold, len(labels)), onehot(pred, len(labels))
    tp, fp, fn = label_counts(gold, pred)
    n = len(gold)
    return pd.DataFrame({
        "label": labels, "support": (tp + fn).astype(int), "predicted": (tp + fp).astype(int),
        "tp": tp.astype(int), "fp": fp.astype(int), "fn": fn.astype(int),
        "precision": _ratio(tp, tp + fp, zero_div), "recall": _ratio(tp, tp + fn, zero_div),
        "f1": f1_from_counts(tp, fp, fn, zero_div), "n": n,
        "prevalence": (tp + fn) / n if n else np.nan})


# ---- predictions of a condition, aligned ----------------------------------------------------
@dataclass
class Condition:
    """The final runs of one condition on one split, aligned by example: gold and every run's
    predictions as 0/1 [n, L] matrices over `labels`, and the raw strings (`frame`: lang, id,
    line, gold; `raw[run_id]`: pred) for the tables that show examples."""
    key: dict
    split: str
    labels: list[str]
    multilabel: bool
    zero_div: float
    frame: pd.DataFrame
    gold: np.ndarray
    runs: pd.DataFrame                      # CELL, run_id, seed: one row per run
    preds: dict[str, np.ndarray] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    reference_variant: str | None = None    # the FFT variant compared against (None: no FFT)
    texts: pd.Series | None = None          # per example, where the examples tables have text
    langs: tuple[str, ...] = ()             # evaluation order (training languages first)

    def cells(self) -> list[pd.DataFrame]:
        """The runs of each cell (method × variant), FFT first, seeds in order."""
        return [part.sort_values("seed") for _, part in
                sort_cells(self.runs).groupby(["method", "variant"], sort=False)]

    def reference(self) -> pd.DataFrame:
        runs = self.runs
        return runs[(runs["method"] == REFERENCE)
                    & (runs["variant"] == self.reference_variant)].sort_values("seed")

    def subset(self, langs: list[str] | None) -> "Condition":
        """The same runs on the examples of `langs` only (None: all)."""
        if not langs:
            return self
        mask = self.frame["lang"].isin(langs).to_numpy()
        return Condition(self.key, self.split, self.labels, self.multilabel, self.zero_div,
                         self.frame[mask].reset_index(drop=True), self.gold[mask], self.runs,
                         {k: v[mask] for k, v in self.preds.items()},
                         {k: v[mask] for k, v in self.raw.items()}, self.reference_variant,
                         None if self.texts is None
                         else self.texts[mask].reset_index(drop=True), self.langs)


def conditions(source: Results | str | Path, task: str | None = None,
               scenario: str | None = None, methods: list[str] | None = None) -> list[Condition]:
    """One `Condition` per task × scenario × model × setting (filtered by `task`, `scenario`;
    `methods` keeps those methods and FFT), on test where every run has test gold, else dev."""
    results = as_results(source)
    if results.runs.empty:
        return []
    refs = reference_variants(results).set_index(CONDITION)["ref_variant"]
    out = []
    for key, runs in results.runs.groupby(CONDITION, sort=False):
        if (task and key[0] != task) or (scenario and key[1] != scenario):
            continue
        if methods:
            runs = runs[runs["method"].isin([*methods, REFERENCE])]
        if not runs.empty:
            out.append(_condition(results, dict(zip(CONDITION, key)), runs, refs.get(key)))
    return out


def _condition(results: Results, key: dict, runs: pd.DataFrame, ref: str | None) -> Condition:
    order = tuple(dict.fromkeys(l for langs in runs["eval_langs_order"] for l in langs))
    runs = sort_cells(runs[[*CELL, "run_id", "seed", "multilabel"]], ["seed"])
    run_ids = list(runs["run_id"])
    split = _choose_split(results, run_ids)
    frame, preds = _aligned(results, run_ids, split)
    task = task_of(results.records[run_ids[0]])
    multilabel = bool(runs["multilabel"].iloc[0])
    if multilabel:
        gold_sets = _split_labels(frame["gold"])
        pred_sets = [_split_labels(pd.Series(p, dtype=object)) for p in preds]
        observed = {x for rows in [gold_sets, *pred_sets] for row in rows for x in row}
    else:
        observed = set(frame["gold"]) | {x for p in preds for x in p}
    labels = _label_list(task, observed)
    encode = (lambda values: _multihot(_split_labels(pd.Series(values, dtype=object)), labels)
              ) if multilabel else (lambda values: _onehot_names(values, labels))
    return Condition(key, split, labels, multilabel, float(task.get("zero_division", 0.0)),
                     frame, encode(frame["gold"]), runs.drop(columns="multilabel"),
                     {r: encode(p) for r, p in zip(run_ids, preds)},
                     {r: np.asarray(p, dtype=object) for r, p in zip(run_ids, preds)}, ref,
                     _texts(results, run_ids[0], split, frame), order)


def _texts(results: Results, run_id: str, split: str, frame: pd.DataFrame) -> pd.Series | None:
    """The `text` column of the run's examples table on the aligned rows, where it has one."""
    table = results.examples(run_id, split)
    if "text" not in table:
        return None
    texts = table.drop_duplicates(KEY).set_index(KEY)["text"]
    return texts.reindex(pd.MultiIndex.from_frame(frame[KEY])).fillna("").reset_index(drop=True)


def _multihot(rows: list[list[str]], labels: list[str]) -> np.ndarray:
    index = {label: j for j, label in enumerate(labels)}
    out = np.zeros((len(rows), len(labels)), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, [index[x] for x in row]] = 1
    return out


def _onehot_names(values, labels: list[str]) -> np.ndarray:
    index = {label: j for j, label in enumerate(labels)}
    return onehot(np.array([index[v] for v in values], dtype=np.int64), len(labels))


def language_order(cond: Condition) -> list[str]:
    """The languages scored, in evaluation order (training languages first)."""
    present = set(cond.frame["lang"])
    return [l for l in cond.langs if l in present] + sorted(present - set(cond.langs))


# ---- per-label scores ------------------------------------------------------------------------
def per_label_runs(source: Results | str | Path | list[Condition],
                   by_language: bool = True, langs: list[str] | None = None) -> pd.DataFrame:
    """One row per final run × scope (each language with `by_language`, and `overall`: the
    languages in `langs`, default all) × label: counts and scores (`label_scores`)."""
    rows = []
    for cond in _conditions_of(source):
        cond = cond.subset(langs)
        lang_col = cond.frame["lang"].to_numpy()
        scopes = [(l, lang_col == l) for l in language_order(cond)] if by_language else []
        scopes.append(("overall", np.ones(len(lang_col), bool)))
        for run in cond.runs.itertuples(index=False):
            for position, (lang, mask) in enumerate(scopes):
                table = label_scores(cond.gold[mask], cond.preds[run.run_id][mask],
                                     cond.labels, True, cond.zero_div)
                rows.append(table.assign(**{c: getattr(run, c) for c in CELL},
                                         run_id=run.run_id, seed=run.seed, split=cond.split,
                                         lang=lang, _lang_pos=position,
                                         _label_pos=range(len(table))))
    if not rows:
        return pd.DataFrame()
    table = pd.concat(rows, ignore_index=True)
    front = [*CELL, "run_id", "seed", "split", "lang", "label"]
    return table[front + [c for c in table if c not in front]]


def _conditions_of(source) -> list[Condition]:
    if isinstance(source, list):
        return source
    return conditions(source)


def per_label_table(runs: pd.DataFrame, min_support: int = MIN_SUPPORT) -> pd.DataFrame:
    """Mean ± sd over seeds of each cell × scope × label (from `per_label_runs`), with the
    support, the prior-rate baseline `prior_f1` and `learned` (F1 mean above it). A label with
    fewer than `min_support` gold positives in a scope has `too_few` and NaN scores there."""
    if runs.empty:
        return pd.DataFrame()
    keys = [*CELL, "split", "lang", "label"]
    grouped = runs.groupby(keys, sort=False, dropna=False)
    table = grouped.agg(n=("n", "max"), support=("support", "max"),
                        prevalence=("prevalence", "max"), n_seeds=("seed", "nunique"),
                        predicted=("predicted", "mean"), fp=("fp", "mean"), fn=("fn", "mean"),
                        _lang_pos=("_lang_pos", "first"), _label_pos=("_label_pos", "first"),
                        **{f"{s}_{stat}": (s, fn) for s in SCORES
                           for stat, fn in (("mean", "mean"), ("sd", cell_std))}
                        ).reset_index()
    table["too_few"] = table["support"] < min_support
    for score in SCORES:
        table.loc[table["too_few"], [f"{score}_mean", f"{score}_sd"]] = np.nan
    table["prior_f1"] = prior_f1(table["prevalence"])
    table["learned"] = np.where(table["too_few"], None, table["f1_mean"] > table["prior_f1"])
    table = sort_cells(table, ["_lang_pos", "_label_pos"])
    return table.drop(columns=["_lang_pos", "_label_pos"])


def per_label_scores(source: Results | str | Path, by_language: bool = True,
                     langs: list[str] | None = None,
                     min_support: int = MIN_SUPPORT) -> pd.DataFrame:
    """`per_label_table` of every final cell of a results folder."""
    return per_label_table(per_label_runs(source, by_language, langs), min_support)


def fmt_score(mean: float, sd: float, too_few: bool, digits: int = 3,
              min_support: int = MIN_SUPPORT) -> str:
    if too_few:
        return f"n<{min_support}"
    if mean != mean:
        return DASH
    return f"{mean:.{digits}f} ± {DASH if sd != sd else f'{sd:.{digits}f}'}"


def per_label_display(table: pd.DataFrame, lang: str | None = "overall", digits: int = 3,
                      min_support: int = MIN_SUPPORT) -> pd.DataFrame:
    """Readable rows (one per cell × scope × label; `lang` keeps one scope, None all):
    precision, recall and F1 as mean ± sd over seeds or "n<5", support, the prior-rate F1."""
    if table.empty:
        return pd.DataFrame()
    if lang is not None:
        table = table[table["lang"] == lang]
    keys = display_keys(table)
    out = {k: table[k] for k in keys}
    out.update({"split": table["split"], "lang": table["lang"], "label": table["label"],
                "support": table["support"], "seeds": table["n_seeds"]})
    for score in SCORES:
        out[score] = [fmt_score(m, s, f, digits, min_support) for m, s, f in
                      zip(table[f"{score}_mean"], table[f"{score}_sd"], table["too_few"])]
    out["prior F1"] = table["prior_f1"].map(lambda v: f"{v:.{digits}f}")
    out["learned"] = table["learned"].map({True: "yes", False: "no"}).fillna(DASH)
    return pd.DataFrame(out).reset_index(drop=True)


def f1_matrix(table: pd.DataFrame, condition: dict, lang: str = "overall",
              value: str = "f1_mean") -> pd.DataFrame:
    """label × cell (method, variant) of `value` for one condition and scope, labels in the
    task's order; plus a `prior` column with the prior-rate F1."""
    part = table[(table[list(condition)] == pd.Series(condition)).all(axis=1)
                 & (table["lang"] == lang)].copy()
    part["cell"] = _cell_names(part)
    grid = part.pivot_table(index="label", columns="cell", values=value, sort=False,
                            dropna=False)
    grid = grid.reindex(index=list(dict.fromkeys(part["label"])),
                        columns=list(dict.fromkeys(part["cell"])))
    grid["prior"] = part.drop_duplicates("label").set_index("label")["prior_f1"]
    return grid


def _cell_names(frame: pd.DataFrame) -> pd.Series:
    from peft_utils.classification.analysis.figures import cell_label

    return cell_label(frame)


# ---- per-label differences to FFT ---------------------------------------------------------
def label_differences(source: Results | str | Path | list[Condition], n_boot: int | None = None,
                      ci: float = 0.95, seed: int = 0, min_support: int = MIN_SUPPORT,
                      langs: list[str] | None = None) -> pd.DataFrame:
    """Method − FFT on each label's F1 (overall: the languages in `langs`, default all) for
    every non-FFT cell with an FFT counterpart, with the paired bootstrap interval over
    examples and seeds, p-values before and after Holm's correction over each condition's
    family of labels × methods, and a verdict (`bootstrap.holm_verdicts`: ONE_SEED where a
    side has fewer than two seeds). Labels with fewer than `min_support` gold positives are
    left out of the family (too few to test). `n_boot` None: per condition, as many
    replicates as Holm's correction needs to resolve its family (`enough_boot`)."""
    rows = []
    for cond in _conditions_of(source):
        cond = cond.subset(langs)
        if cond.reference_variant is None or cond.reference().empty:
            continue
        others = [runs for runs in cond.cells() if runs["method"].iloc[0] != REFERENCE]
        family = int((cond.gold.sum(axis=0) >= min_support).sum()) * len(others)
        replicates = n_boot or enough_boot(family, ci)
        for runs in others:
            rows.extend(_label_rows(cond, runs, replicates, ci, seed, min_support))
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    families = [holm_verdicts(part, ci) for _, part in
                table.groupby(CONDITION, sort=False, dropna=False)]
    table = sort_cells(pd.concat(families), ["_label_pos"]).drop(columns="_label_pos")
    _warn_unresolvable(table, ci)
    return table


def _label_rows(cond: Condition, runs: pd.DataFrame, n_boot: int, ci: float, seed: int,
                min_support: int) -> list[dict]:
    reference = cond.reference()
    paired = list(runs["seed"]) == list(reference["seed"])
    langs = cond.frame["lang"].to_numpy()
    strata = [np.flatnonzero(langs == l) for l in language_order(cond)]
    first, out = runs.iloc[0], []
    for j, label in enumerate(cond.labels):
        gold = cond.gold[:, j]
        support = int(gold.sum())
        if support < min_support:
            continue

        def score(weights, pred, gold=gold):
            tp, fp, fn = label_counts(gold[:, None], pred[:, None], weights)
            return f1_from_counts(tp, fp, fn, cond.zero_div)[:, 0]

        rng = comparison_rng(seed, first, cond.split, "label", label)
        res = paired_bootstrap(score, [cond.preds[r][:, j] for r in runs["run_id"]],
                               [cond.preds[r][:, j] for r in reference["run_id"]], strata,
                               len(gold), paired, n_boot, ci, rng)
        out.append({**{c: first[c] for c in CELL}, "reference_variant": cond.reference_variant,
                    "split": cond.split, "lang": "overall", "label": label, "_label_pos": j,
                    "support": support, "n_examples": len(gold),
                    "prior_f1": float(prior_f1(support / len(gold))),
                    "n_seeds": len(runs), "n_reference_seeds": len(reference),
                    "paired_seeds": paired, "method_f1": res.method_score,
                    "reference_f1": res.reference_score, "diff": res.diff,
                    "ci_low": res.ci_low, "ci_high": res.ci_high, "ci_level": ci,
                    "n_boot": n_boot, "contains_zero": res.ci_low <= 0 <= res.ci_high,
                    "p_value": res.p_value, "prob_improvement": res.prob_improvement,
                    "seeds": list(runs["seed"]), "method_seed_f1": list(res.method_runs),
                    "reference_seed_f1": list(res.reference_runs)})
    return out


def min_boot(family_size: int, ci: float = 0.95) -> int:
    """Replicates needed for the smallest bootstrap p-value, 2 / (B + 1), to pass Holm's
    first step, (1 − ci) / m, in a family of m tests."""
    return math.floor(round(2 * family_size / (1 - ci), 9))


def enough_boot(family_size: int, ci: float = 0.95) -> int:
    """N_BOOT, or more where the family needs it (`min_boot`), rounded up to thousands."""
    return max(N_BOOT, math.ceil(min_boot(family_size, ci) / 1000) * 1000)


def _warn_unresolvable(table: pd.DataFrame, ci: float) -> None:
    eligible = table[table["verdict"] != ONE_SEED]
    for key, part in eligible.groupby(CONDITION, sort=False, dropna=False):
        size, n_boot = len(part), int(part["n_boot"].min())
        if n_boot < min_boot(size, ci):
            warnings.warn(f"{' · '.join(map(str, key[:2]))}: {n_boot} bootstrap replicates "
                          f"cannot resolve a family of {size} per-label tests under Holm's "
                          f"correction; use n_boot >= {min_boot(size, ci)}")


def label_differences_display(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    level = f"{table['ci_level'].iloc[0]:.0%}"
    return pd.DataFrame({
        **{k: table[k] for k in keys}, "label": table["label"], "support": table["support"],
        "seeds": table["n_seeds"].astype(str) + " vs " + table["n_reference_seeds"].astype(str),
        "F1": table["method_f1"].map(lambda v: f"{v:.{digits}f}"),
        "FFT F1": table["reference_f1"].map(lambda v: f"{v:.{digits}f}"),
        "Δ F1": table["diff"].map(lambda v: f"{v:+.{digits}f}"),
        f"{level} CI": [f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"
                        for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "p": table["p_value"].map(lambda v: f"{v:.3f}"),
        "p (Holm)": table["p_holm"].map(lambda v: DASH if v != v else f"{v:.3f}"),
        "verdict": table["verdict"]}).reset_index(drop=True)


# ---- what the labels show -----------------------------------------------------------------
def unlearned_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Per condition, the supported labels (overall scope) that no cell learns (every cell's
    mean F1 at most the prior-rate F1), with the best cell's F1 beside the baseline."""
    overall = table[(table["lang"] == "overall") & ~table["too_few"]]
    rows = []
    for key, part in overall.groupby([*CONDITION, "label"], sort=False, dropna=False):
        if not part["learned"].astype(bool).any():
            best = part.loc[part["f1_mean"].idxmax()]
            rows.append({**dict(zip([*CONDITION, "label"], key)), "support": best["support"],
                         "prior_f1": best["prior_f1"], "best_f1": best["f1_mean"],
                         "best_method": best["method"]})
    return pd.DataFrame(rows, columns=[*CONDITION, "label", "support", "prior_f1", "best_f1",
                                       "best_method"])


def _where(row: pd.Series, several_models: bool) -> str:
    """`task · scenario`, with the model where the results hold several and the setting."""
    parts = [row["task"], row["scenario"]]
    if several_models:
        parts.append(Path(str(row["model"])).name)
    if row["setting"]:
        parts.append(row["setting"])
    return " · ".join(map(str, parts))


def label_findings(table: pd.DataFrame, diffs: pd.DataFrame) -> list[str]:
    """Markdown sentences: per condition, the labels no method learns and the labels where a
    method is better or worse than FFT (Holm-adjusted per-label family)."""
    lines = []
    if table.empty:
        return lines
    unlearned = unlearned_labels(table)
    overall = table[table["lang"] == "overall"]
    several = table["model"].nunique() > 1
    for key, part in overall.groupby(CONDITION, sort=False, dropna=False):
        where = _where(part.iloc[0], several)
        few = sorted(set(part.loc[part["too_few"], "label"]))
        none = unlearned[(unlearned[CONDITION] == pd.Series(dict(zip(CONDITION, key)))
                          ).all(axis=1)]
        if none.empty:
            text = (f"**{where}**: every scored label is learned by at least one method "
                    "(F1 above the prior-rate predictor 2p/(1+p))")
        else:
            named = ", ".join(f"{r.label} (best F1 {r.best_f1:.2f}, {r.best_method}; prior "
                              f"{r.prior_f1:.2f})" for r in none.itertuples(index=False))
            text = f"**{where}**: no method learns {named}"
        if few:
            text += f"; too few gold examples to score (n<{MIN_SUPPORT}): {', '.join(few)}"
        lines.append(text + ".")
        lines.append(_verdict_sentence(diffs, key, where))
    return [line for line in lines if line]


def _verdict_sentence(diffs: pd.DataFrame, key: tuple, where: str) -> str:
    if diffs.empty:
        return ""
    part = diffs[(diffs[CONDITION] == pd.Series(dict(zip(CONDITION, key)))).all(axis=1)]
    if part.empty:
        return ""
    if (part["verdict"] == ONE_SEED).all():
        return (f"**{where}**, per label: one seed on a side, differences only "
                "(no verdict).")
    named = []
    for side in ("better", "worse"):
        hits = part[part["verdict"] == side]
        if not hits.empty:
            named.append(f"{side} than FFT: " + ", ".join(
                f"{r.method} on {r.label} ({r.diff:+.2f})" for r in hits.itertuples(index=False)))
    tested = int((part["verdict"] != ONE_SEED).sum())
    level = f"{part['ci_level'].iloc[0]:.0%}"
    if not named:
        return (f"**{where}**, per label: every method is comparable to FFT on every label "
                f"({tested} tests, Holm-adjusted at {level}).")
    return f"**{where}**, per label ({tested} tests, Holm-adjusted): " + "; ".join(named) + "."
