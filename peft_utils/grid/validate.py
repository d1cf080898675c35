"""What `grid run` checks before it runs any cell, reporting every bad cell at once rather
than one per attempt: each cell's configuration, the paths it needs (data, translations, a
model folder, the results folder), and the data themselves (each distinct data selection is
loaded once, with the loaders' checks, so a malformed file stops the grid, not one cell after
hours of others)."""
from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

from peft_utils.core.config import ConfigError, read_yaml
from peft_utils.core.study import study
from peft_utils.grid.spec import Cell, Grid


def config_errors(path: str | Path, results_dir: str | Path | None = None) -> list[str]:
    """Every cell of a grid file whose configuration is invalid (`load_grid` stops at the
    first). Empty when the file itself is malformed: then load_grid's own error says why."""
    from peft_utils.grid import spec

    path = Path(path)
    try:
        raw = read_yaml(path)
        presets = raw.get("presets")
        presets = [presets] if isinstance(presets, str) else list(presets or [])
        fixed = dict(raw.get("set") or {})
        axes = {**dict(raw.get("grid") or {}), **dict(raw.get("sweep") or {})}
        if not all(isinstance(v, list) and v for v in axes.values()):
            return []
        kind = study(raw.get("kind"))   # the grid's study decides how a preset loads
        base = Path.cwd().resolve()
        results = Path(results_dir or raw.get("results_dir") or "results")
        results = results if results.is_absolute() else base / results
    except Exception:
        return []
    errors = []
    for name in presets:
        preset = (path.parent / str(name)).resolve()
        if not preset.is_file():
            errors.append(f"preset {name!r} not found (looked for {preset})")
            continue
        for combo in itertools.product(*axes.values()):
            values = dict(zip(axes, combo))
            try:
                spec.absolute_paths(kind, kind.load_config(preset, {**fixed, **values}), base,
                                    results)
            except ConfigError as err:
                errors.append(f"cell {values or '(no grid)'} of preset {name}: {err}")
            except Exception as err:   # a value too malformed for the config to be built
                errors.append(f"cell {values or '(no grid)'} of preset {name}: {err!r}")
    return errors


def load_grid_checked(path: str | Path, results_dir: str | Path | None = None) -> Grid:
    """`load_grid`, but a grid with several bad cells names all of them."""
    from peft_utils.grid.spec import load_grid

    try:
        return load_grid(path, results_dir=results_dir)
    except ConfigError as first:
        if not str(first).startswith(f"{Path(path)}: cell "):
            raise   # the file itself is malformed: that is the one error to fix
        errors = config_errors(path, results_dir)
        if len(errors) < 2:
            raise
        raise ConfigError(f"{path}: {len(errors)} bad cells:\n" +
                          "\n".join(f"  - {e}" for e in errors)) from first


def cell_problems(grid: Grid, cells: list[Cell],
                  notes: list[tuple[str, str]] | None = None) -> list[str]:
    """Paths and data of `cells`, one line per problem; empty when every cell can start.
    The study's preflight checks run once per distinct key (a data selection, a budget);
    what a cell will run without (absent or unlabelled splits and languages) is appended to
    `notes` as (run id, note)."""
    problems = []
    writable = _writable_problem(grid.results_dir)
    if writable:
        problems.append(writable)
    # check key -> (the first cell that ran it, its problem or None, its notes)
    checked: dict[tuple, tuple[str, str | None, list[str]]] = {}
    for cell in cells:
        found = cell.config.path_problems()
        for key, check in ([] if found else grid.study.preflight(cell.config)):
            if key not in checked:
                checked[key] = (cell.run_id, *_run_check(check))
                problem = checked[key][1]
            else:
                problem = checked[key][1] and f"the {key[0]} problem reported for {checked[key][0]}"
            if notes is not None:
                notes += [(cell.run_id, note) for note in checked[key][2]]
            if problem:
                found.append(problem)
                break
        problems += [f"{cell.run_id} ({grid.describe(cell)}): {p}" for p in found]
    return problems


def _run_check(check) -> tuple[str | None, list[str]]:
    """(the problem that stops the cell, or None; what it will run without)."""
    try:
        return None, list(check())
    except (ValueError, OSError) as err:   # DataError, ConfigError, BudgetError among them
        return str(err), []


def _writable_problem(folder: Path) -> str | None:
    """Whether files can be created in `folder`, or where it would be made, without leaving
    anything behind when they can."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"results folder {folder}: {probe} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        return (f"results folder {folder} is not writable ({os.strerror(err.errno or 0)} in "
                f"{probe}); fix its permissions or pass --results")
    return None
