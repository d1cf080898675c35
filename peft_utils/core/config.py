"""What every run configuration shares, whichever study it belongs to: the hashed identity
that names its run folder, construction from a mapping with errors that name the key, YAML
presets with `base:` and per-method overrides, and the checks on a model name or folder."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


def model_identity(model: str) -> str:
    """A local model folder is known by its name and config, not where the checkout lies;
    a hub name is itself."""
    folder = Path(model)
    if (folder / "config.json").is_file():
        digest = hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()[:12]
        return f"{folder.name}@{digest}"
    return model


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the source and the fix."""


class HashedConfig:
    """What every run config (classification, MT) shares: its dict form and the identity whose
    hash ends its run id. Subclasses name the fields that say where a run executes, not what
    it computes, in `non_identity`, and the fields added after runs were published in
    `identity_if_set`: those enter the identity only away from their default, so the ids of
    earlier runs (which behaved as the default) stay valid."""
    non_identity: tuple[str, ...] = ()
    identity_if_set: tuple[str, ...] = ()

    float_keys: tuple[str, ...] = ()   # numbers that YAML may hand over as strings ("1e-4")
    # The study's record schema: a name of peft_utils/schemas/<name>.json, or the path of a
    # .json file (a study in another package ships its own).
    record_schema = "record"
    record_kind: str | None = None     # written as the record's `kind` (classification: none)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config"):
        """The config of `raw`, validated; an unknown key or bad value is a ConfigError
        naming `source`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; "
                              f"valid keys are: {', '.join(sorted(known))}")
        raw = dict(raw)
        for key in cls.float_keys:
            if isinstance(raw.get(key), str):
                try:
                    raw[key] = float(raw[key])
                except ValueError:
                    pass   # validate() names the key and what it should be
        config = cls(**raw)
        config.validate(source)
        return config

    def replace(self, **changes: Any):
        return type(self).from_dict({**self.to_dict(), **changes})

    def validate(self, source: str = "config") -> None:
        raise NotImplementedError

    def path_problems(self) -> list[str]:
        """What is missing on disk for the run to start; checked before training and by
        `grid run` before any cell, not at parse time."""
        return []

    def run_info(self) -> dict[str, Any]:
        """The record's run_info: the values, the run id and what the study derives."""
        return {**self.to_dict(), "run_id": self.run_id}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        defaults = {f.name: f.default for f in fields(self)}
        out = {k: v for k, v in self.to_dict().items() if k not in self.non_identity
               and not (k in self.identity_if_set and v == defaults[k])}
        out["model"] = model_identity(self.model)
        return out

    def digest(self) -> str:
        """Ten hex digits of the identity's hash: the run id's suffix."""
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:10]


class DataSetIdentity:
    """For a study config whose `data_set` is a registry entry: a table data set's card
    enters the identity (data_root does not: two cards in two folders are two data sets); a
    built-in set adds nothing, so its run ids stay."""

    def identity(self) -> dict[str, Any]:
        out = super().identity()   # type: ignore[misc]
        if self.data_set.identity:   # type: ignore[attr-defined]
            out["data_set"] = self.data_set.identity   # type: ignore[attr-defined]
        return out


@dataclass
class RunSettings(HashedConfig):
    """Where and how a run executes: the same fields, first in every study's config."""
    device: str = "auto"              # auto: a GPU where present (pick one: CUDA_VISIBLE_DEVICES)
    precision: str = "auto"           # auto: bf16 on GPUs that support it, fp32 on CPU
    # Resumable training checkpoints in results/<run_id>/trainer/: None at every dev evaluation
    # (every epoch without dev data), N every N optimiser steps, 0 never.
    checkpoint_steps: int | None = None
    results_dir: str = "results"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Set by a grid's tuning stage (peft_utils.grid.tuning), empty otherwise: a trial
    # {stage: tune, group, trial, values} or a final run {stage: final, group, trial,
    # trial_dev, values}, so that the record says which stage and trial it belongs to.
    tuning: dict[str, Any] = field(default_factory=dict)
    # Experiment trackers the Trainer logs to (transformers' integrations): tensorboard
    # (event files in results/<run_id>/tensorboard/), wandb, mlflow, ... Not in the run id.
    report_to: list[str] = field(default_factory=list)

    @property
    def is_trial(self) -> bool:
        """A tuning trial: scored on dev only (no test predictions, no probe, no weights)."""
        return self.tuning.get("stage") == "tune"

    @property
    def trial_suffix(self) -> str:
        """`-t<trial>` in a tuning trial's run id, empty otherwise."""
        return f"-t{self.tuning['trial']}" if self.is_trial else ""

    def settings_problem(self, precisions: tuple[str, ...] = ("auto", "fp32", "bf16")
                         ) -> str | None:
        """What is wrong with these fields (None: nothing); `precisions`: the study's."""
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            return (f"device must be auto, cpu, cuda or mps, got {self.device!r} (pick a GPU "
                    "with CUDA_VISIBLE_DEVICES)")
        if self.precision not in precisions:
            return f"precision must be one of {', '.join(precisions)}, got {self.precision!r}"
        steps = self.checkpoint_steps
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool)
                                  or steps < 0):
            return ("checkpoint_steps must be null (at every dev evaluation), 0 (never) or a "
                    f"positive step count, got {steps!r}")
        if not isinstance(self.report_to, list) or not all(
                isinstance(x, str) for x in self.report_to):
            return ("report_to must be a list of tracker names (e.g. [tensorboard], [wandb], "
                    f"[mlflow]), got {self.report_to!r}")
        return None


