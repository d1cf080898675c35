"""Where each cell of a grid stands, read from its run folder (the only state there is)."""
from __future__ import annotations

from pathlib import Path

from peft_utils.core.runs import read_record, run_dir
from peft_utils.grid.spec import Cell, Grid

COMPLETE, FAILED, PARTIAL, PENDING = "complete", "failed", "running-or-partial", "pending"
STATES = (COMPLETE, FAILED, PARTIAL, PENDING)


def cell_state(results_dir: Path, cell: Cell) -> str:
    """complete / failed from the record; a folder without a record is a cell running now
    or one that was interrupted (the next `grid run` redoes it); no folder: pending."""
    folder = run_dir(results_dir, cell.run_id)
    try:
        status = read_record(folder).get("status")
    except (OSError, ValueError):
        status = None
    if status in (COMPLETE, FAILED):
        return status
    return PARTIAL if folder.is_dir() and any(folder.iterdir()) else PENDING


def status_table(grid: Grid) -> str:
    """One line per cell: state, run id, dev score (main metric, overall), varying settings.
    A tuned grid: the trials (stage 1), then the final cells once tuning has chosen."""
    from peft_utils.grid.slurm import COORDINATOR, job_lines

    jobs = job_lines(grid)
    head = [f"coordinator job {jobs[COORDINATOR]}"] if COORDINATOR in jobs else []
    if not grid.tune:
        return "\n".join([*head, _table(grid, grid.cells, jobs)])
    from peft_utils.grid.tuning import Tuner, shown_storage

    tuner = Tuner(grid)
    trials = [c for t in tuner.trials(ask=False) for c in t.runs]
    finals, untuned = tuner.finals() if tuner.finished() else ([], [g.name for g in tuner.groups])
    stored = shown_storage(tuner.storage)
    lines = [*head, f"stage 1 (tune): {len(trials)} trial runs (trials in {stored})",
             _table(grid, trials, jobs),
             f"stage 2 (final): {len(finals)} of {len(grid.cells)} cells configured"]
    if finals:
        lines.append(_table(grid, finals, jobs))
    if untuned:
        lines.append(f"waiting for tuning: {', '.join(untuned)}")
    return "\n".join(lines)


def _table(grid: Grid, cells: list[Cell], jobs: dict[str, str] | None = None) -> str:
    """`jobs`: run id -> `JOBID STATE` of its Slurm job, a column when any cell has one."""
    keys = grid.varying()
    jobs = jobs or {}
    rows = []
    counts = dict.fromkeys(STATES, 0)
    for cell in cells:
        state = cell_state(grid.results_dir, cell)
        counts[state] += 1
        rows.append((state, cell.run_id, _dev_score(grid.results_dir, cell, state),
                     jobs.get(cell.run_id, "-"), grid.describe(cell, keys)))
    show_jobs = any(cell.run_id in jobs for cell in cells)
    width = [max([len(h)] + [len(r[i]) for r in rows])
             for i, h in enumerate(("state", "run id", "dev", "slurm job"))]
    job_head = f"  {'slurm job':<{width[3]}}" if show_jobs else ""
    lines = [f"{'state':<{width[0]}}  {'run id':<{width[1]}}  {'dev':>{width[2]}}{job_head}"
             "  settings"]
    lines += [f"{s:<{width[0]}}  {r:<{width[1]}}  {d:>{width[2]}}"
              + (f"  {j:<{width[3]}}" if show_jobs else "") + f"  {v}"
              for s, r, d, j, v in rows]
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items())
                 + f" of {len(cells)} cells")
    return "\n".join(lines)


def _dev_score(results_dir: Path, cell: Cell, state: str) -> str:
    if state != COMPLETE:
        return "-"
    try:
        metrics = read_record(run_dir(results_dir, cell.run_id))["metrics"]
        return f"{metrics['dev']['overall'][metrics['main_metric']]:.4f}"
    except (OSError, ValueError, KeyError, TypeError):
        return "-"
