"""The `tune:` section of a grid file: how many trials, over which space, with which sampler
(the stage itself: peft_utils.grid.tuning)."""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from peft_utils.core import methods

TUNE_KEYS = ("trials", "seeds", "space", "sampler", "share", "storage", "batch", "extend",
             "fidelity")
# What `fidelity` scales in a trial: its optimiser steps, warm-up and evaluation interval.
STEP_KEYS = ("max_steps", "warmup_steps", "eval_steps")
SAMPLERS = ("sobol", "grid", "random", "tpe")
FIXED_SAMPLERS = ("sobol", "grid")     # positions known before anything runs
DEFAULT_SPACE = {"learning_rate": "registry"}
# tune.storage: an Optuna journal file (journal://PATH, relative to the results folder) or a
# database URL (SQLAlchemy's, with or without a driver: postgresql+psycopg2://...).
JOURNAL = "journal://"
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "journal")


@dataclass(frozen=True)
class Dim:
    """One tuned config key: a range (log or linear, float or int), or the method's registry
    learning-rate range times `scale`."""
    key: str
    low: float | None = None
    high: float | None = None
    log: bool = True
    integer: bool = False
    registry: bool = False
    scale: float = 1.0

    def bounds(self, method: str, task: str) -> tuple[float, float]:
        if self.registry:
            low, high = methods.get(method, task).lr_range
            return low * self.scale, high * self.scale
        return self.low, self.high

    @property
    def extendable(self) -> bool:
        """Whether `extend` may go beyond this range (log-scale floats: rates, not counts)."""
        return self.log and not self.integer

    def value(self, u: float, method: str, task: str) -> float | int:
        """The value at position `u` of this method's range ([0, 1]; beyond it for an
        extendable dimension): rates rounded to three significant digits (readable, and the
        same on every machine)."""
        low, high = self.bounds(method, task)
        if self.log:
            x = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            x = low + u * (high - low)
        if self.integer:
            return int(min(max(round(x), low), high))
        if not 0 <= u <= 1 and self.extendable:
            return float(f"{x:.3g}")
        return min(max(float(f"{x:.3g}"), low), high)

    def distribution(self, method: str, task: str):
        import optuna

        low, high = self.bounds(method, task)
        if self.integer:
            return optuna.distributions.IntDistribution(int(low), int(high), log=self.log)
        return optuna.distributions.FloatDistribution(low, high, log=self.log)

    def describe(self) -> str:
        scale = f" × {self.scale:g}" if self.scale != 1 else ""
        if self.registry:
            return f"{self.key}: each method's registry range{scale}, log scale"
        kind = "integer" if self.integer else ("log scale" if self.log else "linear")
        return f"{self.key}: {self.low:g} to {self.high:g}, {kind}"


@dataclass
class TuneSpec:
    trials: int
    seeds: list[int]
    space: dict[str, Dim]
    sampler: str = "sobol"
    sampler_seed: int = 0
    share: list[str] = field(default_factory=list)
    storage: str | None = None
    batch: int | None = None
    extend: int = 0                 # further trials per method where a method chose an edge
    fidelity: float = 1.0           # a trial's share of a final run's optimiser steps

    def trial_steps(self, config) -> dict[str, int]:
        """The step settings of a trial of `config` at `fidelity` ({} at full fidelity):
        steps, warm-up and evaluation interval scaled alike, so a trial evaluates as often
        and warms up for the same share of its run as the final does."""
        if self.fidelity == 1.0:
            return {}
        if not getattr(config, "max_steps", 0) or config.max_steps <= 0:
            raise ValueError(f"tune.fidelity {self.fidelity:g} scales max_steps, which "
                             f"{config.run_id} does not set; set max_steps or drop fidelity")
        scaled = {key: getattr(config, key) for key in STEP_KEYS
                  if isinstance(getattr(config, key, None), int)}
        return {key: max(round(value * self.fidelity), 0 if key == "warmup_steps" else 1)
                for key, value in scaled.items()}

    @property
    def fixed(self) -> bool:
        return self.sampler in FIXED_SAMPLERS

    @property
    def spacing(self) -> float:
        """The distance between neighbouring trials along one dimension, in the unit cube
        (the grid's step; Sobol points' typical spacing)."""
        per_dim = round(self.trials ** (1 / len(self.space)))
        return 1 / max(per_dim - 1, 1)

    def positions(self) -> list[list[float]]:
        """Where each trial lies in the unit cube of the space (fixed samplers only)."""
        d = len(self.space)
        if self.sampler == "grid":
            per_dim = round(self.trials ** (1 / d))
            axis = [i / (per_dim - 1) for i in range(per_dim)] if per_dim > 1 else [0.5]
            return [list(p) for p in itertools.product(axis, repeat=d)]
        from scipy.stats import qmc

        with warnings.catch_warnings():   # balance properties need 2^m points; any n is valid
            warnings.simplefilter("ignore")
            points = qmc.Sobol(d, scramble=True, seed=self.sampler_seed).random(self.trials)
        return points.tolist()

    def describe(self) -> list[str]:
        seeds = ", ".join(map(str, self.seeds))
        lines = [f"{self.trials} trials per method and group × seed(s) {seeds}, sampler "
                 f"{self.sampler} (seed {self.sampler_seed}), selected on the training "
                 "languages' dev score"]
        lines += [f"  {dim.describe()}" for dim in self.space.values()]
        if self.share:
            lines.append(f"  one tuning shared by every {', '.join(self.share)} (trials at the "
                         "first value)")
        if self.fidelity != 1.0:
            lines.append(f"  trials at fidelity {self.fidelity:g}: {self.fidelity:.0%} of a final "
                         "run's optimiser steps (warm-up and evaluation interval scaled alike)")
        if self.extend:
            lines.append(f"  edge rule: where any method's choice lies at the edge of what it "
                         f"tried, every method of that comparison gets {self.extend} more "
                         "trial(s): beyond the edge, or around an interior choice")
        return lines


