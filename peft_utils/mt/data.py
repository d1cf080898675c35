"""The MT study's data: one language pair of a registered parallel data set, split by
document.

The data set's registry entry (peft_utils.data.registry: `get_parallel`; NTREX-128 is the
built-in one, a user's table is `parallel-table`, other packages add entries through the
`peft_utils.datasets` entry point group) names the loader, which returns one row per aligned
line (line, doc, src, tgt), and the split rule. Sentences of one news story share
vocabulary, names and topic, so a line-level split would leak test content into training;
every split here keeps each document whole. The split depends only on the document ids and
`split_seed`, so for a multi-way parallel set (NTREX) it is the same for every language pair
and every test set is the same English source.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from peft_utils.data import registry
from peft_utils.data.errors import DataError
from peft_utils.data.ntrex import DATASET as NTREX
from peft_utils.data.ntrex import load_ntrex as _load_ntrex
from peft_utils.mt.langs import to_iso

SPLITS = ("train", "dev", "test")


def load_ntrex(root: str | Path, tgt_lang: str, src_lang: str = "en") -> pd.DataFrame:
    """One row per line of NTREX-128 (line, doc, src, tgt); the languages in any spelling
    the MT study accepts (de, deu, deu_Latn, de_DE)."""
    return _load_ntrex(root, to_iso(tgt_lang), to_iso(src_lang))


def load_pair(root: str | Path, tgt_lang: str, src_lang: str = "en",
              dataset: str = NTREX) -> pd.DataFrame:
    """One pair's aligned lines (line, doc, src, tgt) from the registry entry's loader, with
    the entry's split rule applied to the doc column."""
    entry = registry.get_parallel(dataset, root)
    frame = entry.load(root, to_iso(tgt_lang), to_iso(src_lang))
    if entry.split == "line":   # every line its own document
        attrs = dict(frame.attrs)
        frame = frame.assign(doc=[f"line {n}" for n in frame["line"]])
        frame.attrs.update(attrs)
    return frame


def _documents(frame: pd.DataFrame) -> str:
    """Where a frame's documents come from, for errors about them."""
    return str(frame.attrs.get("documents") or "the documents")


def _doc_order(docs: list[str], seed: int, salt: str) -> list[str]:
    # A hash, not random.shuffle: the order must not depend on the Python version or on
    # which other documents exist.
    return sorted(docs, key=lambda d: hashlib.sha256(f"{salt}:{seed}:{d}".encode()).hexdigest())


def split_documents(frame: pd.DataFrame, dev_fraction: float = 0.05,
                    test_fraction: float = 0.15, seed: int = 0) -> dict[str, str]:
    """document -> split. Documents in hashed order fill test, then dev, up to their share
    of the sentences (each at least one document); the rest is train."""
    sizes = frame.groupby("doc", sort=False).size()
    order = _doc_order(list(sizes.index), seed, "split")
    total = int(sizes.sum())
    if len(order) < 3:
        raise DataError(_documents(frame), f"only {len(order)} document(s): a document-level "
                        "train/dev/test split needs at least 3")
    assignment: dict[str, str] = {}
    position = 0
    for split, share in (("test", test_fraction), ("dev", dev_fraction)):
        taken = 0
        while position < len(order) - 1 and (taken == 0 or taken < share * total):
            assignment[order[position]] = split
            taken += int(sizes[order[position]])
            position += 1
    for doc in order[position:]:
        assignment[doc] = "train"
    return assignment


def train_subset(train: pd.DataFrame, size: int | None, seed: int = 0) -> pd.DataFrame:
    """The first `size` training sentences in a fixed document order: whole documents, the
    last one cut, so smaller sizes are subsets of larger ones (a nested data-size sweep)."""
    if size is None:
        return train.reset_index(drop=True)
    if size > len(train):
        raise DataError(_documents(train), f"train_size {size} exceeds the {len(train)} training "
                        "sentences of this split", fix=f"use train_size <= {len(train)} or null")
    order = {doc: i for i, doc in enumerate(_doc_order(list(train["doc"].unique()), seed,
                                                       "subset"))}
    ranked = train.assign(_rank=train["doc"].map(order)).sort_values(["_rank", "line"],
                                                                     kind="stable")
    return ranked.head(size).drop(columns="_rank").sort_values("line").reset_index(drop=True)


def load_splits(root: str | Path, tgt_lang: str, src_lang: str = "en",
                dev_fraction: float = 0.05, test_fraction: float = 0.15, split_seed: int = 0,
                train_size: int | None = None,
                max_eval_samples: int | None = None,
                dataset: str = NTREX) -> dict[str, pd.DataFrame]:
    """train/dev/test frames of one pair of `dataset` (columns line, doc, src, tgt)."""
    frame = load_pair(root, tgt_lang, src_lang, dataset)
    assignment = split_documents(frame, dev_fraction, test_fraction, split_seed)
    frame = frame.assign(split=frame["doc"].map(assignment))
    out = {split: frame[frame["split"] == split].drop(columns="split").reset_index(drop=True)
           for split in SPLITS}
    out["train"] = train_subset(out["train"], train_size, split_seed)
    if max_eval_samples is not None:
        for split in ("dev", "test"):   # whole documents first, as for the training subset
            out[split] = train_subset(out[split], min(max_eval_samples, len(out[split])),
                                      split_seed)
    return out


def split_summary(splits: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    return {name: {"sentences": int(len(frame)), "documents": int(frame["doc"].nunique())}
            for name, frame in splits.items()}
