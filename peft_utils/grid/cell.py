"""One grid cell: execute notebooks/train.ipynb with papermill into the run folder, render it
to HTML, and make sure a record exists whatever happened. A tuning trial runs the study's
train_and_evaluate directly: a trial is one of many short runs, and nobody reads its notebook.

A cell runs in a process of the runner's (`grid.worker`, which runs cell after cell in a
kernel it keeps; `grid run-cell SPEC`, one cell; or a submitit job) so that it gets its slot's
environment (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS), which the notebook kernel inherits, and so
that papermill's change of working directory stays private to it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peft_utils.core.runs import (HEADLESS, RunBusyError, atomic_write_text, is_locked,
                                  record_status, remove_stale_temp_files, run_dir, run_lock,
                                  write_failure)
from peft_utils.core.study import Study, study, study_of_config

if TYPE_CHECKING:
    from peft_utils.grid.kernel import WarmKernel

KERNEL = "python3"   # `python -m ipykernel install --sys-prefix --name python3` in the venv
SPEC = "grid-cell.json"
CELL_LOCK = ".cell.lock"   # held by the worker; train_and_evaluate (in its kernel) holds .lock
ELSEWHERE = "elsewhere"    # an Outcome's status: another runner was running the cell


@dataclass
class Outcome:
    run_id: str
    status: str            # complete | failed | elsewhere
    error: str | None
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.status == "complete"

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def running_elsewhere(cell) -> bool:
    """Whether another process (a second runner of the grid) is running `cell` now."""
    return is_locked(run_dir(cell.config.results_dir, cell.run_id), CELL_LOCK)


def write_spec(config, grid: Path | None = None, notebook: Path | None = None) -> Path:
    """Save what a cell needs in its run folder; the worker process reads only this file."""
    out = run_dir(config.results_dir, config.run_id)
    kind = study_of_config(config.to_dict())
    spec = {"run_id": config.run_id, "kind": kind.name, "config": config.to_dict(),
            "grid": str(grid or ""), "notebook": str(notebook or kind.notebook),
            "kernel": KERNEL}
    atomic_write_text(out / SPEC, json.dumps(spec, indent=2))
    return out / SPEC


def claim_spec(config, grid: Path | None = None, notebook: Path | None = None) -> Path | None:
    """`write_spec` under the cell's lock, or None if another runner holds it (runs the cell
    now). Without the lock, that runner starting the cell in between would sweep this write's
    temporary file away as a killed writer's (`remove_stale_temp_files`)."""
    try:
        with run_lock(run_dir(config.results_dir, config.run_id), CELL_LOCK, timeout=0):
            return write_spec(config, grid, notebook)
    except RunBusyError:
        return None


def executed_notebook(out: Path, kind: Study) -> Path:
    """Where a cell's executed notebook lies: named after its study's notebook, whichever
    notebook ran (`train.ipynb`, `mt_train.ipynb`)."""
    return out / kind.notebook.name


def run_cell(spec_path: str | Path, kernel: WarmKernel | None = None) -> dict[str, Any]:
    """Execute the cell described by `spec_path` (its notebook in `kernel` if given, else in a
    kernel of its own); returns its Outcome as a dict (picklable, for submitit). Never raises
    for a failing notebook: the failure is in the record."""
    # Under Slurm, use the cores the job was given (torch would otherwise take the node's).
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        os.environ.setdefault("OMP_NUM_THREADS", os.environ["SLURM_CPUS_PER_TASK"])
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    kind = study(spec.get("kind"))
    config = kind.config_class.from_dict(spec["config"], source=str(spec_path))
    out = run_dir(config.results_dir, config.run_id)
    start = time.perf_counter()
    try:
        # One attempt per cell at a time: a second runner (or this one's predecessor, killed
        # and still shutting down) is waited for, then its result counts.
        with run_lock(out, CELL_LOCK), _headless():
            return _run_locked(kind, config, out, spec, start, kernel)
    except RunBusyError as err:
        return asdict(Outcome(config.run_id, "failed", str(err), time.perf_counter() - start))


@contextlib.contextmanager
def _headless():
    """Training progress as log lines in run.log, never a bar, while the cell runs (its
    kernel inherits the environment); restored after, for a caller in the same process."""
    before = os.environ.get(HEADLESS)
    os.environ[HEADLESS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HEADLESS, None)
        else:
            os.environ[HEADLESS] = before


