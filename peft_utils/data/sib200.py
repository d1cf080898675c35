"""SIB-200 loader: <root>/<lang_Script>/<split>.tsv with header index_id, category, text.

Plain tab splitting on purpose: the texts contain quotes, which a CSV reader would eat.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from peft_utils.data.errors import DataError
from peft_utils.data.labels import SIB200_LABELS
from peft_utils.data import registry
from peft_utils.data.langs import iso_and_folder
from peft_utils.data.summary import attach, combine
from peft_utils.data.textio import delimiter_hint, numbered_lines, read_text

DATASET = "sib200"
SPLITS = ("train", "dev", "test")
HEADER = ["index_id", "category", "text"]


def label_set(root: Path) -> tuple[str, ...]:
    """root/labels.txt when present (the release ships one), else the seven known topics."""
    path = root / "labels.txt"
    if not path.is_file():
        return SIB200_LABELS
    return tuple(line.strip() for _, line in numbered_lines(read_text(path)))


def load_sib200(root: str | Path, langs: Iterable[str] | None, split: str) -> pd.DataFrame:
    """Columns id (index_id, shared by all languages), lang (ISO), text, labels ([category]).
    `langs`: folder (eng_Latn) or ISO (en) codes; None: every language folder present."""
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(root, "data root not found", fix="run `python -m peft_utils data prepare "
                        "sib200` or point --root at a folder holding eng_Latn/, fra_Latn/, ...")
    table = registry.get(DATASET).languages
    if langs is None:
        langs = [f for f in table if (root / f).is_dir()]
        if not langs:
            raise DataError(root, "no language folder found", fix="expected eng_Latn/, ...")
    allowed = label_set(root)
    frames = []
    for code in dict.fromkeys(langs):
        iso, folder = iso_and_folder(DATASET, code, root)
        frames.append(_load_file(root / folder / f"{split}.tsv", iso, allowed))
    return combine(frames)


def _load_file(path: Path, lang: str, allowed: tuple[str, ...]) -> pd.DataFrame:
    lines = numbered_lines(read_text(path))
    header_ln, header = lines[0]
    if [h.strip() for h in header.split("\t")] != HEADER:
        raise DataError(path, f"header is {header!r}{delimiter_hint(header)}", line=header_ln,
                        fix="the first line must be index_id<TAB>category<TAB>text")
    if len(lines) == 1:
        raise DataError(path, "no rows after the header", line=header_ln + 1,
                        fix="restore the file from the release")
    data, first_seen = [], {}
    for ln, line in lines[1:]:
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(path, f"expected 3 tab-separated fields, found {len(fields)}"
                            f"{delimiter_hint(line)}", line=ln,
                            fix="write each row as index_id<TAB>category<TAB>text")
        idx, category, text = (f.strip() for f in fields)
        if category not in allowed:
            raise DataError(path, f"unknown label {category!r}", line=ln,
                            fix=f"labels are: {', '.join(allowed)}")
        if not idx or not text:
            raise DataError(path, "empty index_id or text", line=ln, fix="fill in the row")
        if idx in first_seen:
            raise DataError(path, f"duplicate index_id {idx} (first on line {first_seen[idx]})",
                            line=ln, fix="keep one row per index_id")
        first_seen[idx] = ln
        data.append({"id": idx, "lang": lang, "text": text, "labels": [category], "gold": True})
    df = pd.DataFrame(data, columns=["id", "lang", "text", "labels", "gold"])
    return attach(df, source=[path])


# ---- the registry's hooks ---------------------------------------------------------------
def load_split(root, split, langs, subtask, strict):
    return load_sib200(root, langs, split)


def split_path(root: Path, split: str, folder: str, subtask) -> Path:
    return root / folder / f"{split}.tsv"
