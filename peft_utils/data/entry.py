"""What a registry entry says about a data set (peft_utils.data.registry holds the entries).

Loaders are named as "module:function" and imported when used, so that reading an entry
costs nothing and loaders may import the registry.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from peft_utils.data.errors import DataError

UNITS = ("article", "paragraph", "sentence", "text")
# How the en+translations scenario finds the translations of the English training rows.
PARALLEL = {
    None: "not parallel: the scenario is refused",
    "ids": "the other languages' rows of the same split translate the English row of the same id",
    "folder": "machine translations of the English split in translations_dir, the release layout",
    "column": "rows whose translation_of column names the id of an English row",
}


@dataclass(frozen=True)
class Task:
    """One classification task of a data set."""
    labels: tuple[str, ...]           # in the head's order
    multilabel: bool
    metric: str = "macro_f1"          # the official scorer's ranking metric
    unit: str = "text"                # what one row is (UNITS)
    zero_division: float = 0.0        # F1 of a label with no gold and no prediction
    title: str = ""

    def info(self, name: str) -> dict[str, Any]:
        """What a run record keeps of its task, so reports need neither the data nor the
        registry (a table data set's card may be gone when the report is rendered)."""
        return {"name": name, "labels": list(self.labels), "multilabel": self.multilabel,
                "metric": self.metric, "unit": self.unit, "zero_division": self.zero_division}


class LanguageCodes:
    """A data set's `languages` (code on disk -> ISO 639-1 code) read both ways; a data set
    entry of either study is one."""
    languages: dict[str, str]
    name: str
    CODE_KIND = "folder"   # what the codes on disk name: folders, or files (parallel sets)

    def iso_codes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.languages.values()))

    def to_iso(self, code: str) -> str:
        """A code on disk or an ISO code of this data set -> its ISO code."""
        if code in self.languages:
            return self.languages[code]
        if code in self.languages.values():
            return code
        own = [disk for disk, iso in self.languages.items() if disk != iso]
        raise ValueError(
            f"unknown language {code!r} for {self.name}; use one of "
            f"{', '.join(self.iso_codes())}" + (f" (or the {self.CODE_KIND} codes "
                                               f"{', '.join(own)})" if own else ""))

    def to_folder(self, code: str) -> str:
        """A code on disk or an ISO code -> the code on disk."""
        iso = self.to_iso(code)
        return next(disk for disk, i in self.languages.items() if i == iso)


@dataclass(frozen=True)
class DataSet(LanguageCodes):
    name: str
    title: str
    languages: dict[str, str]           # folder code -> ISO 639-1 code
    train_langs: tuple[str, ...]        # ISO codes with training data in the study's design
    zero_shot_langs: tuple[str, ...]    # evaluated, never trained on
    tasks: dict[int | None, Task]       # key: the subtask number; None for a one-task set
    loader: str                         # "module:function"(root, split, langs, subtask, strict)
    layout: str                         # "module:function"(root, split, folder, subtask) -> Path
    parallel: str | None = None         # a key of PARALLEL
    presence: str | None = None         # "module:function" like layout -> bool; None: exists()
    # parallel "folder": "module:function"(root, subtask, split, langs, translations_dir,
    # strict) -> the translated frames
    translation_loader: str | None = None
    prepare: str | None = None          # the manifest `data prepare NAME` fetches
    source: str = ""                    # where the data come from (citation, URL)
    identity: dict[str, Any] = field(default_factory=dict)  # enters the run ids (tables)

    # ---- tasks ------------------------------------------------------------------------
    def task(self, subtask: int | None = None) -> Task:
        """The task `subtask` names; ValueError with the choices otherwise."""
        if None in self.tasks:
            if subtask is not None:
                raise ValueError(f"subtask applies to data sets with several tasks; remove "
                                 f"it for {self.name}")
            return self.tasks[None]
        choices = ", ".join(f"{k} ({t.title})" for k, t in self.tasks.items())
        if subtask is None:
            raise ValueError(f"{self.name} needs a subtask: {choices}")
        try:
            return self.tasks[int(subtask)]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"unknown {self.name} subtask {subtask!r}; use {choices}") from None

    def task_name(self, subtask: int | None = None) -> str:
        """`semeval2023-st1`, `sib200`: how run ids and reports name a task."""
        base = self.identity.get("name", self.name)
        return base + (f"-st{int(subtask)}" if subtask is not None else "")

    # ---- languages (LanguageCodes: iso_codes, to_iso, to_folder) -------------------------
    def translation_targets(self, langs: Iterable[str] | None) -> list[str]:
        """The ISO codes of `langs` (default: the training languages) but English, in order,
        each once: the languages an en+translations scenario adds."""
        out = []
        for code in self.train_langs if langs is None else langs:
            try:
                iso = self.to_iso(code)
            except ValueError as err:
                raise DataError("langs", str(err)) from None
            if iso != "en" and iso not in out:
                out.append(iso)
        return out

    # ---- on disk --------------------------------------------------------------------------
    def load(self, root, split: str, langs: Iterable[str] | None = None,
             subtask: int | None = None, strict: bool = False):
        """One split as a frame (id, lang, text, labels; attrs["summary"])."""
        return _resolve(self.loader)(root, split, langs, subtask, strict)

    def translations(self, root, subtask, split, langs, translations_dir, strict) -> list:
        """The translated frames of a `folder` data set (its translation_loader)."""
        return _resolve(self.translation_loader)(root, subtask, split, langs, translations_dir,
                                                 strict)

    def split_path(self, root, split: str, lang: str, subtask: int | None = None) -> Path:
        return _resolve(self.layout)(Path(root), split, self.to_folder(lang), subtask)

    def folder_path(self, root, split: str, folder: str, subtask: int | None = None) -> Path:
        """The layout's path of a split under a language folder named `folder` as it is (a
        folder code or an ISO code: translations folders are named by ISO code)."""
        return _resolve(self.layout)(Path(root), split, folder, subtask)

    def has_split(self, root, split: str, lang: str, subtask: int | None = None) -> bool:
        """Whether anything of the split is on disk (present but broken counts as present,
        so that the loader reports it rather than the run calling it absent)."""
        if self.presence is not None:
            return _resolve(self.presence)(Path(root), split, self.to_folder(lang), subtask)
        return self.split_path(root, split, lang, subtask).exists()


def _resolve(target: str) -> Callable:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
