"""Where the predictions go wrong: confusion matrices (multiclass), false positives, false
negatives and missed labels that go together (multilabel), the examples on which a method and
FFT disagree, and the per-label figures; `write_label_outputs` writes them all with the
per-label tables of `labels`.

Counts are pooled over a cell's seeds (each seed scores the same aligned examples, so a
row-normalised pooled confusion matrix is the mean of the seeds' row-normalised ones) and
reported per seed where they are counts. Disagreements compare a run of the method with FFT's
run of the same seed (where FFT ran that seed; else in seed order): an example counts once per
seed pair on which the two predictions differ.

Texts: the examples tables (`predictions/<split>-examples.csv`) name the examples; their text
is shown where the table has a `text` column, or, asked for (`texts_from_data`), read from the
data folder each run's record names: the only read outside the results folder, and optional.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from peft_utils.classification.analysis import labels as L
from peft_utils.classification.analysis.bootstrap import KEY, _subtask
from peft_utils.classification.analysis.load import CELL, CONDITION, Results, as_results
from peft_utils.classification.analysis.tables import display_keys
from peft_utils.core import outputs
from peft_utils.core import report as core_report
from peft_utils.core.methods import REFERENCE

TEXT_WIDTH = 120      # characters of an example's text the sample shows
SAMPLE = 5            # examples per cell in the disagreement sample


# ---- confusion matrices (multiclass) --------------------------------------------------------
def confusion_table(conds: list[L.Condition]) -> pd.DataFrame:
    """Multiclass conditions: per cell × gold × predicted label, the count summed over seeds,
    the count per seed and the share of the gold label's examples (row-normalised)."""
    rows = []
    for cond in conds:
        if cond.multilabel:
            continue
        for runs in cond.cells():
            counts = sum(cond.gold.T @ cond.preds[r] for r in runs["run_id"])
            totals = counts.sum(axis=1, keepdims=True)
            share = np.divide(counts, totals, out=np.full(counts.shape, np.nan),
                              where=totals > 0)
            first = runs.iloc[0]
            for i, gold in enumerate(cond.labels):
                for j, pred in enumerate(cond.labels):
                    rows.append({**{c: first[c] for c in CELL}, "split": cond.split,
                                 "gold": gold, "pred": pred, "count": int(counts[i, j]),
                                 "per_seed": counts[i, j] / len(runs),
                                 "share": share[i, j], "n_seeds": len(runs)})
    return pd.DataFrame(rows)


def confusion_matrix(table: pd.DataFrame, cell: dict, value: str = "share") -> pd.DataFrame:
    """gold × predicted `value` of one cell (a dict of some CELL keys, e.g. task, scenario,
    method), labels in the task's order."""
    part = table[(table[list(cell)] == pd.Series(cell)).all(axis=1)]
    return _square(part, "gold", "pred", value)


def _square(part: pd.DataFrame, row: str, column: str, value: str = "share") -> pd.DataFrame:
    """`row` label × `column` label `value` of one cell, both in the labels' order."""
    order = list(dict.fromkeys(part[row]))
    return (part.pivot_table(index=row, columns=column, values=value, sort=False,
                             dropna=False).reindex(index=order, columns=order))


def _shares_display(table: pd.DataFrame, row: str, column: str, digits: int) -> pd.DataFrame:
    """One line per cell × `row` label: the shares, one column per `column` label."""
    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    wide = table.pivot_table(index=[*keys, row], columns=column, values="share",
                             sort=False, dropna=False)
    wide = wide.reindex(columns=list(dict.fromkeys(table[column])))
    return wide.map(lambda v: outputs.fmt_number(v, digits)).reset_index().rename_axis(
        columns=None)


