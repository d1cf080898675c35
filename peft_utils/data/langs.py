"""Language codes of every data set: release/folder codes in, ISO 639-1 out."""
from __future__ import annotations

# Folder code -> ISO 639-1, per data set. Both sides are accepted on input.
FOLDER_TO_ISO: dict[str, dict[str, str]] = {
    "semeval2023": {"en": "en", "fr": "fr", "ge": "de", "it": "it", "po": "pl", "ru": "ru",
                    "es": "es", "gr": "el", "ka": "ka"},
    "sib200": {"eng_Latn": "en", "fra_Latn": "fr", "deu_Latn": "de", "ita_Latn": "it",
               "pol_Latn": "pl", "rus_Cyrl": "ru", "spa_Latn": "es", "ell_Grek": "el",
               "kat_Geor": "ka"},
    "brighter": {"eng": "en", "deu": "de", "rus": "ru", "esp": "es", "ptbr": "pt", "ron": "ro",
                 "ukr": "uk", "swe": "sv", "hin": "hi", "amh": "am"},
}

# Languages with training data in the study's design, and the zero-shot ("surprise") ones.
TRAIN_LANGS: dict[str, tuple[str, ...]] = {
    "semeval2023": ("en", "fr", "de", "it", "pl", "ru"),
    "sib200": ("en", "fr", "de", "it", "pl", "ru"),
    "brighter": ("en", "de", "ru", "es", "pt", "ro", "uk", "sv", "hi", "am"),
}
ZERO_SHOT_LANGS: dict[str, tuple[str, ...]] = {
    "semeval2023": ("es", "el", "ka"),
    "sib200": ("es", "el", "ka"),
    "brighter": (),
}
DATASETS = tuple(FOLDER_TO_ISO)


def iso_codes(dataset: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(FOLDER_TO_ISO[dataset].values()))


def to_iso(dataset: str, code: str) -> str:
    """Accept a folder code or an ISO code of `dataset`; return the ISO code."""
    if dataset not in FOLDER_TO_ISO:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    table = FOLDER_TO_ISO[dataset]
    if code in table:
        return table[code]
    if code in table.values():
        return code
    raise ValueError(
        f"unknown language {code!r} for {dataset}; use one of "
        f"{', '.join(iso_codes(dataset))} (or the folder codes {', '.join(table)})")


def to_folder(dataset: str, code: str) -> str:
    """ISO or folder code -> the folder code used on disk."""
    iso = to_iso(dataset, code)
    return next(folder for folder, i in FOLDER_TO_ISO[dataset].items() if i == iso)


def iso_and_folder(dataset: str, code: str, where) -> tuple[str, str]:
    """(ISO code, folder code) of `code`; an unknown code is a DataError about `where`."""
    from peft_utils.data.errors import DataError

    try:
        iso = to_iso(dataset, code)
    except ValueError as err:
        raise DataError(where, str(err)) from None
    return iso, to_folder(dataset, iso)
