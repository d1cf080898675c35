"""class_weights (the remedy for imbalanced labels, the same for every method) and the
frozen-feature probe every run is compared with, on tiny models and fixture trees; the
imbalanced SIB-200 check on the offline model under the demo's budget."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SHARED_DATA

from fixtures_data import make_sib200_tree
from peft_utils.classification.config import RunConfig, load_config
from peft_utils.classification.imbalance import (adjusted_loss, class_weights, log_prior,
                                                 weighted_loss)
from peft_utils.classification.probe import (cached_features, encode_features, fit_predict,
                                             load_encoder)
from peft_utils.classification.training import train_and_evaluate
from peft_utils.data.imbalanced import counts, make_imbalanced_sib200

ROOT = Path(__file__).resolve().parents[1]


# ---- class weights ------------------------------------------------------------
def test_balanced_weights_single_and_multilabel():
    weights = class_weights(np.array([0, 0, 0, 1, -100]), multilabel=False, n_labels=3)
    # n / (C * n_c) over labelled rows; a class absent from training keeps weight 1.
    assert weights.tolist() == pytest.approx([4 / 9, 4 / 3, 1.0])
    multi = class_weights(np.array([[1, 0], [1, 1], [0, 0], [1, 0]]), multilabel=True,
                          n_labels=2)
    assert multi.tolist() == pytest.approx([1 / 3, 3.0])   # negatives / positives per label


def test_weighted_loss_matches_torch_and_scales_with_accumulation():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, -100, 1])
    w = np.array([0.5, 2.0, 1.0])
    loss = weighted_loss(w, multilabel=False)
    expected = torch.nn.functional.cross_entropy(
        logits, labels, weight=torch.tensor(w, dtype=torch.float32), reduction="sum",
        ignore_index=-100) / 5
    assert loss({"logits": logits}, labels) == pytest.approx(expected.item(), rel=1e-6)
    # Under gradient accumulation the Trainer passes the items of the whole accumulated batch.
    assert loss({"logits": logits}, labels, num_items_in_batch=torch.tensor(10)) == \
        pytest.approx(expected.item() / 2, rel=1e-6)
    ml_logits, ml_labels = torch.randn(4, 2), torch.tensor([[1., 0.], [0., 1.], [1., 1.], [0., 0.]])
    ml = weighted_loss(np.array([3.0, 0.5]), multilabel=True)({"logits": ml_logits}, ml_labels)
    reference = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0, 0.5]))(ml_logits,
                                                                                 ml_labels)
    assert ml == pytest.approx(reference.item(), rel=1e-6)


def test_logit_adjusted_loss_adds_the_log_prior_in_the_loss_only():
    gold = np.array([0, 0, 0, 1])
    prior = log_prior(gold, multilabel=False, n_labels=3)
    assert prior.tolist() == pytest.approx(np.log([4 / 7, 2 / 7, 1 / 7]).tolist())
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    expected = torch.nn.functional.cross_entropy(logits + torch.tensor(prior).float(), labels)
    assert adjusted_loss(prior, False)({"logits": logits}, labels) == \
        pytest.approx(expected.item(), rel=1e-6)
    odds = log_prior(np.array([[1, 0], [1, 0], [0, 0], [1, 1]]), multilabel=True, n_labels=2)
    assert odds.tolist() == pytest.approx([np.log(3), np.log(1 / 3)])


@pytest.fixture(scope="module")
def skewed_root(tmp_path_factory) -> Path:
    """The package's imbalanced builder over a fixture SIB-200 tree: about 76/19/5%."""
    source = make_sib200_tree(tmp_path_factory.mktemp("data"),
                              langs=("eng_Latn", "fra_Latn"),
                              sizes={"train": 280, "dev": 70, "test": 70})
    return make_imbalanced_sib200(source, source.parent / "skewed",
                                  sizes={"train": 40, "dev": 12, "test": 12})


def test_imbalanced_tree_has_the_genre_shape(skewed_root):
    from peft_utils.data import load_sib200

    assert counts(64) == [49, 12, 3] and counts(32) == [24, 6, 2]
    train = load_sib200(skewed_root, ["en", "fr"], "train")
    shares = train.groupby("lang")["labels"].apply(
        lambda s: s.map(lambda x: x[0]).value_counts(normalize=True).round(3).tolist())
    assert shares["en"] == shares["fr"] == [0.75, 0.2, 0.05]
    # Each language draws its own sentences from the parallel corpus.
    assert set(train[train["lang"] == "en"]["id"]) != set(train[train["lang"] == "fr"]["id"])


