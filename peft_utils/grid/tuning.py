"""Equal tuning: a grid's `tune:` section makes tuning its first stage.

```yaml
tune:
  trials: 4                     # per method and group: the same for every method, FFT included
  seeds: [1]                    # each trial runs these seeds; its score is their mean
  space:                        # default: {learning_rate: registry}
    learning_rate: {range: registry, scale: 10}   # the method's registry range (log), scaled
    head_learning_rate: {low: 1.0e-3, high: 3.0e-2, log: true}
    warmup_steps: {low: 0, high: 8, int: true}
  sampler: {name: sobol, seed: 0}   # sobol (default) | grid | random | tpe
  share: [scenario]             # grid axes that share one tuning (trials run at the first value)
  storage: null                 # Optuna storage URL; default sqlite:///<results>/tuning.db
  batch: null                   # trials asked per group before results are told (adaptive samplers)
  extend: 1                     # the edge rule (fixed samplers): see below
  fidelity: 1.0                 # a trial's share of a final run's steps: see below
```

Groups: the grid's cells with the same values except the seed and the `share` axes (so one
group per task × scenario × method by default, per task × method with `share: [scenario]`).
Stage 1 runs `trials` trials per group; a trial is an ordinary run (its own record, marked
`tuning: {stage: tune, group, trial, values}`) scored on the training languages' dev rows (the
study's `selection_score`) and never on test: trials do not predict test at all. Stage 2 runs
the grid's cells with their group's best trial's values (`tuning: {stage: final, ...,
trial_dev}`); the analysis compares methods on those.

Samplers: `sobol` (scrambled Sobol points, seeded) and `grid` (evenly spaced points, log
scale where the dimension is) fix trial k's position in the space before anything runs: the
same trials on every rerun and with any number of workers, and every method tries the same
relative positions of its own range. `random` and `tpe` are Optuna's samplers, asked in the
runner (reproducible for one batch per group; TPE adapts only across batches).

The edge rule (`extend: N`): a method whose best trial lies at the edge of what it tried (the
lowest or highest value along a log-scale dimension) has not had its optimum bracketed, and
the equal budget then favours the methods whose range happened to fit. Once every method of a
comparison (the groups that differ only by method) has finished its trials, if any of them
chose an edge, every one of them gets the same N further trials: beyond its edge, one grid
step further each (a method at an edge), or halfway to its best's neighbours (a method whose
choice is interior). So budgets stay equal, and the report says whose final choice is
interior.

Fidelity (`fidelity: f`, 0 < f <= 1): every trial runs f of a final run's optimiser steps,
with its warm-up and evaluation interval scaled alike: the lowest rung of successive halving
(Jamieson & Talwalkar, AISTATS 2016; Li et al., JMLR 2018, Hyperband), paid once per method
and equal for all. A rate chosen on a shorter run can differ from the best for the full one
(short runs favour larger rates), which the report's "tuning could not separate the rates"
check does not see; the demo uses it to fit its time budget (docs/tuning.md).

Optuna's storage keeps the bookkeeping: one study per group, one trial per position (the
user attribute `index`), told COMPLETE with the dev score or FAIL. The records stay the
source of truth, so a runner killed at any point and started again tells what finished,
reruns what did not (a failed trial with the same values), and never counts a trial twice.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from peft_utils.core.config import ConfigError
from peft_utils.core.runs import read_record, run_dir, run_lock
from peft_utils.core.timing import run_seconds
from peft_utils.grid.spec import Cell
from peft_utils.grid.tune_spec import JOURNAL, TuneSpec

TUNING_LOCK = ".tuning.lock"   # in the results folder: held while a runner asks or tells


# ---- groups and trials ----------------------------------------------------------------
@dataclass
class Group:
    """The cells that share one tuning: the same values but for the seed and `share` axes."""
    name: str
    method: str
    preset: Path
    values: dict[str, Any]          # the first cell's grid values: where the trials run
    cells: list                     # the grid's cells (finals) this group's choice applies to


@dataclass
class Trial:
    group: Group
    index: int
    values: dict[str, Any]          # the sampled settings; {} while an adaptive sampler waits
    runs: list                      # one Cell per tuning seed

    def scores(self, score: Callable[[dict], float | None]) -> tuple[str, float | None]:
        """(complete | failed | pending, mean dev score over the seeds)."""
        values = []
        for cell in self.runs:
            try:
                record = read_record(run_dir(cell.config.results_dir, cell.run_id))
            except (OSError, ValueError):
                return "pending", None
            if record.get("status") != "complete":
                return "failed", None
            values.append(score(record))
        if any(v is None for v in values):
            return "failed", None
        return "complete", sum(values) / len(values)


def groups(grid) -> list[Group]:
    """The grid's cells grouped by what tuning is shared across, in grid order; each group's
    name is its Optuna study's (after the grid's name)."""
    spec: TuneSpec = grid.tune
    found: dict[tuple, Group] = {}
    for cell in grid.cells:
        kept = {k: v for k, v in cell.values.items() if k != "seed" and k not in spec.share}
        key = (str(cell.preset), repr(sorted(kept.items(), key=str)), cell.config.method)
        if key not in found:
            label = " ".join([cell.preset.stem, f"method={cell.config.method}"]
                             + [f"{k}={v}" for k, v in kept.items() if k != "method"])
            if any(g.name == label for g in found.values()):   # same-named presets
                label += f" #{len(found)}"
            values = {k: v for k, v in cell.values.items() if k != "seed"}
            found[key] = Group(label, cell.config.method, cell.preset, values, [])
        found[key].cells.append(cell)
    return list(found.values())


def trial_values(grid, group: Group, index: int) -> dict[str, Any]:
    """Trial `index`'s settings under a fixed sampler."""
    task = _task(grid)
    point = grid.tune.positions()[index]
    return {dim.key: dim.value(u, group.method, task)
            for dim, u in zip(grid.tune.space.values(), point)}


