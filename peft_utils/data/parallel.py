"""What a registry entry says about a parallel (MT) data set: line-aligned source and target
text in several languages, read by the MT study (peft_utils.data.registry holds the entries).

A loader, named as "module:function" and imported when used, takes (root, tgt_lang,
src_lang), ISO codes, and returns one row per aligned line with the columns

    line   the line's number in the data (1-based; the row's file line for a table)
    doc    the document the line belongs to (the unit of the train/dev/test split)
    src    the source text
    tgt    the reference translation

and `attrs["source"]` (the files read) and `attrs["documents"]` (where the documents come
from, named in errors about them). Anything wrong is a DataError naming the file, the line
and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from peft_utils.data.entry import LanguageCodes, _resolve

COLUMNS = ("line", "doc", "src", "tgt")
# How the MT study cuts train/dev/test (peft_utils.mt.data implements each rule).
SPLIT_RULES = {
    "document": "whole documents: the lines of one document stay in one split",
    "line": "every line is its own document (data without document ids)",
}


@dataclass(frozen=True)
class ParallelDataSet(LanguageCodes):
    CODE_KIND = "file"
    name: str
    title: str
    languages: dict[str, str]           # file/folder code -> ISO 639-1 code
    source_langs: tuple[str, ...]       # ISO codes of the text written first (NTREX: en)
    loader: str                         # "module:function"(root, tgt_lang, src_lang) -> frame
    split: str = "document"             # a key of SPLIT_RULES
    # (src, tgt) ISO pairs the data hold; None: every two languages (a multi-way parallel
    # set, where one language's text is the source of another's)
    pairs: tuple[tuple[str, str], ...] | None = None
    prepare: str | None = None          # the manifest `data prepare NAME` fetches
    source: str = ""                    # where the data come from (citation, URL)
    identity: dict[str, Any] = field(default_factory=dict)  # enters the run ids (tables)

    def __post_init__(self):
        if self.split not in SPLIT_RULES:
            raise ValueError(f"data set {self.name}: split {self.split!r} is not one of "
                             f"{', '.join(SPLIT_RULES)}")

    @property
    def run_name(self) -> str:
        """How run ids name the data set: a table's card name, else the entry's name."""
        return str(self.identity.get("name", self.name))

    # ---- languages (LanguageCodes: iso_codes, to_iso, to_folder) -------------------------
    def pair_problem(self, src_lang: str, tgt_lang: str) -> str | None:
        """Why the data set has no (src, tgt) pair (ISO codes); None when it has it."""
        for code in (src_lang, tgt_lang):
            try:
                self.to_iso(code)
            except ValueError as err:
                return str(err)
        pair = (self.to_iso(src_lang), self.to_iso(tgt_lang))
        if self.pairs is not None and pair not in self.pairs:
            return (f"{self.name} has no {pair[0]}-{pair[1]} rows; its pairs are "
                    f"{', '.join(f'{s}-{t}' for s, t in self.pairs)}")
        return None

    # ---- on disk --------------------------------------------------------------------------
    def load(self, root: str | Path, tgt_lang: str, src_lang: str) -> pd.DataFrame:
        """One pair's aligned lines (line, doc, src, tgt), as the loader returns them."""
        frame = _resolve(self.loader)(root, tgt_lang, src_lang)
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"the loader of {self.name} ({self.loader}) returned no "
                             f"{', '.join(missing)} column(s); it must return {', '.join(COLUMNS)}")
        return frame
