"""`head_init: probe` (LP-FT): the head starts from the probe on what it receives at step 0, so
a run's score before its first step is the probe's, for every paper method; `head_bias: prior`
under `class_weights: balanced` starts at a zero bias (the loss adds the prior) and learns."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import EMOTION_CUES, FILLER, SIB200_CUES
from peft_utils.classification import metrics as M
from peft_utils.classification import training as T
from peft_utils.classification.config import RunConfig
from peft_utils.classification.head import output_layers
from peft_utils.classification.probe import fit_probe, frozen_probe, per_example
from peft_utils.core.config import ConfigError

PAPER_METHODS = ["fft", "lora", "pfeiffer", "houlsby"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny BERT: under mean pooling its head is one linear layer on the pooled features."""
    from peft_utils.classification.testing import make_tiny_model

    texts = [t for v in FILLER.values() for t in v]
    texts += [*SIB200_CUES.values(), *EMOTION_CUES.values()] + [str(i) for i in range(100)]
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-bert", texts,
                           max_length=256, architecture="bert")


def config(data_root, model, method, tmp_path, **extra) -> RunConfig:
    return RunConfig.from_dict({**dict(
        dataset="sib200", data_root=str(data_root), model=str(model), method=method,
        train_langs=["en", "fr"], eval_langs=["en", "fr", "es"], max_length=48, batch_size=8,
        eval_batch_size=32, warmup_steps=0, max_steps=4, eval_steps=2, learning_rate=1e-2,
        pooling="mean", head_init="probe", seed=3, results_dir=str(tmp_path / "results"),
        extra={"no_feature_cache": True}), **extra})


