"""NTREX-128 for the MT study: line-aligned source and references, split by document.

    <root>/newstest2019-src.eng.txt         English source, one sentence per line
    <root>/newstest2019-ref.<lang>.txt      the reference translation of each line
    <root>/DOCUMENT_IDS.tsv                 the document of each line (first column)

Sentences of one news story share vocabulary, names and topic, so a line-level split would
leak test content into training; every split here keeps each document whole. The split
depends only on the document ids and `split_seed`, so it is the same for every language pair
and every test set is the same English source.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from peft_utils.data.errors import DataError
from peft_utils.data.textio import read_text
from peft_utils.mt.langs import LANGS, to_iso

SOURCE = "newstest2019-src.{code}.txt"
REFERENCE = "newstest2019-ref.{code}.txt"
DOCUMENTS = "DOCUMENT_IDS.tsv"
SPLITS = ("train", "dev", "test")


def _lines(path: Path) -> list[str]:
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()   # the final newline ends the last line, it does not start a new one
    return lines


def _file(root: Path, template: str, iso: str, role: str) -> Path:
    path = root / template.format(code=LANGS[iso].ntrex)
    if not path.is_file():
        present = sorted(p.name for p in root.glob("newstest2019-*.txt"))
        raise DataError(path, f"no {role} file for {iso}",
                        fix=f"prepare NTREX with `python -m peft_utils data prepare ntrex`; "
                            f"files present: {', '.join(present) or 'none'}")
    return path


def load_ntrex(root: str | Path, tgt_lang: str, src_lang: str = "en") -> pd.DataFrame:
    """One row per line: line (1-based), doc, src, tgt. English is NTREX's only source
    text; any other `src_lang` reads that language's reference as the source side."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "NTREX folder not found",
                        fix="run `python -m peft_utils data prepare ntrex` or set data_root")
    src_iso, tgt_iso = to_iso(src_lang), to_iso(tgt_lang)
    src_path = _file(root, SOURCE if src_iso == "en" else REFERENCE, src_iso, "source")
    tgt_path = _file(root, SOURCE if tgt_iso == "en" else REFERENCE, tgt_iso, "reference")
    docs_path = root / DOCUMENTS
    if not docs_path.is_file():
        raise DataError(docs_path, "document ids not found",
                        fix="the split is by document and needs DOCUMENT_IDS.tsv from NTREX-128")
    src, tgt = _lines(src_path), _lines(tgt_path)
    docs = [line.split("\t")[0].strip() for line in _lines(docs_path)]
    for path, lines in ((tgt_path, tgt), (docs_path, docs)):
        if len(lines) != len(src):
            raise DataError(path, f"{len(lines)} lines but {src_path.name} has {len(src)}",
                            fix="NTREX files are line-aligned; restore them with "
                                "`python -m peft_utils data prepare ntrex`")
    for path, lines in ((src_path, src), (tgt_path, tgt), (docs_path, docs)):
        empty = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
        if empty is not None:
            raise DataError(path, "empty line", line=empty,
                            fix="every line must hold a sentence (or document id)")
    frame = pd.DataFrame({"line": range(1, len(src) + 1), "doc": docs,
                          "src": [s.strip() for s in src], "tgt": [t.strip() for t in tgt]})
    frame.attrs["source"] = [str(src_path), str(tgt_path), str(docs_path)]
    return frame


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
        raise DataError(DOCUMENTS, f"only {len(order)} document(s): a document-level "
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
        raise DataError(DOCUMENTS, f"train_size {size} exceeds the {len(train)} training "
                        "sentences of this split", fix=f"use train_size <= {len(train)} or null")
    order = {doc: i for i, doc in enumerate(_doc_order(list(train["doc"].unique()), seed,
                                                       "subset"))}
    ranked = train.assign(_rank=train["doc"].map(order)).sort_values(["_rank", "line"],
                                                                     kind="stable")
    return ranked.head(size).drop(columns="_rank").sort_values("line").reset_index(drop=True)


def load_splits(root: str | Path, tgt_lang: str, src_lang: str = "en",
                dev_fraction: float = 0.05, test_fraction: float = 0.15, split_seed: int = 0,
                train_size: int | None = None,
                max_eval_samples: int | None = None) -> dict[str, pd.DataFrame]:
    """train/dev/test frames of one pair (columns line, doc, src, tgt)."""
    frame = load_ntrex(root, tgt_lang, src_lang)
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
