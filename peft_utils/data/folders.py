"""A folder in a data set's own layout, given as it comes: the data set's root (its language
folders inside, as in an official release) or one language folder of it. Read with the data
set's own loader (its registry entry), so a split without labels (a release's test articles)
is read as the loader reads it.
"""
from __future__ import annotations

from pathlib import Path

from peft_utils.data import registry
from peft_utils.data.entry import DataSet
from peft_utils.data.errors import DataError


def languages_in(entry: DataSet, root: Path, split: str, subtask) -> list[str]:
    """ISO codes of the languages with `split` data in their folders under `root`."""
    return [iso for iso in entry.iso_codes() if entry.has_split(root, split, iso, subtask)]


def locate(entry: DataSet, folder: str | Path, split: str,
           subtask) -> tuple[Path, list[str]] | None:
    """(root, ISO codes) of the `split` data `folder` holds: its language folders, or itself
    when it is one language folder (`<root>/en`); None when it is neither."""
    folder = Path(folder)
    found = languages_in(entry, folder, split, subtask)
    if found:
        return folder, found
    try:
        iso = entry.to_iso(folder.name)
    except ValueError:
        return None
    return (folder.parent, [iso]) if entry.has_split(folder.parent, split, iso, subtask) \
        else None


def load_folder(entry: DataSet, folder: str | Path, split: str, subtask=None):
    """The `split` rows of `folder` (a root or one language folder of `entry`'s layout), as
    the data set's loader returns them; a DataError naming what the folder holds otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found", fix="give an existing folder")
    where = locate(entry, folder, split, subtask)
    if where is None:
        example = entry.split_path(Path(), split, entry.iso_codes()[0], subtask)
        raise DataError(folder, _not_found(entry, folder, split, subtask),
                        fix=f"give the data set's root (<root>/{example}) or one language "
                            "folder of it; --split names the split")
    root, langs = where
    return entry.load(root, split, langs, subtask)


def _not_found(entry: DataSet, folder: Path, split: str, subtask) -> str:
    task = entry.task_name(subtask)
    message = (f"no {split} data of {task}: neither one of its language folders "
               f"({', '.join(entry.languages)}) nor a folder holding them")
    others = holders(folder, split, exclude=(task,))
    return message + (f"; it holds {', '.join(others)} data" if others else "")


def holders(folder: Path, split: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The registered tasks (`semeval2023-st1`, `sib200`) whose `split` data `folder` holds
    in their data set's layout."""
    found = []
    for entry in registry.entries().values():
        for subtask in entry.tasks:
            name = entry.task_name(subtask)
            if name not in exclude and _holds(entry, folder, split, subtask):
                found.append(name)
    return found


def _holds(entry: DataSet, folder: Path, split: str, subtask) -> bool:
    try:
        return locate(entry, folder, split, subtask) is not None
    except (OSError, ValueError):
        return False
