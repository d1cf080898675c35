"""The classifier head: what it reads (`pooling`), how its bias starts (`head_bias`) and its
own learning rate (`head_learning_rate`), the same for every method."""
from __future__ import annotations

import pytest
import torch

from peft_utils.classification.config import RunConfig
from peft_utils.classification.head import pool_by_mean, set_head_bias_to_prior
from peft_utils.classification.models import build_model, load_tokenizer
from peft_utils.core.config import ConfigError
from peft_utils.core.modeling import seed_everything

TEXTS = ["the match ended in a draw", "rain"]


def built(tiny_model, method: str, pooling: str):
    config = RunConfig(dataset="sib200", model=str(tiny_model), method=method, pooling=pooling,
                       seed=3)
    seed_everything(config.seed)
    return build_model(config).model.eval()


def logits(model, tokenizer, texts, **pad):
    batch = tokenizer(texts, return_tensors="pt", padding=True, **pad)
    with torch.no_grad():
        return model(**batch).logits


def test_head_reads_the_masked_mean(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    mean_model = built(tiny_model, "fft", "mean")
    cls_model = built(tiny_model, "fft", "cls")   # same seed: the same weights, no hook
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = cls_model.roberta(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        expected = cls_model.classifier(mean.unsqueeze(1))
    torch.testing.assert_close(logits(mean_model, tokenizer, TEXTS), expected)


@pytest.mark.parametrize("method", ["fft", "lora", "pfeiffer", "houlsby"])
def test_every_method_pools_by_mean_whatever_the_padding(method, tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    model = built(tiny_model, method, "mean")
    alone = logits(model, tokenizer, TEXTS[1:])
    padded = logits(model, tokenizer, TEXTS[1:], pad_to_multiple_of=24)
    torch.testing.assert_close(alone, padded)     # padding is masked out of the mean
    in_batch = logits(model, tokenizer, TEXTS)[1:]
    torch.testing.assert_close(alone, in_batch)
    # The hook survives peft's and adapters' wrapping: the head no longer reads <s> alone.
    assert not torch.allclose(alone, logits(built(tiny_model, method, "cls"), tokenizer,
                                            TEXTS[1:]))


def test_bert_heads_read_the_mean_instead_of_the_pooler():
    """The hub's multilingual-e5-small is a BERT checkpoint: its head reads the pooler output."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    bert = BertForSequenceClassification(BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=8, num_labels=3)).eval()
    pool_by_mean(bert)
    ids = torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = bert.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).float()
        expected = bert.classifier((hidden * weights).sum(1) / weights.sum(1))
        torch.testing.assert_close(bert(input_ids=ids, attention_mask=mask).logits, expected)
        short = bert(input_ids=ids[1:, :3], attention_mask=mask[1:, :3]).logits
    torch.testing.assert_close(short, expected[1:])


def test_mean_pooling_refuses_heads_it_does_not_know():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    model = DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=10, dim=8, n_layers=1, n_heads=2, hidden_dim=8))
    with pytest.raises(ValueError, match="pooling: mean supports the xlm-roberta"):
        pool_by_mean(model)


@pytest.mark.parametrize("method, multilabel", [("fft", False), ("lora", True)])
def test_head_bias_starts_at_the_label_prior(method, multilabel, tiny_model):
    import numpy as np

    dataset = "brighter" if multilabel else "sib200"
    config = RunConfig(dataset=dataset, model=str(tiny_model), method=method, seed=3)
    seed_everything(config.seed)
    model = build_model(config).model
    if multilabel:   # 6 emotions; the last never occurs: clipped, not -inf
        gold = np.array([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0],
                         [0, 0, 0, 1, 0, 0]])
        p = np.clip(gold.mean(0), 1e-3, 1 - 1e-3)
        expected = np.log(p / (1 - p))
    else:            # 7 topics, add-one counts
        gold = np.array([0, 0, 0, 1, 2])
        counts = np.bincount(gold, minlength=7) + 1.0
        expected = np.log(counts / counts.sum())
    set_head_bias_to_prior(model, gold, multilabel)
    biases = [m.bias for name, m in model.named_modules()
              if name.endswith("out_proj") and isinstance(m, torch.nn.Linear)]
    assert len(biases) == (2 if method == "lora" else 1)   # peft: trained copy + frozen original
    for bias in biases:
        np.testing.assert_allclose(bias.detach().numpy(), expected, rtol=1e-6)


def test_head_learning_rate_trains_the_head_alone_when_the_rest_is_frozen_by_lr(
        tmp_path, sib_root, tiny_model, one_thread):
    """FFT with a negligible learning rate and a large head learning rate: only the head moves."""
    from peft_utils.classification.training import train_and_evaluate

    config = RunConfig(dataset="sib200", data_root=str(sib_root), model=str(tiny_model),
                       method="fft", train_langs=["en"], eval_langs=["en"], max_length=64,
                       learning_rate=1e-9, head_learning_rate=1e-2, batch_size=8,
                       warmup_steps=0, max_steps=6, eval_steps=3, weight_decay=0.0,
                       checkpoint_steps=0, seed=5, results_dir=str(tmp_path / "results"))
    seed_everything(config.seed)
    before = {n: p.detach().clone() for n, p in build_model(config).model.named_parameters()}
    after = dict(train_and_evaluate(config).model.named_parameters())
    moved = {n: (after[n].detach() - before[n]).abs().max().item() for n in before}
    head = {n: v for n, v in moved.items() if n.startswith("classifier.")}
    body = {n: v for n, v in moved.items() if not n.startswith("classifier.")}
    assert min(head.values()) > 1e-3
    assert max(body.values()) < 1e-6


@pytest.mark.parametrize("key, value, message", [
    ("pooling", "max", "pooling must be cls or mean"),
    ("head_bias", "zero", "head_bias must be default or prior"),
    ("head_learning_rate", 0.0, r"head_learning_rate must be a finite number in \(0, 1\)"),
])
def test_bad_head_settings_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(dataset="sib200", **{key: value}).validate()
