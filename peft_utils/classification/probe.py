"""The frozen-feature baseline: a logistic regression on the frozen base encoder's features.

A fine-tuned model that scores below a linear probe on the features it started from has
failed, however far it is above the predictors that ignore the text. Every run therefore
fits one on the same training rows, with the pooling the run's head uses (first token or
masked mean; chunks of a long text averaged like the run's scores) and the run's
`class_weights`, thresholds it like the run (multilabel), and scores it on the same
selection-dev and test rows.

Features depend on the model and the token ids alone, so they are computed once per (model,
pooling, token ids) and cached on disk beside the token cache (`features/`), shared by every
method and seed of a data selection; a lock keeps two grid workers from computing the same
entry at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from peft_utils.classification import metrics as M
from peft_utils.classification.config import RunConfig
from peft_utils.classification.head import masked_mean
from peft_utils.classification.inference import collator, sorted_batches
from peft_utils.classification.token_cache import DEFAULT_DIR as TOKEN_CACHE
from peft_utils.core.config import model_identity
from peft_utils.core.modeling import load_pretrained
from peft_utils.core.runs import atomic_write_bytes

FEATURE_CACHE = TOKEN_CACHE.parent / "features"


# ---- features ---------------------------------------------------------------
def model_fingerprint(model: str) -> str:
    """The run id's model identity plus the size and modification time of its weight files:
    a checkpoint rewritten under the same name (and config) gets new features."""
    folder = Path(model)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                   for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    return f"{model_identity(model)}|{files}"


def features_key(model: str, pooling: str, rows: Sequence[Sequence[int]]) -> str:
    digest = hashlib.sha256(f"{model_fingerprint(model)}|{pooling}".encode())
    for ids in rows:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    return digest.hexdigest()


def load_encoder(config: RunConfig, device: str):
    """The base encoder without any head, frozen, as the run's model was before training."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()   # "pooler weights not used": no head reads them here
    try:   # BERT and XLM-R: without the pooler, which no probe reads
        encoder = load_pretrained(AutoModel, config.model, add_pooling_layer=False,
                                  attn_implementation=config.attention)
    except TypeError:   # architectures without a pooler option
        encoder = load_pretrained(AutoModel, config.model, attn_implementation=config.attention)
    finally:
        hf_logging.set_verbosity(verbosity)
    return encoder.to(device).eval().requires_grad_(False)


def encode_features(encoder, rows: Sequence[dict[str, Any]], pooling: str, batch_size: int,
                    collate, precision: str = "fp32") -> np.ndarray:
    """Pooled last-layer states [rows, hidden] (the first token's, or their masked mean)."""
    out = np.zeros((len(rows), encoder.config.hidden_size), dtype=np.float32)
    for idx, batch, output in sorted_batches(encoder, rows, batch_size, collate, precision):
        hidden = output[0].float()
        pooled = masked_mean(hidden, batch["attention_mask"]) if pooling == "mean" \
            else hidden[:, 0]
        out[idx] = pooled.cpu().numpy()
    return out


