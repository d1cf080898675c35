"""Scores against hand-computed cases, as the official SemEval-2023 Task 3 scorers compute."""
from __future__ import annotations

import numpy as np
import pytest

from peft_utils.classification import metrics as M
from peft_utils.data.registry import get


def test_multiclass_macro_and_micro_by_hand():
    gold = np.array([0, 0, 1, 2])
    pred = np.array([0, 1, 1, 1])
    # a: P=1 R=.5 F=2/3; b: P=1/3 R=1 F=.5; c: P=0 R=0 F=0
    s = M.multiclass_scores(gold, pred, 3)
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert s["micro_f1"] == pytest.approx(0.5) and s["accuracy"] == pytest.approx(0.5)


def test_multiclass_macro_ignores_labels_absent_from_gold_and_pred():
    gold, pred = np.array([0, 0, 1]), np.array([0, 0, 1])
    assert M.multiclass_scores(gold, pred, 3)["macro_f1"] == 1.0  # label 2 never occurs


def test_multilabel_micro_by_hand():
    gold = np.array([[1, 0, 1], [0, 1, 0]])
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    # TP=2, FP=1, FN=1 -> P=2/3, R=2/3, F=2/3
    assert M.multilabel_scores(gold, pred)["micro_f1"] == pytest.approx(2 / 3)


def test_subtask3_zero_division_is_one():
    gold = np.zeros((2, 3), int)
    pred = np.zeros((2, 3), int)
    assert get("semeval2023").task(3).zero_division == 1.0
    assert M.multilabel_scores(gold, pred, zero_div=1.0)["micro_f1"] == 1.0
    assert M.multilabel_scores(gold, pred, zero_div=0.0)["micro_f1"] == 0.0


def test_main_metric_per_task():
    semeval = get("semeval2023")
    assert semeval.task(1).metric == "macro_f1"
    assert semeval.task(2).metric == semeval.task(3).metric == "micro_f1"
    assert get("sib200").task().metric == get("brighter").task().metric == "macro_f1"


def test_per_language_and_overall():
    langs = ["en", "en", "de", "de"]
    gold, pred = np.array([0, 1, 0, 1]), np.array([0, 1, 1, 0])
    out = M.per_language(langs, gold, pred, False, 2)
    assert out["en"]["accuracy"] == 1.0 and out["de"]["accuracy"] == 0.0
    assert out["overall"]["accuracy"] == 0.5 and out["overall"]["n"] == 4


def test_tune_threshold_finds_separating_value():
    gold = np.array([[1, 0], [0, 1], [1, 1]])
    probs = np.array([[0.8, 0.2], [0.25, 0.7], [0.75, 0.72]])
    t = M.tune_threshold(gold, probs)
    assert 0.25 < t <= 0.7
    assert M.multilabel_scores(gold, M.decide(probs, True, t))["micro_f1"] == 1.0


def test_threshold_tuned_for_the_requested_average():
    # Label 0: 8 positives at 0.9, 4 negatives at 0.25. Label 1: one positive at 0.2. A
    # threshold of 0.2 catches label 1 at the cost of 4 false positives of label 0: worth it
    # for macro-F1 (0.9 vs 0.5), not for micro-F1 (0.82 vs 0.94).
    gold = np.array([[1, 0]] * 8 + [[0, 0]] * 4 + [[0, 1]])
    probs = np.array([[.9, .1]] * 8 + [[.25, .1]] * 4 + [[.1, .2]])
    assert M.tune_threshold(gold, probs) >= 0.3
    assert M.tune_threshold(gold, probs, average="macro") == pytest.approx(0.2)


def test_baselines():
    b = M.baseline_scores(np.array([0, 0, 1]), np.array([0, 1, 0, 0]), False, 2)
    assert b["majority"]["accuracy"] == 0.75
    train = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0]])
    gold = np.array([[1, 0, 0], [0, 0, 1]])
    b = M.baseline_scores(train, gold, True, 3)
    assert b["all_negative"]["micro_f1"] == 0.0
    assert b["frequency"]["micro_f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)  # P=1/2, R=1/2
    # All-positive: P = 2/6, R = 1 -> micro-F1 1/2; per label F1 2/3, 0 (no gold), 2/3.
    assert b["all_positive"]["micro_f1"] == pytest.approx(0.5)
    assert b["all_positive"]["macro_f1"] == pytest.approx(4 / 9)
