"""What `grid run --dry-run` shows: the cells, and for a grid with `tune:` the tuning plan
(groups, trials per method, the space) before the final cells; `--json` gives one entry per
run with at least stage (tune | final), task, scenario, method, seed and, for trials, trial."""
from __future__ import annotations

import json
from typing import Any

from peft_utils.grid.spec import Cell, Grid


def plan_entries(grid: Grid) -> list[dict[str, Any]]:
    """Every run the grid will make, trials first. Final cells of a tuned grid have no run id
    yet: it depends on the values tuning chooses."""
    entries = []
    if grid.tune:
        from peft_utils.grid.tuning import planned_trials

        for t in planned_trials(grid):
            for cell in t.runs:
                entries.append({**_entry(cell, "tune"), "group": t.group.name, "trial": t.index,
                                "values": t.values or None,
                                "run_id": cell.run_id if t.values else None})
    for cell in grid.cells:
        entry = _entry(cell, "final")
        if grid.tune:
            entry.update(values=None, run_id=None)
        entries.append(entry)
    return entries


def _entry(cell: Cell, stage: str) -> dict[str, Any]:
    config = cell.config
    # What the cell's task is called: a data set's task, an MT pair, else the study's kind.
    task = getattr(config, "task_name", None) or getattr(config, "pair", None) \
        or config.record_kind
    return {"stage": stage, "task": task, "scenario": getattr(config, "scenario", None),
            "method": config.method, "seed": config.seed, "run_id": cell.run_id}


def print_plan(grid: Grid, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps(plan_entries(grid), indent=1))
        return
    keys = grid.varying()
    if grid.tune:
        _print_tuning(grid)
        keys = [k for k in keys if k not in grid.tune.space]   # chosen by tuning
    for cell in grid.cells:
        prefix = "(after tuning)" if grid.tune else cell.run_id
        print(f"{prefix}  {grid.describe(cell, keys)}")
    if grid.duplicates:
        print(f"({grid.duplicates} duplicate cells collapsed)")
    print(f"{len(grid.cells)} {'final ' if grid.tune else ''}cells")


def _print_tuning(grid: Grid) -> None:
    from peft_utils.grid.tuning import groups, planned_trials

    print("stage 1 (tune):")
    for line in grid.tune.describe():
        print(f"  {line}")
    trials = planned_trials(grid)
    for group in groups(grid):
        mine = [t for t in trials if t.group is group or t.group.name == group.name]
        print(f"  {group.name}: {len(mine)} trials, for {len(group.cells)} final cells")
        for t in mine:
            values = ", ".join(f"{k}={v:g}" for k, v in t.values.items()) or \
                "sampled at run time"
            print(f"    trial {t.index}: {values}")
    runs = sum(len(t.runs) for t in trials)
    print(f"{runs} trial runs")
    print("stage 2 (final): the grid's cells at their group's best trial's values")
