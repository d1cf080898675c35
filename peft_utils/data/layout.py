"""Where each data set keeps a language's split on disk (to tell 'absent' from 'broken')."""
from __future__ import annotations

from pathlib import Path

from peft_utils.data.langs import to_folder, to_iso


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
    """Whether anything of the split is on disk. For SemEval a label file or template without
    its articles counts as present, so that the loader reports it as broken, not absent."""
    if dataset == "semeval2023":
        from peft_utils.data.semeval import has_split_files

        # The release names folders by its own codes (ge, po, gr); ISO-named ones are read too.
        return any(has_split_files(Path(root) / name, split, int(subtask))
                   for name in (to_folder(dataset, lang), to_iso(dataset, lang)))
    return split_path(dataset, root, split, lang, subtask).exists()
