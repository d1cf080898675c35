"""Training scenarios of the study: which rows a run trains on.

- ``multilingual``: every training language jointly.
- ``en``: English only.
- ``en+translations``: English plus its translations into the other training languages,
  every translated row carrying the English label of its source.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from peft_utils.data import registry
from peft_utils.data.errors import DataError
from peft_utils.data.summary import attach, combine, excluded, with_origin

SCENARIOS = ("multilingual", "en", "en+translations")


def load_split(dataset: str, root: str | Path, split: str, langs: Iterable[str] | None = None,
               subtask: int | None = None, strict: bool = False) -> pd.DataFrame:
    """Load one split of any data set (langs: folder or ISO codes; None: all present)."""
    return registry.get(dataset, root).load(root, split, langs, subtask, strict)


def build_scenario(dataset: str, root: str | Path, scenario: str,
                   langs: Iterable[str] | None = None, subtask: int | None = None,
                   split: str = "train", translations_dir: str | Path | None = None,
                   strict: bool = False) -> pd.DataFrame:
    """The rows a run of `scenario` trains on, with a column origin ("original" or
    "translation") and the summary of everything read in attrs["summary"].

    `langs` are the training languages (default: the entry's train_langs); for
    en+translations they are the target languages of the translations (English is always
    included).

    en+translations, by the entry's `parallel`:

    - ids (SIB-200, a parallel corpus of human translations of the same Flores sentences):
      the translations are the other languages' rows of the same split, joined to English
      by id. Each takes the English label; every English id must be present in each
      language (DataError otherwise), and ids absent from English are left out and reported.
    - column (a table whose card names `translation_of`): the same, joined by that column.
    - folder (SemEval-2023): ``translations_dir`` holds machine translations of the English
      articles in the release's own layout, one folder per target language::

          <translations_dir>/<lang>/<split>-articles-subtask-<k>/article<ID>.txt
          <translations_dir>/<lang>/<split>-labels-subtask-3.template   (subtask 3, optional)

      No label files there: the English label file is reused by article id (and, for
      subtask 3, by paragraph line number, so translations must keep the line structure).
      A label row without its translated article, or a translated article with no English
      label row, is a DataError. ``langs=None`` takes every language folder present.
    - None (BRIGHTER): not parallel, so this scenario is refused (DataError).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    entry = registry.get(dataset, root)
    if scenario != "en+translations":
        langs = ["en"] if scenario == "en" else list(
            langs if langs is not None else entry.train_langs)
        return with_origin(entry.load(root, split, langs, subtask, strict), "original")
    if entry.parallel is None:
        raise DataError(root, "scenario en+translations needs parallel data (translations of "
                        f"the English training set); {dataset} is not parallel",
                        fix=f"use the multilingual or en scenario for {dataset}")
    english = with_origin(entry.load(root, split, ["en"], subtask, strict), "original")
    if entry.parallel == "folder":
        translated = entry.translations(root, subtask, split, langs, translations_dir, strict)
        return combine([english] + [with_origin(df, "translation") for df in translated])
    return combine([english] + [_joined_translation(entry, root, split, lang, english, subtask)
                                for lang in entry.translation_targets(langs)])


def _joined_translation(entry: registry.DataSet, root, split: str, lang: str,
                        english: pd.DataFrame, subtask) -> pd.DataFrame:
    """`lang`'s rows of the split that translate English rows, with the English labels.
    They link by id (parallel: ids) or by their translation_of column (parallel: column)."""
    other = entry.load(root, split, [lang], subtask, False)
    path = other.attrs["summary"]["source"][0]
    key = "translation_of" if entry.parallel == "column" else "id"
    linked = set(other[key])
    missing = [i for i in english["id"] if i not in linked]
    if missing:
        raise DataError(path, f"{len(missing)} English id(s) have no {lang} translation, e.g. "
                        f"{', '.join(missing[:5])}", fix=f"the translations must cover the "
                        f"English {split} split ({entry.name} is parallel by {key})")
    english_labels = dict(zip(english["id"], english["labels"]))
    keep = other[key].isin(english_labels)
    reasons = [excluded(path, None, i, f"{key} {k} is not in the English {split} split")
               for i, k in zip(other.loc[~keep, "id"], other.loc[~keep, key])]
    joined = other[keep].copy()
    joined["labels"] = [list(english_labels[i]) for i in joined[key]]
    joined["gold"] = True
    return attach(joined.assign(origin="translation"), excluded_reasons=reasons, source=[path])
