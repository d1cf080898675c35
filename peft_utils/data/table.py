"""Your own data set without code: train/dev/test tables and a data card (`dataset.yaml`).

A folder holds the splits as CSV, TSV, JSONL or Parquet files (train.csv, dev.csv, test.csv,
or one file with a split column) and a card beside them::

    name: reviews           # required: names the task in run ids and reports
    text: text              # the text column (default text)
    label: stars            # multiclass: the label column; or, for multilabel:
    # labels: emotions      #   a list (JSONL, Parquet) or a string split on `delimiter`
    # delimiter: "|"
    language: lang          # the language column, ISO 639-1 codes (default lang)
    id: review_id           # optional: row ids (default: the row's line in its file)
    # label_set: [neg, neu, pos]   optional: the labels in head order (default: sorted,
    #                              as seen in train)
    # zero_shot: [sw]       optional: languages evaluated but never trained on
    # translation_of: en_id optional: the id of the English row a row translates, which
    #                       makes en+translations possible
    # split: split          optional: one file (`file:`) with a train/dev/test column
    # metric: macro_f1      optional: macro_f1 (default) or micro_f1

Then `--set dataset=table --set data_root=FOLDER` trains on it. Every problem is a DataError
naming the file, the line (row, for Parquet), the column and what to do; a split file without
a label column, or whose label cells are all empty, loads as unlabelled (predicted, not
scored), like the built-in test splits without labels.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import yaml

from peft_utils.data.errors import DataError
from peft_utils.data.entry import UNITS, DataSet, Task
from peft_utils.data.summary import attach, combine
from peft_utils.data.textio import read_text

CARD = "dataset.yaml"
SPLITS = ("train", "dev", "test")
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
_KEYS = {"name", "title", "text", "label", "labels", "delimiter", "language", "id",
         "label_set", "zero_shot", "translation_of", "split", "file", "files", "metric", "unit",
         "source"}
_METRICS = ("macro_f1", "micro_f1")


# ---- the card -------------------------------------------------------------------------------
def read_card(root: str | Path) -> dict[str, Any]:
    """The data card, checked: known keys, a name, one of label/labels."""
    path = Path(root) / CARD
    card = checked_card(path, _KEYS, "write dataset.yaml beside the tables, naming at least "
                        "`name:` and the `label:` (or `labels:`) column; see docs/data.md",
                        "reviews")
    if ("label" in card) == ("labels" in card):
        raise DataError(path, "name exactly one of `label:` (multiclass) and `labels:` "
                        "(multilabel)", fix="e.g. label: stars")
    if card.get("metric", "macro_f1") not in _METRICS:
        raise DataError(path, f"metric {card['metric']!r} is not one of {', '.join(_METRICS)}",
                        fix="use macro_f1 or micro_f1")
    if card.get("unit", "text") not in UNITS:
        raise DataError(path, f"unit {card['unit']!r} is not one of {', '.join(UNITS)}",
                        fix=f"use one of {', '.join(UNITS)}")
    return card


def checked_card(path: Path, keys: set[str], missing_fix: str, example: str) -> dict[str, Any]:
    """What every data card must be (a table's, a parallel table's): a YAML mapping of known
    `keys` with a `name:` that is one word (it names runs and reports)."""
    if not path.is_file():
        raise DataError(path, "no data card", fix=missing_fix)
    try:
        card = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as err:
        raise DataError(path, f"not valid YAML: {err}".splitlines()[0],
                        fix="fix the YAML syntax") from None
    if not isinstance(card, dict):
        raise DataError(path, "the card must be a mapping of keys to values",
                        fix="write key: value lines")
    unknown = sorted(set(card) - keys)
    if unknown:
        raise DataError(path, f"unknown key(s) {', '.join(unknown)}",
                        fix=f"use {', '.join(sorted(keys))}")
    if not card.get("name") or not str(card["name"]).replace("-", "").replace("_", "").isalnum():
        raise DataError(path, "`name:` is missing or not a word (letters, digits, - and _)",
                        fix=f"name the data set, e.g. name: {example}; it names runs and reports")
    return card


def _column(card: dict, key: str, default: str | None = None) -> str | None:
    return str(card[key]) if card.get(key) is not None else default


# ---- reading files ----------------------------------------------------------------------------
def split_files(root: str | Path, card: dict) -> dict[str, Path]:
    """split -> the file that holds it (the same file for every split with `split:`)."""
    root = Path(root)
    if card.get("split"):
        single = root / str(card.get("file") or "")
        if not card.get("file") or not single.is_file():
            raise DataError(root / CARD, f"`split: {card['split']}` needs `file:` naming an "
                            "existing table", fix="e.g. file: data.csv")
        return {split: single for split in SPLITS}
    named = card.get("files") or {}
    found = {}
    for split in SPLITS:
        if split in named:
            found[split] = root / str(named[split])
            continue
        candidates = [root / f"{split}{ext}" for ext in FORMATS if (root / f"{split}{ext}").is_file()]
        if len(candidates) > 1:
            raise DataError(root, f"several {split} files: {', '.join(p.name for p in candidates)}",
                            fix="keep one, or name it under files: in dataset.yaml")
        if candidates:
            found[split] = candidates[0]
    if "train" not in found:
        raise DataError(root, "no train file (train.csv, train.tsv, train.jsonl or "
                        "train.parquet)", fix="add one, or name it under files: in dataset.yaml")
    return found


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, row) per record; the line is the row number for Parquet. Cached per file
    version, since every language and split of a run reads the same files."""
    if not path.is_file():
        raise DataError(path, "file not found", fix="restore it or correct files: in dataset.yaml")
    stat = path.stat()
    return _read_rows(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_rows(path_str: str, mtime_ns: int, size: int) -> list[tuple[int, dict[str, Any]]]:
    path = Path(path_str)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(path, f"unknown file type {path.suffix!r}",
                        fix="use .csv, .tsv, .jsonl or .parquet")
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
            return [(i + 1, row) for i, row in enumerate(frame.to_dict("records"))]
        text = read_text(path)
        return _jsonl(path, text) if kind == "jsonl" else _delimited(path, text, kind)
    except DataError:
        raise
    except Exception as err:   # noqa: BLE001 - any parser's failure is an unreadable file
        raise DataError(path, f"cannot read as {kind}: {err}".splitlines()[0],
                        fix=f"check that the file is valid {kind}") from None


def _delimited(path: Path, text: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
    """Rows of a CSV/TSV, each with the line its record starts on (texts may hold newlines)."""
    csv.field_size_limit(1 << 24)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if kind == "tsv" else ",")
    records, start = [], 1
    try:
        for fields in reader:
            records.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(path, f"{kind.upper()} parse error: {err}", line=start,
                        fix="quote fields that hold delimiters, quotes or newlines") from None
    records = [(ln, f) for ln, f in records if f]
    if not records:
        raise DataError(path, "empty file", fix="write a header line and rows")
    (_, header), rows = records[0], records[1:]
    header = [h.strip() for h in header]
    for ln, fields in rows:
        if len(fields) != len(header):
            raise DataError(path, f"{len(fields)} fields where the header has {len(header)}",
                            line=ln, fix="quote fields that hold the delimiter")
    return [(ln, dict(zip(header, fields))) for ln, fields in rows]


def _jsonl(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(path, f"not a JSON object: {err}", line=ln,
                            fix="write one JSON object per line") from None
        if not isinstance(row, dict):
            raise DataError(path, "not a JSON object", line=ln,
                            fix="write one JSON object per line")
        rows.append((ln, row))
    return rows


# ---- rows -> frame -------------------------------------------------------------------------
def _where(path: Path, ln: int) -> tuple[Path, int | None, str]:
    """DataError's location: the line for text files, 'row N' in the message for Parquet."""
    return (path, None, f"row {ln}: ") if path.suffix.lower() == ".parquet" else (path, ln, "")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _labels_of(value: Any, card: dict, path: Path, ln: int) -> list[str]:
    """The labels of one cell: one (label:), a list, or a delimited string (labels:)."""
    if "label" in card:
        return [_cell(value)] if _cell(value) else []
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_cell(v) for v in value if _cell(v)]
    if not _cell(value):
        return []
    if not card.get("delimiter"):
        p, line, row = _where(path, ln)
        raise DataError(p, f"{row}column {card['labels']!r} holds text, not a list",
                        line=line, fix="name the separator in dataset.yaml, e.g. delimiter: '|'")
    return [part.strip() for part in _cell(value).split(str(card["delimiter"])) if part.strip()]


def _require_columns(path: Path, rows, card: dict) -> None:
    present = set(rows[0][1]) if rows else set()
    needed = {"text": _column(card, "text", "text"), "language": _column(card, "language", "lang")}
    for key in ("id", "translation_of"):
        if card.get(key):
            needed[key] = str(card[key])
    if card.get("split"):
        needed["split"] = str(card["split"])
    for key, column in needed.items():
        if column not in present:
            raise DataError(path, f"no column {column!r} (the {key} column; the file has "
                            f"{', '.join(sorted(present)) or 'no columns'})", line=1,
                            fix=f"add it, or name the right column in dataset.yaml ({key}: ...)")


def split_rows(root: str | Path, card: dict, split: str) -> tuple[Path, list] | None:
    """(file, rows) of `split`; None when the data set has no such split."""
    files = split_files(root, card)
    if split not in files:
        return None
    path = files[split]
    rows = read_rows(path)
    _require_columns(path, rows, card)
    if card.get("split"):
        column = str(card["split"])
        for ln, row in rows:
            if _cell(row[column]) not in SPLITS:
                p, line, where = _where(path, ln)
                raise DataError(p, f"{where}split {_cell(row[column])!r} in column {column!r}",
                                line=line, fix="use train, dev or test")
        rows = [(ln, row) for ln, row in rows if _cell(row[column]) == split]
    return path, rows


def frame_of(path: Path, rows: list, card: dict, labels: tuple[str, ...] | None) -> pd.DataFrame:
    """The rows as a loader frame (id, lang, text, labels, gold[, translation_of]),
    checking texts, ids and, when `labels` is given, every label against it."""
    text_col, lang_col = _column(card, "text", "text"), _column(card, "language", "lang")
    label_col = _column(card, "label") or _column(card, "labels")
    id_col, link_col = _column(card, "id"), _column(card, "translation_of")
    gold = _labelled_languages(path, rows, card, label_col, lang_col)
    data, first_seen = [], {}
    for ln, row in rows:
        p, line, where = _where(path, ln)
        row_id = _cell(row[id_col]) if id_col else str(ln)
        text, lang = _cell(row[text_col]), _cell(row[lang_col])
        for column, value in ((text_col, text), (lang_col, lang), (id_col, row_id)):
            if not value:
                raise DataError(p, f"{where}empty {column!r}", line=line,
                                fix="fill in the cell or remove the row")
        if row_id in first_seen:
            raise DataError(p, f"{where}duplicate id {row_id!r} in column {id_col!r} (first "
                            f"on {first_seen[row_id]})", line=line, fix="keep one row per id")
        first_seen[row_id] = f"line {ln}" if line else f"row {ln}"
        found = []
        if lang in gold:
            found = _labels_of(row[label_col], card, path, ln)
            _check_labels(found, labels, card, (p, line, where), label_col)
        item = {"id": row_id, "lang": lang, "text": text, "labels": found, "gold": lang in gold}
        if link_col:
            item["translation_of"] = _cell(row[link_col])
        data.append(item)
    columns = ["id", "lang", "text", "labels", "gold"] + (["translation_of"] if link_col else [])
    return pd.DataFrame(data, columns=columns)


def _labelled_languages(path: Path, rows: list, card: dict, label_col: str,
                        lang_col: str) -> set[str]:
    """The languages whose rows carry labels. A language whose label cells are all empty (or
    a file without the label column) is unlabelled, as when test labels are released for
    some languages only; within a labelled language, every row is read as labelled."""
    if not rows or label_col not in rows[0][1]:
        return set()
    return {_cell(row[lang_col]) for ln, row in rows
            if _labels_of(row[label_col], card, path, ln)}


def _check_labels(found: list[str], labels, card: dict, where, column: str) -> None:
    path, line, row = where
    if "label" in card and not found:
        raise DataError(path, f"{row}empty {column!r} in a labelled file", line=line,
                        fix="give every row its label, or leave the whole column empty for "
                            "unlabelled data")
    outside = [label for label in found if labels is not None and label not in labels]
    if outside:
        raise DataError(path, f"{row}label {outside[0]!r} in column {column!r} is not in the "
                        f"label set ({', '.join(labels)})", line=line,
                        fix="correct the label, or add it to label_set in dataset.yaml")


# ---- the registry entry -------------------------------------------------------------------
def table_entry(root: str | Path) -> DataSet:
    """The registry entry of the table data set under `root`, from its card and its files."""
    root = Path(root)
    card = read_card(root)
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in
                  sorted(set(split_files(root, card).values())))
    return _entry(str(root), (root / CARD).stat().st_mtime_ns, stamp)


