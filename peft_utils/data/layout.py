"""Where each data set keeps a language's split on disk (to tell 'absent' from 'broken')."""
from __future__ import annotations

from pathlib import Path

from peft_utils.data.langs import to_folder


def split_path(dataset: str, root: str | Path, split: str, lang: str,
               subtask: int | None = None) -> Path:
    root, folder = Path(root), to_folder(dataset, lang)
    if dataset == "semeval2023":
        return root / folder / f"{split}-articles-subtask-{subtask}"
    if dataset == "sib200":
        return root / folder / f"{split}.tsv"
    return root / split / f"{folder}.csv"


def has_split(dataset: str, root: str | Path, split: str, lang: str,
              subtask: int | None = None) -> bool:
    return split_path(dataset, root, split, lang, subtask).exists()
