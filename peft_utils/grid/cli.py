"""`python -m peft_utils grid run|status|run-cell|worker`."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path


def register(subparsers) -> None:
    grid = subparsers.add_parser("grid", help="run a grid of configurations (one notebook each)")
    sub = grid.add_subparsers(dest="grid_command", required=True)

    run = sub.add_parser("run", help="run the cells of a grid file that are not complete")
    run.add_argument("grid_file")
    run.add_argument("--workers", type=int, default=1,
                     help="cells at once (local: processes; slurm: array parallelism)")
    run.add_argument("--executor", choices=("local", "slurm"), default="local")
    run.add_argument("--dry-run", action="store_true", help="list the cells and stop")
    run.add_argument("--json", action="store_true", help="with --dry-run: the cells as JSON "
                     "(stage, task, scenario, method, seed, trial, values, run_id)")
    run.add_argument("--results", help="results folder (default: the grid file's, else results)")
    run.add_argument("--notebook", help="notebook to execute (default: the study's, "
                     "notebooks/train.ipynb or notebooks/mt_train.ipynb)")
    run.add_argument("--keep-kernels", action="store_true",
                     help="local: each worker keeps its notebook kernel from cell to cell "
                     "(reset in between): faster, the same metrics, but a worker's later cells "
                     "train faster and, on CPU, peak higher than its first; for exploring, not "
                     "for the cost tables")
    run.add_argument("--detach", action="store_true",
                     help="slurm: submit and return at once (a tuned grid: its stages in a "
                     "coordinator job); follow with `grid status`, collect with `grid run`")
    run.add_argument("--in-coordinator", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=_run)

    status = sub.add_parser("status", help="state of every cell of a grid file")
    status.add_argument("grid_file")
    status.add_argument("--results", help="results folder (default: the grid file's, else results)")
    status.set_defaults(func=_status)

    cell = sub.add_parser("run-cell", help="(internal) execute one cell from its grid-cell.json")
    cell.add_argument("spec")
    cell.set_defaults(func=lambda args: _run_cell(args.spec))

    worker = sub.add_parser("worker", help="(internal) run the cells named on stdin, one "
                            "kernel kept across them")
    worker.set_defaults(func=lambda args: _worker())


def _run(args) -> int:
    from peft_utils.grid.state import COMPLETE, cell_state
    from peft_utils.grid.validate import load_grid_checked

    grid = load_grid_checked(args.grid_file, results_dir=args.results)
    if args.dry_run:
        from peft_utils.grid.plan import print_plan

        print_plan(grid, as_json=args.json)
        return 0
    if args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.detach and (args.executor != "slurm" or grid.slurm.get("cluster", "slurm") != "slurm"):
        # Jobs of `cluster: local` are the runner's own processes: nothing would outlive it.
        print("error: --detach needs --executor slurm and a Slurm cluster (not `cluster: "
              "local`)", file=sys.stderr)
        return 2
    if args.executor == "slurm" and not args.in_coordinator:
        done = _coordinator_first(grid, args)
        if done is not None:
            return done
    if grid.tune:
        return _run_tuned(grid, args)
    todo = [c for c in grid.cells if cell_state(grid.results_dir, c) != COMPLETE]
    print(f"grid {grid.path.name}: {len(grid.cells)} cells, {len(grid.cells) - len(todo)} "
          f"already complete (skipped), {len(todo)} to run; results in {grid.results_dir}")
    if not todo:
        return 0
    _check(grid, todo)
    return _execute(grid, todo, args)


def _coordinator_first(grid, args) -> int | None:
    """What a grid's coordinator job (`--detach` of a tuned grid) decides before this runner
    does anything: wait for it to end, or submit it; None: go on as usual."""
    from peft_utils.grid.slurm import coordinator_running, follow_coordinator, submitting

    if not args.detach:
        return None if follow_coordinator(grid) else 130
    with submitting(grid):   # two `--detach` at once submit one coordinator
        if job := coordinator_running(grid):
            print(f"grid {grid.path.name}: coordinator job {job} is already running it; "
                  f"follow with `grid status {args.grid_file}`")
            return 0
        if grid.tune:
            _check(grid, grid.cells)   # a bad data path stops here, not in the job
            return _detach_tuned(grid, args)
    return None


def _detach_tuned(grid, args) -> int:
    """The tuned grid's runner itself as a Slurm job: it asks, submits and tells stage after
    stage while nobody is logged in; `grid status` follows it, `grid run` waits for it."""
    from peft_utils.grid.executors import submit_coordinator

    argv = ["grid", "run", str(grid.path), "--executor", "slurm", "--workers",
            str(args.workers), "--results", str(grid.results_dir), "--in-coordinator"]
    if args.notebook:
        argv += ["--notebook", str(Path(args.notebook).resolve())]
    job = submit_coordinator(grid, argv)
    print(f"grid {grid.path.name}: submitted coordinator job {job}, which runs the tuning "
          f"and final stages; follow with `grid status {args.grid_file}`, wait for the end "
          f"with `grid run {args.grid_file} --executor slurm`")
    return 0


def _check(grid, cells) -> None:
    """Paths and data of every cell to run, before any runs: a bad file stops the grid now."""
    from peft_utils.core.config import ConfigError
    from peft_utils.grid.validate import cell_problems

    notes: list[tuple[str, str]] = []
    problems = cell_problems(grid, cells, notes)
    _print_notes(notes)
    if problems:
        raise ConfigError(f"{grid.path}: {len(problems)} problem(s), nothing was run:\n"
                          + "\n".join(f"  - {p}" for p in problems))


def _run_tuned(grid, args) -> int:
    """Stage 1, the trials (every method the same number, scored on dev), then stage 2, the
    grid's cells at their group's best trial's values. Rerunning finishes what is missing."""
    from peft_utils.grid.state import COMPLETE, cell_state
    from peft_utils.grid.tuning import Tuner, require_optuna, shown_storage

    require_optuna()
    tuner = Tuner(grid)
    print(f"grid {grid.path.name}: tuning {len(tuner.groups)} group(s); results in "
          f"{grid.results_dir}, trials in {shown_storage(tuner.storage)}")
    for line in grid.tune.describe():
        print(line)
    checked = False
    failed, asked = 0, None
    # Adaptive samplers: one round per batch; the edge rule: one round more.
    for _ in range(grid.tune.trials + 2):
        trials = tuner.trials()
        todo = [c for t in trials for c in t.runs
                if cell_state(grid.results_dir, c) != COMPLETE]
        if todo:
            if not checked:   # the final cells need the same data; check them too
                _check(grid, [*todo, *grid.cells])
                checked = True
            print(f"stage 1 (tune): {len(todo)} trial run(s) to run", flush=True)
            # Trials are judged on dev scores alone, which a kept kernel leaves identical: they
            # keep their kernels (their time is the tuning budget's, not a method's cost).
            rc = _execute(grid, todo, args, keep_kernels=True)
            if rc == 130:
                return rc
            failed = failed or rc
        told = tuner.tell(trials)
        # Nothing ran, nothing told and nothing new asked: nothing left to do here. (Another
        # runner may have told between this runner's asking and telling: ask once more.)
        if tuner.finished() or not (todo or told or len(trials) != asked):
            break
        asked = len(trials)
    if not tuner.finished():
        print("error: tuning has not finished (trials still running elsewhere, or failing); "
              "run the same command again once they have ended", file=sys.stderr)
        return failed or 1
    finals, untuned = tuner.finals()
    for name in untuned:
        print(f"error: no trial of {name} completed; its final cells cannot run (see the "
              "trials' records, fix, and run again)", file=sys.stderr)
    todo = tuner.longest_first([c for c in finals if cell_state(grid.results_dir, c) != COMPLETE])
    print(f"stage 2 (final): {len(finals)} cells, {len(finals) - len(todo)} already complete, "
          f"{len(todo)} to run", flush=True)
    rc = _execute(grid, todo, args) if todo else 0
    return rc or failed or (1 if untuned else 0)


