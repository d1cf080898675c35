"""Grid files: presets × a cartesian product of settings, expanded into one config per cell
(the config class of the grid's study: RunConfig, or MTConfig for `kind: mt`).

```yaml
presets: [../demo/sib200.yaml]      # required; relative to this file, like `base:` in a preset
set: {max_train_samples: 64}        # applied to every cell
method_overrides: {fft: {learning_rate: 2.0e-5}}   # per method; beat the presets' own
grid: {method: [fft, lora], seed: [1, 2]}          # cartesian product (any RunConfig keys)
sweep: {learning_rate: [1.0e-4, 3.0e-4]}           # swept hyper-parameters, also cartesian
exclude: [{scenario: en+translations, dataset: brighter}]   # cells to skip
results_dir: results                # optional; --results wins
slurm: {partition: gpu, gpus_per_node: 1, timeout_min: 600}  # for --executor slurm
kind: classification                # optional: the study (`mt`: MTConfig cells, mt_train.ipynb)
notebook: ../../notebooks/x.ipynb   # optional, relative to this file; --notebook wins
tune: {trials: 4}                   # optional: equal tuning first (peft_utils.grid.tuning)
```

Every path other than `presets` (results_dir, data_root, model) is relative to the directory
the grid is run from, as with `python -m peft_utils train --config`. Cells carry absolute paths
so that the notebook kernel, whatever its working directory, reads the same files.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from peft_utils.core.config import ConfigError, read_yaml
from peft_utils.core.study import Study, study
from peft_utils.grid.tune_spec import parse_tune

GRID_KEYS = ("presets", "set", "method_overrides", "grid", "sweep", "exclude", "results_dir",
             "slurm", "description", "kind", "notebook", "tune")


@dataclass
class Cell:
    config: Any                     # the config class of the grid's study
    preset: Path
    values: dict[str, Any]          # this cell's grid and sweep values

    @property
    def run_id(self) -> str:
        return self.config.run_id


@dataclass
class Grid:
    path: Path
    cells: list[Cell]
    results_dir: Path
    slurm: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0             # cells that collapsed into an earlier one with the same id
    kind: str = "classification"    # the study (peft_utils.core.study)
    notebook: Path | None = None    # the notebook each cell executes
    tune: Any = None                # a TuneSpec (peft_utils.grid.tuning) or None
    # (preset, values) -> the config of a cell with these values, as the grid builds its own
    build: Callable[[Path, dict[str, Any]], Any] | None = None

    @property
    def study(self) -> Study:
        return study(self.kind)

    @property
    def name(self) -> str:
        return self.path.stem

    def varying(self) -> list[str]:
        """Config keys whose value differs between cells, leading keys first."""
        if len(self.cells) < 2:   # nothing varies: show the cell's own grid values
            return list(self.cells[0].values) if self.cells else []
        dicts = [c.config.to_dict() for c in self.cells]
        axes = {k for c in self.cells for k in c.values}
        # Data paths follow the preset's dataset; they are news only when they are an axis.
        kind = self.study
        keys = [k for k in dicts[0] if (k not in kind.path_keys or k in axes)
                and any(repr(d[k]) != repr(dicts[0][k]) for d in dicts)]
        leading = kind.leading_keys
        return [k for k in leading if k in keys] + [k for k in keys if k not in leading]

    def describe(self, cell: Cell, keys: list[str] | None = None) -> str:
        keys = self.varying() if keys is None else keys
        return " ".join(f"{k}={_short(getattr(cell.config, k))}" for k in keys)


def _short(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def expand_grid(path: str | Path, base_dir: str | Path | None = None,
                results_dir: str | Path | None = None) -> list[Any]:
    """The distinct configs of a grid file, in file order (presets, then grid, then sweep)."""
    return [cell.config for cell in load_grid(path, base_dir, results_dir).cells]


def load_grid(path: str | Path, base_dir: str | Path | None = None,
              results_dir: str | Path | None = None) -> Grid:
    """Parse and expand a grid file; `base_dir` (default: the working directory) anchors
    relative paths; `results_dir` overrides the file's."""
    path = Path(path)
    raw = read_yaml(path)
    base = Path(base_dir or Path.cwd()).resolve()

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{path}: {msg}")

    try:
        kind = study(raw.get("kind"))
    except ConfigError as err:
        raise bad(str(err)) from None
    notebook = _notebook(raw, path, kind, bad)
    unknown = sorted(set(raw) - set(GRID_KEYS))
    if unknown:
        raise bad(f"unknown grid key(s) {', '.join(unknown)}; a grid file has: "
                  f"{', '.join(GRID_KEYS)} (config keys go under set, grid or sweep)")
    presets = _presets(raw, bad)
    fixed = _mapping(raw, "set", bad)
    grid_axes, sweep_axes = _axes(raw, "grid", bad), _axes(raw, "sweep", bad)
    axes = {**grid_axes, **sweep_axes}
    clash = sorted(set(grid_axes) & set(sweep_axes)) + sorted(set(fixed) & set(axes))
    if clash:
        raise bad(f"{', '.join(clash)} set in more than one of set/grid/sweep; keep one")
    excludes = _excludes(raw, bad)
    per_method = _method_overrides(raw, bad)
    _check_run_keys(kind, [*fixed, *axes, *(k for e in excludes for k in e),
                           *(k for settings in per_method.values() for k in settings)], bad)
    slurm = _mapping(raw, "slurm", bad)
    tune = parse_tune(raw.get("tune"), kind.keys, axes, set(fixed), bad)

    results = Path(results_dir or raw.get("results_dir") or "results")
    results = results if results.is_absolute() else base / results

    def build(preset: Path, values: dict[str, Any]) -> Any:
        config = kind.load_config(preset, {**fixed, **values})
        if per_method.get(config.method):
            config = kind.load_config(preset, {**fixed, **per_method[config.method], **values})
        return absolute_paths(kind, config, base, results)

    cells, duplicates = _expand(path, presets, axes, excludes, build, bad)
    return Grid(path.resolve(), cells, results, slurm, duplicates, kind.name, notebook, tune,
                build)