@contextlib.contextmanager
def _entry_lock(path: Path, wait: bool = True):
    """Hold the lock of a cache entry (released by the OS even if the process dies); yields
    False instead of waiting when `wait` is off and another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


def cached_array(key: str, compute, cache_dir: Path | None, wait: bool = True
                 ) -> tuple[np.ndarray, bool] | None:
    """(the array `compute()` makes, whether it came from `cache_dir/<key>.npy`); None when
    `wait` is off and another process is computing it. Written atomically; a read-only or
    full cache does not stop the run."""
    if cache_dir is None:
        return compute(), False
    path = Path(cache_dir) / f"{key}.npy"
    with _entry_lock(path, wait) as held:
        if not held:
            return None
        try:
            return np.load(path, allow_pickle=False), True
        except (OSError, ValueError):
            pass   # missing or unreadable: recompute and replace
        array = compute()
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        try:
            atomic_write_bytes(path, buffer.getvalue())
        except OSError:
            pass
        return array, False


def cached_features(config: RunConfig, rows: Sequence[dict[str, Any]], encoder_factory,
                    collate, precision: str, cache_dir: Path | None = FEATURE_CACHE,
                    wait: bool = True) -> tuple[np.ndarray, bool] | None:
    """(features of the tokenised `rows`, whether they came from the cache); None when `wait`
    is off and another process is computing them. `encoder_factory()` is called only when
    something must be computed."""
    if not len(rows):
        return np.zeros((0, 0), dtype=np.float32), True
    key = features_key(config.model, config.pooling, [r["input_ids"] for r in rows])
    return cached_array(key, lambda: encode_features(
        encoder_factory(), rows, config.pooling, config.eval_batch_size, collate, precision),
        cache_dir, wait)


def split_features(config: RunConfig, splits: dict[str, Any], names: list[str], encoder_factory,
                   collate, precision: str, cache_dir: Path | None, pool: bool = True
                   ) -> tuple[dict[str, np.ndarray], list[str]]:
    """(features of each split in `names`, one per example, or per row without `pool`; the
    splits read from the cache). Splits whose features another grid worker is computing are
    taken up last, so that two cells of one data selection reaching the probe together each
    compute a part instead of one waiting idle for the other."""
    features, cached, pending, wait = {}, [], list(names), False
    while pending:
        done = []
        for name in pending:
            found = cached_features(config, splits[name].rows, encoder_factory, collate,
                                    precision, cache_dir, wait=wait)
            if found is None:
                continue
            features[name] = per_example(splits[name], found[0]) if pool else found[0]
            cached += [name] if found[1] else []
            done.append(name)
        pending = [n for n in pending if n not in done]
        wait = not done   # all that is left is being computed elsewhere: wait for it
    return features, [n for n in names if n in cached]


# ---- the probe --------------------------------------------------------------
# A class absent from training (single-label) or a label with one value in training
# (multilabel) gets this logit, with zero weights: never (or always) predicted.
FIXED_LOGIT = 30.0   # sigmoid(-30) ~ 1e-13; a multinomial fit's logits sum to 0, so max >= 0


@dataclass
class LinearProbe:
    """A fitted logistic regression as one linear map on the raw features (the standardising
    folded in): `logits(x) = x @ weight.T + bias`, the form a classifier head's output layer
    takes (`head_init: probe` copies it there)."""
    weight: np.ndarray          # [labels, features]
    bias: np.ndarray            # [labels]
    multilabel: bool

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.weight.T + self.bias

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Label probabilities (multilabel) or class log probabilities (single-label), as the
        record's predictions are decided from."""
        z = self.logits(x)
        if self.multilabel:
            return 1.0 / (1.0 + np.exp(-z))
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_probe(train_x: np.ndarray, train_gold: np.ndarray, multilabel: bool, n_labels: int,
              balanced: bool) -> LinearProbe:
    """A logistic regression on standardised features (one per label for multilabel,
    multinomial otherwise); `balanced`: class_weight="balanced", the probe's counterpart of
    either class_weights remedy (both aim at balanced errors)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    scale = scaler.scale_
    weight = np.zeros((n_labels, train_x.shape[1]))
    bias = np.full(n_labels, -FIXED_LOGIT)

    def fit(y):
        clf = LogisticRegression(max_iter=2000, class_weight="balanced" if balanced else None
                                 ).fit(scaler.transform(train_x), y)
        # z = coef . (x - mean) / scale + b  ->  (coef / scale) . x + (b - coef . mean / scale)
        coef = clf.coef_ / scale
        return clf, coef, clf.intercept_ - coef @ scaler.mean_

    if multilabel:
        for j in range(n_labels):
            column = train_gold[:, j]
            if column.min() == column.max():
                bias[j] = FIXED_LOGIT if column[0] else -FIXED_LOGIT
                continue
            _, coef, intercept = fit(column)
            weight[j], bias[j] = coef[0], intercept[0]
        return LinearProbe(weight, bias, True)
    labelled = train_gold >= 0
    classes = np.unique(train_gold[labelled])
    if len(classes) == 1:
        bias[classes[0]] = 0.0
        return LinearProbe(weight, bias, False)
    clf, coef, intercept = fit(train_gold[labelled])
    if len(clf.classes_) == 2:   # one decision function: the second class's logit over the first
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    weight[clf.classes_], bias[clf.classes_] = coef, intercept
    return LinearProbe(weight, bias, False)


def balanced_probe(config: RunConfig) -> bool:
    """Whether the run's probes weight classes: either class_weights remedy aims at balanced
    errors, and for a logistic regression that is its class_weight="balanced"."""
    return config.class_weights != "none"


def fit_predict(train_x: np.ndarray, train_gold: np.ndarray, test_x: list[np.ndarray],
                multilabel: bool, n_labels: int, balanced: bool) -> list[np.ndarray]:
    """Fit on `train_x` (fit_probe); return the scores of each of `test_x` (LinearProbe.scores)."""
    probe = fit_probe(train_x, train_gold, multilabel, n_labels, balanced)
    return [probe.scores(x) if len(x) else np.zeros((0, n_labels)) for x in test_x]


def per_example(split, features: np.ndarray) -> np.ndarray:
    """Row features -> one vector per example (chunks averaged, as the run pools scores)."""
    from peft_utils.data import pool_chunks

    if not len(split.frame):
        return features
    return pool_chunks(features, split.example_index, len(split.frame), how="mean")


def frozen_probe(config: RunConfig, splits: dict[str, Any], selection_mask: np.ndarray | None,
                 n_labels: int, tokenizer, device: str, precision: str,
                 cache_dir: Path | None = FEATURE_CACHE) -> dict[str, Any]:
    """The probe's scores in the record's shape (selection_dev: the rows the run is judged
    on; dev and test per language; how it was made) and, under "cost", its time and which
    splits' features came from the cache (the record keeps those among the costs)."""
    begin = time.perf_counter()
    encoder: list[Any] = []

    def factory():
        if not encoder:
            encoder.append(load_encoder(config, device))
        return encoder[0]

    names = [n for n in ("train", "dev", "test") if len(splits[n].frame)]
    features, cached = split_features(config, splits, names, factory,
                                      collator(tokenizer, config), precision, cache_dir)
    features_s = time.perf_counter() - begin
    evaluated = [n for n in names if n != "train"]
    scores = dict(zip(evaluated, fit_predict(
        features["train"], splits["train"].gold, [features[n] for n in evaluated],
        config.multilabel, n_labels, balanced_probe(config))))
    return probe_scores(config, splits, scores, selection_mask, n_labels) | {
        "pooling": config.pooling, "class_weights": config.class_weights,
        "cost": {"features_cached": cached, "features_s": features_s,
                 "wall_s": time.perf_counter() - begin}}


def probe_scores(config: RunConfig, splits, scores: dict[str, np.ndarray],
           selection_mask: np.ndarray | None, n_labels: int) -> dict[str, Any]:
    multilabel = config.multilabel
    zero_div = config.task.zero_division
    has_selection = selection_mask is not None and selection_mask.any()
    threshold = None
    if multilabel:   # like the run: tuned on the selection rows, or its fixed value
        threshold = M.run_threshold(config.threshold, config.task,
                                    splits["dev"].gold[selection_mask],
                                    scores["dev"][selection_mask]) \
            if has_selection else float(config.threshold)
    out: dict[str, Any] = {"threshold": threshold, "selection_dev": None, "dev": {}, "test": {}}
    for name, score in scores.items():
        split = splits[name]
        pred = M.decide(score, multilabel, threshold if multilabel else 0.5)
        out[name] = M.scored_rows(split.frame["lang"], split.gold, pred, split.has_gold,
                                  multilabel, n_labels, zero_div)
        if name == "dev" and has_selection:
            out["selection_dev"] = M.scores(split.gold[selection_mask], pred[selection_mask],
                                            multilabel, n_labels, zero_div)
    return out
