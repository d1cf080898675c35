"""Tokenised texts cached on disk by content hash, shared by every grid cell that needs them.

The key covers what decides the ids: the texts, the tokenizer (its serialised form), the
maximum length, the long-text strategy and the stride. Stored as JSON (no pickles), written
atomically, so concurrent cells at worst compute the same entry twice.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

from peft_utils.core.runs import atomic_write_text

# One place for every cell, whatever its working directory (papermill runs in notebooks/).
DEFAULT_DIR = Path(os.environ.get("PEFT_UTILS_CACHE")
                   or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peft_utils"
                   ) / "tokens"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(texts: Sequence[str], tokenizer: Any, max_length: int, strategy: str,
              stride: int) -> str:
    digest = hashlib.sha256()
    for part in (tokenizer_fingerprint(tokenizer), str(max_length), strategy, str(stride)):
        digest.update(part.encode() + b"\0")
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def cached_encode(texts: Sequence[str], tokenizer: Any, max_length: int, strategy: str,
                  stride: int, cache_dir: str | Path | None = DEFAULT_DIR) -> dict[str, list]:
    """`peft_utils.data.encode_texts`, read from the cache when the same inputs were seen."""
    from peft_utils.data import encode_texts

    if cache_dir is None:
        return encode_texts(texts, tokenizer, max_length, strategy=strategy, stride=stride)
    path = Path(cache_dir) / f"{cache_key(texts, tokenizer, max_length, strategy, stride)}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass  # missing or unreadable: recompute and replace
    encoded = encode_texts(texts, tokenizer, max_length, strategy=strategy, stride=stride)
    try:
        atomic_write_text(path, json.dumps(encoded, separators=(",", ":")))
    except OSError:
        pass  # a read-only or full cache must not stop training
    return encoded
