"""`pooling: mean` feeds every method's head the masked mean of the token states."""
from __future__ import annotations

import pytest
import torch

from peft_utils.config import ConfigError, RunConfig
from peft_utils.models import build_model, load_tokenizer, pool_by_mean, seed_everything

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


def test_unknown_pooling_is_a_config_error():
    with pytest.raises(ConfigError, match="pooling must be cls or mean"):
        RunConfig(dataset="sib200", pooling="max").validate()