# ---- types ------------------------------------------------------------------
_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "None": "null", "list[str]": "a list of strings", "dict[str, Any]": "a mapping"}


def is_type(value: Any, name: str) -> bool:
    """Whether `value` (as YAML gives it) is of the type named `name` (bool is no number)."""
    if name == "None":
        return value is None
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "str":
        return isinstance(value, str)
    if name == "list[str]":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if name.startswith("dict"):
        return isinstance(value, dict)
    return True


def type_problems(config: HashedConfig) -> list[str]:
    """A wrongly typed value (a string seed, a fractional batch size) named with what it
    should be; the annotations of the config class are the schema."""
    problems = []
    for f in fields(config):
        allowed = [part.strip() for part in str(f.type).split("|")]
        value = getattr(config, f.name)
        if not any(is_type(value, name) for name in allowed):
            wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in allowed)
            problems.append(f"{f.name} must be {wanted}, got {value!r} ({type(value).__name__})")
    return problems


# ---- model location -----------------------------------------------------------
def path_like(value: str, base: str | Path = ".") -> bool:
    """A local path rather than a hub id. Hub ids are `name` or `org/name`; `x/y` counts as
    a path when `x` is a folder under `base` or the project's `models` folder."""
    if value.startswith(("/", ".", "~")) or (os.sep != "/" and os.sep in value):
        return True
    parts = value.split("/")
    return len(parts) > 2 or (len(parts) == 2 and (parts[0] == "models"
                                                   or (Path(base) / parts[0]).is_dir()))


# Model types whose positions start after padding_idx (RoBERTa's family): fewer usable tokens.
PADDING_OFFSET_TYPES = ("xlm-roberta", "roberta", "camembert")


def model_max_length(model: str) -> int | None:
    """Token positions the model can embed, from its config.json (a local folder, or a
    config shipped with the package); None when unknown without a download."""
    from importlib import resources

    try:
        path = Path(model).expanduser() / "config.json"
        if path.is_file():
            raw = json.loads(path.read_text(encoding="utf-8"))
        else:
            shipped = resources.files("peft_utils").joinpath(
                f"model_configs/{Path(model).name}.json")
            if not shipped.is_file():
                return None
            raw = json.loads(shipped.read_text())
        positions = int(raw["max_position_embeddings"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if raw.get("model_type") in PADDING_OFFSET_TYPES:
        positions -= int(raw.get("pad_token_id", 1)) + 1   # positions start after padding_idx
    return positions


def model_problem(value: str) -> str | None:
    """Why `value` cannot name a model, or None. A folder must hold config.json; a path that
    exists nowhere is an error now rather than a hub download attempt later."""
    if not value.strip():
        return "model is empty; give a hub name (xlm-roberta-large) or a model folder"
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            return (f"model {value!r}: {path.resolve()} is not a model folder (no config.json); "
                    "point model at a folder saved by save_pretrained, or give a hub name")
        return None
    if path_like(value):
        return (f"model folder {value!r} does not exist ({path.resolve()}); prepare it "
                "(`python -m peft_utils model prepare e5-small` for the offline default) or "
                "give a hub name such as xlm-roberta-large")
    return None


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`key=value` strings from the command line; values parsed as YAML (numbers, lists, null)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value, e.g. --set learning_rate=1e-4")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return raw


def load_raw(path: str | Path) -> dict[str, Any]:
    """A YAML config, following `base:` (a path relative to the file) for presets."""
    path = Path(path)
    raw = read_yaml(path)
    base = raw.pop("base", None)
    if base:
        raw = {**load_raw(path.parent / base), **raw}
    return raw


def load_with_method_overrides(path: str | Path | None, overrides: dict[str, Any] | None,
                               default_method: str) -> dict[str, Any]:
    """The raw values of a config file (following `base:`), its `method_overrides` for the
    run's method applied, then `overrides`."""
    raw = load_raw(path) if path else {}
    overrides = overrides or {}
    per_method = raw.pop("method_overrides", None) or {}
    if not isinstance(per_method, dict):
        raise ConfigError(f"{path}: method_overrides must map a method to its settings")
    method = overrides.get("method", raw.get("method", default_method))
    return {**raw, **(per_method.get(method) or {}), **overrides}


