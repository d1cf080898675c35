"""Every registry method that runs on seq2seq models (core.methods), on a tiny random mBART
and a small NTREX tree: it trains only its own parameters (base weights bit-for-bit
unchanged), and an interrupted run resumes to the uninterrupted metrics. The MT study's own
methods have their tests in test_mt_models.py and test_mt_faults.py; of the rest, a few run
in the fast suite."""
from __future__ import annotations

import pytest
import torch

from fault_helpers import assert_resumes_to
from peft_utils.core import methods
from peft_utils.core.modeling import seed_everything
from peft_utils.core.runs import read_record, validate_record
from peft_utils.mt.config import MTConfig
from peft_utils.mt.models import build_seq2seq
from peft_utils.mt.testing import make_ntrex_tree, make_tiny_mt_model
from peft_utils.mt.training import train_and_evaluate
from test_methods import TINY

STUDY_METHODS = ("fft", "pfeiffer", "houlsby", "lora", "prefix", "cross_attn")
FAST = ("dora", "prompt")
SETTINGS = dict(max_steps=12, eval_steps=4, max_eval_samples=6, max_source_length=24,
                max_target_length=16, batch_size=8, eval_batch_size=16, warmup_steps=0,
                select_on="chrf", learning_rate=3e-3, seed=3, device="cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mt_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("mtmethods")
    data = make_ntrex_tree(root / "ntrex", n_docs=6)
    texts = [line for f in data.glob("newstest2019-*.txt")
             for line in f.read_text(encoding="utf-8").splitlines()]
    return data, make_tiny_mt_model(root / "tiny-mt", texts)


def config(tmp_path, setup, method: str, folder: str) -> MTConfig:
    data, model = setup
    return MTConfig(**SETTINGS, method=method, method_config=TINY.get(method),
                    data_root=str(data), model=str(model), results_dir=str(tmp_path / folder))


@pytest.mark.parametrize("method", [
    m if m in FAST else pytest.param(m, marks=pytest.mark.slow)
    for m in methods.names("seq2seq") if m not in STUDY_METHODS])
def test_seq2seq_method_trains_its_parameters_and_resumes(method, tmp_path, mt_setup,
                                                          interrupt_after):
    whole_config = config(tmp_path, mt_setup, method, "whole")
    seed_everything(whole_config.seed)
    initial = {n: p.detach().clone()
               for n, p in build_seq2seq(whole_config).model.named_parameters()}
    whole = train_and_evaluate(whole_config)
    trained = dict(whole.model.named_parameters())
    moved = {n for n, p in trained.items() if not torch.equal(p.detach().cpu(), initial[n])}
    if not methods.REGISTRY[method].changes_base:
        assert [n for n in moved if not trained[n].requires_grad] == []
    assert moved, "nothing trained"
    validate_record(read_record(whole.run_dir), "mt_record")
    assert whole.record["meta"]["method"]["settings"].items() >= (TINY.get(method) or {}).items()
    # What serving costs: DoRA merges (the merged model translates the test set alike),
    # a soft prompt cannot, BitFit has nothing to merge.
    serving = whole.record["inference"]
    assert serving["unmerged"]["examples_per_s"] > 0 and serving["rows"] == 6
    if methods.REGISTRY[method].merges:
        assert serving["merged"]["latency_ms_median"] > 0 and serving["merge_max_diff"] == 0
    else:
        assert serving["merge"] in ("cannot merge", "nothing to merge")
        assert serving["merged"] is None

    assert_resumes_to(whole.record, train_and_evaluate,
                      config(tmp_path, mt_setup, method, "resumed"), 8, interrupt_after)


@pytest.mark.parametrize("method, budget, knob", [
    ("dora", 0.01, "lora_r"),                  # a LoRA variant: lora's rank
    ("par_bn", 0.01, "adapter_dim"),           # a bottleneck adapter: its bottleneck
    ("prompt", 0.0005, "num_virtual_tokens"),  # any other method: its registry knob
])
def test_registry_methods_take_a_budget_through_their_knob(method, budget, knob):
    from peft_utils.mt.models import fit_budget

    fitted = fit_budget(MTConfig(model="mt5-small", method=method, budget=budget))
    assert list(fitted.size) == [knob] and fitted.relative_error <= 0.1


def test_fixed_size_registry_methods_ignore_the_budget():
    assert MTConfig.from_dict({"method": "ia3", "budget": 0.01}).budget is None


def test_what_a_budget_sizes_is_the_entry_s_budget_knob(monkeypatch):
    """Both studies read how a method is sized from its registry entry, never from its name or
    family: every LoRA-family entry is sized by the study's LoRA settings and budgets its
    rank, every bottleneck adapter its dimension; an entry without a budget knob budgets its
    size knob."""
    import dataclasses

    from peft_utils.core import methods
    from peft_utils.mt.models import size_knob

    for entry in methods.REGISTRY.values():
        assert entry.lora_family == (entry.paper_setting == "lora_r")
        if entry.lora_family:
            assert entry.budget_knob == "lora_r"
        if entry.size_knob == "reduction_factor":
            assert entry.budget_knob == "adapter_dim"
    plain = dataclasses.replace(methods.REGISTRY["par_bn"], name="plain_bn", budget_knob=None)
    monkeypatch.setitem(methods.REGISTRY, "plain_bn", plain)
    assert size_knob("par_bn") == "adapter_dim" and size_knob("plain_bn") == "reduction_factor"
