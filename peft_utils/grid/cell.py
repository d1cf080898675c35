"""One grid cell: execute notebooks/train.ipynb with papermill into the run folder, render it
to HTML, and make sure a record exists whatever happened.

A cell runs in its own process (`python -m peft_utils grid run-cell SPEC`, or a submitit job)
so that it gets its own environment (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS), which the notebook
kernel inherits, and so that papermill's change of working directory stays private to it.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from peft_utils.config import RunConfig
from peft_utils.results import (
    RunBusyError,
    atomic_write_text,
    environment,
    is_locked,
    read_record,
    remove_stale_temp_files,
    run_dir,
    run_lock,
    write_record,
)

KERNEL = "python3"   # `python -m ipykernel install --sys-prefix --name python3` in the venv
NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "train.ipynb"
SPEC = "grid-cell.json"
CELL_LOCK = ".cell.lock"   # held by the worker; train_and_evaluate (in its kernel) holds .lock
# The notebook's named parameters; every other RunConfig key goes through `overrides`.
NAMED = ("dataset", "subtask", "method", "scenario", "model", "seed")


@dataclass
class Outcome:
    run_id: str
    status: str            # complete | failed
    error: str | None
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.status == "complete"


def notebook_parameters(config: RunConfig) -> dict[str, Any]:
    """The full config as papermill parameters: no preset, every value explicit."""
    values = config.to_dict()
    named = {key: values.pop(key) for key in NAMED}
    results_dir = values.pop("results_dir")
    return {"config_file": None, **named, "overrides": values, "results_dir": results_dir}


def write_spec(config: RunConfig, grid: Path | None = None,
               notebook: Path | None = None) -> Path:
    """Save what a cell needs in its run folder; the worker process reads only this file."""
    out = run_dir(config.results_dir, config.run_id)
    spec = {"run_id": config.run_id, "config": config.to_dict(), "grid": str(grid or ""),
            "notebook": str(notebook or NOTEBOOK), "kernel": KERNEL}
    atomic_write_text(out / SPEC, json.dumps(spec, indent=2))
    return out / SPEC


def run_cell(spec_path: str | Path) -> dict[str, Any]:
    """Execute the cell described by `spec_path`; returns its Outcome as a dict (picklable,
    for submitit). Never raises for a failing notebook: the failure is in the record."""
    # Under Slurm, use the cores the job was given (torch would otherwise take the node's).
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        os.environ.setdefault("OMP_NUM_THREADS", os.environ["SLURM_CPUS_PER_TASK"])
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if spec["config"].get("kind") == "mt":   # MT cells: their own config, notebook and record
        from peft_utils.mt.cell import run_cell as run_mt_cell

        return run_mt_cell(spec_path)
    config = RunConfig.from_dict(spec["config"], source=str(spec_path))
    out = run_dir(config.results_dir, config.run_id)
    start = time.perf_counter()
    try:
        # One attempt per cell at a time: a second runner (or this one's predecessor, killed
        # and still shutting down) is waited for, then its result counts.
        with run_lock(out, CELL_LOCK):
            return _run_locked(config, out, spec, start)
    except RunBusyError as err:
        return asdict(Outcome(config.run_id, "failed", str(err), time.perf_counter() - start))


def _run_locked(config: RunConfig, out: Path, spec: dict[str, Any], start: float) -> dict:
    if _record_status(out) == "complete":   # e.g. a requeued Slurm job whose cell finished
        return asdict(Outcome(config.run_id, "complete", None, 0.0))
    if not is_locked(out):   # no kernel of an earlier attempt is still writing
        remove_stale_temp_files(out)   # left by a writer that was killed mid-write
    # A record from an earlier failed attempt would otherwise outlive an interrupted retry.
    (out / "record.json").unlink(missing_ok=True)
    error = _execute(Path(spec["notebook"]), out / "train.ipynb", notebook_parameters(config),
                     spec.get("kernel", KERNEL))
    _render_html(out / "train.ipynb", out / "train.html")
    status = _record_status(out)
    if status != "complete":
        error = error or ("the notebook finished without a complete record; "
                          f"see {out / 'train.ipynb'}")
        if status is None:   # the notebook failed before train_and_evaluate could record it
            write_failure(config, error)
    elif error:
        # Training finished and its record stands; only a later notebook cell (a plot) failed.
        error = f"notebook error after the run completed (record kept): {error}"
    outcome = Outcome(config.run_id, "complete" if status == "complete" and not error
                      else "failed", error, time.perf_counter() - start)
    return asdict(outcome)


def _execute(notebook: Path, output: Path, parameters: dict[str, Any], kernel: str) -> str | None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    try:
        # cwd: the notebook's folder, as in JupyterLab; the cell's paths are absolute anyway.
        pm.execute_notebook(str(notebook), str(output), parameters=parameters,
                            kernel_name=kernel, cwd=str(notebook.parent), progress_bar=False,
                            log_output=True)
    except PapermillExecutionError as err:
        return f"{err.ename}: {err.evalue}"
    except Exception as err:  # kernel died, missing kernelspec, unreadable notebook, ...
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


def _record_status(out: Path) -> str | None:
    try:
        return read_record(out).get("status")
    except (OSError, ValueError):
        return None


def write_failure(config: RunConfig, error: str) -> Path:
    """A failed record for a cell that died before (or outside) train_and_evaluate."""
    out = run_dir(config.results_dir, config.run_id)
    run_info = {**config.to_dict(), "run_id": config.run_id, "multilabel": config.multilabel,
                "train_langs_resolved": config.resolved_train_langs,
                "eval_langs_resolved": config.resolved_eval_langs,
                "zero_shot_langs": config.zero_shot_langs}
    record = {"status": "failed", "error": error[-8000:], "run_info": run_info,
              "meta": {**environment(config.device), "seed": config.seed}}
    return write_record(out, record)


def _exit_with_parent() -> None:
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


def main(spec_path: str) -> int:
    """Entry point of `grid run-cell`. SIGTERM (the runner stopping) shuts the kernel down,
    unless the run is already recorded: then only plotting is left, and it may finish, so that
    a complete record always comes with its executed notebook."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = run_dir(spec["config"]["results_dir"], spec["run_id"])

    def stop(signum, frame):
        if _record_status(out) != "complete":
            raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    _exit_with_parent()
    # papermill logs each cell and, with log_output, its output: the cell's run.log.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    outcome = run_cell(spec_path)
    print(json.dumps(outcome))
    return 0 if outcome["status"] == "complete" else 1