def parse_tune(raw: Any, run_keys: set[str], axes: dict[str, list], fixed: set[str],
               bad) -> TuneSpec | None:
    """The `tune:` mapping of a grid file, checked; None without one."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise bad("`tune` must be a mapping (trials, seeds, space, sampler, share, storage)")
    unknown = sorted(set(raw) - set(TUNE_KEYS))
    if unknown:
        raise bad(f"unknown tune key(s) {', '.join(unknown)}; tune has: {', '.join(TUNE_KEYS)}")
    trials = raw.get("trials")
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise bad(f"tune.trials must be a positive integer (trials per method), got {trials!r}")
    seeds = raw.get("seeds", [1])
    seeds = [seeds] if isinstance(seeds, int) else seeds
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise bad(f"tune.seeds must be a list of integers, got {raw.get('seeds')!r}")
    space = {key: _dim(key, value, run_keys, bad)
             for key, value in (raw.get("space") or DEFAULT_SPACE).items()}
    clash = sorted(set(space) & (set(axes) | fixed))
    if clash:
        raise bad(f"{', '.join(clash)} is both tuned (tune.space) and set by the grid (set, grid "
                  "or sweep); keep one")
    sampler = raw.get("sampler") or {}
    sampler = {"name": sampler} if isinstance(sampler, str) else sampler
    name, seed = sampler.get("name", "sobol"), sampler.get("seed", 0)
    if name not in SAMPLERS or not isinstance(seed, int):
        raise bad(f"tune.sampler must name one of {', '.join(SAMPLERS)} with an integer seed, "
                  f"got {raw.get('sampler')!r}")
    if name == "grid":
        per_dim = round(trials ** (1 / len(space)))
        if per_dim ** len(space) != trials:
            raise bad(f"tune.sampler grid: trials ({trials}) must be a whole number of points "
                      f"per dimension to the power {len(space)} (e.g. {per_dim ** len(space)})")
    share = raw.get("share") or []
    if not isinstance(share, list) or any(k not in axes or k == "seed" for k in share):
        raise bad(f"tune.share must list grid axes other than seed ({', '.join(axes)}), "
                  f"got {share!r}")
    batch = raw.get("batch")
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise bad(f"tune.batch must be a positive integer or null, got {batch!r}")
    storage = _storage(raw.get("storage"), bad)
    extend = raw.get("extend", 0)
    if not isinstance(extend, int) or isinstance(extend, bool) or extend < 0:
        raise bad(f"tune.extend must be a whole number of further trials (0: none), got {extend!r}")
    if extend and name not in FIXED_SAMPLERS:
        raise bad(f"tune.extend needs a fixed sampler ({', '.join(FIXED_SAMPLERS)}): the extra "
                  f"trials are placed beyond the edge of the fixed ones; {name} adapts by itself")
    if extend and not any(d.extendable for d in space.values()):
        raise bad("tune.extend goes beyond log-scale ranges (rates); tune.space has none")
    fidelity = raw.get("fidelity", 1.0)
    if isinstance(fidelity, bool) or not isinstance(fidelity, (int, float)) \
            or not 0 < fidelity <= 1:
        raise bad(f"tune.fidelity must be a share of a final run's steps in (0, 1], got "
                  f"{fidelity!r}")
    if fidelity != 1 and set(space) & set(STEP_KEYS):
        raise bad(f"tune.fidelity scales {', '.join(STEP_KEYS)}; tune.space cannot tune them too")
    return TuneSpec(trials, seeds, space, name, seed, share, storage, batch, extend,
                    float(fidelity))


def _storage(value: Any, bad) -> str | None:
    """tune.storage: None (SQLite in the results folder), a journal file or a database URL."""
    scheme = value.split(":", 1)[0].split("+", 1)[0] if isinstance(value, str) else None
    if value is not None and (scheme not in STORAGE_SCHEMES or "://" not in value
                              or value == JOURNAL):
        raise bad(f"tune.storage must be journal://PATH or a database URL "
                  f"(sqlite:///PATH, postgresql://USER@HOST/DB, mysql://...), got {value!r}")
    return value


def _dim(key: str, value: Any, run_keys: set[str], bad) -> Dim:
    if key not in run_keys:
        raise bad(f"tune.space: {key!r} is not a config key")
    if value == "registry" or (isinstance(value, dict) and value.get("range") == "registry"):
        if key != "learning_rate":
            raise bad(f"tune.space.{key}: the registry range is a learning-rate range")
        scale = value.get("scale", 1.0) if isinstance(value, dict) else 1.0
        if not isinstance(scale, (int, float)) or scale <= 0:
            raise bad(f"tune.space.{key}.scale must be a positive number, got {scale!r}")
        return Dim(key, registry=True, scale=float(scale))
    if not isinstance(value, dict) or "low" not in value or "high" not in value:
        raise bad(f"tune.space.{key} must be `registry` (learning_rate) or a mapping "
                  "{low, high, log, int}")
    try:
        low, high = float(value["low"]), float(value["high"])
    except (TypeError, ValueError):
        raise bad(f"tune.space.{key}: low and high must be numbers, got {value!r}") from None
    log, integer = bool(value.get("log", not value.get("int"))), bool(value.get("int", False))
    if not low < high or (log and low <= 0):
        raise bad(f"tune.space.{key}: need low < high (and low > 0 on a log scale), got {value!r}")
    return Dim(key, low, high, log, integer)
