"""Texts longer than the model's window: truncation strategies and chunk pooling.

SemEval articles average ~1,157 tokens against a 512-token window, so what is kept matters:

- ``head``: the first tokens (what the paper did).
- ``head+tail``: the first quarter and the last three quarters of the content budget
  (Sun et al., 2019, "How to fine-tune BERT for text classification?": 128 + 382 of 510).
- ``chunks``: overlapping windows over the whole text; a model scores every window and
  :func:`pool_chunks` pools the window scores back to one row per text.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

STRATEGIES = ("head", "head+tail", "chunks")


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The (prefix, suffix) ids the tokenizer's post-processor puts around one sequence.

    Read off a probe encoding rather than assumed, so any single-sequence template works
    (<s> $A </s>, [CLS] $A [SEP], or none)."""
    probe = "a b"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for k in range(len(full) - len(bare) + 1):
        if full[k:k + len(bare)] == bare:
            return list(full[:k]), list(full[k + len(bare):])
    raise ValueError("cannot locate the content tokens inside the tokenizer's special-token "
                     "template; use a tokenizer whose post-processor wraps a single sequence")


def head_tail_split(budget: int) -> tuple[int, int]:
    """Tokens kept from the head and the tail: a quarter (rounded up) and the rest."""
    head = (budget + 3) // 4
    return head, budget - head


def encode_texts(texts: Sequence[str], tokenizer: Any, max_length: int, strategy: str = "head",
                 stride: int = 128) -> dict[str, list]:
    """Tokenise `texts` to at most `max_length` ids per row, special tokens included, no
    padding. Returns input_ids, attention_mask, example_index (the text each row came from;
    range(n) unless strategy is "chunks") and n_tokens (content tokens per text, before any
    truncation, for reporting how much was cut)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown long-text strategy {strategy!r}; use one of "
                         f"{', '.join(STRATEGIES)}")
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room for content after "
                         f"{len(prefix) + len(suffix)} special tokens")
    if strategy == "chunks" and not 0 <= stride < budget:
        raise ValueError(f"stride {stride} must be >= 0 and < {budget} (max_length minus "
                         "special tokens), or windows would not advance")
    texts = list(texts)
    # Fast tokenizers fail on an empty batch (IndexError inside transformers): an empty split
    # is a valid input here (a language or split absent after filtering) and encodes to nothing.
    contents = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] \
        if texts else []
    input_ids, example_index = [], []
    for i, ids in enumerate(contents):
        for window in _windows(list(ids), budget, strategy, stride):
            input_ids.append(prefix + window + suffix)
            example_index.append(i)
    return {"input_ids": input_ids,
            "attention_mask": [[1] * len(row) for row in input_ids],
            "example_index": example_index,
            "n_tokens": [len(ids) for ids in contents]}


def _windows(ids: list[int], budget: int, strategy: str, stride: int) -> list[list[int]]:
    if len(ids) <= budget:
        return [ids]
    if strategy == "head":
        return [ids[:budget]]
    if strategy == "head+tail":
        head, tail = head_tail_split(budget)
        return [ids[:head] + ids[len(ids) - tail:]]
    step = budget - stride
    starts = range(0, len(ids) - stride, step)  # the last window reaches the end
    return [ids[s:s + budget] for s in starts]


def pool_chunks(scores: np.ndarray, example_index: Sequence[int], n_examples: int,
                how: str = "mean") -> np.ndarray:
    """Pool per-window scores [n_rows, C] into per-text scores [n_examples, C] (mean or max
    over each text's windows). Pool logits or probabilities, as the caller prefers."""
    scores = np.asarray(scores, dtype=float)
    index = np.asarray(example_index, dtype=int)
    if scores.ndim != 2 or len(scores) != len(index):
        raise ValueError(f"scores must be [n_rows, C] with n_rows = len(example_index) "
                         f"({len(index)}); got shape {scores.shape}")
    counts = np.bincount(index, minlength=n_examples)
    if len(counts) > n_examples or (counts == 0).any():
        raise ValueError("example_index must give every example 0..n_examples-1 at least one row")
    if how == "mean":
        out = np.zeros((n_examples, scores.shape[1]))
        np.add.at(out, index, scores)
        return out / counts[:, None]
    if how == "max":
        out = np.full((n_examples, scores.shape[1]), -np.inf)
        np.maximum.at(out, index, scores)
        return out
    raise ValueError(f"unknown pooling {how!r}; use mean or max")
