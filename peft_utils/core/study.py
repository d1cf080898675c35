"""The interface between a study (classification, machine translation) and what runs it: the
grid, the cell runner, the CLI. A study is one `Study` value, registered under its name as an
entry point of the `peft_utils.studies` group (this project's are in its pyproject.toml);
nothing outside the study knows more of it than this.

Adding a study = a config class (a `HashedConfig`: run id, validation, path checks, record
schema), a training notebook that takes `notebook_parameters` and calls the study's
`train_and_evaluate`, the checks `grid run` makes before any cell (`preflight`), the dev score
tuning selects on (`selection_score`), how a finished run's model is loaded for serving
measurements (`serving_subject`), optionally how a finished run is exported (`export`) and
how it predicts on new texts (`predict`), and the entry point, in this package or in another
one.
"""
from __future__ import annotations

import importlib
import tomllib
from dataclasses import dataclass, fields
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable

PACKAGE = Path(__file__).resolve().parents[1]
# The notebooks this project's studies execute. A wheel holds them in the package; in a
# checkout peft_utils/notebooks links to notebooks/, the one copy, where users open them.
# Resolved so that a checkout's cells run in notebooks/, as there.
NOTEBOOKS = (PACKAGE / "notebooks").resolve()
# Entry points of this group name the studies: name -> "module:attribute" of its Study.
GROUP = "peft_utils.studies"
DEFAULT = "classification"


@dataclass(frozen=True)
class Study:
    name: str
    config_class: type                  # a HashedConfig dataclass
    load_config: Callable[..., Any]     # (preset path or None, overrides) -> config
    notebook: Path                      # executed once per grid cell
    # The config as papermill parameters of `notebook`: every value explicit, no preset.
    notebook_parameters: Callable[[Any], dict[str, Any]]
    # The checks a cell needs before a grid starts (data, budgets), as (key, check) pairs:
    # the grid runs each distinct key once; a check returns notes (what the cell will run
    # without) or raises ValueError / OSError with the problem.
    preflight: Callable[[Any], list[tuple[tuple, Callable[[], list[str]]]]]
    # (config, results_root=None) -> RunResult: the study's train_and_evaluate (for `rerun`).
    train: Callable[..., Any]
    # record -> the dev score a tuning trial is selected on (None: the run has none).
    selection_score: Callable[[dict], float | None]
    # run folder -> core.serving.Subject: a finished run's model for `bench-inference`.
    serving_subject: Callable[[Path], Any]
    # Config keys shown first when a cell is described, in this order.
    leading_keys: tuple[str, ...] = ("method", "seed")
    # Config keys holding paths (relative to where a grid runs; absolute in every cell).
    path_keys: tuple[str, ...] = ("data_root", "results_dir")
    # The registry task its methods run as (core.methods.TASKS): which methods a config may
    # name, and the learning-rate ranges tuning searches (`range: registry`).
    task: str = "classification"
    # (run folder, out folder, format, force) -> the export's metadata: `python -m peft_utils
    # export` (core.export); None: the study's runs cannot be exported yet.
    export: Callable[[Path, Path, str, bool], dict[str, Any]] | None = None
    # The parsed arguments of `python -m peft_utils predict` (core.predict) -> exit status:
    # a run's or an export's outputs on new texts; None: the study has no `predict` yet.
    predict: Callable[[Any], int] | None = None

    @property
    def keys(self) -> set[str]:
        return {f.name for f in fields(self.config_class)}


def imported_when_called(module: str, name: str) -> Callable[..., Any]:
    """`module.name`, imported at its first call: a grid is planned, and its cells described,
    without loading what training needs (transformers, torch)."""
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__, call.__doc__ = name, f"`{module}.{name}`, imported when called."
    return call


def study(name: str | None) -> Study:
    """The study called `name` (None: classification); its module is imported now."""
    from peft_utils.core.config import ConfigError

    name = name or DEFAULT
    studies = registered()
    if name not in studies:
        raise ConfigError(f"unknown study kind {name!r}; use one of {', '.join(sorted(studies))}")
    found = studies[name].load()
    if not isinstance(found, Study) or found.name != name:
        raise TypeError(f"entry point {name} = {studies[name].value} of {GROUP} is not the "
                        f"Study called {name!r}")
    return found


def study_of_config(values: dict[str, Any]) -> Study:
    """The study a config's values belong to: its `kind` field (MT configs carry one)."""
    return study(values.get("kind"))


@cache
def registered() -> dict[str, EntryPoint]:
    """Study name -> its entry point: those of the installed packages, and those of the
    checkout's pyproject.toml when this runs from one (they win: an editable install's
    metadata keeps the entry points of when it was installed)."""
    return {**{ep.name: ep for ep in entry_points(group=GROUP)}, **_declared_in_checkout()}


def _declared_in_checkout() -> dict[str, EntryPoint]:
    pyproject = PACKAGE.parent / "pyproject.toml"
    if not pyproject.is_file():   # installed: the package's metadata holds its entry points
        return {}
    project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    if project.get("name") != "peft-utils":
        return {}
    declared = project.get("entry-points", {}).get(GROUP, {})
    return {name: EntryPoint(name, value, GROUP) for name, value in declared.items()}
