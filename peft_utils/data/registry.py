"""The data set registry: one entry per data set, read by every place that needs to know one.

An entry says which languages a data set has (folder codes on disk, ISO codes everywhere
else), which of them train and which are zero-shot, its tasks (label set, multiclass or
multilabel, the official main metric, the unit a row is), how `en+translations` is built
(`parallel`), where a split lies on disk, how it is loaded, and which manifest
`data prepare` fetches. Adding a data set is adding an entry (docs/contributing.md); a folder
of tables with a data card needs no code at all (`table`, peft_utils.data.table), and another
package can register entries through an entry point (`plugins`).

Loaders are named as "module:function" and imported when used, so that reading the registry
costs nothing and loaders may import this module.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable

from peft_utils.data.labels import EMOTIONS, FRAMES, GENRES, SIB200_LABELS, TECHNIQUES

UNITS = ("article", "paragraph", "sentence", "text")
# How the en+translations scenario finds the translations of the English training rows.
PARALLEL = {
    None: "not parallel: the scenario is refused",
    "ids": "the other languages' rows of the same split translate the English row of the same id",
    "folder": "machine translations of the English split in translations_dir, the release layout",
    "column": "rows whose translation_of column names the id of an English row",
}
TABLE = "table"
PLUGIN_GROUP = "peft_utils.datasets"


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


@dataclass(frozen=True)
class DataSet:
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

    # ---- languages ----------------------------------------------------------------------
    def iso_codes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.languages.values()))

    def to_iso(self, code: str) -> str:
        """A folder or ISO code of this data set -> its ISO code."""
        if code in self.languages:
            return self.languages[code]
        if code in self.languages.values():
            return code
        raise ValueError(
            f"unknown language {code!r} for {self.name}; use one of "
            f"{', '.join(self.iso_codes())} (or the folder codes {', '.join(self.languages)})")

    def to_folder(self, code: str) -> str:
        iso = self.to_iso(code)
        return next(folder for folder, i in self.languages.items() if i == iso)

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

    def has_split(self, root, split: str, lang: str, subtask: int | None = None) -> bool:
        """Whether anything of the split is on disk (present but broken counts as present,
        so that the loader reports it rather than the run calling it absent)."""
        if self.presence is not None:
            return _resolve(self.presence)(Path(root), split, self.to_folder(lang), subtask)
        return self.split_path(root, split, lang, subtask).exists()


def _resolve(target: str) -> Callable:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


_SEMEVAL = "SemEval-2023 Task 3 (Piskorski et al., 2023), the official release"
BUILTIN: dict[str, DataSet] = {entry.name: entry for entry in (
    DataSet(
        name="semeval2023", title="SemEval-2023 Task 3: news genre, framing, persuasion",
        languages={"en": "en", "fr": "fr", "ge": "de", "it": "it", "po": "pl", "ru": "ru",
                   "es": "es", "gr": "el", "ka": "ka"},
        train_langs=("en", "fr", "de", "it", "pl", "ru"), zero_shot_langs=("es", "el", "ka"),
        tasks={1: Task(GENRES, False, "macro_f1", "article", title="genre"),
               2: Task(FRAMES, True, "micro_f1", "article", title="framing"),
               # The official scorer of subtask 3 calls scikit-learn with zero_division=1.
               3: Task(TECHNIQUES, True, "micro_f1", "paragraph", 1.0, title="persuasion")},
        loader="peft_utils.data.semeval:load_split", layout="peft_utils.data.semeval:split_path",
        presence="peft_utils.data.semeval:has_split", parallel="folder",
        translation_loader="peft_utils.data.semeval:translations", source=_SEMEVAL),
    DataSet(
        name="sib200", title="SIB-200: topic of Flores-200 sentences (stands in for genre)",
        languages={"eng_Latn": "en", "fra_Latn": "fr", "deu_Latn": "de", "ita_Latn": "it",
                   "pol_Latn": "pl", "rus_Cyrl": "ru", "spa_Latn": "es", "ell_Grek": "el",
                   "kat_Geor": "ka"},
        train_langs=("en", "fr", "de", "it", "pl", "ru"), zero_shot_langs=("es", "el", "ka"),
        # SIB-200 stands in for genre, so it is scored like genre (macro-F1).
        tasks={None: Task(SIB200_LABELS, False, "macro_f1", "sentence", title="topic")},
        loader="peft_utils.data.sib200:load_split", layout="peft_utils.data.sib200:split_path",
        parallel="ids", prepare="sib200", source="Adelani et al., 2024 (dadelani/sib-200)"),
    DataSet(
        name="brighter", title="BRIGHTER (SemEval-2025 Task 11 A): perceived emotions",
        languages={"eng": "en", "deu": "de", "rus": "ru", "esp": "es", "ptbr": "pt",
                   "ron": "ro", "ukr": "uk", "swe": "sv", "hin": "hi", "amh": "am"},
        train_langs=("en", "de", "ru", "es", "pt", "ro", "uk", "sv", "hi", "am"),
        zero_shot_langs=(),
        # English has no disgust column; the head keeps all six so every language shares it.
        tasks={None: Task(EMOTIONS, True, "macro_f1", "text", title="emotions")},
        loader="peft_utils.data.brighter:load_split",
        layout="peft_utils.data.brighter:split_path", prepare="brighter",
        source="Muhammad et al., 2025 (emotion-analysis-project/SemEval2025-Task11)"),
)}


def entries() -> dict[str, DataSet]:
    """The built-in entries and those other packages register."""
    return {**BUILTIN, **plugins()}


@functools.cache
def plugins() -> dict[str, DataSet]:
    """Entries registered by installed packages: an entry point in the group
    `peft_utils.datasets` names a DataSet (or a function returning one), e.g. in the
    package's pyproject.toml: `[project.entry-points."peft_utils.datasets"] toy =
    "toy_data:ENTRY"`. Read once per process; the grid's kernels read them too."""
    found = {}
    for point in entry_points(group=PLUGIN_GROUP):
        entry = point.load()
        entry = entry if isinstance(entry, DataSet) else entry()
        if entry.name in BUILTIN or entry.name == TABLE or entry.name in found:
            raise ValueError(f"entry point {point.name} ({point.value}) registers data set "
                             f"{entry.name!r}, which exists already; rename it")
        found[entry.name] = entry
    return found


def names() -> tuple[str, ...]:
    """Every `dataset:` value a config accepts."""
    return (*entries(), TABLE)


def get(name: str, root: str | Path | None = None) -> DataSet:
    """The entry of `name`; a table data set is read from the data card under `root`."""
    if name == TABLE:
        if root is None:
            raise ValueError("dataset table needs its folder (data_root) to read dataset.yaml")
        from peft_utils.data.table import table_entry
        return table_entry(root)
    try:
        return entries()[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(names())}") from None


def label_names(dataset: str, subtask: int | None = None, root=None) -> list[str]:
    """The label vocabulary of a task, in head order."""
    return list(get(dataset, root).task(subtask).labels)


def is_multilabel(dataset: str, subtask: int | None = None, root=None) -> bool:
    return get(dataset, root).task(subtask).multilabel
