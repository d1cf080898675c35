"""The fast pipeline changes speed, not results: dynamic padding and the token cache give
the same metrics as padding to max_length and tokenising afresh, for a fixed seed."""
from __future__ import annotations

import numpy as np
from test_training import tiny_config

from peft_utils.classification.token_cache import cache_key
from peft_utils.classification.training import train_and_evaluate


def _scores(result):
    return {split: {lang: v for lang, v in values.items()}
            for split, values in result.metrics.items() if split in ("dev", "test")}


def test_dynamic_padding_gives_the_same_metrics(tmp_path, sib_root, tiny_model):
    from transformers import AutoTokenizer

    from peft_utils.classification.testing import make_tiny_model

    # Dropout masks are drawn per tensor shape, so padding would change them: no dropout here.
    words = list(AutoTokenizer.from_pretrained(tiny_model).get_vocab())
    tiny_model = make_tiny_model(tmp_path / "m", [" ".join(words)], max_length=256, dropout=0.0)
    common = dict(method="fft", learning_rate=1e-2, max_steps=40, eval_steps=20,
                  group_by_length=False,
                  attention="eager")  # the same batches in both runs; only padding differs
    padded = train_and_evaluate(tiny_config(tmp_path / "a", sib_root, tiny_model,
                                            padding="max_length", **common))
    dynamic = train_and_evaluate(tiny_config(tmp_path / "b", sib_root, tiny_model, **common))
    a = [e["loss"] for e in padded.metrics["learning_curve"]]
    b = [e["loss"] for e in dynamic.metrics["learning_curve"]]
    np.testing.assert_allclose(a, b, atol=1e-4)  # pad tokens are masked: only float noise
    assert padded.metrics["dev"]["overall"]["accuracy"] > 0.3  # confident enough for no ties
    assert _scores(padded) == _scores(dynamic)


def test_token_cache_gives_the_same_metrics(tmp_path, sib_root, tiny_model, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setattr("peft_utils.classification.training.DEFAULT_CACHE", cache)
    config = tiny_config(tmp_path / "c", sib_root, tiny_model, method="lora", max_steps=8,
                         eval_steps=4)
    fresh = train_and_evaluate(config.replace(extra={"no_token_cache": True}))
    assert not cache.exists()
    first = train_and_evaluate(config.replace(results_dir=str(tmp_path / "d")))
    entries = sorted(cache.glob("*.json"))
    assert len(entries) == 3  # train, dev, test
    cached = train_and_evaluate(config.replace(results_dir=str(tmp_path / "e")))
    assert sorted(cache.glob("*.json")) == entries  # reused, not rewritten under new keys
    assert _scores(fresh) == _scores(first) == _scores(cached)


def test_cache_key_covers_every_input():
    from fixtures_data import make_tiny_tokenizer

    tok = make_tiny_tokenizer(["a b c"])
    other = make_tiny_tokenizer(["a b c d"])
    base = cache_key(["a b"], tok, 64, "head", 16)
    assert base == cache_key(["a b"], tok, 64, "head", 16)
    assert len({base, cache_key(["a c"], tok, 64, "head", 16),
                cache_key(["a b"], other, 64, "head", 16),
                cache_key(["a b"], tok, 32, "head", 16),
                cache_key(["a b"], tok, 64, "chunks", 16),
                cache_key(["a b"], tok, 64, "chunks", 8)}) == 6
