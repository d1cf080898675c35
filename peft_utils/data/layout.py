"""Where each data set keeps a language's split on disk (to tell 'absent' from 'broken'):
the registry entry's `layout` and `presence` hooks."""
from __future__ import annotations

from pathlib import Path

from peft_utils.data import registry


def split_path(dataset: str, root: str | Path, split: str, lang: str,
               subtask: int | None = None) -> Path:
    return registry.get(dataset, root).split_path(root, split, lang, subtask)


def has_split(dataset: str, root: str | Path, split: str, lang: str,
              subtask: int | None = None) -> bool:
    """Whether anything of the split is on disk; a broken split counts as present."""
    return registry.get(dataset, root).has_split(root, split, lang, subtask)
