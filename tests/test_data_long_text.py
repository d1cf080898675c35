"""Long-text strategies: head, head+tail, chunks (+ pooling) on a tiny WordLevel tokenizer."""
from __future__ import annotations

import numpy as np
import pytest
from fixtures_data import make_tiny_tokenizer

from peft_utils.data import encode_texts, pool_chunks
from peft_utils.data.long_text import head_tail_split, special_tokens


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()


def numbers(n: int, start: int = 0) -> str:
    # Word "i" has id i + 4 in the tiny vocabulary (after <pad> <s> </s> <unk>).
    return " ".join(str(i) for i in range(start, start + n))


def ids(n: int, start: int = 0) -> list[int]:
    return [i + 4 for i in range(start, start + n)]


def test_tokenizer_fixture_wraps_with_bos_and_eos(tok):
    assert tok("1 2")["input_ids"] == [tok.bos_token_id, 5, 6, tok.eos_token_id]
    assert special_tokens(tok) == ([tok.bos_token_id], [tok.eos_token_id])


def test_head_truncates_and_keeps_specials(tok):
    out = encode_texts([numbers(30), numbers(5)], tok, max_length=12, strategy="head")
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert out["input_ids"] == [[bos] + ids(10) + [eos], [bos] + ids(5) + [eos]]
    assert out["attention_mask"] == [[1] * 12, [1] * 7]
    assert out["example_index"] == [0, 1]
    assert out["n_tokens"] == [30, 5]


def test_head_tail_keeps_a_quarter_of_the_head_and_the_rest_from_the_tail(tok):
    assert head_tail_split(510) == (128, 382)  # Sun et al. 2019 at max length 512
    out = encode_texts([numbers(40), numbers(6)], tok, max_length=14, strategy="head+tail")
    bos, eos = tok.bos_token_id, tok.eos_token_id
    head, tail = head_tail_split(12)
    assert (head, tail) == (3, 9)
    assert out["input_ids"][0] == [bos] + ids(3) + ids(9, start=31) + [eos]
    assert len(out["input_ids"][0]) == 14
    assert out["input_ids"][1] == [bos] + ids(6) + [eos]  # short texts are untouched
    assert out["example_index"] == [0, 1]


def test_head_tail_at_512_matches_the_paper_layout(tok):
    out = encode_texts([numbers(900)], tok, max_length=512, strategy="head+tail")
    row = out["input_ids"][0]
    assert len(row) == 512
    assert row[1:129] == ids(128) and row[129:511] == ids(382, start=900 - 382)


def test_chunks_cover_every_token_with_the_given_overlap(tok):
    n, max_length, stride = 23, 10, 3
    out = encode_texts([numbers(n), numbers(4), ""], tok, max_length=max_length,
                       strategy="chunks", stride=stride)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    assert out["example_index"] == [0, 0, 0, 0, 1, 2]
    windows = [row[1:-1] for row in out["input_ids"][:4]]
    assert all(row[0] == bos and row[-1] == eos for row in out["input_ids"])
    assert all(len(w) <= max_length - 2 for w in windows)
    assert windows[0] == ids(8) and windows[1] == ids(8, start=5)
    for a, b in zip(windows, windows[1:]):
        assert a[-stride:] == b[:stride]  # consecutive windows overlap by `stride` tokens
    covered = sorted({t for w in windows for t in w})
    assert covered == ids(n)
    assert windows[-1][-1] == ids(n)[-1]
    assert out["input_ids"][4] == [bos] + ids(4) + [eos]
    assert out["input_ids"][5] == [bos, eos]  # an empty text still gets one row


def test_bad_arguments(tok):
    with pytest.raises(ValueError, match="unknown long-text strategy"):
        encode_texts(["1"], tok, 10, strategy="tail")
    with pytest.raises(ValueError, match="stride"):
        encode_texts(["1"], tok, 10, strategy="chunks", stride=8)
    with pytest.raises(ValueError, match="no room"):
        encode_texts(["1"], tok, 2)


def test_pool_chunks_mean_and_max():
    scores = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, -1.0], [5.0, 5.0]])
    index = [0, 0, 1, 0]
    mean = pool_chunks(scores, index, 2, how="mean")
    np.testing.assert_allclose(mean, [[7 / 3, 3.0], [4.0, -1.0]])
    np.testing.assert_allclose(pool_chunks(scores, index, 2, how="max"), [[5.0, 5.0], [4.0, -1.0]])
    with pytest.raises(ValueError, match="at least one row"):
        pool_chunks(scores, index, 3)
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_chunks(scores, index, 2, how="median")


def test_chunks_then_pool_round_trip(tok):
    texts = [numbers(50), numbers(3), numbers(17, start=100)]
    out = encode_texts(texts, tok, max_length=12, strategy="chunks", stride=4)
    # Score each window by its length; pooled max gives each text's longest window.
    scores = np.array([[len(r)] for r in out["input_ids"]], dtype=float)
    pooled = pool_chunks(scores, out["example_index"], len(texts), how="max")
    assert pooled[:, 0].tolist() == [12.0, 5.0, 12.0]
