"""Your own parallel data for the MT study, without code: one table and a data card.

A folder holds one CSV, TSV, JSONL or Parquet table, one row per aligned sentence pair, and a
card `dataset.yaml` beside it::

    name: legal-de          # required: names the runs (legal-de-en-de-lora-...) and reports
    # file: pairs.tsv       optional: the table (default: the one table file in the folder)
    src: source             # the source text column (default source)
    tgt: target             # the target text column (default target)
    src_lang: src_lang      # the source language column, ISO 639-1 codes (default src_lang)
    tgt_lang: tgt_lang      # the target language column (default tgt_lang)
    doc: doc                # optional: the document of each row (default: the column doc
                            #   when the table has one); the split keeps documents whole;
                            #   without it, each row is its own document
    # languages: {deu: de}  optional: the table's own codes -> ISO 639-1
    # title: ..., source: ...   optional: a title, and where the data come from

Then `--set dataset=parallel-table --set data_root=FOLDER` trains an MT run on one of its
pairs (`src_lang`, `tgt_lang`). The whole table is checked when it is read: every problem
(a missing column, an empty text, document or language cell, an unknown language code, a
row whose source and target language are the same) is a DataError naming the file, the line
(row, for Parquet), the column and what to do; no row is ever left out silently.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pandas as pd

from peft_utils.data.errors import DataError
from peft_utils.data.parallel import ParallelDataSet
from peft_utils.data.table import CARD, FORMATS, _cell, _where, checked_card, read_rows

NAME = "parallel-table"
_KEYS = {"name", "title", "source", "file", "src", "tgt", "src_lang", "tgt_lang", "doc",
         "languages"}
_DEFAULTS = {"src": "source", "tgt": "target", "src_lang": "src_lang", "tgt_lang": "tgt_lang"}
_ISO = re.compile(r"^[a-z]{2}$")


# ---- the card -------------------------------------------------------------------------------
def read_card(root: str | Path) -> dict[str, Any]:
    """The data card, checked: known keys, a name, a languages mapping of ISO codes."""
    path = Path(root) / CARD
    if not Path(root).is_dir():
        raise DataError(root, "parallel table folder not found",
                        fix="set data_root to the folder holding dataset.yaml and the table")
    card = checked_card(path, _KEYS, "write dataset.yaml beside the table, naming at least "
                        "`name:`; see docs/mt.md", "legal-de")
    mapping = card.get("languages") or {}
    if not isinstance(mapping, dict) or not all(_ISO.match(str(v)) for v in mapping.values()):
        raise DataError(path, "`languages:` must map the table's codes to ISO 639-1 codes",
                        fix="e.g. languages: {deu: de, eng: en}")
    return card


def columns(card: dict, present: set[str]) -> dict[str, str]:
    """role -> column: src, tgt, src_lang, tgt_lang, and doc when there is one."""
    out = {role: str(card.get(role) or default) for role, default in _DEFAULTS.items()}
    if card.get("doc"):
        out["doc"] = str(card["doc"])
    elif "doc" in present:
        out["doc"] = "doc"
    return out


def table_file(root: str | Path, card: dict) -> Path:
    """The table: `file:` of the card, else the one table file in the folder."""
    root = Path(root)
    if card.get("file"):
        path = root / str(card["file"])
        if not path.is_file():
            raise DataError(path, "file not found", fix="correct file: in dataset.yaml")
        return path
    found = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DataError(root, f"{len(found)} table files ({listed}); a parallel table is one "
                        "file",
                        fix="keep one .csv, .tsv, .jsonl or .parquet file, or name it with "
                            "file: in dataset.yaml")
    return found[0]


# ---- rows ------------------------------------------------------------------------------------
def _iso(code: str, mapping: dict, where, column: str) -> str:
    path, line, row = where
    if code in mapping:
        return str(mapping[code])
    if _ISO.match(code):
        return code
    raise DataError(path, f"{row}unknown language {code!r} in column {column!r}", line=line,
                    fix="write ISO 639-1 codes (de, fr, ...) or map your codes to them under "
                        "languages: in dataset.yaml")


def read_pairs(root: str | Path, card: dict) -> pd.DataFrame:
    """Every row of the table, checked: line, doc, src_lang, tgt_lang (ISO), src, tgt."""
    path = table_file(root, card)
    rows = read_rows(path)
    if not rows:
        raise DataError(path, "no rows", fix="write a header line and one row per sentence pair")
    present = set(rows[0][1])
    cols = columns(card, present)
    for role, column in cols.items():
        if column not in present:
            raise DataError(path, f"no column {column!r} (the {role} column; the file has "
                            f"{', '.join(sorted(present)) or 'no columns'})", line=1,
                            fix=f"add it, or name the right column in dataset.yaml ({role}: ...)")
    mapping = {str(k): str(v) for k, v in (card.get("languages") or {}).items()}
    data = []
    for ln, row in rows:
        where = _where(path, ln)
        item = {"line": ln}
        for role, column in cols.items():
            item[role] = _cell(row.get(column))
            if not item[role]:
                raise DataError(where[0], f"{where[2]}empty {column!r}", line=where[1],
                                fix="fill in the cell or remove the row")
        for role in ("src_lang", "tgt_lang"):
            item[role] = _iso(item[role], mapping, where, cols[role])
        if item["src_lang"] == item["tgt_lang"]:
            raise DataError(where[0], f"{where[2]}source and target language are both "
                            f"{item['src_lang']!r}", line=where[1],
                            fix=f"correct {cols['src_lang']!r} or {cols['tgt_lang']!r}")
        item.setdefault("doc", f"line {ln}")
        data.append(item)
    frame = pd.DataFrame(data, columns=["line", "doc", "src_lang", "tgt_lang", "src", "tgt"])
    frame.attrs.update(source=[str(path)], documents=str(path), doc_column=cols.get("doc"))
    return frame


# ---- the registry entry -------------------------------------------------------------------
def parallel_table_entry(root: str | Path) -> ParallelDataSet:
    """The registry entry of the parallel table under `root`, from its card and its table."""
    root = Path(root)
    card = read_card(root)
    path = table_file(root, card)
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (root / CARD, path))
    return _entry(str(root), str(path), stamp)


@functools.lru_cache(maxsize=8)
def _entry(root_str: str, path_str: str, stamp: tuple) -> ParallelDataSet:
    root = Path(root_str)
    card = read_card(root)
    frame = read_pairs(root, card)
    mapping = {str(k): str(v) for k, v in (card.get("languages") or {}).items()}
    isos = list(dict.fromkeys([*frame["src_lang"], *frame["tgt_lang"]]))
    languages = {code: iso for code, iso in mapping.items() if iso in isos}
    languages.update({iso: iso for iso in isos if iso not in languages.values()})
    return ParallelDataSet(
        name=NAME, title=str(card.get("title") or card["name"]), languages=languages,
        source_langs=tuple(dict.fromkeys(frame["src_lang"])),
        loader="peft_utils.data.parallel_table:load_pair",
        split="document" if frame.attrs["doc_column"] else "line",
        pairs=tuple(dict.fromkeys(zip(frame["src_lang"], frame["tgt_lang"]))),
        source=str(card.get("source", root)), identity={"name": str(card["name"]), "card": card})


# ---- the registry's hook --------------------------------------------------------------------
def load_pair(root, tgt_lang: str, src_lang: str) -> pd.DataFrame:
    """The rows of one pair (line, doc, src, tgt): the table's rows whose languages are
    (src_lang, tgt_lang), in file order."""
    entry = parallel_table_entry(root)
    problem = entry.pair_problem(src_lang, tgt_lang)
    card = entry.identity["card"]
    path = table_file(root, card)
    if problem:
        raise DataError(path, problem, fix="pick a pair of the table (src_lang, tgt_lang)")
    src, tgt = entry.to_iso(src_lang), entry.to_iso(tgt_lang)
    frame = read_pairs(root, card)
    attrs = dict(frame.attrs)
    frame = frame[(frame["src_lang"] == src) & (frame["tgt_lang"] == tgt)]
    frame = frame[["line", "doc", "src", "tgt"]].reset_index(drop=True)
    frame.attrs.update(attrs)
    return frame
