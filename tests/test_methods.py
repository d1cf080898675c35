"""Every runnable method of the registry (core.methods) on a tiny XLM-R and a tiny BERT: the
loss falls, every base weight the method should not touch is bit-for-bit unchanged, the head
and the method's own parameters train, a saved run reloads to identical predictions, and an
interrupted run resumes to the uninterrupted metrics. A few methods, one per mechanism, run
in the fast suite; the rest are marked slow."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fault_helpers import assert_resumes_to
from fixtures_data import FILLER, SIB200_CUES
from peft_utils.classification.config import RunConfig, load_config
from peft_utils.classification.models import build_model
from peft_utils.classification.run_data import load_frames
from peft_utils.classification.training import encode, load_run, predict_logits, train_and_evaluate
from peft_utils.core import methods
from peft_utils.core.config import ConfigError
from peft_utils.core.modeling import seed_everything
from peft_utils.core.runs import read_record, validate_record

# Sizes a 32-wide, 2-layer model can take (the defaults assume 768 or 1024 wide layers).
TINY = {
    "oft": {"oft_block_size": 16}, "boft": {"boft_block_size": 4},
    "vblora": {"vector_length": 16, "num_vectors": 32}, "c3a": {"block_size": 16},
    "road": {"group_size": 16}, "fourierft": {"n_frequency": 64},
    "waveft": {"n_frequency": 64}, "vera": {"r": 16}, "prompt": {"num_virtual_tokens": 4},
    "p_tuning": {"num_virtual_tokens": 4, "encoder_hidden_size": 32},
    "compacter": {"reduction_factor": 8}, "compacter++": {"reduction_factor": 8},
    "prefix": {"prefix_length": 8}, "prefix_flat": {"prefix_length": 8},
    "adalora": {"init_r": 8, "target_r": 4}, "miss": {"r": 8}, "shira": {"r": 4},
}
# In the fast suite: the methods with their own loop hooks (AdaLoRA's budget, LoRA+'s
# learning rates), a soft prompt and a representation intervention.
FAST = ("adalora", "loraplus", "prompt", "loreft")
ARCHITECTURES = ("xlm-roberta", "bert")
HEAD = "classifier."
INIT_RANGE = {"xlm-roberta": 0.2, "bert": 0.2}
# XLM-R's head reads the first token; BERT's the mean of the text's states, not its
# pooler (random and frozen in a tiny model, it hides the text from the head).
POOLING = {"xlm-roberta": "cls", "bert": "mean"}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def encoder(request, tmp_path_factory):
    from peft_utils.classification.testing import make_tiny_model

    texts = [t for v in FILLER.values() for t in v] + list(SIB200_CUES.values())
    return make_tiny_model(tmp_path_factory.mktemp("models") / request.param, texts,
                           hidden=32, intermediate=64, heads=4, max_length=96,
                           architecture=request.param, init_range=INIT_RANGE[request.param])


def tiny(tmp_path, root, model, method: str, folder: str, **kw) -> RunConfig:
    kw.setdefault("pooling", POOLING.get(model.name, "cls"))
    low, high = methods.REGISTRY[method].lr_range   # the middle of the method's range
    return RunConfig(dataset="sib200", data_root=str(root), model=str(model), method=method,
                     method_config=TINY.get(method), train_langs=["en", "fr"],
                     eval_langs=["en", "fr"], max_length=64, learning_rate=(low * high) ** 0.5,
                     head_learning_rate=1e-2, batch_size=8, eval_batch_size=16,
                     warmup_steps=0, num_epochs=1, max_steps=40, eval_steps=10, seed=3,
                     results_dir=str(tmp_path / folder), **kw)


def registered(task="classification"):
    return [m if m in FAST else pytest.param(m, marks=pytest.mark.slow)
            for m in methods.names(task) if m not in methods.PAPER_METHODS]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("method", registered())
def test_method_trains_reloads_and_resumes(method, encoder, tmp_path, sib_root,
                                           interrupt_after):
    entry = methods.REGISTRY[method]
    config = tiny(tmp_path, sib_root, encoder, method, "whole")
    seed_everything(config.seed)
    initial = {n: p.detach().clone() for n, p in build_model(config).model.named_parameters()}
    whole = train_and_evaluate(config)

    losses = [e["loss"] for e in whole.metrics["learning_curve"]]
    quarter = len(losses) // 4   # quarters of the curve: single-batch losses are noisy
    assert np.mean(losses[-quarter:]) < np.mean(losses[:quarter]) - 0.05, losses

    trained = dict(whole.model.named_parameters())
    assert set(trained) == set(initial)
    moved = {n for n, p in trained.items() if not torch.equal(p.detach().cpu(), initial[n])}
    if not entry.changes_base:   # PiSSA and OLoRA keep the residual of what they take out
        assert [n for n in moved if not trained[n].requires_grad] == []
    assert any(n.startswith(HEAD) or f".{HEAD}" in n for n in moved)   # the head trains
    own = [n for n in moved if HEAD not in n]
    assert own, "the method's own parameters did not train"

    # The record says what the library received: the registry defaults and method_config.
    validate_record(read_record(whole.run_dir))
    ran = whole.record["meta"]["method"]
    assert ran["library"] == entry.library and ran["config_class"] == entry.config_class
    assert ran["settings"].items() >= (TINY.get(method) or {}).items()

    # A saved run reloads to identical predictions.
    _, built, tokenizer = load_run(whole.run_dir)
    dev = encode(load_frames(config)["dev"], tokenizer, config, built.labels)
    before = predict_logits(whole.model, dev, tokenizer, 16, config)
    np.testing.assert_allclose(predict_logits(built.model, dev, tokenizer, 16, config), before,
                               rtol=0, atol=1e-6)

    # An interrupted run resumes to the uninterrupted metrics (one checkpoint format).
    assert_resumes_to(whole.record, train_and_evaluate,
                      tiny(tmp_path, sib_root, encoder, method, "resumed"), 30, interrupt_after)


# ---- soft prompts: the head reads the text --------------------------------------------
@pytest.mark.parametrize("method", ["prompt", "p_tuning"])
def test_soft_prompt_head_reads_the_text_not_the_virtual_tokens(method, encoder, tmp_path,
                                                                sib_root):
    from peft_utils.classification.head import head_module, masked_mean

    config = tiny(tmp_path, sib_root, encoder, method, "unused")
    count = TINY[method]["num_virtual_tokens"]
    seed_everything(0)
    model = build_model(config).model.eval()
    encoder_stack = model.get_base_model().base_model.encoder
    raw = {}
    encoder_stack.register_forward_hook(lambda m, a, out: raw.update(states=out[0]))
    ids = torch.tensor([[0, 5, 6, 7, 8, 9, 2], [0, 10, 11, 2, 1, 1, 1]])   # <s> ... </s> <pad>
    mask = (ids != 1).long()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
        states = raw["states"]
        assert states.shape[1] == ids.shape[1] + count   # the prompt was prepended
        text = states[:, count:]
        head = head_module(model)
        if config.pooling == "cls":   # XLM-R's head reads position 0 of what it is given
            expected = head(text)
        else:   # the mean over the text's tokens, padding excluded
            expected = head(masked_mean(text, mask))
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
        # The extended mask hides the padding: the short text alone scores the same.
        alone = model(input_ids=ids[1:, :4], attention_mask=mask[1:, :4]).logits
    torch.testing.assert_close(alone, logits[1:], rtol=0, atol=1e-5)


# ---- settings --------------------------------------------------------------------------
@pytest.mark.parametrize("method, settings, named", [
    ("lora", {"rank": 8}, ["'rank'", "lora"]),
    ("lora", {"r": "eight"}, ["r='eight'", "lora"]),
    ("dora", {"use_dora": "yes"}, ["use_dora", "dora"]),
    ("pfeiffer", {"reduction": 8}, ["'reduction'", "pfeiffer", "SeqBnConfig"]),
    ("fft", {"r": 8}, ["fft", "no settings"]),
    ("loraplus", {"loraplus_lr_ratio": "fast"}, ["loraplus_lr_ratio", "loraplus"]),
])
def test_bad_method_config_is_a_config_error_naming_key_and_method(method, settings, named):
    with pytest.raises(ConfigError) as err:
        RunConfig(method=method, method_config=settings).validate("run.yaml")
    assert all(part in str(err.value) for part in named), str(err.value)
    assert str(err.value).startswith("run.yaml")


def test_unknown_or_unavailable_methods_say_what_to_use():
    with pytest.raises(ConfigError, match="unknown method 'lorra'.*lora"):
        RunConfig(method="lorra").validate()
    with pytest.raises(ConfigError, match="causal LM only"):
        RunConfig(method="cpt").validate()
    with pytest.raises(ConfigError, match="not for classification"):
        RunConfig(method="cross_attn").validate()


def test_method_config_keeps_paper_run_ids_and_reaches_the_library(tmp_path, sib_root):
    plain = RunConfig(method="lora")
    assert plain.digest() == RunConfig(method="lora", method_config=None).digest()
    assert "method_config" not in plain.identity()
    tuned = RunConfig(method="lora", method_config={"r": 16})
    assert tuned.digest() != plain.digest()
    from peft_utils.classification.models import method_settings

    # The paper's fields keep their meaning; method_config comes on top.
    assert method_settings(tuned)["r"] == 16 and method_settings(plain)["r"] == plain.lora_r


# ---- closed-form parameter counts on XLM-R-large (meta device, no weights) -------------
LAYERS, HIDDEN, FFN = 24, 1024, 4096
HEAD_PARAMS = HIDDEN * HIDDEN + HIDDEN + HIDDEN * 3 + 3    # dense + out_proj, 3 genres


@pytest.mark.parametrize("method, settings, expected", [
    # LoRA r=8 on q, k, v (1024 x 1024), intermediate (1024 -> 4096), output (4096 -> 1024)
    ("lora", {}, LAYERS * 8 * (3 * 2 * HIDDEN + 2 * (HIDDEN + FFN))),
    # ... plus DoRA's magnitude: one per output feature of each target
    ("dora", {}, LAYERS * (8 * (3 * 2 * HIDDEN + 2 * (HIDDEN + FFN)) + 4 * HIDDEN + FFN)),
    # (IA)^3: keys and values scale their outputs, the FFN output layer its input
    ("ia3", {}, LAYERS * (2 * HIDDEN + FFN)),
    # VeRA r=256: a vector per output feature and one per rank, per target
    ("vera", {}, LAYERS * (4 * HIDDEN + FFN + 5 * 256)),
    # prompt tuning: 20 virtual token embeddings
    ("prompt", {}, 20 * HIDDEN),
    # Pfeiffer at reduction factor 16: down (1024 -> 64) and up projections with biases
    ("pfeiffer", {"reduction_factor": 16},
     LAYERS * (2 * HIDDEN * 64 + 64 + HIDDEN)),
])
def test_parameter_counts_match_closed_forms(method, settings, expected):
    config = load_config("configs/semeval/st1.yaml", {"method": method, **settings})
    report = build_model(config, meta=True).report
    assert report["method_params"] == expected
    assert report["head"] == HEAD_PARAMS
    assert report["trainable"] == expected + HEAD_PARAMS


# ---- the `methods` command ------------------------------------------------------------
def test_methods_command_lists_every_method_with_counts(tiny_model, capsys):
    from peft_utils.cli import main

    assert main(["methods", "--json", "--config", "configs/demo/sib200.yaml",
                 "--set", f"model={tiny_model}"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} == set(methods.REGISTRY)
    runnable = [r for r in rows if r["status"] == "ok"]
    assert len(runnable) >= 25
    # A library default this 32-wide model cannot take is said, not a crash.
    vblora = next(r for r in rows if r["name"] == "vblora")
    assert vblora["status"].startswith("does not fit this model") and "vector_length" in \
        vblora["status"]
    fft = next(r for r in rows if r["name"] == "fft")
    for row in runnable:
        assert {"name", "library", "status", "trainable", "method_params"} <= set(row)
        assert row["trainable"] == row["method_params"] + row["head"] > 0
        assert row["fft_ratio"] == pytest.approx(fft["trainable"] / row["trainable"])
    # Methods that cannot run here are listed with the reason, never absent.
    cpt = next(r for r in rows if r["name"] == "cpt")
    assert cpt["status"] != "ok" and "causal" in cpt["status"] and "trainable" not in cpt


# Merging every method that merges: tests/test_serving.py (through core.serving.merged_copy).


# ---- the loop's part of a method -------------------------------------------------------
def test_loraplus_trains_b_matrices_faster_beside_the_heads_rate(tmp_path, sib_root,
                                                                 tiny_model):
    from transformers import TrainingArguments

    from peft_utils.classification.head import head_parameters
    from peft_utils.core.trainer import BestDevState, RunTrainer, method_hooks

    config = tiny(tmp_path, sib_root, tiny_model, "loraplus", "unused").replace(
        method_config={"loraplus_lr_ratio": 4.0})
    model = build_model(config).model
    trainer = RunTrainer(model=model, args=TrainingArguments(str(tmp_path / "t"),
                                                             learning_rate=1e-3, report_to=[]),
                         run_id="x", best=BestDevState(), head_lr=1e-2,
                         head_params=head_parameters(model),
                         hooks=method_hooks("loraplus", config.method_config, model))
    lr_of = {id(p): g["lr"] for g in trainer.create_optimizer().param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        if param.requires_grad:
            expected = 1e-2 if HEAD in name else 4e-3 if "lora_B" in name else 1e-3
            assert lr_of[id(param)] == pytest.approx(expected), name


def test_adalora_reallocates_its_rank_budget_during_training(tmp_path, sib_root, tiny_model):
    result = train_and_evaluate(tiny(tmp_path, sib_root, tiny_model, "adalora", "results"))
    allocator = result.model.base_model.rankallocator
    assert allocator.ipt   # importance was estimated from the gradients
    ranks = [int((p != 0).sum()) for n, p in result.model.named_parameters() if "lora_E" in n]
    # Pruned from init_r 8 per module towards the target of 4 (the kept state is the best
    # dev one, on the way there).
    assert sum(ranks) < 8 * len(ranks), ranks
