"""Packages that extend peft_utils through entry points, written as `pip install` leaves them
(a module and its dist-info on a folder put on sys.path or PYTHONPATH): the recipes' tests
install studies, data sets and backends this way, from outside the package."""
from __future__ import annotations

import textwrap
from pathlib import Path


def install_fake_package(folder: Path, module: str, source: str, group: str,
                         entries: dict[str, str]) -> Path:
    """`module`.py holding `source` in `folder` (created if missing), and the dist-info of a
    distribution named after it whose entry points in `group` are `entries` (name ->
    "module:attribute"); returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    dist = module.replace("_", "-")
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    return folder
