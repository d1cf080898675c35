"""The data set registry: one entry per data set, read by every place that needs to know one.

An entry says which languages a data set has (folder codes on disk, ISO codes everywhere
else), which of them train and which are zero-shot, its tasks (label set, multiclass or
multilabel, the official main metric, the unit a row is), how `en+translations` is built
(`parallel`), where a split lies on disk, how it is loaded, and which manifest
`data prepare` fetches. Adding a data set is adding an entry (docs/contributing.md); a folder
of tables with a data card needs no code at all (`table`, peft_utils.data.table), and another
package can register entries through an entry point (`plugins`).

The MT study's parallel data sets are entries of their own kind (ParallelDataSet,
peft_utils.data.parallel: languages, a loader of aligned lines, the split rule), kept apart
from the classification entries: `parallel_entries`, `parallel_names`, `get_parallel`. A
user's parallel table with a data card is `parallel-table` (peft_utils.data.parallel_table);
the same entry point group registers either kind.
"""
from __future__ import annotations

import functools
from pathlib import Path

from peft_utils.core.plugins import registered
from peft_utils.data.entry import PARALLEL, UNITS, DataSet, Task  # noqa: F401 (re-exported)
from peft_utils.data.labels import EMOTIONS, FRAMES, GENRES, SIB200_LABELS, TECHNIQUES
from peft_utils.data.parallel import SPLIT_RULES, ParallelDataSet  # noqa: F401 (re-exported)

TABLE = "table"
PARALLEL_TABLE = "parallel-table"
PLUGIN_GROUP = "peft_utils.datasets"

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


# The MT study's parallel data sets (a ParallelDataSet each; loaders in their own modules).
_NTREX_CODES = {"eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "kat": "ka",
                "jpn": "ja", "zho-CN": "zh", "hin": "hi", "pol": "pl", "rus": "ru", "ell": "el",
                "swa": "sw"}
PARALLEL_BUILTIN: dict[str, ParallelDataSet] = {entry.name: entry for entry in (
    ParallelDataSet(
        name="ntrex", title="NTREX-128: WMT19 news test set with professional translations",
        languages=_NTREX_CODES, source_langs=("en",),
        loader="peft_utils.data.ntrex:load_ntrex", split="document", prepare="ntrex",
        source="Federmann et al., 2022 (MicrosoftTranslator/NTREX)"),
)}


def entries() -> dict[str, DataSet]:
    """The built-in (classification) entries and those other packages register."""
    return {**BUILTIN, **plugins()}


def plugins() -> dict[str, DataSet]:
    """Entries registered by installed packages: an entry point in the group
    `peft_utils.datasets` names a DataSet (or a function returning one), e.g. in the
    package's pyproject.toml: `[project.entry-points."peft_utils.datasets"] toy =
    "toy_data:ENTRY"`. Read once per process; the grid's kernels read them too."""
    return {name: e for name, e in _plugins().items() if isinstance(e, DataSet)}


def parallel_plugins() -> dict[str, ParallelDataSet]:
    """Parallel entries registered by installed packages (the same entry point group, naming
    a ParallelDataSet or a function returning one)."""
    return {name: e for name, e in _plugins().items() if isinstance(e, ParallelDataSet)}


@functools.cache
def _plugins() -> dict[str, DataSet | ParallelDataSet]:
    return registered(PLUGIN_GROUP, (DataSet, ParallelDataSet), "DataSet or ParallelDataSet",
                      "data set", {*BUILTIN, *PARALLEL_BUILTIN, TABLE, PARALLEL_TABLE})


def names() -> tuple[str, ...]:
    """Every `dataset:` value a classification config accepts."""
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
        kind = " (a parallel data set, for the MT study)" if name in parallel_names() else ""
        raise ValueError(f"unknown dataset {name!r}{kind}; use one of "
                         f"{', '.join(names())}") from None


# ---- parallel (MT) data sets ------------------------------------------------------------
def parallel_entries() -> dict[str, ParallelDataSet]:
    """The built-in parallel entries and those other packages register."""
    return {**PARALLEL_BUILTIN, **parallel_plugins()}


def parallel_names() -> tuple[str, ...]:
    """Every `dataset:` value an MT config accepts."""
    return (*parallel_entries(), PARALLEL_TABLE)


def get_parallel(name: str, root: str | Path | None = None) -> ParallelDataSet:
    """The parallel entry of `name`; a parallel table is read from the data card under
    `root`. ValueError naming the known data sets otherwise."""
    if name == PARALLEL_TABLE:
        if root is None:
            raise ValueError(f"dataset {PARALLEL_TABLE} needs its folder (data_root) to read "
                             "dataset.yaml")
        from peft_utils.data.parallel_table import parallel_table_entry
        return parallel_table_entry(root)
    try:
        return parallel_entries()[name]
    except KeyError:
        raise ValueError(f"unknown MT dataset {name!r}; use one of "
                         f"{', '.join(parallel_names())}") from None


def label_names(dataset: str, subtask: int | None = None, root=None) -> list[str]:
    """The label vocabulary of a task, in head order."""
    return list(get(dataset, root).task(subtask).labels)


def is_multilabel(dataset: str, subtask: int | None = None, root=None) -> bool:
    return get(dataset, root).task(subtask).multilabel