@pytest.mark.parametrize("method", ["fft", "lora", "pfeiffer"])
def test_balanced_weights_reach_every_trainer(method, tmp_path, skewed_root, tiny_model,
                                              one_thread):
    """The remedy's loss is what each method's trainer (HF's and the adapters one) optimises:
    the minority classes are predicted more often than without it, and the record keeps the
    setting and the values it used."""
    base = dict(dataset="sib200", data_root=str(skewed_root), model=str(tiny_model),
                method=method, train_langs=["en", "fr"], eval_langs=["en", "fr"],
                max_length=48, batch_size=8, eval_batch_size=32, warmup_steps=0,
                max_steps=8, eval_steps=8, learning_rate=5e-3, seed=3,
                results_dir=str(tmp_path / "results"))
    minority = {}
    for weights in ("none", "balanced", "weighted"):
        result = train_and_evaluate(RunConfig(**base, class_weights=weights))
        preds = pd.read_csv(result.run_dir / "predictions" / "dev-examples.csv")["pred"]
        minority[weights] = int((preds != "science/technology").sum())
        recorded = result.record["metrics"]["class_weights"]
        assert recorded["setting"] == weights
        assert set(recorded) - {"setting"} == {"none": set(), "balanced": {"log_prior"},
                                               "weighted": {"weights"}}[weights]
        assert result.record["run_info"]["class_weights"] == weights
    assert minority["balanced"] > minority["none"], minority
    assert minority["weighted"] > minority["none"], minority