@functools.lru_cache(maxsize=8)
def _entry(root_str: str, card_mtime: int, stamp: tuple) -> DataSet:
    root = Path(root_str)
    card = read_card(root)
    train_path, train_rows = split_rows(root, card, "train")
    train = frame_of(train_path, train_rows, card, None)
    labels = _label_set(card, train, train_path)
    languages = _languages(root, card, train)
    multilabel = "labels" in card
    return DataSet(
        name="table", title=str(card.get("title") or card["name"]),
        languages={code: code for code in languages},
        train_langs=tuple(lang for lang in dict.fromkeys(train["lang"])
                          if lang not in _zero_shot(card)),
        zero_shot_langs=tuple(_zero_shot(card)),
        tasks={None: Task(labels, multilabel, str(card.get("metric", "macro_f1")),
                          str(card.get("unit", "text")), title=str(card["name"]))},
        loader="peft_utils.data.table:load_split", layout="peft_utils.data.table:split_path",
        presence="peft_utils.data.table:has_split",
        parallel="column" if card.get("translation_of") else None,
        source=str(card.get("source", root)),
        identity={"name": str(card["name"]), "card": card})


def _zero_shot(card: dict) -> list[str]:
    return [str(code) for code in card.get("zero_shot") or []]


def _label_set(card: dict, train: pd.DataFrame, path: Path) -> tuple[str, ...]:
    if card.get("label_set"):
        declared = tuple(str(x) for x in card["label_set"])
        if len(set(declared)) != len(declared):
            raise DataError(Path(path).parent / CARD, "label_set repeats a label",
                            fix="list each label once")
        return declared
    seen = sorted({label for labels in train["labels"] for label in labels})
    if not seen:
        raise DataError(path, "the train file has no labels", fix="fill in the label column")
    return tuple(seen)


