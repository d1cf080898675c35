"""Language codes of every data set: release/folder codes in, ISO 639-1 out (the registry's
`languages` of each entry)."""
from __future__ import annotations

from peft_utils.data import registry


def iso_codes(dataset: str, root=None) -> tuple[str, ...]:
    return registry.get(dataset, root).iso_codes()


def to_iso(dataset: str, code: str, root=None) -> str:
    """Accept a folder code or an ISO code of `dataset`; return the ISO code."""
    return registry.get(dataset, root).to_iso(code)


def to_folder(dataset: str, code: str, root=None) -> str:
    """ISO or folder code -> the folder code used on disk."""
    return registry.get(dataset, root).to_folder(code)


def iso_and_folder(dataset: str, code: str, where, root=None) -> tuple[str, str]:
    """(ISO code, folder code) of `code`; an unknown code is a DataError about `where`."""
    from peft_utils.data.errors import DataError

    entry = registry.get(dataset, root)
    try:
        iso = entry.to_iso(code)
    except ValueError as err:
        raise DataError(where, str(err)) from None
    return iso, entry.to_folder(iso)