def _run_locked(kind: Study, config, out: Path, spec: dict[str, Any], start: float,
                kernel: WarmKernel | None) -> dict:
    if record_status(out) == "complete":   # e.g. a requeued Slurm job whose cell finished
        return asdict(Outcome(config.run_id, "complete", None, 0.0))
    if not is_locked(out):   # no kernel of an earlier attempt is still writing
        remove_stale_temp_files(out)   # left by a writer that was killed mid-write
    # A record from an earlier failed attempt would otherwise outlive an interrupted retry.
    (out / "record.json").unlink(missing_ok=True)
    executed = executed_notebook(out, kind)
    if config.is_trial:   # a tuning trial is an ordinary run, without notebook or HTML
        error = _train(kind, config)
    else:
        error = _execute(Path(spec["notebook"]), executed, kind.notebook_parameters(config),
                         spec.get("kernel", KERNEL), kernel)
        _render_html(executed, executed.with_suffix(".html"))
    status = record_status(out)
    if status != "complete":
        error = error or f"the notebook finished without a complete record; see {executed}"
        if status is None:   # the notebook failed before train_and_evaluate could record it
            write_failure(config, error)
    elif error:
        # Training finished and its record stands; only a later notebook cell (a plot) failed.
        error = f"notebook error after the run completed (record kept): {error}"
    outcome = Outcome(config.run_id, "complete" if status == "complete" and not error
                      else "failed", error, time.perf_counter() - start)
    return asdict(outcome)


def _execute(notebook: Path, output: Path, parameters: dict[str, Any], kernel_name: str,
             kernel: WarmKernel | None) -> str | None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    error = None
    try:
        # cwd: the notebook's folder, as in JupyterLab; the cell's paths are absolute anyway.
        km = kernel.manager(kernel_name, notebook.parent) if kernel else None
        pm.execute_notebook(str(notebook), str(output), parameters=parameters,
                            kernel_name=kernel_name, cwd=str(notebook.parent), km=km,
                            progress_bar=False, log_output=True)
    except PapermillExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    except Exception as err:  # kernel died, missing kernelspec, unreadable notebook, ...
        error = "".join(traceback.format_exception_only(err)).strip()
    if kernel:
        kernel.after_cell(failed=error is not None)
    return error


def _train(kind: Study, config) -> str | None:
    """The study's train_and_evaluate in this process (it records any failure itself)."""
    try:
        kind.train(config)
    except Exception as err:
        return "".join(traceback.format_exception_only(err)).strip()
    return None


def _render_html(notebook: Path, html: Path) -> None:
    if not notebook.is_file():
        return
    try:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_filename(str(notebook))
        atomic_write_text(html, body)
    except Exception as err:  # a report that cannot render must not fail a finished run
        print(f"warning: could not render {notebook} to HTML: {err}")


def exit_with_parent() -> None:
    """End this worker when the runner that started it dies, even by SIGKILL (which it cannot
    forward): the worker has a session of its own, so nothing else would stop it, and a rerun
    of the grid would find it still writing. Its kernel follows, since ipykernel exits when
    its own parent goes."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def interrupt_unless_recorded(out: Path | None, signum: int) -> None:
    """What SIGTERM (the runner stopping) does to a worker: it stops at once, unless the cell
    it runs (`out`) is already recorded: then only plotting is left, and it may finish, so
    that a complete record always comes with its executed notebook."""
    if out is None or record_status(out) != "complete":
        raise KeyboardInterrupt(f"signal {signum}")


def start_worker_process(on_sigterm) -> None:
    """What every worker process (`grid run-cell`, `grid worker`) sets up first: its SIGTERM
    handler, its end with the runner, and papermill's log (each notebook cell and, with
    log_output, its output) to the cell's run.log."""
    signal.signal(signal.SIGTERM, on_sigterm)
    exit_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def main(spec_path: str) -> int:
    """Entry point of `grid run-cell`: one cell in a kernel of its own."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = run_dir(spec["config"]["results_dir"], spec["run_id"])
    start_worker_process(lambda signum, frame: interrupt_unless_recorded(out, signum))
    outcome = run_cell(spec_path)
    print(json.dumps(outcome))
    return 0 if outcome["status"] == "complete" else 1
