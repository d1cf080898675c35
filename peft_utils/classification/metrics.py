"""Scores equivalent to the official SemEval-2023 Task 3 scorers, per language and overall.

Subtask 1: macro-F1 (micro reported too). Subtask 2: micro-F1. Subtask 3: micro-F1 with
zero_division=1, as the official scorer calls scikit-learn. Which metric ranks a task and its
zero_division are the task's registry fields (peft_utils.data.registry.Task).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import MultiLabelBinarizer

THRESHOLD_GRID = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))


def multihot(labels: Sequence[Sequence[str]], label_names: Sequence[str]) -> np.ndarray:
    binarizer = MultiLabelBinarizer(classes=list(label_names))
    return binarizer.fit_transform([list(x) for x in labels]).astype(np.int64)


def multiclass_scores(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> dict[str, float]:
    labels = list(range(n_labels))
    present = sorted(set(gold.tolist()) | set(pred.tolist()))
    return {
        # Macro over the labels that occur in gold or prediction, as the official scorer does.
        "macro_f1": float(f1_score(gold, pred, labels=present, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, pred, labels=labels, average="micro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
        "n": int(len(gold)),
    }


def multilabel_scores(gold: np.ndarray, pred: np.ndarray, zero_div: float = 0.0) -> dict[str, float]:
    return {
        "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=zero_div)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=zero_div)),
        "n": int(len(gold)),
    }


def scores(gold: np.ndarray, pred: np.ndarray, multilabel: bool, n_labels: int,
           zero_div: float = 0.0) -> dict[str, float]:
    if multilabel:
        return multilabel_scores(gold, pred, zero_div)
    return multiclass_scores(gold, pred, n_labels)


def decide(probs_or_logits: np.ndarray, multilabel: bool, threshold: float = 0.5) -> np.ndarray:
    """Class ids (multiclass, from logits) or a 0/1 matrix (multilabel, from probabilities)."""
    if multilabel:
        return (probs_or_logits >= threshold).astype(np.int64)
    return probs_or_logits.argmax(axis=-1)


def tune_threshold(gold: np.ndarray, probs: np.ndarray, zero_div: float = 0.0,
                   grid: Sequence[float] = THRESHOLD_GRID, average: str = "micro") -> float:
    """The threshold with the best F1 (`average`: the task's main metric) on `gold` (dev);
    ties go to the value nearest 0.5."""
    best = max(grid, key=lambda t: (
        f1_score(gold, (probs >= t).astype(np.int64), average=average, zero_division=zero_div),
        -abs(t - 0.5)))
    return float(best)


def run_threshold(setting: float | str, task, gold: np.ndarray, probs: np.ndarray) -> float:
    """A run's multilabel threshold: its fixed value, or ("tune") the value with the best
    main-metric F1 of `task` (a registry Task) on `gold` / `probs` (the selection-dev rows)."""
    if setting != "tune":
        return float(setting)
    return tune_threshold(gold, probs, task.zero_division,
                          average=task.metric.removesuffix("_f1"))


def scored_rows(langs: Sequence[str], gold: np.ndarray, pred: np.ndarray, has_gold: np.ndarray,
                multilabel: bool, n_labels: int, zero_div: float = 0.0) -> dict:
    """`per_language` over the rows that have gold labels ({} when none has): rows without
    gold are predicted, never scored."""
    if not has_gold.any():
        return {}
    return per_language(np.asarray(langs)[has_gold], gold[has_gold], pred[has_gold], multilabel,
                        n_labels, zero_div)


def per_language(langs: Sequence[str], gold: np.ndarray, pred: np.ndarray, multilabel: bool,
                 n_labels: int, zero_div: float = 0.0) -> dict[str, dict[str, float]]:
    """Scores for each language and `overall` (all rows pooled)."""
    langs = np.asarray(langs)
    out = {lang: scores(gold[langs == lang], pred[langs == lang], multilabel, n_labels, zero_div)
           for lang in dict.fromkeys(langs.tolist())}
    out["overall"] = scores(gold, pred, multilabel, n_labels, zero_div)
    return out


def baseline_scores(train_gold: np.ndarray, gold: np.ndarray, multilabel: bool, n_labels: int,
                    zero_div: float = 0.0) -> dict[str, dict[str, float]]:
    """Trivial predictors learned from the training labels, scored on `gold`.

    Multiclass: the majority class. Multilabel: all-negative, all-positive (what a model that
    learnt nothing reaches when its threshold is tuned below all its scores; strong under
    macro-F1), and the frequency baseline (each label predicted for every row when more than
    half the training rows carry it, else the single most frequent label).
    """
    if not multilabel:
        majority = np.bincount(train_gold, minlength=n_labels).argmax()
        return {"majority": multiclass_scores(gold, np.full_like(gold, majority), n_labels)}
    freq = train_gold.mean(axis=0)
    frequent = (freq > 0.5).astype(np.int64)
    if not frequent.any():
        frequent[freq.argmax()] = 1
    return {
        "all_negative": multilabel_scores(gold, np.zeros_like(gold), zero_div),
        "all_positive": multilabel_scores(gold, np.ones_like(gold), zero_div),
        "frequency": multilabel_scores(gold, np.tile(frequent, (len(gold), 1)), zero_div),
    }
