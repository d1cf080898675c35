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

from peft_utils.data.errors import DataError
from peft_utils.data.langs import FOLDER_TO_ISO, TRAIN_LANGS, to_iso
from peft_utils.data.summary import attach, combine, excluded

SCENARIOS = ("multilingual", "en", "en+translations")
DATASETS = ("semeval2023", "sib200", "brighter")


def load_split(dataset: str, root: str | Path, split: str, langs: Iterable[str] | None = None,
               subtask: int | None = None, strict: bool = False) -> pd.DataFrame:
    """Load one split of any data set (langs: folder or ISO codes; None: all present)."""
    if dataset == "semeval2023":
        from peft_utils.data.semeval import load_semeval
        return load_semeval(root, subtask, split, langs=langs, strict=strict)
    if dataset == "sib200":
        from peft_utils.data.sib200 import load_sib200
        return load_sib200(root, langs, split)
    if dataset == "brighter":
        from peft_utils.data.brighter import load_brighter
        return load_brighter(root, langs, split)
    raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")


def build_scenario(dataset: str, root: str | Path, scenario: str,
                   langs: Iterable[str] | None = None, subtask: int | None = None,
                   split: str = "train", translations_dir: str | Path | None = None,
                   strict: bool = False) -> pd.DataFrame:
    """The rows a run of `scenario` trains on, with a column origin ("original" or
    "translation") and the summary of everything read in attrs["summary"].

    `langs` are the training languages (default TRAIN_LANGS[dataset]); for en+translations
    they are the target languages of the translations (English is always included).

    en+translations, per data set:

    - sib200: SIB-200 is a parallel corpus (human translations of the same Flores sentences),
      so the translations are the other languages' rows of the same split, joined to English
      by index_id. Each takes the English label; every English id must be present in each
      language (DataError otherwise), and ids absent from English are left out and reported.
    - semeval2023: ``translations_dir`` holds machine translations of the English articles in
      the release's own layout, one folder per target language::

          <translations_dir>/<lang>/<split>-articles-subtask-<k>/article<ID>.txt
          <translations_dir>/<lang>/<split>-labels-subtask-3.template   (subtask 3, optional)

      No label files there: the English label file is reused by article id (and, for
      subtask 3, by paragraph line number, so translations must keep the line structure).
      A label row without its translated article, or a translated article with no English
      label row, is a DataError. ``langs=None`` takes every language folder present.
    - brighter: not parallel, so this scenario is refused (DataError).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    if scenario == "multilingual":
        langs = list(langs) if langs is not None else list(TRAIN_LANGS[dataset])
        return _origin(load_split(dataset, root, split, langs, subtask, strict), "original")
    if scenario == "en":
        return _origin(load_split(dataset, root, split, ["en"], subtask, strict), "original")
    if dataset == "brighter":
        raise DataError(root, "scenario en+translations needs parallel data (translations of "
                        "the English training set); BRIGHTER is not parallel",
                        fix="use the multilingual or en scenario for brighter")
    english = _origin(load_split(dataset, root, split, ["en"], subtask, strict), "original")
    if dataset == "sib200":
        targets = _targets(dataset, langs)
        return combine([english] + [_sib200_translation(root, split, lang, english)
                                    for lang in targets])
    return combine([english] + _semeval_translations(root, subtask, split, langs,
                                                     translations_dir, strict))


def _origin(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    summary = df.attrs.get("summary")
    df = df.assign(origin=origin)
    if summary is not None:
        df.attrs["summary"] = summary
    return df


def _targets(dataset: str, langs: Iterable[str] | None) -> list[str]:
    codes = TRAIN_LANGS[dataset] if langs is None else langs
    out = []
    for code in codes:
        try:
            iso = to_iso(dataset, code)
        except ValueError as err:
            raise DataError("langs", str(err)) from None
        if iso != "en" and iso not in out:
            out.append(iso)
    return out


def _sib200_translation(root, split: str, lang: str, english: pd.DataFrame) -> pd.DataFrame:
    from peft_utils.data.sib200 import load_sib200
    other = load_sib200(root, [lang], split)
    path = other.attrs["summary"]["source"][0]
    missing = [i for i in english["id"] if i not in set(other["id"])]
    if missing:
        raise DataError(path, f"{len(missing)} English index_id(s) have no {lang} row, e.g. "
                        f"{', '.join(missing[:5])}", fix="the translations must be the same "
                        f"{split} split as English (SIB-200 is parallel by index_id)")
    english_labels = dict(zip(english["id"], english["labels"]))
    keep = other["id"].isin(english_labels)
    reasons = [excluded(path, None, i, f"index_id {i} is not in the English {split} split")
               for i in other.loc[~keep, "id"]]
    joined = other[keep].copy()
    joined["labels"] = [list(english_labels[i]) for i in joined["id"]]
    joined["gold"] = True
    out = attach(joined.assign(origin="translation"), excluded_reasons=reasons, source=[path])
    return out


def _semeval_translations(root, subtask, split, langs, translations_dir, strict):
    from peft_utils.data.semeval import label_file, load_language
    if translations_dir is None:
        raise DataError(root, "scenario en+translations for semeval2023 needs translations_dir",
                        fix="pass translations_dir: machine translations of the English "
                            "articles in the release layout, <dir>/<lang>/<split>-articles-"
                            "subtask-<k>/article<ID>.txt")
    tdir = Path(translations_dir)
    if not tdir.is_dir():
        raise DataError(tdir, "translations folder not found",
                        fix="create it in the release layout: <lang>/<split>-articles-subtask-<k>/")
    table = FOLDER_TO_ISO["semeval2023"]
    if langs is None:
        found = [iso for folder, iso in table.items() if iso != "en"
                 and any((tdir / n).is_dir() for n in (folder, iso))]
        if not found:
            raise DataError(tdir, "no language folder found",
                            fix="expected folders such as fr/, ge/, it/, po/, ru/")
        targets = found
    else:
        targets = _targets("semeval2023", langs)
    labels = label_file(Path(root) / "en", split, int(subtask))
    frames = []
    for iso in targets:
        folder = next(f for f, i in table.items() if i == iso)
        lang_dir = next((tdir / n for n in (folder, iso) if (tdir / n).is_dir()), tdir / folder)
        if not lang_dir.is_dir():
            raise DataError(lang_dir, f"no translations for {iso}",
                            fix="add the folder or leave the language out of langs")
        frames.append(_origin(load_language(lang_dir, iso, subtask, split, strict=strict,
                                            labels_from=labels), "translation"))
    return frames

