"""Imbalanced labels: the training loss's remedy, the same for every method (`class_weights`).

On a skewed task (SemEval subtask 1: mostly opinion, little satire) a short run reaches its
lowest unweighted loss by predicting the majority class, which macro-F1 scores as failure.
Both remedies aim at the balanced error (every class counts the same):

- `balanced` (recommended): the logit-adjusted loss (Menon et al., 2021, "Long-tail learning
  via logit adjustment"): the loss sees logits + log prior (multilabel: + each label's log
  prior odds), predictions use the logits alone. A model that has learnt nothing yet predicts
  no class more than another, instead of the majority; what it learns is the evidence beyond
  the prior. On SIB-200 skewed like the genre task, under the demo's budget, it beat class
  weights for FFT, LoRA and Pfeiffer in every seed (docs/results.md, `make imbalanced`).
- `weighted`: class weights in the loss, so that every class carries the same total weight.
  Single-label: inverse class frequency, n / (C * n_c) (scikit-learn's class_weight="balanced";
  the weights average 1 over the training rows, so the loss keeps its scale). Multilabel: each
  label's positives weighted by its negatives / positives (`BCEWithLogitsLoss(pos_weight=...)`).

Both go to the Trainer as `compute_loss_func` (the library's hook), summed over items and
divided by the items in the accumulated batch, as the Trainer expects of such a function.
"""
from __future__ import annotations

from typing import Any

import numpy as np

REMEDIES = ("none", "balanced", "weighted")


def class_weights(gold: np.ndarray, multilabel: bool, n_labels: int) -> np.ndarray:
    """Weights from the training labels: per class (single-label, gold = class ids with -100
    for unlabelled rows) or per label's positives (multilabel, gold = multi-hot rows).
    A class absent from training gets weight 1: it never enters the loss anyway."""
    gold = np.asarray(gold)
    if multilabel:
        positives = gold.sum(axis=0).astype(float)
        negatives = len(gold) - positives
        return np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    labelled = gold[gold >= 0]
    counts = np.bincount(labelled, minlength=n_labels).astype(float)
    return np.where(counts > 0, len(labelled) / (n_labels * np.maximum(counts, 1)), 1.0)


def log_prior(gold: np.ndarray, multilabel: bool, n_labels: int) -> np.ndarray:
    """The training labels' log prior (multilabel: log prior odds per label), smoothed so that
    a class absent from training gets a finite, low value."""
    gold = np.asarray(gold)
    if multilabel:
        prior = np.clip(gold.mean(axis=0), 1e-3, 1 - 1e-3)
        return np.log(prior / (1 - prior))
    counts = np.bincount(gold[gold >= 0], minlength=n_labels) + 1.0   # add-one: no -inf
    return np.log(counts / counts.sum())


def remedy_values(remedy: str, gold: np.ndarray, multilabel: bool, n_labels: int):
    """What the loss uses for `remedy` (the log prior added to the logits, or the class
    weights), as recorded in `metrics.class_weights`; None for `none`."""
    if remedy == "balanced":
        return log_prior(gold, multilabel, n_labels)
    if remedy == "weighted":
        return class_weights(gold, multilabel, n_labels)
    return None


def remedy_loss(remedy: str, gold: np.ndarray, multilabel: bool, n_labels: int):
    """The Trainer's `compute_loss_func` for `remedy`, or None (the model's own loss)."""
    values = remedy_values(remedy, gold, multilabel, n_labels)
    if values is None:
        return None
    if remedy == "balanced":
        return adjusted_loss(values, multilabel)
    return weighted_loss(values, multilabel)


def _loss(multilabel: bool, weights: np.ndarray | None = None,
          prior: np.ndarray | None = None):
    """Cross-entropy (BCE for multilabel) of the logits (+ `prior`), with class weights
    (positive weights for multilabel), summed over items and divided by the items of the
    accumulated batch."""
    import torch
    import torch.nn.functional as F

    def tensor(values, device):
        return None if values is None else torch.as_tensor(values, dtype=torch.float32,
                                                           device=device)

    def loss(outputs: Any, labels, num_items_in_batch=None):
        logits = (outputs["logits"] if isinstance(outputs, dict) else outputs[0]).float()
        w = tensor(weights, logits.device)
        if prior is not None:
            logits = logits + tensor(prior, logits.device)
        if multilabel:
            items = F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=w,
                                                       reduction="none")
        else:
            items = F.cross_entropy(logits, labels, weight=w, ignore_index=-100,
                                    reduction="none")[labels != -100]
        count = items.numel() if num_items_in_batch is None else int(num_items_in_batch)
        return items.sum() / max(count, 1)

    return loss


def weighted_loss(weights: np.ndarray, multilabel: bool):
    """Cross-entropy (BCE for multilabel) with class weights (positive weights)."""
    return _loss(multilabel, weights=weights)


def adjusted_loss(prior: np.ndarray, multilabel: bool):
    """Cross-entropy (BCE for multilabel) of logits + the log prior (odds)."""
    return _loss(multilabel, prior=prior)