def _notebook(raw: dict, path: Path, kind, bad) -> Path:
    """The study's notebook, or the grid's own (relative to the grid file)."""
    if not raw.get("notebook"):
        return kind.notebook
    notebook = (path.parent / str(raw["notebook"])).resolve()
    if not notebook.is_file():
        raise bad(f"notebook {raw['notebook']!r} not found (looked for {notebook}); "
                  "it is relative to the grid file")
    return notebook


def _presets(raw: dict, bad) -> list[str]:
    presets = raw.get("presets")
    if isinstance(presets, str):
        presets = [presets]
    if not presets or not isinstance(presets, list) or not all(isinstance(p, str) for p in presets):
        raise bad("`presets` is required: a list of preset YAML files relative to the grid file, "
                  "e.g. presets: [semeval/st1.yaml]")
    return presets


def _excludes(raw: dict, bad) -> list[dict[str, Any]]:
    excludes = raw.get("exclude") or []
    if not isinstance(excludes, list) or not all(isinstance(e, dict) and e for e in excludes):
        raise bad("`exclude` must be a list of mappings, e.g. exclude: [{method: fft, seed: 3}]")
    return excludes


def _method_overrides(raw: dict, bad) -> dict[str, dict[str, Any]]:
    per_method = _mapping(raw, "method_overrides", bad)
    for method, settings in per_method.items():
        if not isinstance(settings, dict):
            raise bad(f"method_overrides.{method} must be a mapping of keys to values")
    return per_method


def _check_run_keys(kind, keys, bad) -> None:
    for key in keys:
        if key not in kind.keys:
            raise bad(f"unknown {kind.config_class.__name__} key {key!r}; valid keys are: "
                      f"{', '.join(sorted(kind.keys))}")


def _expand(path: Path, presets: list[str], axes: dict[str, list], excludes: list[dict],
            build, bad) -> tuple[list[Cell], int]:
    """Every preset × axes combination not excluded, once per run id; and how many combinations
    repeated a run id already taken."""
    cells: dict[str, Cell] = {}
    duplicates = 0
    for preset_name in presets:
        preset = (path.parent / preset_name).resolve()
        if not preset.is_file():
            raise bad(f"preset {preset_name!r} not found (looked for {preset}); "
                      "preset paths are relative to the grid file")
        for combo in itertools.product(*axes.values()):
            values = dict(zip(axes, combo))
            try:
                config = build(preset, values)
            except ConfigError as err:
                raise bad(f"cell {values or '(no grid)'} of preset {preset_name}: {err}") from None
            if any(_matches(config, rule) for rule in excludes):
                continue
            if config.run_id in cells:
                duplicates += 1
                continue
            cells[config.run_id] = Cell(config, preset, values)
    return list(cells.values()), duplicates


def _mapping(raw: dict, key: str, bad) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise bad(f"`{key}` must be a mapping of keys to values")
    return value


def _axes(raw: dict, key: str, bad) -> dict[str, list[Any]]:
    axes = _mapping(raw, key, bad)
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise bad(f"{key}.{name} must be a non-empty list of values, e.g. {name}: [a, b]")
    return axes


def absolute_paths(kind: Study, config: Any, base: Path, results: Path) -> Any:
    """`config` with its paths absolute (relative ones anchored at `base`) and `results` as
    its results folder."""
    changes: dict[str, Any] = {"results_dir": str(results)}
    for key in kind.path_keys:
        value = getattr(config, key)
        if key != "results_dir" and value and not Path(value).is_absolute():
            changes[key] = os.path.abspath(base / value)
    # A model is a local folder if one exists there (as in from_pretrained), else a hub name.
    local = base / config.model
    if not Path(config.model).is_absolute() and local.exists():
        changes["model"] = os.path.abspath(local)
    return config.replace(**changes)


def _matches(config: Any, rule: dict[str, Any]) -> bool:
    return all(_same(getattr(config, key), value) for key, value in rule.items())


def _same(actual: Any, wanted: Any) -> bool:
    if isinstance(actual, float) and not isinstance(wanted, bool):
        try:
            return actual == float(wanted)   # YAML reads 1e-4 as a string
        except (TypeError, ValueError):
            return False
    return actual == wanted or str(actual) == str(wanted)