def _print_notes(notes: list[tuple[str, str]]) -> None:
    """What cells' data hold (a study's notes that begin `data `, shown as they are) and what
    they will run without (they evaluate where data exist): one line per note, with the cells
    it concerns."""
    cells: dict[str, list[str]] = {}
    for run_id, note in notes:
        cells.setdefault(note, []).append(run_id)
    for note, run_ids in cells.items():
        shown = ", ".join(run_ids[:3]) + (f", and {len(run_ids) - 3} more" if len(run_ids) > 3
                                          else "")
        label = "" if note.startswith("data ") else "note: "
        print(f"{label}{note} ({len(run_ids)} cell(s): {shown})")


def _execute(grid, todo, args, keep_kernels: bool = False) -> int:
    from peft_utils.grid.cell import ELSEWHERE
    from peft_utils.grid.executors import (
        Progress,
        run_local,
        run_submitit,
        visible_gpus,
    )

    notebook = Path(args.notebook).resolve() if args.notebook else grid.notebook
    # `kill`, or Slurm ending the job that runs the grid, stops it like Ctrl-C: workers too.
    signal.signal(signal.SIGTERM, _interrupt)
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored:
    # Ctrl-C or `kill -INT` must still stop the grid however it was launched.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    progress = Progress(len(todo), echo=lambda line: print(line, flush=True))
    start = time.monotonic()
    keep = keep_kernels or args.keep_kernels
    if args.executor == "local":
        gpus = visible_gpus()
        print(f"local executor: {args.workers} worker(s) on "
              + (f"GPU(s) {','.join(gpus)}" if gpus else "CPU")
              + (", kernels kept from cell to cell (costs not comparable)" if keep else ""),
              flush=True)

    def launch(cells):
        if args.executor == "local":
            return run_local(grid, cells, args.workers, progress, notebook, keep)
        return run_submitit(grid, cells, args.workers, progress, notebook, args.detach)

    try:
        outcomes = launch(todo)
        if args.detach:
            print(f"detached: follow with `grid status {args.grid_file}`, collect with "
                  f"`grid run {args.grid_file} --executor slurm`")
            return 0
        # Cells another runner was running: wait for them; run those it left unfinished.
        while left := _wait_for_other_runners(todo, outcomes):
            progress.total += len(left)
            ids = {c.run_id for c in left}
            outcomes = [o for o in outcomes if o.run_id not in ids] + launch(left)
    except KeyboardInterrupt:
        if args.executor == "local":
            print(f"interrupted after {progress.done} of {len(todo)} cells; run the same "
                  "command again to finish the grid", file=sys.stderr)
        else:   # a rerun now would submit the still-running cells a second time
            print(f"stopped waiting after {progress.done} of {len(todo)} cells; the jobs go on: "
                  "follow them with `grid status`, rerun once they have ended", file=sys.stderr)
        return 130
    failed = [o for o in outcomes if o.failed]
    elsewhere = sum(o.status == ELSEWHERE for o in outcomes)
    print(f"{len(outcomes) - len(failed) - elsewhere} complete, {len(failed)} failed"
          + (f", {elsewhere} run by another runner" if elsewhere else "")
          + f" in {time.monotonic() - start:.0f} s")
    if failed:
        print("failed cells:", file=sys.stderr)
        for outcome in failed:
            print(f"  {outcome.run_id}: {_first_line(outcome.error)}", file=sys.stderr)
        return 1
    return 0


def _wait_for_other_runners(cells, outcomes) -> list:
    """Wait until the cells another runner was running have ended (what follows, e.g. telling
    Optuna, reads their records); those it left without a record (it was stopped)."""
    from peft_utils.grid.cell import ELSEWHERE, running_elsewhere
    from peft_utils.grid.state import PARTIAL, PENDING, cell_state

    ids = {o.run_id for o in outcomes if o.status == ELSEWHERE}
    theirs = [c for c in cells if c.run_id in ids]
    while any(map(running_elsewhere, theirs)):
        time.sleep(1.0)
    return [c for c in theirs if cell_state(c.config.results_dir, c) in (PARTIAL, PENDING)]


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _first_line(error: str | None) -> str:
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"


def _status(args) -> int:
    from peft_utils.grid.state import status_table
    from peft_utils.grid.validate import load_grid_checked

    print(status_table(load_grid_checked(args.grid_file, results_dir=args.results)))
    return 0


def _run_cell(spec: str) -> int:
    from peft_utils.grid.cell import main

    return main(spec)


def _worker() -> int:
    from peft_utils.grid.worker import main

    return main()