def step0(cfg: RunConfig):
    """(the prepared run after its head's initialisation, what it records, the selection-dev
    scores of the model before its first step)."""
    prep = T._prepare(cfg)
    init = T._init_head(cfg, prep)
    dev = prep.splits["dev"]
    logits = T.predict_logits(prep.built.model, dev, prep.tokenizer, cfg.eval_batch_size, cfg)
    scores = T.example_scores(dev, logits, cfg.multilabel)
    sel = prep.selection
    threshold = T._threshold(cfg, dev.gold[sel], scores[sel]) if cfg.multilabel else 0.5
    pred = M.decide(scores, cfg.multilabel, threshold)
    n_labels = len(prep.built.labels)
    return prep, init, M.scores(dev.gold[sel], pred[sel], cfg.multilabel, n_labels,
                                cfg.task.zero_division), logits


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_a_linear_head_starts_at_the_frozen_probes_score(method, tmp_path, sib_root, tiny_bert,
                                                         one_thread):
    """BERT's head under mean pooling is linear on the pooled features: before its first step
    the run predicts as the probe fitted on the features its head receives, and for the
    methods that leave the encoder as it was (FFT, LoRA) that is the record's frozen-feature
    probe itself, score for score."""
    cfg = config(sib_root, tiny_bert, method, tmp_path)
    prep, init, start, logits = step0(cfg)
    assert init["setting"] == "probe" and start == init["selection_dev"]
    if method in ("fft", "lora"):
        assert init["features"] == "frozen encoder"
        probe = frozen_probe(cfg, prep.splits, prep.selection, len(prep.built.labels),
                             prep.tokenizer, "cpu", "fp32", None)
        assert start == probe["selection_dev"]
    else:   # the adapters library starts its adapters at small random weights
        assert init["features"] == "model at step 0"
    # The output layer is the probe: the same logits as the probe's on the step-0 features.
    from peft_utils.classification.head_init import head_inputs
    from peft_utils.classification.inference import collator

    features = head_inputs(prep.built.model, prep.splits["train"].rows, 32,
                           collator(prep.tokenizer, cfg), "fp32")
    refit = fit_probe(per_example(prep.splits["train"], features),
                      prep.splits["train"].gold, False, 7, False)
    (layer,) = output_layers(prep.built.model, 7)[-1:]
    np.testing.assert_allclose(layer.weight.detach().numpy(), refit.weight, rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("method", ["fft", "lora"])
def test_a_hidden_layer_head_gets_the_standardiser_and_the_probe_on_its_hidden_features(
        method, tmp_path, sib_root, tiny_model, one_thread):
    """XLM-R's head is dense + tanh + out_proj: dense becomes the standardiser of the pooled
    training features (scaled by HIDDEN_SCALE), out_proj the probe on tanh(dense(pooled)), and
    the model's step-0 score is that probe's. Its hidden features keep what the pooled ones
    carry: the probe on them scores within 0.05 of the frozen-feature probe."""
    from peft_utils.classification.head_init import (HIDDEN_SCALE, output_layer_inputs,
                                                     step0_features)

    cfg = config(sib_root, tiny_model, method, tmp_path)
    prep, init, start, _ = step0(cfg)
    assert start == init["selection_dev"] and init["features"] == "frozen encoder"
    model = prep.built.model
    pooled, _ = step0_features(cfg, model, prep.splits, ["train"], 7, prep.tokenizer, "cpu",
                               "fp32", None)
    x = pooled["train"]
    scale = HIDDEN_SCALE * (x.std(0) + 1e-6)
    dense = dense_layer(model)
    np.testing.assert_allclose(np.diag(dense.weight.detach().numpy()), 1 / scale, rtol=1e-5)
    assert not (dense.weight.detach().numpy() - np.diag(1 / scale)).any()
    hidden = np.tanh((x - x.mean(0)) / scale)
    np.testing.assert_allclose(output_layer_inputs(model, x, 7), hidden, rtol=1e-4, atol=1e-5)
    probe = fit_probe(per_example(prep.splits["train"], hidden), prep.splits["train"].gold,
                      False, 7, False)
    layer = output_layers(model, 7)[-1]
    np.testing.assert_allclose(layer.weight.detach().numpy(), probe.weight, rtol=1e-3,
                               atol=1e-4)
    frozen = frozen_probe(cfg, prep.splits, prep.selection, 7, prep.tokenizer, "cpu", "fp32",
                          None)
    assert abs(start["macro_f1"] - frozen["selection_dev"]["macro_f1"]) <= 0.05, (start, frozen)


def dense_layer(model):
    """The hidden layer of XLM-R's head (peft: its trained copy)."""
    from peft_utils.classification.head import head_module

    return [m for n, m in head_module(model).named_modules() if n.endswith("dense")][-1]


def test_multilabel_step0_with_a_tuned_threshold(tmp_path, brighter_root, tiny_bert,
                                                 one_thread):
    cfg = config(brighter_root, tiny_bert, "lora", tmp_path, dataset="brighter",
                 train_langs=["en", "de"], eval_langs=["en", "de", "ru"], threshold="tune")
    _, init, start, _ = step0(cfg)
    assert init["features"] == "frozen encoder" and start == init["selection_dev"]


def test_a_run_records_its_head_start_and_trains_from_it(tmp_path, sib_root, tiny_model,
                                                         one_thread):
    record = T.train_and_evaluate(config(sib_root, tiny_model, "lora", tmp_path)).record
    init = record["metrics"]["head_init"]
    assert init["setting"] == "probe" and init["selection_dev"]["n"] == \
        record["metrics"]["selection_dev"]["n"]
    assert record["costs"]["phases"]["head_init_s"] > 0
    random = T.train_and_evaluate(config(sib_root, tiny_model, "lora", tmp_path,
                                         head_init="random")).record
    assert random["metrics"]["head_init"] == {"setting": "random"}
    # head_init: random is the default: the ids of earlier runs stay valid.
    assert "head_init" not in config(sib_root, tiny_model, "lora", tmp_path,
                                     head_init="random").identity()


def test_head_bias_prior_and_probe_refused(tmp_path, sib_root, tiny_model):
    with pytest.raises(ConfigError, match="head_bias: prior and head_init: probe"):
        config(sib_root, tiny_model, "lora", tmp_path, head_bias="prior")
    with pytest.raises(ConfigError, match="head_init must be one of random, probe"):
        config(sib_root, tiny_model, "lora", tmp_path, head_init="zeros")


def test_prior_bias_under_balanced_starts_at_zero_and_learns(tmp_path, tiny_model, one_thread):
    """head_bias: prior with class_weights: balanced on a skewed fixture (about 76/19/5%):
    the loss adds the log prior, so the bias starts at zero instead of counting the prior
    twice (which pinned every method of a real genre run to the majority class), and the run
    learns past the majority class."""
    from fixtures_data import make_sib200_tree
    from peft_utils.data.imbalanced import make_imbalanced_sib200

    source = make_sib200_tree(tmp_path / "data", langs=("eng_Latn", "fra_Latn"),
                              sizes={"train": 280, "dev": 70, "test": 70})
    skewed = make_imbalanced_sib200(source, tmp_path / "skewed",
                                    sizes={"train": 40, "dev": 12, "test": 12})
    cfg = config(skewed, tiny_model, "fft", tmp_path, head_init="random", head_bias="prior",
                 class_weights="balanced", train_langs=["en", "fr"], eval_langs=["en", "fr"],
                 max_steps=24, eval_steps=4, learning_rate=1e-2)
    prep = T._prepare(cfg)
    for layer in output_layers(prep.built.model, 7):
        assert not layer.bias.detach().any()
    metrics = T.train_and_evaluate(cfg).record["metrics"]
    majority = metrics["baselines"]["majority"]["macro_f1"]
    # (with the prior counted twice this run ends exactly at the majority class, 0.286)
    assert metrics["selection_dev"]["macro_f1"] > majority + 0.2, (metrics["selection_dev"],
                                                                   majority)


# ---- the probe head's learning rate and step 0 as a candidate -----------------------------
def head_rates(fitted, model) -> dict[str, set[float]]:
    """The initial learning rates of the optimiser's groups: {"head": ..., "body": ...}."""
    from peft_utils.classification.head import head_parameters

    head = {id(p) for p in head_parameters(model)}
    rates: dict[str, set[float]] = {"head": set(), "body": set()}
    for group in fitted.trainer.optimizer.param_groups:
        for param in group["params"]:
            rates["head" if id(param) in head else "body"].add(group["initial_lr"])
    return rates


def test_a_probe_head_trains_at_the_probe_head_rate_when_its_rate_is_unset(
        tmp_path, sib_root, tiny_bert, one_thread):
    """head_init: probe with head_learning_rate unset: the head trains at
    PROBE_HEAD_LEARNING_RATE (at the method's rate it lost its start on the demo), the rest at
    the method's rate; the rate is written into the config, so the run id is that of an
    explicit 1e-4 and differs from a run before this default (its head trained at the method's
    rate). A random head with the rate unset trains at the method's rate, as before."""
    from peft_utils.classification.config import PROBE_HEAD_LEARNING_RATE

    assert PROBE_HEAD_LEARNING_RATE == 1e-4
    cfg = config(sib_root, tiny_bert, "fft", tmp_path, max_steps=2, eval_steps=2,
                 checkpoint_steps=0)
    assert cfg.head_learning_rate == 1e-4
    explicit = config(sib_root, tiny_bert, "fft", tmp_path, max_steps=2, eval_steps=2,
                      checkpoint_steps=0, head_learning_rate=1e-4)
    assert cfg.run_id == explicit.run_id
    prep = T._prepare(cfg)
    init = T._init_head(cfg, prep)
    assert init["learning_rate"] == 1e-4
    fitted = T._fit(cfg, tmp_path / "out", prep)
    assert head_rates(fitted, prep.built.model) == {"head": {1e-4}, "body": {1e-2}}
    random = config(sib_root, tiny_bert, "fft", tmp_path, head_init="random")
    assert random.head_learning_rate is None   # the method's rate
    assert config(sib_root, tiny_bert, "fft", tmp_path,
                  head_learning_rate=3e-3).head_learning_rate == 3e-3


@pytest.mark.parametrize("head_init, rate, warned", [
    ("probe", 1e-2, True), ("probe", 1e-3, True), ("probe", 1e-4, False),
    ("probe", None, False), ("random", 1e-2, False)])
def test_a_probe_head_at_a_rate_that_undid_its_start_is_warned_about(
        head_init, rate, warned, tmp_path, sib_root, tiny_bert, capsys):
    """One line on stderr at the start of the run, with the run id, naming the rate, the
    measurement and the default; not an error, and nothing for a random head at 1e-2 (the
    random-head configs set it on purpose)."""
    cfg = config(sib_root, tiny_bert, "fft", tmp_path, head_init=head_init,
                 head_learning_rate=rate)
    T._prepare(cfg)
    lines = [line for line in capsys.readouterr().err.splitlines()
             if "head_learning_rate" in line]
    if not warned:
        assert not lines
        return
    (line,) = lines
    assert line.startswith(f"{cfg.run_id}: warning: head_learning_rate {rate:g} with "
                           "head_init: probe")
    assert "lost its start within 10 steps" in line and "docs/demo/head-init.md" in line
    assert "the default for a probe head is 0.0001" in line


def test_step0_is_kept_when_training_only_makes_dev_worse(tmp_path, sib_root, tiny_bert,
                                                          one_thread):
    """A probe-head run whose training can only lose (FFT, encoder and head at 0.5): step 0 is
    dev-scored like the later evaluations, kept as the best state and restored, so the run
    ends at its start (`metrics.best_step` 0, `metrics.selection_dev` = the start)."""
    cfg = config(sib_root, tiny_bert, "fft", tmp_path, learning_rate=0.5,
                 head_learning_rate=0.5, max_steps=4, eval_steps=2, checkpoint_steps=0)
    metrics = T.train_and_evaluate(cfg).record["metrics"]
    start = metrics["head_init"]["selection_dev"]
    curve = metrics["dev_curve"]
    assert [point["step"] for point in curve] == [0, 2, 4]
    assert curve[0]["dev"] == pytest.approx(start["macro_f1"], abs=1e-9)
    assert all(point["dev"] < curve[0]["dev"] for point in curve[1:]), curve   # collapsed
    assert metrics["best_step"] == 0 and metrics["best_dev"] == curve[0]["dev"]
    assert metrics["selection_dev"]["macro_f1"] == pytest.approx(start["macro_f1"], abs=1e-9)


def test_step0_is_on_the_dev_curve_of_a_probe_head_run_without_an_evaluation_pass(
        tmp_path, sib_root, tiny_bert, one_thread, monkeypatch):
    """A probe-head run's dev curve starts at step 0 with the probe's score, which is the
    model's (the tests above check that against a pass), so no evaluation pass runs before
    the first step; its best step is that of the best point; a random head's curve starts at
    its first evaluation."""
    from transformers import Trainer

    before_training = []
    stock = Trainer.evaluate

    def evaluate(self, *args, **kwargs):
        if self.state.max_steps == 0:
            before_training.append(self.state.global_step)
        return stock(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    record = T.train_and_evaluate(config(sib_root, tiny_bert, "lora", tmp_path,
                                         checkpoint_steps=0)).record
    assert before_training == []
    metrics = record["metrics"]
    curve = metrics["dev_curve"]
    assert [point["step"] for point in curve] == [0, 2, 4]
    assert curve[0]["dev"] == metrics["head_init"]["selection_dev"]["macro_f1"]
    best = max(curve, key=lambda point: point["dev"])   # the first of equals
    assert metrics["best_step"] == best["step"] and metrics["best_dev"] == best["dev"]
    random = T.train_and_evaluate(config(sib_root, tiny_bert, "lora", tmp_path,
                                         head_init="random", checkpoint_steps=0)).record
    assert [point["step"] for point in random["metrics"]["dev_curve"]] == [2, 4]
