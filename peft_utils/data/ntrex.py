"""NTREX-128 (the MT study's built-in parallel data set): line-aligned source and references.

    <root>/newstest2019-src.eng.txt         English source, one sentence per line
    <root>/newstest2019-ref.<code>.txt      the reference translation of each line
    <root>/DOCUMENT_IDS.tsv                 the document of each line (first column)

The file codes (<code>) are the registry entry's `languages`. English is NTREX's only source
text; any other source language reads that language's reference as the source side.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from peft_utils.data import registry
from peft_utils.data.errors import DataError
from peft_utils.data.textio import read_text

DATASET = "ntrex"
SOURCE = "newstest2019-src.{code}.txt"
REFERENCE = "newstest2019-ref.{code}.txt"
DOCUMENTS = "DOCUMENT_IDS.tsv"
_PREPARE = f"python -m peft_utils data prepare {DATASET}"


def _lines(path: Path) -> list[str]:
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()   # the final newline ends the last line, it does not start a new one
    return lines


def file_of(root: str | Path, iso: str) -> Path:
    """The file holding language `iso`'s text: the source for English, else a reference."""
    entry = registry.get_parallel(DATASET)
    template = SOURCE if iso in entry.source_langs else REFERENCE
    return Path(root) / template.format(code=entry.to_folder(iso))


def _file(root: Path, iso: str, role: str) -> Path:
    path = file_of(root, iso)
    if not path.is_file():
        present = sorted(p.name for p in root.glob("newstest2019-*.txt"))
        raise DataError(path, f"no {role} file for {iso}",
                        fix=f"prepare NTREX with `{_PREPARE}`; "
                            f"files present: {', '.join(present) or 'none'}")
    return path


def load_ntrex(root: str | Path, tgt_lang: str, src_lang: str = "en") -> pd.DataFrame:
    """One row per line: line (1-based), doc, src, tgt (the registry entry's loader)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "NTREX folder not found", fix=f"run `{_PREPARE}` or set data_root")
    entry = registry.get_parallel(DATASET)
    try:
        src_iso, tgt_iso = entry.to_iso(src_lang), entry.to_iso(tgt_lang)
    except ValueError as err:
        raise DataError(root, str(err)) from None
    src_path = _file(root, src_iso, "source")
    tgt_path = _file(root, tgt_iso, "reference")
    docs_path = root / DOCUMENTS
    if not docs_path.is_file():
        raise DataError(docs_path, "document ids not found",
                        fix="the split is by document and needs DOCUMENT_IDS.tsv from NTREX-128")
    src, tgt = _lines(src_path), _lines(tgt_path)
    docs = [line.split("\t")[0].strip() for line in _lines(docs_path)]
    for path, lines in ((tgt_path, tgt), (docs_path, docs)):
        if len(lines) != len(src):
            raise DataError(path, f"{len(lines)} lines but {src_path.name} has {len(src)}",
                            fix=f"NTREX files are line-aligned; restore them with `{_PREPARE}`")
    for path, lines in ((src_path, src), (tgt_path, tgt), (docs_path, docs)):
        empty = next((i for i, line in enumerate(lines, 1) if not line.strip()), None)
        if empty is not None:
            raise DataError(path, "empty line", line=empty,
                            fix="every line must hold a sentence (or document id)")
    frame = pd.DataFrame({"line": range(1, len(src) + 1), "doc": docs,
                          "src": [s.strip() for s in src], "tgt": [t.strip() for t in tgt]})
    frame.attrs["source"] = [str(src_path), str(tgt_path), str(docs_path)]
    frame.attrs["documents"] = DOCUMENTS
    return frame
