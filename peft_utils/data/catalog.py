"""`data list`: the registry as a listing, with what is present on disk."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from peft_utils.data import registry

SPLITS = ("train", "dev", "test")


def catalog(data_root: str | Path = "data", tables: Iterable[str | Path] = ()) -> list[dict]:
    """One dict per data set: the registry entry, and `present`: rows per split and language
    under <data_root>/<name> (tables: their folder), or the error that loading raised."""
    found = [(entry, Path(data_root) / entry.name) for entry in registry.entries().values()]
    found += [(registry.get(registry.TABLE, folder), Path(folder)) for folder in tables]
    return [describe(entry, root) for entry, root in found]


def describe(entry: registry.DataSet, root: Path) -> dict[str, Any]:
    return {
        "name": entry.task_name(), "dataset": entry.name, "title": entry.title,
        "source": entry.source,
        "languages": {iso: folder for folder, iso in entry.languages.items()},
        "train_langs": list(entry.train_langs), "zero_shot_langs": list(entry.zero_shot_langs),
        "tasks": {("default" if key is None else str(key)): {"title": task.title, **task.info(
            entry.task_name(key))} for key, task in entry.tasks.items()},
        "parallel": entry.parallel, "prepare": entry.prepare,
        "root": str(root), "present": _present(entry, root) if root.is_dir() else None,
    }


def _present(entry: registry.DataSet, root: Path) -> dict[str, Any]:
    """Rows per task, split and language (labelled and unlabelled alike)."""
    out: dict[str, Any] = {}
    for key in entry.tasks:
        sizes: dict[str, Any] = {}
        for split in SPLITS:
            langs = [lang for lang in entry.iso_codes() if entry.has_split(root, split, lang, key)]
            if not langs:
                continue
            try:
                frame = entry.load(root, split, langs, key)
            except ValueError as err:   # DataError: say so, list the rest
                sizes[split] = {"error": str(err)}
                continue
            sizes[split] = {lang: int(n) for lang, n in frame.groupby("lang", sort=False).size()
                            .items()}
        out["default" if key is None else str(key)] = sizes
    return out


def format_catalog(entries: list[dict]) -> str:
    lines = []
    for e in entries:
        lines.append(f"{e['name']}: {e['title']}")
        lines.append(f"  languages  train {' '.join(e['train_langs'])}"
                     + (f" | zero-shot {' '.join(e['zero_shot_langs'])}"
                        if e["zero_shot_langs"] else ""))
        for key, task in e["tasks"].items():
            kind = "multilabel" if task["multilabel"] else "multiclass"
            lines.append(f"  task {key:<8} {task['title']}: {len(task['labels'])} labels, {kind},"
                         f" {task['metric']}, per {task['unit']}")
        lines.append(f"  en+translations  {registry.PARALLEL[e['parallel']]}")
        if e["prepare"]:
            lines.append(f"  prepare    python -m peft_utils data prepare {e['prepare']}")
        lines.append(f"  on disk    {e['root']}" + (": absent" if e["present"] is None else ""))
        for key, sizes in (e["present"] or {}).items():
            for split, langs in sizes.items():
                counts = langs.get("error") or " ".join(f"{k}={v}" for k, v in langs.items())
                lines.append(f"    {key:<8} {split:<5} {counts}")
        lines.append("")
    return "\n".join(lines).rstrip()
