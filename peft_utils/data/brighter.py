"""BRIGHTER (SemEval-2025 Task 11, track A) loader: <root>/<split>/<code>.csv.

Columns id, text, then one 0/1 column per emotion. Texts hold commas, quotes and newlines,
so the csv module parses them; errors give the line a record starts on.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

import pandas as pd

from peft_utils.data.errors import DataError
from peft_utils.data.labels import EMOTIONS
from peft_utils.data import registry
from peft_utils.data.langs import iso_and_folder
from peft_utils.data.summary import attach, combine
from peft_utils.data.textio import read_text

DATASET = "brighter"
SPLITS = ("train", "dev", "test")


def load_brighter(root: str | Path, langs: Iterable[str] | None, split: str) -> pd.DataFrame:
    """Columns id, lang (ISO), text, labels (names of the emotion columns set to 1).

    A file whose label cells are all empty (upstream's English test file) loads as
    unlabelled: labels [] and the summary counts its rows as unlabelled, not as "no emotion".
    `langs`: folder (eng) or ISO (en) codes; None: every language file of the split.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(split_dir, "split folder not found", fix="run `python -m peft_utils data "
                        "prepare brighter` or point --root at a folder holding train/, dev/, test/")
    table = registry.get(DATASET).languages
    if langs is None:
        langs = [c for c in table if (split_dir / f"{c}.csv").is_file()]
        if not langs:
            raise DataError(split_dir, "no <lang>.csv file found", fix="expected eng.csv, ...")
    frames = []
    for code in dict.fromkeys(langs):
        iso, folder = iso_and_folder(DATASET, code, root)
        frames.append(_load_file(split_dir / f"{folder}.csv", iso))
    return combine(frames)


def _records(text: str):
    """(first line of the record, fields) per CSV record."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for fields in reader:
        yield start, fields
        start = reader.line_num + 1


def _load_file(path: Path, lang: str) -> pd.DataFrame:
    csv.field_size_limit(1 << 24)
    try:
        records = [r for r in _records(read_text(path)) if r[1]]
    except csv.Error as err:
        raise DataError(path, f"CSV parse error: {err}", fix="quote fields that hold commas, "
                        "quotes or newlines") from None
    (_, header), rows = records[0], records[1:]
    header = [h.strip() for h in header]
    emotions = header[2:]
    if header[:2] != ["id", "text"] or not emotions or set(emotions) - set(EMOTIONS):
        raise DataError(path, f"header is {','.join(header)!r}", line=1,
                        fix="expected id,text followed by emotion columns from "
                            f"{', '.join(EMOTIONS)}")
    if not rows:
        raise DataError(path, "no rows after the header", line=2, fix="restore the file")
    cells = [c.strip() for _, fields in rows for c in fields[2:]]
    gold = any(cells)  # all cells empty: an unlabelled file, not a file of "no emotion" rows
    data, first_seen = [], {}
    for ln, fields in rows:
        if len(fields) != len(header):
            raise DataError(path, f"expected {len(header)} comma-separated fields, found "
                            f"{len(fields)}", line=ln, fix="quote texts that contain commas")
        row_id, text, values = fields[0].strip(), fields[1], [v.strip() for v in fields[2:]]
        if not row_id or not text.strip():
            raise DataError(path, "empty id or text", line=ln, fix="fill in the row or remove it")
        if gold:
            for name, value in zip(emotions, values):
                if value not in ("0", "1"):
                    raise DataError(path, f"{name} is {value!r}, expected 0 or 1", line=ln,
                                    fix="label cells are 0 or 1 (or all empty for unlabelled "
                                        "files)")
        if row_id in first_seen:
            raise DataError(path, f"duplicate id {row_id} (first on line {first_seen[row_id]})",
                            line=ln, fix="keep one row per id")
        first_seen[row_id] = ln
        labels = [e for e in EMOTIONS if e in emotions and values[emotions.index(e)] == "1"]
        data.append({"id": row_id, "lang": lang, "text": text, "labels": labels, "gold": gold})
    df = pd.DataFrame(data, columns=["id", "lang", "text", "labels", "gold"])
    return attach(df, source=[path])


# ---- the registry's hooks ---------------------------------------------------------------
def load_split(root, split, langs, subtask, strict):
    return load_brighter(root, langs, split)


def split_path(root: Path, split: str, folder: str, subtask) -> Path:
    return root / split / f"{folder}.csv"
