"""Seq2seq builders and parameter budgets: every method trains only its own parameters, the
budget function reaches 0.1% / 1% / 10% within 10% where the model's size allows it and says
clearly where it does not, and the shipped configs of the study's models count as published."""
from __future__ import annotations

import pytest

from peft_utils.mt.config import MTConfig
from peft_utils.mt.models import BudgetError, budget_table, build_seq2seq, fit_budget
from peft_utils.mt.testing import tiny_seq2seq_config, write_config_folder

BUDGETS = (0.001, 0.01, 0.1)
PEFT = ("pfeiffer", "houlsby", "lora", "prefix")


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory):
    """Config-only folders (meta device): 64 wide, 2+2 layers, a 32k vocabulary, so that the
    embeddings dominate as in real models (2.2M parameters)."""
    root = tmp_path_factory.mktemp("configs")
    return {kind: str(write_config_folder(root / kind, tiny_seq2seq_config(
        kind, vocab_size=32000, d_model=64, ffn=128))) for kind in ("mbart", "t5", "m2m_100")}


# Which (method, budget) a 2.2M-parameter model can reach within 10%: 0.1% needs LoRA rank <1
# (one rank of q,k,v,o already trains 0.14%), Houlsby dimension 0.5; 10% needs LoRA rank >64
# (the hidden size) and a Pfeiffer bottleneck beyond 4x hidden.
UNREACHABLE = {("lora", 0.001), ("houlsby", 0.001), ("lora", 0.1), ("pfeiffer", 0.1)}


@pytest.mark.parametrize("kind", ["mbart", "t5"])
def test_budgets_reached_within_10_percent_or_refused(tiny_configs, kind):
    config = MTConfig(model=tiny_configs[kind])
    for method in PEFT:
        for budget in BUDGETS:
            cfg = config.replace(method=method, budget=budget)
            if (method, budget) in UNREACHABLE:
                with pytest.raises(BudgetError, match=rf"budget {budget:.2%} is not reachable "
                                   rf"with {method}.*(allows .* pick a budget|too coarse)"):
                    fit_budget(cfg)
                continue
            reached = fit_budget(cfg)
            assert reached.relative_error <= 0.1, (method, budget, reached)
            assert abs(reached.fraction - budget) / budget == pytest.approx(
                reached.relative_error)
            # The model built at that size trains exactly what the budget reported.
            built = build_seq2seq(cfg, meta=True, size=reached.size)
            assert built.report["trainable"] == reached.trainable
            assert built.report["base"] == reached.base


def test_fixed_size_methods_and_unsupported_architectures(tiny_configs):
    config = MTConfig(model=tiny_configs["m2m_100"])
    fft = fit_budget(config.replace(method="fft"))
    assert fft.fraction == 1.0 and fft.target is None
    cross = build_seq2seq(config.replace(method="cross_attn"), meta=True)
    names = [n for n, p in cross.model.named_parameters() if p.requires_grad]
    assert names and all("encoder_attn" in n for n in names)
    assert fit_budget(config.replace(method="lora", budget=0.01)).relative_error <= 0.1
    with pytest.raises(ValueError, match="adapters library .* no m2m_100 support"):
        build_seq2seq(config.replace(method="pfeiffer", budget=0.01), meta=True)
    rows = budget_table(config, [0.01], ["prefix", "cross_attn"])
    assert "no m2m_100 support" in rows[0]["error"] and rows[1]["error"] is None


def test_t5_cross_attention_is_the_decoders_second_sublayer(tiny_configs):
    built = build_seq2seq(MTConfig(model=tiny_configs["t5"], method="cross_attn"), meta=True)
    names = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert names and all(".layer.1." in n and n.startswith("decoder.") for n in names)
    assert any("EncDecAttention" in n for n in names)


def test_coarse_sizes_are_explained():
    """LoRA on mT5-small: rank 3 trains 0.086%, rank 4 0.115%: 0.1% lies between."""
    config = MTConfig(model="google/mt5-small", method="lora", budget=0.001)
    with pytest.raises(BudgetError, match=r"too coarse here \(lora_r=3 trains 0.0860%, lora_r=4 "
                                          r"trains 0.1146%\); raise budget_tolerance"):
        fit_budget(config)
    assert fit_budget(config.replace(budget_tolerance=0.15)).size == {"lora_r": 3}


@pytest.mark.parametrize("model, total", [
    ("facebook/mbart-large-50-many-to-many-mmt", 610_879_488),
    ("google/mt5-small", 300_176_768),
    ("facebook/nllb-200-distilled-600M", 615_073_792),
])
def test_shipped_configs_count_the_published_sizes(model, total):
    assert fit_budget(MTConfig(model=model, method="fft")).base == total


@pytest.mark.parametrize("budgets", [
    pytest.param((0.001,), id="0.1%"),
    pytest.param((0.01, 0.1), id="1%-10%", marks=pytest.mark.slow),
])
def test_mbart50_reaches_every_budget(budgets):
    """The study's main model: adapters, LoRA and prefix tuning at every budget."""
    config = MTConfig(model="facebook/mbart-large-50-many-to-many-mmt")
    for method in ("pfeiffer", "lora", "prefix"):
        for budget in budgets:
            assert fit_budget(config.replace(method=method, budget=budget)).relative_error <= 0.1


def test_every_method_trains_only_its_parameters(tiny_mt_model):
    """One optimiser step changes the trainable parameters and nothing else."""
    import torch
    from transformers import DataCollatorForSeq2Seq

    from peft_utils.mt.tokenize import encode_pairs, load_tokenizer, scheme_for

    tokenizer = load_tokenizer(str(tiny_mt_model))
    for method, budget in [("fft", None), ("cross_attn", None), ("pfeiffer", 0.1),
                           ("houlsby", 0.1), ("lora", 0.1), ("prefix", 0.1)]:
        torch.manual_seed(0)
        built = build_seq2seq(MTConfig(model=str(tiny_mt_model), method=method, budget=budget))
        model = built.model
        rows = encode_pairs(tokenizer, scheme_for(tokenizer, "mbart"), ["the city council met ."],
                            ["eht ytic licnuoc tem . de"], "en", "de", 32, 32)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
        model.train()
        model(**DataCollatorForSeq2Seq(tokenizer)(rows)).loss.backward()
        optimizer.step()
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert changed and changed <= trainable, method
        assert sum(p.numel() for n, p in model.named_parameters() if n in trainable) == \
            built.report["trainable"], method


@pytest.fixture(scope="module")
def tiny_mt_model(tmp_path_factory):
    from peft_utils.mt.testing import make_tiny_mt_model

    return make_tiny_mt_model(tmp_path_factory.mktemp("models") / "tiny-mt",
                              ["the city council met .", "eht ytic licnuoc tem . de"])
