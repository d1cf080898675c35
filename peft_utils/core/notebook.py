"""From a training notebook's papermill parameters to a run config, the same way in every
study. Path rule: relative paths given as notebook parameters resolve against the kernel's
working directory (the notebook's folder, in JupyterLab and under `grid run`); relative paths
written in a preset resolve against the project root, as for `python -m peft_utils train
--config`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from peft_utils.core.config import ConfigError

SOURCE = "notebook parameters"


def project_root(*starts: str | Path) -> Path:
    """The nearest folder holding pyproject.toml above any of `starts`, else the cwd."""
    for start in starts:
        for folder in [Path(start).resolve(), *Path(start).resolve().parents]:
            if (folder / "pyproject.toml").is_file():
                return folder
    return Path.cwd()


def notebook_inputs(config_file: str | Path | None, params: dict[str, Any],
                    overrides: dict[str, Any] | None,
                    results_dir: str | None) -> tuple[Path | None, dict[str, Any], Path]:
    """(the preset or None, the values given explicitly, the project root): `params` that are
    not None < `overrides` < `results_dir`. Raises ConfigError naming a bad parameter."""
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        raise ConfigError(f"{SOURCE}: overrides must be a dict of config keys, "
                          f"got {type(overrides).__name__}")
    for name, value in (("config_file", config_file), ("results_dir", results_dir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{SOURCE}: {name} must be a path (a string) or None, got "
                              f"{value!r} ({type(value).__name__})")
    if not isinstance(params, dict):
        raise ConfigError(f"{SOURCE}: params must be a dict, got {type(params).__name__}")
    preset = Path(config_file) if config_file else None
    if preset is not None and not preset.is_file():
        raise ConfigError(f"{SOURCE}: config_file {str(config_file)!r} not found (relative to "
                          f"{Path.cwd()}); set config_file=None to use the parameters alone")
    explicit = {**{k: v for k, v in params.items() if v is not None}, **overrides}
    if results_dir is not None:
        explicit["results_dir"] = results_dir
    return preset, explicit, project_root(*([preset.parent] if preset else []), Path.cwd())


def load_from_notebook(load: Callable[..., Any], preset: Path | None, explicit: dict[str, Any]):
    """`load(preset, explicit)`, its ConfigError said to come from the notebook parameters."""
    try:
        return load(preset, explicit)
    except ConfigError as err:
        raise ConfigError(f"{SOURCE}: {err}") from None


def resolve_paths(config, keys: tuple[str, ...], given: set[str], root: Path,
                  local_model: Callable[[Path, str], bool] = lambda path, value: path.exists()):
    """`config` with the relative paths of `keys` and of `model` made absolute: against the
    working directory when the notebook gave them, else against `root`. A model is a local
    folder only where `local_model(path, value)` says so (else a hub name), as in
    from_pretrained."""
    changes = {}
    for key in (*keys, "model"):
        value = getattr(config, key)
        if not value or Path(value).is_absolute():
            continue
        path = (Path.cwd() if key in given else root) / value
        if key != "model" or local_model(path, value):
            changes[key] = os.path.abspath(path)
    return config.replace(**changes) if changes else config