def trial(grid, group: Group, index: int, values: dict[str, Any]) -> Trial:
    """The runs of trial `index` of `group` with `values`."""
    runs = []
    for seed in grid.tune.seeds:
        marker = {"stage": "tune", "group": group.name, "trial": index, "values": values}
        cell_values = {**group.values, "seed": seed, **values}
        config = grid.build(group.preset, {**cell_values, "tuning": marker})
        steps = grid.tune.trial_steps(config)   # fewer steps at a lower fidelity
        if steps:
            config = grid.build(group.preset, {**cell_values, **steps, "tuning": marker})
        runs.append(Cell(config, group.preset, cell_values))
    return Trial(group, index, values, runs)


def planned_trials(grid) -> list[Trial]:
    """Every trial of a fresh grid (dry run): values where the sampler fixes them."""
    return [trial(grid, group, k, trial_values(grid, group, k) if grid.tune.fixed else {})
            for group in groups(grid) for k in range(grid.tune.trials)]


# ---- the Optuna bookkeeping --------------------------------------------------------------
class Tuner:
    """Stage 1's state: one Optuna study per group in the grid's storage."""

    def __init__(self, grid):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.grid, self.spec = grid, grid.tune
        self.task = _task(grid)
        self.groups = groups(grid)
        self.storage = storage_url(grid)
        with self.locked():   # a second runner may be creating the same tables and studies
            storage = open_storage(self.storage)
            self.studies = {g.name: optuna.create_study(
                study_name=f"{grid.name}/{g.name}", storage=storage, direction="maximize",
                sampler=self._sampler(), load_if_exists=True) for g in self.groups}

    def locked(self):
        """Runners sharing the grid's results folder (several machines, or two runs started
        at once) ask and tell one at a time: each sees what the other asked, so no trial,
        study or extension is added twice."""
        return run_lock(self.grid.results_dir, TUNING_LOCK)

    def _sampler(self):
        import optuna

        seed = self.spec.sampler_seed
        if self.spec.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)   # fixed samplers enqueue their points

    def _distributions(self, group: Group, values: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
        """The group's search space, widened to hold `values` (an extension trial's)."""
        out = {}
        for dim in self.spec.space.values():
            dist = dim.distribution(group.method, self.task)
            value = (values or {}).get(dim.key)
            if value is not None and not dist.low <= value <= dist.high:
                dist = type(dist)(min(dist.low, value), max(dist.high, value), log=dist.log)
            out[dim.key] = dist
        return out

    # ---- the edge rule ----------------------------------------------------------------
    def comparison(self, group: Group) -> list[Group]:
        """The groups compared with `group`: the same values but for the method."""
        def key(g: Group):
            return str(g.preset), repr(sorted(((k, v) for k, v in g.values.items()
                                               if k != "method"), key=str))
        return [g for g in self.groups if key(g) == key(group)]

    def _base_best(self, by_index: dict[int, list]) -> int | None:
        """The best of the fixed trials (ties: the first); None without a complete one."""
        done = [(k, _value(ts)) for k, ts in sorted(by_index.items())
                if k < self.spec.trials and _state(ts) == "complete"]
        return max(done, key=lambda d: d[1])[0] if done else None

    def _base_settled(self, by_index: dict[int, list]) -> bool:
        return all(k in by_index and _state(by_index[k]) != "running"
                   for k in range(self.spec.trials))

    def edges(self, index: int) -> list[int]:
        """Per dimension: -1 (+1) where trial `index` lies at the lowest (highest) position the
        fixed trials tried along an extendable dimension, else 0."""
        points = self.spec.positions()[:self.spec.trials]
        out = []
        for d, dim in enumerate(self.spec.space.values()):
            axis = [p[d] for p in points]
            u = points[index][d]
            out.append(0 if not dim.extendable or min(axis) == max(axis) else
                       -1 if u == min(axis) else 1 if u == max(axis) else 0)
        return out

    def extension(self, group: Group) -> list[dict[str, Any]] | None:
        """The values of `group`'s extension trials: [] when the rule does not apply (no
        `extend`, no method of the comparison at an edge, or no complete trial to extend
        from); None while some trial of the comparison is still to finish."""
        if not self.spec.extend:
            return []
        histories = {g.name: self._by_index(g) for g in self.comparison(group)}
        if not all(map(self._base_settled, histories.values())):
            return None
        chosen = {name: self._base_best(h) for name, h in histories.items()}
        if not any(k is not None and any(self.edges(k)) for k in chosen.values()):
            return []
        best = chosen[group.name]
        if best is None:
            return []
        centre, step, dims = self.spec.positions()[best], self.spec.spacing, \
            list(self.spec.space.values())
        directions = self.edges(best)
        out = []
        for j in range(1, self.spec.extend + 1):
            if any(directions):   # beyond the edge, a grid step further each time
                point = [u + s * j * step for u, s in zip(centre, directions)]
            else:                 # around an interior choice: halfway, then a quarter, ...
                offset = (1 if j % 2 else -1) * step / 2 ** ((j + 1) // 2)
                point = [u + offset if dim.extendable else u for u, dim in zip(centre, dims)]
            out.append({dim.key: dim.value(u, group.method, self.task)
                        for dim, u in zip(dims, point)})
        return out

    def _extension_trials(self, group: Group, by_index: dict[int, list],
                          ask: bool) -> list[Trial]:
        """The group's extension trials asked so far and, with `ask`, asked now where the rule
        has decided (their values are then stored, so a rerun keeps them)."""
        base = self.spec.trials
        if ask and not any(k >= base for k in by_index):
            study = self.studies[group.name]
            for j, values in enumerate(self.extension(group) or []):
                study.enqueue_trial(values, {"index": base + j})
                number = study.ask(self._distributions(group, values)).number
                by_index[base + j] = [study.trials[number]]
        return [trial(self.grid, group, k, _params(ts)) for k, ts in sorted(by_index.items())
                if k >= base]

    def _by_index(self, group: Group) -> dict[int, list]:
        study = self.studies[group.name]
        found: dict[int, list] = {}
        for t in study.get_trials(deepcopy=False):
            if "index" in t.user_attrs:
                found.setdefault(t.user_attrs["index"], []).append(t)
        return found

    def trials(self, ask: bool = True) -> list[Trial]:
        """Every trial asked so far and, with `ask`, the next ones asked: what stage 1 must
        run now. Without `ask` (status), nothing is written: trials not yet asked are shown
        where a fixed sampler knows their values."""
        if not ask:
            return self._trials(ask)
        with self.locked():
            return self._trials(ask)

    def _trials(self, ask: bool) -> list[Trial]:
        out = []
        for group in self.groups:
            study, dists = self.studies[group.name], self._distributions(group)
            by_index = self._settle_orphans(group) if ask else self._by_index(group)
            running = sum(1 for ts in by_index.values() if _state(ts) == "running")
            # Fixed samplers ask every trial at once; adaptive ones a batch at a time.
            room = self.spec.trials if self.spec.fixed else \
                (self.spec.batch or self.spec.trials) - running
            for k in range(self.spec.trials):
                if k not in by_index and not ask:
                    if self.spec.fixed:
                        out.append(trial(self.grid, group, k, trial_values(self.grid, group, k)))
                    continue
                if k not in by_index:
                    if room <= 0:
                        continue
                    room -= 1
                    if self.spec.fixed:
                        study.enqueue_trial(trial_values(self.grid, group, k), {"index": k})
                        number = study.ask(dists).number
                    else:
                        number = study.ask(dists).number
                        self._label(group, number, k)
                    by_index[k] = [study.trials[number]]
                out.append(trial(self.grid, group, k, _params(by_index[k])))
        for group in self.groups:   # after every group's fixed trials: the rule looks at all
            by_index = self._by_index(group)
            out += self._extension_trials(group, by_index, ask)
        return out

    def _label(self, group: Group, number: int, index: int) -> None:
        import optuna

        study = self.studies[group.name]
        optuna.trial.Trial(study, study.trials[number]._trial_id).set_user_attr("index", index)

    def _settle_orphans(self, group: Group) -> dict[int, list]:
        """The group's trials by position, after what a runner killed between two storage
        calls left: an enqueued trial not yet asked (fixed samplers) is asked now; an asked
        trial not yet labelled with its position (adaptive ones) takes the first free one.
        So no trial is lost or counted twice."""
        import optuna

        study = self.studies[group.name]
        waiting = optuna.trial.TrialState.WAITING
        while queued := [t for t in study.get_trials(deepcopy=False) if t.state == waiting]:
            # ask takes the oldest enqueued trial, its index kept
            study.ask(self._distributions(group, queued[0].system_attrs.get("fixed_params")))
        by_index = self._by_index(group)
        for t in study.get_trials(deepcopy=False):
            if "index" not in t.user_attrs and t.state == optuna.trial.TrialState.RUNNING:
                free = next(k for k in itertools.count() if k not in by_index)
                self._label(group, t.number, free)
                by_index[free] = [t]
        return by_index

    def tell(self, trials: list[Trial]) -> int:
        """Tell Optuna what each trial's records say; the number of trials settled now."""
        with self.locked():
            return self._tell(trials)

    def _tell(self, trials: list[Trial]) -> int:
        import optuna

        score, told = self.grid.study.selection_score, 0
        for t in trials:
            study = self.studies[t.group.name]
            state, value = t.scores(score)
            history = self._by_index(t.group).get(t.index, [])
            current = _state(history)
            if state == "pending" or current == "complete":
                continue
            if current == "running":
                study.tell(history[-1].number, value if state == "complete" else None,
                           state=optuna.trial.TrialState.COMPLETE if state == "complete"
                           else optuna.trial.TrialState.FAIL)
                told += 1
            elif state == "complete":   # a failed trial whose runs were retried and finished
                study.add_trial(optuna.trial.create_trial(
                    params=t.values, distributions=self._distributions(t.group, t.values),
                    value=value,
                    user_attrs={"index": t.index, "retry_of": history[-1].number}))
                told += 1
        return told

    def finished(self) -> bool:
        for group in self.groups:
            by = self._by_index(group)
            extension = self.extension(group)
            if extension is None or len(by) != self.spec.trials + len(extension) or \
                    any(_state(ts) == "running" for ts in by.values()):
                return False
        return True

    def best(self, group: Group) -> tuple[int, dict[str, Any], float] | None:
        """(index, values, dev score) of the group's best complete trial; ties: the first."""
        done = [(k, _params(ts), _value(ts)) for k, ts in sorted(self._by_index(group).items())
                if _state(ts) == "complete"]
        return max(done, key=lambda d: d[2]) if done else None

    def finals(self) -> tuple[list, list[str]]:
        """The grid's cells with their group's chosen values; the groups without any complete
        trial (their cells cannot run yet)."""
        cells, missing = [], []
        for group in self.groups:
            best = self.best(group)
            if best is None:
                missing.append(group.name)
                continue
            cells += [final_cell(self.grid, group, cell, *best) for cell in group.cells]
        return cells, missing

    def longest_first(self, cells: list) -> list:
        """Final `cells` ordered by their group's mean trial time, longest first (a stable
        sort; groups without a timed trial last): a local pool then ends on short cells, not
        with one worker alone on a long one (Graham's longest-processing-time rule)."""
        seconds = {group.name: self.trial_seconds(group) for group in self.groups}
        return sorted(cells, key=lambda cell: -(seconds.get(cell.config.tuning["group"]) or 0))

    def trial_seconds(self, group: Group) -> float | None:
        """The mean time of the group's complete trial runs, from their records' phases."""
        times = []
        for index, history in self._by_index(group).items():
            for cell in trial(self.grid, group, index, _params(history)).runs:
                try:
                    record = read_record(run_dir(cell.config.results_dir, cell.run_id))
                except (OSError, ValueError):
                    continue
                if record.get("status") == "complete":
                    times.append(run_seconds(record["costs"]["phases"]))
        return sum(times) / len(times) if times else None


def final_cell(grid, group: Group, cell, index: int, values: dict[str, Any], score: float):
    marker = {"stage": "final", "group": group.name, "trial": index, "trial_dev": score,
              "values": values}
    config = grid.build(cell.preset, {**cell.values, **values, "tuning": marker})
    return Cell(config, cell.preset, cell.values)


def _task(grid) -> str:
    """The registry task of the grid's study (its methods and their rate ranges)."""
    return grid.study.task


def _state(history: list) -> str:
    """complete | failed | running, over the attempts of one trial position."""
    names = {t.state.name for t in history}
    if "COMPLETE" in names:
        return "complete"
    return "running" if names & {"RUNNING", "WAITING"} else "failed"


def _params(history: list) -> dict[str, Any]:
    return dict(history[-1].params)


def _value(history: list) -> float:
    return next(t.value for t in history if t.state.name == "COMPLETE")


def storage_url(grid) -> str:
    """The grid's Optuna storage: its `tune.storage` (a journal file's path made absolute,
    relative to the results folder), else an SQLite file in the results folder (created
    here)."""
    grid.results_dir.mkdir(parents=True, exist_ok=True)
    storage = grid.tune.storage
    if storage and storage.startswith(JOURNAL):
        return JOURNAL + str((grid.results_dir / storage[len(JOURNAL):]).resolve())
    return storage or f"sqlite:///{grid.results_dir / 'tuning.db'}"


def shown_storage(url: str) -> str:
    """The storage URL to print: a database password replaced by ***."""
    if url.startswith(JOURNAL):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:   # not a URL SQLAlchemy reads: Optuna will say so when it opens it
        return url


def open_storage(url: str):
    """The Optuna storage at `url`: a journal file (journal:///PATH) or a database."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    try:
        return optuna.storages.get_storage(url)
    except ImportError as err:   # the database's driver (SQLAlchemy imports it)
        raise ConfigError(f"tune.storage {url.split(':')[0]}: its driver is missing ({err}); "
                          "pip install 'peft-utils[cluster]' (psycopg2 for postgresql://, "
                          "pymysql for mysql+pymysql://)") from None


def require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("a grid with `tune:` needs Optuna: pip install optuna") from None