def confusion_display(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """One row per cell × gold label: the row-normalised shares, one column per prediction."""
    return _shares_display(table, "gold", "pred", digits)


def confusion_figures(table: pd.DataFrame) -> dict[str, object]:
    """Per multiclass condition, the row-normalised confusion matrix of each method (gold on
    rows, prediction on columns), one panel per method."""
    return _share_panels(table, ("gold", "pred"), ("gold", "predicted"), "confusion", "Blues",
                         "confusion matrix, row-normalised, pooled over seeds",
                         annotate_up_to=12)


def _share_panels(table: pd.DataFrame, columns: tuple[str, str], axis_names: tuple[str, str],
                  stem: str, cmap: str, title: str, annotate_up_to: int | None = None,
                  mask_diagonal: bool = False) -> dict[str, object]:
    """Per condition, one heat map panel per method of the shares, row label × column label
    (`columns` of the table, `axis_names` on the axes); annotated where the labels number at
    most `annotate_up_to` (None: always)."""
    import seaborn as sns

    if table.empty:   # e.g. no multiclass condition for the confusion matrices
        return {}
    row, column = columns
    plt = _plt()
    figures = {}
    for key, part in table.groupby(CONDITION, sort=False, dropna=False):
        part = part.assign(cell=L._cell_names(part))
        cells = list(dict.fromkeys(part["cell"]))
        n_labels = part[row].nunique()
        size = 1.2 + 0.42 * n_labels
        fig, axes = plt.subplots(1, len(cells), figsize=(size * len(cells) + 1, size + 0.8),
                                 squeeze=False, sharey=True)
        for ax, cell in zip(axes[0], cells):
            sns.heatmap(_square(part[part["cell"] == cell], row, column), fmt=".2f",
                        annot=annotate_up_to is None or n_labels <= annotate_up_to, vmin=0,
                        vmax=1, cmap=cmap, cbar=False, ax=ax, annot_kws={"fontsize": 7},
                        square=True, mask=np.eye(n_labels, dtype=bool) if mask_diagonal
                        else None)
            ax.set(title=cell, xlabel=axis_names[1],
                   ylabel=axis_names[0] if ax is axes[0][0] else "")
            ax.tick_params(labelsize=7)
        fig.suptitle(f"{key[0]} · {key[1]}: {title}", fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        figures[_stem(stem, key, table)] = fig
    return figures


# ---- false positives / negatives and missed labels (multilabel) ---------------------------
def error_table(conds: list[L.Condition]) -> pd.DataFrame:
    """Per cell × label, per seed on average: false positives, false negatives, their rates
    (of the gold negatives, of the gold positives) beside the support."""
    rows = []
    for cond in conds:
        n = len(cond.gold)
        support = cond.gold.sum(axis=0)
        for runs in cond.cells():
            fp = np.mean([((1 - cond.gold) * cond.preds[r]).sum(0) for r in runs["run_id"]], 0)
            fn = np.mean([(cond.gold * (1 - cond.preds[r])).sum(0) for r in runs["run_id"]], 0)
            first = runs.iloc[0]
            for j, label in enumerate(cond.labels):
                rows.append({**{c: first[c] for c in CELL}, "split": cond.split,
                             "label": label, "n": n, "support": int(support[j]),
                             "fp": fp[j], "fn": fn[j],
                             "fp_rate": fp[j] / (n - support[j]) if n > support[j] else np.nan,
                             "fn_rate": fn[j] / support[j] if support[j] else np.nan,
                             "n_seeds": len(runs)})
    return pd.DataFrame(rows)


def error_display(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    return pd.DataFrame({
        **{k: table[k] for k in keys}, "label": table["label"], "support": table["support"],
        "false positives": table["fp"].map(lambda v: outputs.fmt_number(v, digits)),
        "FP rate": table["fp_rate"].map(lambda v: outputs.fmt_number(100 * v, 0, "%")),
        "false negatives": table["fn"].map(lambda v: outputs.fmt_number(v, digits)),
        "FN rate": table["fn_rate"].map(lambda v: outputs.fmt_number(100 * v, 0, "%")),
    }).reset_index(drop=True)


def missed_cooccurrence(conds: list[L.Condition]) -> pd.DataFrame:
    """Multilabel conditions: per cell and pair of labels (a, b), the examples per seed on
    which both gold labels were missed (a = b: a missed), and `share`: of the examples that
    miss a, the share that also miss b."""
    rows = []
    for cond in conds:
        if not cond.multilabel:
            continue
        for runs in cond.cells():
            missed = [cond.gold * (1 - cond.preds[r]) for r in runs["run_id"]]
            together = np.mean([m.T @ m for m in missed], axis=0)
            first = runs.iloc[0]
            for a, label in enumerate(cond.labels):
                for b, other in enumerate(cond.labels):
                    rows.append({**{c: first[c] for c in CELL}, "split": cond.split,
                                 "missed": label, "also_missed": other,
                                 "count": together[a, b],
                                 "share": together[a, b] / together[a, a]
                                 if together[a, a] else np.nan, "n_seeds": len(runs)})
    return pd.DataFrame(rows)


def missed_display(table: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """One row per cell × missed label: the share of its misses that also miss each label."""
    return _shares_display(table, "missed", "also_missed", digits)


def cooccurrence_figures(table: pd.DataFrame) -> dict[str, object]:
    """Per multilabel condition, one panel per method: of the examples that miss the row's
    label, the share that also miss the column's (the diagonal, 1 by definition, masked)."""
    return _share_panels(table, ("missed", "also_missed"), ("missed", "also missed"),
                         "missed_together", "Reds",
                         "missed labels that go together (share of the row's misses)",
                         mask_diagonal=True)


# ---- disagreements between a method and FFT -----------------------------------------------
def seed_pairs(runs: pd.DataFrame, reference: pd.DataFrame) -> list[tuple]:
    """(method run, FFT run) pairs: the same seed where FFT ran it, else in seed order."""
    ref = reference.set_index("seed")["run_id"]
    common = [s for s in runs["seed"] if s in ref.index]
    if common:
        mine = runs.set_index("seed")["run_id"]
        return [(s, mine[s], s, ref[s]) for s in common]
    return [(a.seed, a.run_id, b.seed, b.run_id) for a, b in
            zip(runs.itertuples(index=False), reference.itertuples(index=False))]


def _compared_cells(conds: list[L.Condition]):
    """(condition, a method's runs) for every non-reference cell of a condition with FFT."""
    for cond in conds:
        if cond.reference_variant is None or cond.reference().empty:
            continue
        for runs in cond.cells():
            if runs["method"].iloc[0] != REFERENCE:
                yield cond, runs


def disagreements(conds: list[L.Condition]) -> pd.DataFrame:
    """One row per cell × seed pair × example on which the method's prediction differs from
    FFT's: the example (lang, id, line, text where the examples table has one), gold, both
    predictions as written in the runs' examples tables, the labels the method adds (`gained`)
    and drops (`lost`), and each side's label errors (0: exactly right)."""
    frames = []
    for cond, runs in _compared_cells(conds):
        pairs = seed_pairs(runs, cond.reference())
        for seed, run_id, ref_seed, ref_id in pairs:
            frames.append(_pair_rows(cond, runs.iloc[0], seed, run_id, ref_seed, ref_id)
                          .assign(seed_pairs=len(pairs)))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _pair_rows(cond: L.Condition, cell: pd.Series, seed, run_id: str, ref_seed,
               ref_id: str) -> pd.DataFrame:
    mine, theirs = cond.preds[run_id], cond.preds[ref_id]
    differ = np.flatnonzero((mine != theirs).any(axis=1))
    labels = np.array(cond.labels, dtype=object)
    frame = cond.frame.iloc[differ]
    gold = cond.gold[differ]

    def names(matrix):
        return [",".join(labels[np.flatnonzero(row)]) for row in matrix]

    return pd.DataFrame({
        **{c: cell[c] for c in CELL}, "split": cond.split, "seed": seed, "run_id": run_id,
        "reference_seed": ref_seed, "reference_run_id": ref_id,
        "lang": frame["lang"].to_numpy(), "id": frame["id"].to_numpy(),
        "line": frame["line"].to_numpy(),
        "text": (cond.texts.iloc[differ].to_numpy() if cond.texts is not None else ""),
        "gold": frame["gold"].to_numpy(), "pred": cond.raw[run_id][differ],
        "reference_pred": cond.raw[ref_id][differ],
        "gained": names((mine[differ] == 1) & (theirs[differ] == 0)),
        "lost": names((mine[differ] == 0) & (theirs[differ] == 1)),
        "errors": (mine[differ] != gold).sum(axis=1),
        "reference_errors": (theirs[differ] != gold).sum(axis=1),
    })


def disagreement_summary(table: pd.DataFrame, conds: list[L.Condition]) -> pd.DataFrame:
    """Per cell: seed pairs compared, examples scored, examples on which the method and FFT
    disagree (per seed pair, and as a share), and of those how often the method is closer to
    the gold (fewer label errors), FFT is, or neither."""
    rows = []
    for cond, runs in _compared_cells(conds):
        first = runs.iloc[0]
        pairs = len(seed_pairs(runs, cond.reference()))
        part = (table[(table[CELL] == first[CELL]).all(axis=1)] if not table.empty
                else table)
        n = len(cond.gold)
        count = len(part) / pairs if pairs else np.nan

        def per_pair(mask):
            return float(mask.sum()) / pairs if pairs else np.nan

        rows.append({**{c: first[c] for c in CELL}, "split": cond.split,
                     "seed_pairs": pairs, "n_examples": n, "disagree": count,
                     "share": count / n if n else np.nan,
                     "method_closer": per_pair(part["errors"] < part["reference_errors"])
                     if len(part) else 0.0,
                     "fft_closer": per_pair(part["errors"] > part["reference_errors"])
                     if len(part) else 0.0,
                     "neither": per_pair(part["errors"] == part["reference_errors"])
                     if len(part) else 0.0})
    return pd.DataFrame(rows)


def disagreement_summary_display(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    return pd.DataFrame({
        **{k: table[k] for k in keys}, "seed pairs": table["seed_pairs"],
        "examples": table["n_examples"],
        "disagree (per seed)": table["disagree"].map(lambda v: outputs.fmt_number(v, 1)),
        "share": table["share"].map(lambda v: outputs.fmt_number(100 * v, 1, "%")),
        "method closer to gold": table["method_closer"].map(lambda v: outputs.fmt_number(v, 1)),
        "FFT closer": table["fft_closer"].map(lambda v: outputs.fmt_number(v, 1)),
        "neither": table["neither"].map(lambda v: outputs.fmt_number(v, 1)),
    }).reset_index(drop=True)


def disagreement_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Which labels change, per cell × label, per seed pair: how often the method adds the
    label where FFT does not (`gained`; `gained_right`: the gold has it) and drops a label FFT
    predicts (`lost`; `lost_right`: the gold lacks it), and the net effect on errors."""
    if table.empty:
        return pd.DataFrame()
    rows = []
    for _, part in table.groupby(CELL, sort=False, dropna=False):
        pairs = int(part["seed_pairs"].iloc[0])
        gold = [set(filter(None, g.split(","))) for g in part["gold"]]
        counts: dict[str, dict[str, int]] = {}
        for kind in ("gained", "lost"):
            for names, truth in zip(part[kind], gold):
                for label in filter(None, names.split(",")):
                    entry = counts.setdefault(label, dict.fromkeys(
                        ("gained", "gained_right", "lost", "lost_right"), 0))
                    entry[kind] += 1
                    right = (label in truth) if kind == "gained" else (label not in truth)
                    entry[f"{kind}_right"] += int(right)
        first = part.iloc[0]
        for label, c in counts.items():
            fixed = c["gained_right"] + c["lost_right"]
            broken = c["gained"] + c["lost"] - fixed
            rows.append({**{k: first[k] for k in CELL}, "label": label,
                         **{k: v / pairs for k, v in c.items()},
                         "net_fixed": (fixed - broken) / pairs, "seed_pairs": pairs})
    return pd.DataFrame(rows)


def disagreement_labels_display(table: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame()
    keys = display_keys(table)
    columns = {"gained": "added", "gained_right": "added, right", "lost": "dropped",
               "lost_right": "dropped, right", "net_fixed": "net errors fixed"}
    return pd.DataFrame({**{k: table[k] for k in keys}, "label": table["label"],
                         **{name: table[c].map(lambda v: outputs.fmt_number(v, digits))
                            for c, name in columns.items()}}).reset_index(drop=True)


def disagreement_sample(table: pd.DataFrame, n: int = SAMPLE, seed: int = 0,
                        width: int = TEXT_WIDTH,
                        texts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Up to `n` disagreeing examples per cell (distinct examples, drawn with a fixed seed),
    with the text shortened to `width` characters (from the examples table, or `texts`: lang,
    id[, line], text), gold, the method's and FFT's predictions and the runs they come from."""
    if table.empty:
        return pd.DataFrame()
    picked = []
    for i, (_, part) in enumerate(table.groupby(CELL, sort=False, dropna=False)):
        part = part.drop_duplicates(["lang", "id", "line"])
        picked.append(part.sample(min(n, len(part)), random_state=seed + i).sort_values(
            ["lang", "id", "line"]))
    sample = pd.concat(picked, ignore_index=True)
    if texts is not None and not texts.empty:
        sample = _with_texts(sample, texts)
    sample["text"] = sample["text"].fillna("").map(lambda t: shorten(t, width))
    return sample


def _with_texts(sample: pd.DataFrame, texts: pd.DataFrame) -> pd.DataFrame:
    on = [k for k in KEY if k in texts]
    found = sample.drop(columns="text").merge(
        texts[[*on, "text"]].drop_duplicates(on).astype(str), on=on, how="left")
    found["text"] = np.where(found["text"].notna(), found["text"], sample["text"].to_numpy())
    return found


def shorten(text: str, width: int = TEXT_WIDTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def sample_display(sample: pd.DataFrame) -> pd.DataFrame:
    if sample.empty:
        return pd.DataFrame()
    keys = display_keys(sample)
    return pd.DataFrame({
        **{k: sample[k] for k in keys}, "seed": sample["seed"], "lang": sample["lang"],
        "id": sample["id"] + np.where(sample["line"].astype(str) != "",
                                      ":" + sample["line"].astype(str), ""),
        "text": sample["text"], "gold": sample["gold"], "method predicts": sample["pred"],
        "FFT predicts": sample["reference_pred"]}).reset_index(drop=True)


def data_texts(source: Results | str | Path, split: str = "test") -> pd.DataFrame:
    """lang, id (, line), text of the examples, read from the data folder each run's record
    names (`data_root`): what `texts=` of `disagreement_sample` takes. Empty where that
    folder is not on this machine: the results folder alone has no texts."""
    from peft_utils.data.registry import get

    results = as_results(source)
    frames, seen = [], set()
    for run_id in results.runs.get("run_id", []):
        info = results.records[run_id]["run_info"]
        key = (info["dataset"], info.get("data_root"), info.get("subtask"))
        if key in seen or not info.get("data_root"):
            continue
        seen.add(key)
        try:
            frame = get(info["dataset"]).load(info["data_root"], split, None,
                                              _subtask(info.get("subtask")))
        except Exception:   # noqa: BLE001 (absent or moved data: the sample goes without text)
            continue
        columns = [c for c in ("lang", "id", "line", "text") if c in frame]
        frames.append(frame[columns].astype(str))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---- per-label figures ------------------------------------------------------------------
def label_heatmap_figures(table: pd.DataFrame, diffs: pd.DataFrame | None = None,
                          lang: str = "overall") -> dict[str, object]:
    """Per condition: label × method heat map of the mean F1 (with the prior-rate F1 as the
    last column; "n<5" where a label has too few gold examples) and, with `diffs`, a second
    panel of method − FFT per label, marked ▲/▼ where the Holm-adjusted verdict is
    better/worse."""
    import seaborn as sns

    plt = _plt()
    figures = {}
    scoped = table[table["lang"] == lang]
    for key, part in scoped.groupby(CONDITION, sort=False, dropna=False):
        condition = dict(zip(CONDITION, key))
        grid = L.f1_matrix(part, condition, lang)
        few = L.f1_matrix(part, condition, lang, "too_few").drop(columns="prior")
        delta = _delta_grid(diffs, condition, grid)
        panels = 1 + (delta is not None)
        width = 1.6 + 0.9 * grid.shape[1]
        fig, axes = plt.subplots(1, panels, squeeze=False,
                                 figsize=(width * panels + 1.5, 1.2 + 0.42 * len(grid)))
        annot = grid.map(lambda v: "" if v != v else f"{v:.2f}")
        annot[few.columns] = np.where(few.astype(bool), L.TOO_FEW, annot[few.columns])
        sns.heatmap(grid.astype(float), annot=annot.to_numpy(), fmt="", vmin=0, vmax=1,
                    cmap="viridis", ax=axes[0][0], annot_kws={"fontsize": 7},
                    cbar_kws={"label": "F1 (mean over seeds)"})
        axes[0][0].set(title="F1 per label (prior: always predict it)", xlabel="method",
                       ylabel="label")
        if panels == 2:
            values, marks = delta
            span = max(0.05, float(np.nanmax(np.abs(values.to_numpy()))))
            sns.heatmap(values, annot=marks.to_numpy(), fmt="", cmap="RdBu", center=0,
                        vmin=-span, vmax=span, ax=axes[0][1], annot_kws={"fontsize": 7},
                        cbar_kws={"label": "method − FFT (F1)"})
            axes[0][1].set(title="method − FFT (▲/▼: Holm-adjusted verdict)",
                           xlabel="method", ylabel="")
        for ax in axes[0]:
            ax.tick_params(labelsize=7)
            ax.tick_params(axis="x", rotation=30)
        fig.suptitle(f"{key[0]} · {key[1]}" + ("" if lang == "overall" else f" · {lang}"),
                     fontsize=10)
        fig.tight_layout()
        figures[_stem("labels", key, table)] = fig
    return figures


def _delta_grid(diffs: pd.DataFrame | None, condition: dict, grid: pd.DataFrame):
    """(label × method differences, their annotations) of one condition; None without any."""
    if diffs is None or diffs.empty:
        return None
    part = diffs[(diffs[list(condition)] == pd.Series(condition)).all(axis=1)].copy()
    if part.empty:
        return None
    part["cell"] = L._cell_names(part)
    values = part.pivot_table(index="label", columns="cell", values="diff", sort=False)
    order = [label for label in grid.index if label in values.index]
    values = values.reindex(index=order, columns=list(dict.fromkeys(part["cell"])))
    mark = {"better": " ▲", "worse": " ▼"}
    verdicts = part.pivot_table(index="label", columns="cell", values="verdict", sort=False,
                                aggfunc="first").reindex_like(values)
    marks = pd.DataFrame(
        [[("" if v != v else f"{v:+.2f}") + mark.get(w, "") for v, w in zip(vr, wr)]
         for vr, wr in zip(values.to_numpy(), verdicts.to_numpy())],
        index=values.index, columns=values.columns)
    return values, marks


def _stem(prefix: str, key: tuple, table: pd.DataFrame) -> str:
    task, scenario, model, setting = key
    several = table["model"].nunique() > 1
    return outputs.safe_name(prefix, task, scenario,
                             Path(str(model)).name if several else "", setting)


def _plt():
    import matplotlib.pyplot as plt

    return plt


# ---- everything, written ------------------------------------------------------------------
CAPTIONS = {
    "labels": f"Per label, per final cell: precision, recall and F1 (mean ± sd over seeds) "
              f"on all evaluation languages; n<{L.MIN_SUPPORT}: fewer than {L.MIN_SUPPORT} gold "
              "examples, not scored; prior F1: 2p/(1+p), the F1 of always predicting the label "
              "(p its gold prevalence), the best a predictor blind to the text expects; "
              "learned: mean F1 above it.",
    "labels_by_language": "Per label, per final cell and evaluation language, as `labels`.",
    "labels_vs_fft": "Method − FFT on each label's F1 with a paired bootstrap interval over "
                     "examples and seeds; Holm's correction over each task × scenario's "
                     "labels × methods (a family of its own); labels with too few gold "
                     "examples are not tested.",
    "labels_unlearned": "Labels no method learns: every cell's mean F1 at most the prior-rate "
                        "F1 2p/(1+p).",
    "confusion": "Multiclass tasks: row-normalised confusion matrix per cell, pooled over "
                 "seeds (rows: gold label, columns: prediction).",
    "label_errors": "Per label, per cell, per seed on average: false positives and false "
                    "negatives, and their rates (of the gold negatives, of the gold "
                    "positives).",
    "missed_together": "Multilabel tasks: of the examples that miss a gold label, the share "
                       "that also miss another (per seed on average).",
    "disagreements": "Per cell: examples on which the method and FFT (same seed) predict "
                     "differently, per seed pair, and which of the two is closer to the gold.",
    "disagreement_labels": "Which labels change between FFT and the method, per seed pair: "
                           "added (right: gold has it) and dropped (right: gold lacks it).",
    "disagreement_sample": "A sample of the examples on which the method and FFT disagree, "
                           "from the runs' own examples tables (text shortened where known).",
}


def add_label_outputs(report, n_boot: int | None = None, ci: float = 0.95, seed: int = 0,
                      n_sample: int = SAMPLE, texts_from_data: bool = False) -> list[str]:
    """Add the per-label, confusion and disagreement tables and figures to a `Report`
    (core.report.Report: written under its tables_dir / figures_dir); returns the label
    findings (Markdown sentences)."""
    report.captions = {**CAPTIONS, **report.captions}
    results = report.results
    conds = L.conditions(results)
    runs = L.per_label_runs(conds)
    table = L.per_label_table(runs)
    diffs = L.label_differences(conds, n_boot=n_boot, ci=ci, seed=seed)
    report.add("labels", table[table["lang"] == "overall"], L.per_label_display(table))
    report.add("labels_by_language", table[table["lang"] != "overall"],
               L.per_label_display(table[table["lang"] != "overall"], lang=None))
    report.add("labels_vs_fft", diffs.drop(columns=[c for c in ("seeds", "method_seed_f1",
                                                                 "reference_seed_f1")
                                                    if c in diffs]),
               L.label_differences_display(diffs))
    unlearned = L.unlearned_labels(table)
    report.add("labels_unlearned", unlearned, unlearned.round(3))
    confusion = confusion_table(conds)
    report.add("confusion", confusion, confusion_display(confusion))
    errors = error_table(conds)
    report.add("label_errors", errors, error_display(errors))
    together = missed_cooccurrence(conds)
    report.add("missed_together", together, missed_display(together))
    dis = disagreements(conds)
    summary = disagreement_summary(dis, conds)
    report.add("disagreements", summary, disagreement_summary_display(summary))
    changed = disagreement_labels(dis)
    report.add("disagreement_labels", changed, disagreement_labels_display(changed))
    # The data folder only where some run's examples table has no text (runs before 0.2.0).
    from_data = texts_from_data and any(cond.texts is None for cond in conds)
    sample = disagreement_sample(dis, n_sample, seed,
                                 texts=data_texts(results, conds[0].split) if from_data else None)
    report.add("disagreement_sample", sample, sample_display(sample))
    report.add_figures({**label_heatmap_figures(table, diffs), **confusion_figures(confusion),
                        **cooccurrence_figures(together)})
    return L.label_findings(table, diffs)


def write_label_outputs(source: Results | str | Path, tables_dir: str | Path,
                        figures_dir: str | Path, n_boot: int | None = None, ci: float = 0.95,
                        seed: int = 0, n_sample: int = SAMPLE, texts_from_data: bool = False):
    """`add_label_outputs` into a report of its own: `tables_dir/<table>.{csv,md,tex}` and
    `figures_dir/<figure>.{png,pdf}`. Returns the Report, its `findings` the label findings."""
    report = LabelReport(as_results(source), tables_dir=tables_dir, figures_dir=figures_dir)
    report.findings = add_label_outputs(report, n_boot, ci, seed, n_sample, texts_from_data)
    return report


@dataclass
class LabelReport(core_report.Report):
    """The per-label outputs written on their own, with the label findings."""
    findings: list[str] = field(default_factory=list)


# ---- one condition, explored (notebooks/explore.ipynb) -----------------------------------
NONE = "(none)"   # the `pred` of a multilabel confusion cell: the gold label missed


@dataclass
class Exploration:
    """What `explore` computed for one task × scenario and the chosen methods, languages and
    labels: the numeric tables, and `tables()` / `figures()` to show them."""
    condition: L.Condition
    labels: list[str]
    scores: pd.DataFrame          # per_label_table: overall (the chosen languages) + each one
    diffs: pd.DataFrame           # label_differences
    confusion: pd.DataFrame
    errors: pd.DataFrame
    missed: pd.DataFrame
    disagreements: pd.DataFrame
    findings: list[str] = field(default_factory=list)

    def _shown(self, table: pd.DataFrame, column: str = "label") -> pd.DataFrame:
        return table[table[column].isin(self.labels)] if not table.empty else table

    def tables(self, n_sample: int = SAMPLE, seed: int = 0,
               texts: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
        """Readable tables, restricted to the chosen labels."""
        scores = self._shown(self.scores)
        out = {"labels": L.per_label_display(scores),
               "labels_by_language": L.per_label_display(
                   scores[scores["lang"] != "overall"], lang=None),
               "labels_vs_fft": L.label_differences_display(self._shown(self.diffs)),
               "label_errors": error_display(self._shown(self.errors))}
        if not self.condition.multilabel:
            out["confusion"] = confusion_display(self._shown(self.confusion, "gold"))
        else:
            out["missed_together"] = missed_display(self._shown(self.missed, "missed"))
        summary = disagreement_summary(self.disagreements, [self.condition])
        out["disagreements"] = disagreement_summary_display(summary)
        changed = disagreement_labels(self.disagreements)
        out["disagreement_labels"] = disagreement_labels_display(self._shown(changed))
        out["disagreement_sample"] = sample_display(
            disagreement_sample(self.disagreements, n_sample, seed, texts=texts))
        return {k: v for k, v in out.items() if not v.empty}

    def figures(self) -> dict[str, object]:
        scores = self._shown(self.scores)
        made = label_heatmap_figures(scores, self._shown(self.diffs))
        if not self.condition.multilabel:
            made.update(confusion_figures(self.confusion))
        elif not self.missed.empty:
            made.update(cooccurrence_figures(self.missed))
        return made

    def confusion_options(self) -> tuple[list[str], list[str]]:
        """What a confusion cell can be: (gold labels, predicted labels)."""
        extra = [NONE] if self.condition.multilabel else []
        return list(self.condition.labels), list(self.condition.labels) + extra

    def default_cell(self) -> tuple[str, str, str]:
        """(method, gold, pred) worth a look: the largest confusion (multiclass) or most
        missed label (multilabel) of the first method that is not FFT (else FFT)."""
        cond = self.condition
        methods = list(dict.fromkeys(cond.runs["method"]))
        method = next((m for m in methods if m != REFERENCE), methods[0])
        if cond.multilabel:
            part = self.errors[self.errors["method"] == method]
            return method, part.loc[part["fn"].idxmax(), "label"], NONE
        part = self.confusion[(self.confusion["method"] == method)
                              & (self.confusion["gold"] != self.confusion["pred"])]
        if part.empty or part["count"].max() == 0:   # no confusion at all
            return method, cond.labels[0], cond.labels[0]
        top = part.loc[part["count"].idxmax()]
        return method, top["gold"], top["pred"]

    def examples(self, method: str, gold: str, pred: str, width: int = TEXT_WIDTH,
                 texts: pd.DataFrame | None = None) -> pd.DataFrame:
        """The examples behind a confusion cell, per seed of `method`: gold `gold` predicted
        `pred` (multilabel: the gold has `gold` and the prediction `pred`; `pred` = NONE: the
        prediction misses `gold`), with text where known and the prediction as written."""
        return cell_examples(self.condition, method, gold, pred, width, texts)


def cell_examples(cond: L.Condition, method: str, gold: str, pred: str,
                  width: int = TEXT_WIDTH, texts: pd.DataFrame | None = None) -> pd.DataFrame:
    g = cond.labels.index(gold)
    rows = []
    for run in cond.runs[cond.runs["method"] == method].itertuples(index=False):
        predicted = cond.preds[run.run_id]
        if pred == NONE:
            hit = (cond.gold[:, g] == 1) & (predicted[:, g] == 0)
        else:
            hit = (cond.gold[:, g] == 1) & (predicted[:, cond.labels.index(pred)] == 1)
        idx = np.flatnonzero(hit)
        rows.append(pd.DataFrame({
            "method": method, "variant": run.variant, "seed": run.seed, "run_id": run.run_id,
            "lang": cond.frame["lang"].to_numpy()[idx], "id": cond.frame["id"].to_numpy()[idx],
            "line": cond.frame["line"].to_numpy()[idx],
            "text": cond.texts.to_numpy()[idx] if cond.texts is not None else "",
            "gold": cond.frame["gold"].to_numpy()[idx], "pred": cond.raw[run.run_id][idx]}))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if table.empty:
        return table
    if texts is not None and not texts.empty:
        table = _with_texts(table, texts)
    table["text"] = table["text"].fillna("").map(lambda t: shorten(t, width))
    return table


def choices(source: Results | str | Path, task: str | None = None) -> dict[str, list]:
    """What a results folder offers to explore: tasks, and for `task` (default the first)
    its scenarios, methods, languages and labels."""
    results = as_results(source)
    runs = results.runs
    tasks = list(dict.fromkeys(runs["task"])) if not runs.empty else []
    task = task or (tasks[0] if tasks else None)
    part = runs[runs["task"] == task] if task else runs.iloc[:0]
    langs = list(dict.fromkeys(l for order in part.get("eval_langs_order", [])
                               for l in order))
    labels: list[str] = []
    if not part.empty:
        labels = list(L.task_of(results.records[part["run_id"].iloc[0]])["labels"])
    return {"tasks": tasks, "task": task, "scenarios": list(dict.fromkeys(part["scenario"])),
            "methods": list(dict.fromkeys(part["method"])), "languages": langs,
            "labels": labels}


def explore(source: Results | str | Path, task: str | None = None,
            scenario: str | None = None, methods: list[str] | None = None,
            languages: list[str] | None = None, labels: list[str] | None = None,
            n_boot: int | None = None, ci: float = 0.95, seed: int = 0) -> Exploration:
    """Everything above for one task × scenario (defaults: the first found), the chosen
    methods (FFT always kept as the reference; default all), languages (the examples scored;
    default all) and labels (the rows shown; default all). The first condition of that task
    and scenario where the results hold several models or settings."""
    results = as_results(source)
    offered = choices(results, task)
    if offered["task"] is None:
        raise ValueError(f"{results.root}: no complete final run to explore")
    task = offered["task"]
    scenario = scenario or offered["scenarios"][0]
    found = L.conditions(results, task, scenario, methods or None)
    if not found:
        raise ValueError(f"{results.root}: no runs of task {task!r} in scenario {scenario!r}; "
                         f"scenarios: {', '.join(offered['scenarios'])}")
    cond = found[0].subset(list(languages) if languages else None)
    if cond.frame.empty:
        raise ValueError(f"no scored example in languages {languages} of {task} · {scenario}")
    table = L.per_label_table(L.per_label_runs([cond]))
    diffs = L.label_differences([cond], n_boot=n_boot, ci=ci, seed=seed)
    shown = [l for l in cond.labels if not labels or l in labels]
    return Exploration(cond, shown, table, diffs, confusion_table([cond]), error_table([cond]),
                       missed_cooccurrence([cond]), disagreements([cond]),
                       L.label_findings(table, diffs))


def show(exploration: Exploration, n_sample: int = SAMPLE, seed: int = 0,
         texts: pd.DataFrame | None = None, cell: tuple[str, str, str] | None = None) -> None:
    """Display (IPython) the findings, tables and figures of an exploration and the examples
    behind a confusion cell ((method, gold, pred); default `default_cell`)."""
    from IPython.display import Markdown, display

    plt = _plt()
    cond = exploration.condition
    display(Markdown(f"### {cond.key['task']} · {cond.key['scenario']} ({cond.split}, "
                     f"{len(cond.frame)} examples, languages: "
                     f"{', '.join(L.language_order(cond))})"))
    display(Markdown("\n".join(f"- {line}" for line in exploration.findings)))
    figures = exploration.figures()
    tables = exploration.tables(n_sample, seed, texts)
    for name, table in tables.items():
        display(Markdown(f"**{name}** — {CAPTIONS.get(name, '')}"))
        display(table)
    for fig in figures.values():
        display(fig)
        plt.close(fig)
    method, gold, pred = cell or exploration.default_cell()
    display(Markdown(f"**Examples behind the cell** {method}: gold `{gold}` → predicted "
                     f"`{pred}`"))
    display(exploration.examples(method, gold, pred, texts=texts))


def widgets(source: Results | str | Path, n_boot: int | None = None, n_sample: int = SAMPLE,
            texts: pd.DataFrame | None = None, task: str | None = None):
    """An ipywidgets panel (task, scenario, methods, languages, labels, confusion cell) that
    re-runs `explore` and `show` on demand; None where the kernel has no ipywidgets."""
    try:
        import ipywidgets as W
    except ImportError:
        return None
    from IPython.display import clear_output

    results = as_results(source)
    offered = choices(results, task)
    task = W.Dropdown(options=offered["tasks"], value=offered["task"], description="task")
    scenario = W.Dropdown(description="scenario")
    methods = W.SelectMultiple(description="methods", rows=5)
    langs = W.SelectMultiple(description="languages", rows=5)
    labels = W.SelectMultiple(description="labels", rows=6)
    method = W.Dropdown(description="cell method")
    gold, pred = W.Dropdown(description="gold"), W.Dropdown(description="predicted")
    button, out = W.Button(description="show", button_style="primary"), W.Output()

    def refresh(_=None):
        now = choices(results, task.value)
        scenario.options, methods.options = now["scenarios"], now["methods"]
        langs.options, labels.options = now["languages"], now["labels"]
        methods.value, langs.value, labels.value = (), (), ()
        method.options = now["methods"]
        gold.options, pred.options = now["labels"], now["labels"] + [NONE]

    def run(_=None):
        with out:
            clear_output(wait=True)
            found = explore(results, task.value, scenario.value, list(methods.value),
                            list(langs.value), list(labels.value), n_boot=n_boot)
            cell = ((method.value, gold.value, pred.value)
                    if method.value and gold.value and pred.value else None)
            show(found, n_sample, texts=texts, cell=cell)

    refresh()
    task.observe(refresh, names="value")
    button.on_click(run)
    return W.VBox([W.HBox([task, scenario]), W.HBox([methods, langs, labels]),
                   W.HBox([method, gold, pred, button]), out])