def _languages(root: Path, card: dict, train: pd.DataFrame) -> list[str]:
    """Every language of the data; one with evaluation rows but no training rows must be
    declared zero-shot (a typo in a language code would otherwise pass unnoticed)."""
    trained, zero_shot = list(dict.fromkeys(train["lang"])), _zero_shot(card)
    for lang in zero_shot:
        if lang in trained:
            raise DataError(root / CARD, f"zero-shot language {lang!r} has training rows",
                            fix="remove it from zero_shot, or its rows from the train split")
    languages = trained + [lang for lang in zero_shot if lang not in trained]
    for split in ("dev", "test"):
        found = split_rows(root, card, split)
        if found is None:
            continue
        path, rows = found
        for ln, row in rows:
            lang = _cell(row[_column(card, "language", "lang")])
            if lang not in languages:
                p, line, where = _where(path, ln)
                raise DataError(p, f"{where}language {lang!r} has no training rows", line=line,
                                fix="list it under zero_shot in dataset.yaml, or add its "
                                    "training rows")
    return languages


# ---- the registry's hooks -------------------------------------------------------------------
def load_split(root, split: str, langs: Iterable[str] | None, subtask, strict) -> pd.DataFrame:
    """One split of the table data set under `root`, every row checked against the card."""
    entry = table_entry(root)
    card = entry.identity["card"]   # read and checked by table_entry
    found = split_rows(root, card, split)
    if found is None:
        raise DataError(Path(root), f"no {split} split", fix=f"add {split}.csv (or .tsv, "
                        ".jsonl, .parquet), or name it under files: in dataset.yaml")
    path, rows = found
    frame = frame_of(path, rows, card, entry.task().labels)
    wanted = entry.iso_codes() if langs is None else [entry.to_iso(c) for c in langs]
    parts = [attach(frame[frame["lang"] == lang], source=[path]) for lang in dict.fromkeys(wanted)
             if lang in set(frame["lang"]) or langs is not None]
    return combine(parts)


def split_path(root: Path, split: str, folder: str, subtask) -> Path:
    card = read_card(root)
    return split_files(root, card).get(split, root / f"{split}.csv")


def has_split(root: Path, split: str, folder: str, subtask) -> bool:
    """Whether the split has rows of language `folder` (a table's folder is its code)."""
    card = read_card(root)
    found = split_rows(root, card, split)
    lang_col = _column(card, "language", "lang")
    return found is not None and any(_cell(row[lang_col]) == folder for _, row in found[1])