# ---- frozen-feature probe -----------------------------------------------------
def test_features_are_cached_per_model_pooling_and_ids(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    from peft_utils.classification.inference import collator

    config = RunConfig(model=str(tiny_model), pooling="mean", eval_batch_size=2)
    ids = [[0, 5, 6, 7, 2], [0, 9, 2], [0, 11, 12, 2]]
    rows = [{"input_ids": r, "attention_mask": [1] * len(r)} for r in ids]
    collate = collator(AutoTokenizer.from_pretrained(tiny_model), config)
    calls = []

    def factory():
        calls.append(1)
        return load_encoder(config, "cpu")

    first, hit = cached_features(config, rows, factory, collate, "fp32", tmp_path)
    again, hit_again = cached_features(config, rows, factory, collate, "fp32", tmp_path)
    assert (hit, hit_again, len(calls)) == (False, True, 1)
    assert np.array_equal(first, again)
    cls, hit_cls = cached_features(config.replace(pooling="cls"), rows, factory, collate, "fp32",
                                   tmp_path)
    assert not hit_cls and not np.allclose(cls, first)
    # Mean pooling reads only the real tokens: padding in a batch changes nothing.
    alone = encode_features(load_encoder(config, "cpu"), rows[:1], "mean", 1, collate)
    assert np.allclose(alone[0], first[0], atol=1e-5)
    encoder = load_encoder(config, "cpu")
    with torch.no_grad():
        states = encoder(input_ids=torch.tensor([ids[1]]))[0][0]
    assert np.allclose(first[1], states.mean(0).numpy(), atol=1e-5)
    assert np.allclose(cls[1], states[0].numpy(), atol=1e-5)


def test_probe_computes_other_splits_while_another_worker_holds_one(tmp_path, tiny_model):
    """Two cells of one data selection reaching the probe together: the split another worker
    is computing (its cache entry locked) is taken up last, after the free ones, and then
    waited for; the result is the same."""
    import fcntl
    import threading
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from peft_utils.classification.inference import collator
    from peft_utils.classification.probe import features_key, split_features

    config = RunConfig(model=str(tiny_model), pooling="mean", eval_batch_size=2)
    ids = {"train": [[0, 5, 6, 7, 2], [0, 9, 2]], "dev": [[0, 11, 12, 2]], "test": [[0, 8, 2]]}
    splits = {name: SimpleNamespace(rows=[{"input_ids": r, "attention_mask": [1] * len(r)}
                                          for r in rows], example_index=np.arange(len(rows)),
                                    frame=list(rows))
              for name, rows in ids.items()}
    collate = collator(AutoTokenizer.from_pretrained(tiny_model), config)
    order = []

    def factory():
        order.append(len(list(tmp_path.glob("*.npy"))))   # entries written before this call
        return load_encoder(config, "cpu")

    lock = tmp_path / f"{features_key(config.model, 'mean', ids['train'])}.lock"
    handle = open(lock, "a")
    fcntl.flock(handle, fcntl.LOCK_EX)             # "another worker" computes train
    release = threading.Timer(2.0, handle.close)   # ... and is done in 2 s
    release.start()
    features, cached = split_features(config, splits, ["train", "dev", "test"], factory,
                                      collate, "fp32", tmp_path)
    release.join()
    assert order == [0, 1, 2]          # dev, test, then train once the lock was free
    assert cached == [] and set(features) == {"train", "dev", "test"}
    alone, _ = split_features(config, splits, ["train", "dev", "test"], factory, collate,
                              "fp32", None)
    assert all(np.allclose(features[n], alone[n]) for n in alone)


def test_probe_handles_unseen_classes_and_constant_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    gold = (x[:, 0] > 0).astype(int) * 2            # classes 0 and 2 of 3
    (scores,) = fit_predict(x, gold, [x], multilabel=False, n_labels=3, balanced=True)
    assert (scores[:, 1] < -20).all() and (scores.argmax(1) == gold).mean() > 0.9
    multi = np.stack([x[:, 0] > 0, np.zeros(40, bool), np.ones(40, bool)], 1).astype(int)
    (probs,) = fit_predict(x, multi, [x], multilabel=True, n_labels=3, balanced=False)
    assert (probs[:, 1] < 1e-12).all() and (probs[:, 2] > 1 - 1e-12).all()
    assert ((probs[:, 0] > 0.5) == multi[:, 0].astype(bool)).mean() > 0.9


def test_probe_is_fitted_on_the_frozen_base_model_and_scored_on_the_runs_rows(
        tmp_path, sib_root, tiny_model, one_thread):
    """FFT changes every weight, LoRA few: the probe reads the base model either way, so both
    runs get the same probe scores, on the same selection-dev rows as the run."""
    base = dict(dataset="sib200", data_root=str(sib_root), model=str(tiny_model),
                train_langs=["en", "fr"], eval_langs=["en", "fr", "es"], max_length=48,
                batch_size=8, eval_batch_size=32, warmup_steps=0, max_steps=6, eval_steps=3,
                learning_rate=1e-2, pooling="mean", results_dir=str(tmp_path / "results"))
    probes = {}
    for method in ("fft", "lora"):
        record = train_and_evaluate(RunConfig(**base, method=method)).record
        probe = record["metrics"]["frozen_probe"]
        assert probe["selection_dev"]["n"] == record["metrics"]["selection_dev"]["n"]
        assert set(probe["test"]) == set(record["metrics"]["test"])
        assert probe["pooling"] == "mean" and probe["class_weights"] == "none"
        assert record["costs"]["frozen_probe"]["wall_s"] > 0
        probes[method] = probe
    assert probes["fft"] == probes["lora"]


# ---- the imbalanced SIB-200 under the demo's budget (offline model) ----------------
@pytest.fixture(scope="module")
def imbalanced_sib200(tmp_path_factory):
    from peft_utils.data.prepare import prepare

    if not (SHARED_DATA / "sib200").is_dir():
        pytest.skip("../shared/data not present")
    work = tmp_path_factory.mktemp("imbalanced")
    source = prepare("sib200", work / "data", mirror=SHARED_DATA / "sib200")
    return make_imbalanced_sib200(source, work / "data" / "sib200-imbalanced")


@pytest.fixture(scope="module")
def e5_model(tmp_path_factory):
    import shutil

    from peft_utils.modelprep.e5_convert import prepare_e5_small

    prepared = ROOT / "models" / "multilingual-e5-small"
    if (prepared / "config.json").is_file():
        yield prepared                  # `make demo` prepared it already
        return
    out = prepare_e5_small(tmp_path_factory.mktemp("models") / "multilingual-e5-small")
    yield out
    shutil.rmtree(out)


# The slow tier: each is a run of the offline model at the demo's budget (LoRA's took 130 s on
# one thread on 2026-12-03, the longest test of the fast tier until it moved here).
@pytest.mark.slow
@pytest.mark.parametrize("method", ["fft", "lora", "pfeiffer"])
def test_balanced_clears_the_majority_class_on_imbalanced_sib200(
        method, tmp_path, imbalanced_sib200, e5_model):
    """SIB-200 skewed like the genre task (76/19/5% per language), the demo's budget and
    learning rates: with class_weights balanced every method beats the majority class by at
    least 0.10 macro-F1 on its training languages' dev rows, which without it (none) FFT and
    LoRA do not (docs/results.md, "Imbalanced labels")."""
    config = load_config(ROOT / "configs" / "demo" / "sib200-imbalanced.yaml", {
        "method": method, "seed": 1, "class_weights": "balanced",
        "data_root": str(imbalanced_sib200), "model": str(e5_model),
        "results_dir": str(tmp_path / "results")})
    metrics = train_and_evaluate(config).record["metrics"]
    majority = metrics["baselines"]["majority"]["macro_f1"]
    assert metrics["selection_dev"]["macro_f1"] >= majority + 0.10, (metrics["selection_dev"],
                                                                    majority)
