"""Run pending cells: locally (N at a time, a worker process per slot: a new one per cell
group, or with `keep_kernels` one that keeps its kernel from cell to cell) or as Slurm jobs
(submitit, one cell per job).

A cell group is one cell's seeds (`seed_groups`): they run one after another in one kernel, so
only the first seed pays the kernel's start and the libraries' imports. Every method's cell then
has one cold seed and the rest warm, the same pattern for each, so costs averaged over seeds
stay comparable across methods (a kernel kept across different cells would not: a method that
happens to follow a larger cell reads higher peak memory).

Both report each finished cell to a Progress and return its Outcome; neither stops at a
failing cell. The local executor leaves a cell that another runner of the grid is running
(sharing the results folder) to that runner: its Outcome is `elsewhere`.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from queue import Queue
from typing import Any

from peft_utils.core.config import ConfigError
from peft_utils.core.runs import is_locked, read_record, run_dir, write_failure
from peft_utils.grid.cell import (CELL_LOCK, ELSEWHERE, Outcome, claim_spec,
                                  running_elsewhere, write_spec)
from peft_utils.grid.spec import Cell, Grid

# Generic submitit parameters; any other key of the grid's `slurm:` mapping is Slurm-specific.
GENERIC = {"timeout_min", "mem_gb", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task",
           "name", "stderr_to_stdout"}


class Progress:
    """Prints `[done/total] state run_id (time) | failures | ETA` as cells finish."""

    def __init__(self, total: int, echo: Callable[[str], None] = print):
        self.total, self.done, self.failed, self.echo = total, 0, [], echo
        self.start = time.monotonic()
        self.lock = threading.Lock()

    def finished(self, outcome: Outcome) -> None:
        with self.lock:
            self.done += 1
            if outcome.failed:
                self.failed.append(outcome)
            elapsed = time.monotonic() - self.start
            # Throughput so far, so parallel workers are accounted for.
            eta = elapsed / self.done * (self.total - self.done)
            self.echo(f"[{self.done}/{self.total}] {outcome.status:<8} {outcome.run_id} "
                      f"({_clock(outcome.wall_s)}) | {len(self.failed)} failed | "
                      f"ETA {_clock(eta)}")


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _outcome_from_record(cell: Cell, wall: float, fallback_error: str) -> Outcome:
    """What a worker left behind; a cell that left no record gets a failed one written."""
    folder = run_dir(cell.config.results_dir, cell.run_id)
    try:
        record = read_record(folder)
    except (OSError, ValueError):
        if is_locked(folder, CELL_LOCK) or is_locked(folder):
            # Another live process is running this cell: its record is not ours to write.
            return Outcome(cell.run_id, "failed", f"{fallback_error}; the cell is being run "
                           "by another process", wall)
        write_failure(cell.config, fallback_error)
        return Outcome(cell.run_id, "failed", fallback_error, wall)
    ok = record.get("status") == "complete"
    return Outcome(cell.run_id, "complete" if ok else "failed",
                   None if ok else (record.get("error") or fallback_error).strip().splitlines()[-1],
                   wall)


# ---- local ----------------------------------------------------------------
def visible_gpus() -> list[str]:
    """GPU ids to hand out, as CUDA_VISIBLE_DEVICES values of this process's own GPUs."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:
        count = 0
    inherited = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return inherited[:count] if inherited else [str(i) for i in range(count)]


def cell_env(slot: int, workers: int, gpus: list[str]) -> dict[str, str]:
    """The environment of the worker in `slot`: its own GPU, or a share of the CPU cores."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = str(max(1, (cores or 1) // workers))
    # An explicit OMP_NUM_THREADS from the user wins over the even split.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


class CellWorker:
    """The runner's end of one slot's `grid worker` process: started for the slot's first
    cell, kept for the next (its kernel stays warm) unless `reuse` is off or the worker says
    it cannot take another, started anew after it died."""

    def __init__(self, env: dict[str, str], reuse: bool, guard: threading.Lock,
                 stopping: threading.Event):
        self.env, self.reuse, self.guard, self.stopping = env, reuse, guard, stopping
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def run(self, spec: Path, log: Path, keep: bool = False) -> dict[str, Any] | None:
        """The cell's Outcome as the worker reported it; None if the worker ended first.
        `keep`: keep the kernel for the next cell even without `reuse` (its seed group's)."""
        keep = keep or self.reuse
        with self.guard:   # no new worker once the runner is stopping
            if self.stopping.is_set():
                raise KeyboardInterrupt
            if self.proc is None:
                with open(log, "a", encoding="utf-8") as stderr:   # until it takes the cell
                    self.proc = subprocess.Popen(
                        [sys.executable, "-m", "peft_utils", "grid", "worker"], env=self.env,
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                        start_new_session=True)   # Ctrl-C reaches the runner, which stops it
            proc = self.proc
        try:
            proc.stdin.write(json.dumps({"spec": str(spec), "log": str(log),
                                         "keep": keep}) + "\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline() or "null")
        except (OSError, ValueError):   # it died before or while answering
            answer = None
        if answer is None or not (keep and answer["reusable"]):
            self.close()
        return answer and answer["outcome"]

    def close(self) -> None:
        """Let the worker finish (it shuts its kernel down) and wait for it."""
        with self.guard:
            proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            self.returncode = proc.wait()

    def terminate(self) -> None:
        with self.guard:
            if self.proc is not None:
                _terminate(self.proc)


def seed_groups(cells: list[Cell]) -> list[list[Cell]]:
    """The cells grouped by everything but their seed, in the order they come."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        key = json.dumps({k: v for k, v in cell.values.items() if k != "seed"},
                         sort_keys=True, default=str)
        groups.setdefault(f"{cell.preset}|{key}", []).append(cell)
    return list(groups.values())


def run_local(grid: Grid, cells: list[Cell], workers: int, progress: Progress,
              notebook: Path | None = None, keep_kernels: bool = False) -> list[Outcome]:
    gpus = visible_gpus()
    guard, stopping = threading.Lock(), threading.Event()
    slots: Queue[CellWorker] = Queue()
    slot_workers = [CellWorker(cell_env(slot, workers, gpus), keep_kernels, guard, stopping)
                    for slot in range(workers)]
    for worker in slot_workers:
        slots.put(worker)

    reporting = threading.Lock()

    def work(group: list[Cell]) -> list[Outcome]:
        worker = slots.get()   # the group's seeds in one kernel: see the module's docstring
        try:
            outcomes = []
            for position, cell in enumerate(group):
                outcomes.append(_run_on(worker, cell, grid, notebook, stopping,
                                        keep=position < len(group) - 1))
                with reporting:
                    progress.finished(outcomes[-1])
            return outcomes
        finally:
            if not keep_kernels:   # the next group starts cold, whichever cell ended this one
                worker.close()
            slots.put(worker)

    outcomes = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cell")
    try:
        futures = [pool.submit(work, group) for group in seed_groups(cells)]
        for future in as_completed(futures):
            outcomes.extend(future.result())
    except BaseException:
        stopping.set()
        for worker in slot_workers:
            worker.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    for worker in slot_workers:
        worker.close()
    return outcomes


def _run_on(worker: CellWorker, cell: Cell, grid: Grid, notebook: Path | None,
            stopping: threading.Event, keep: bool) -> Outcome:
    """One cell on `worker` (keep: another cell of its group follows in the same kernel)."""
    if running_elsewhere(cell):   # another runner of the grid has it: take the next one
        return Outcome(cell.run_id, ELSEWHERE, None, 0.0)
    if stopping.is_set():
        raise KeyboardInterrupt
    spec = claim_spec(cell.config, grid.path, notebook)
    if spec is None:   # another runner started it since the check above
        return Outcome(cell.run_id, ELSEWHERE, None, 0.0)
    log = spec.parent / "run.log"
    log.write_text("", encoding="utf-8")
    start = time.perf_counter()
    answer = worker.run(spec, log, keep)
    returncode = worker.returncode   # before another cell may restart the worker
    if stopping.is_set():
        raise KeyboardInterrupt
    if answer is not None:
        return Outcome(**answer)
    died = f"worker exited with status {returncode}; see {log}"
    outcome = _outcome_from_record(cell, time.perf_counter() - start, died)
    if outcome.ok:   # trained and recorded, but its notebook or HTML may be missing
        return Outcome(cell.run_id, "failed", f"{died} (after the run completed; record "
                       "kept)", outcome.wall_s)
    return outcome


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM the worker, which shuts its kernel down; SIGKILL its group if it lingers."""
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- slurm (submitit) -----------------------------------------------------
# Options of the cells' jobs that the coordinator job (`grid run --detach`) does without.
CELL_ONLY = {"gpus_per_node", "gpus_per_task", "gres", "slurm_gres", "array_parallelism",
             "slurm_array_parallelism", "cpus_per_task", "mem_gb", "mem", "slurm_mem"}


def submitit_executor(grid: Grid, workers: int | None = None, coordinator: bool = False):
    """An AutoExecutor from the grid's `slurm:` mapping; `cluster: local` runs the jobs as local
    processes (used by the tests), `cluster: debug` in this process. `coordinator`: for the job
    that runs `grid run` itself: one core, 2 GB, no GPU or generic resource."""
    import submitit

    from peft_utils.grid.slurm import jobs_folder

    params = dict(grid.slurm)
    cluster = params.pop("cluster", "slurm")
    try:
        executor = submitit.AutoExecutor(folder=jobs_folder(grid) / "%j", cluster=cluster)
    except RuntimeError as err:   # no srun here
        raise ConfigError(f"{grid.path}: --executor slurm: {err} (to try the jobs on this "
                          "machine, set `cluster: local` under `slurm:`)") from None
    translated: dict[str, Any] = {"name": f"grid-{grid.name}"}
    for key, value in params.items():
        translated[key if key in GENERIC or key.startswith(("slurm_", "local_")) else
                   f"slurm_{key}"] = value
    if workers and cluster == "slurm":
        translated.setdefault("slurm_array_parallelism", workers)
    if coordinator:
        translated = {k: v for k, v in translated.items() if k not in CELL_ONLY}
        translated.update(cpus_per_task=1, mem_gb=2, name=f"grid-{grid.name}-coordinator")
    if cluster != "slurm":   # slurm_* keys do not apply to the local and debug executors
        translated = {k: v for k, v in translated.items() if not k.startswith("slurm_")}
    executor.update_parameters(**translated)
    return executor


def submit(grid: Grid, executor, cells: list[Cell], notebook: Path | None) -> dict[str, Any]:
    """Submit one array job, a task per cell, and remember which job runs which cell; a grid
    option Slurm refuses stops here with sbatch's message."""
    from peft_utils.grid.slurm import CellJob

    specs = [str(write_spec(cell.config, grid.path, notebook)) for cell in cells]

    def sbatch():
        with executor.batch():   # an array job, a task per cell
            return [executor.submit(CellJob(), spec) for spec in specs]

    jobs = _submit_remembered(grid, executor, [cell.run_id for cell in cells], sbatch,
                              "the jobs")
    return {cell.run_id: job for cell, job in zip(cells, jobs)}


def _submit_remembered(grid: Grid, executor, keys: list[str], sbatch, what: str) -> list:
    """`sbatch()`'s jobs, one per key in order; on Slurm, announced before and remembered
    after, so that a runner killed in between leaves jobs the next one finds (`slurm`)."""
    from peft_utils.grid.slurm import announce, remember, sbatch_refusal, tagged_comment

    if executor.cluster != "slurm":
        with sbatch_refusal(grid, what):
            return sbatch()
    token = announce(grid, keys)
    executor.update_parameters(**tagged_comment(grid, token))
    try:
        with sbatch_refusal(grid, what):
            jobs = sbatch()
    except ConfigError:   # refused: nothing was submitted
        remember(grid, {}, token)
        raise
    remember(grid, {key: job.job_id for key, job in zip(keys, jobs)}, token)
    return jobs


def run_submitit(grid: Grid, cells: list[Cell], workers: int | None, progress: Progress,
                 notebook: Path | None = None, detach: bool = False) -> list[Outcome]:
    """Each cell in a Slurm job: the job already queued or running for it (this runner's
    predecessor's, or another runner's), else a new one; a cell another runner holds on this
    file system is left to it. `detach`: submit and return (the cells' Outcomes come from a
    later runner)."""
    import submitit

    from peft_utils.grid.slurm import active_jobs, attach, jobs_folder, poll_s, submitting

    executor = submitit_executor(grid, workers)
    slurm = executor.cluster == "slurm"
    outcomes = []
    with submitting(grid, progress.echo) if slurm else contextlib.nullcontext():
        running = active_jobs(grid, [c.run_id for c in cells]) if slurm else {}
        jobs = {run_id: attach(grid, job_id) for run_id, job_id in running.items()}
        if jobs:
            progress.echo(f"{len(jobs)} cell(s) already have a job queued or running: "
                          f"{', '.join(sorted(set(running.values())))}; waiting for them")
        fresh = []
        for cell in cells:
            if cell.run_id in jobs:
                continue
            if running_elsewhere(cell):   # another runner's worker has it (a lock it holds)
                outcomes.append(Outcome(cell.run_id, ELSEWHERE, None, 0.0))
                progress.finished(outcomes[-1])
            else:
                fresh.append(cell)
        if fresh:
            submitted = submit(grid, executor, fresh, notebook)
            jobs.update(submitted)
            array_ids = sorted({job.job_id.split("_")[0] for job in submitted.values()})
            progress.echo(f"submitted {len(submitted)} jobs ({', '.join(array_ids)}); "
                          f"logs under {jobs_folder(grid)}")
    if detach:
        return outcomes
    by_run_id = {cell.run_id: cell for cell in cells}
    cell_of = {job.job_id: by_run_id[run_id] for run_id, job in jobs.items()}
    started = time.perf_counter()
    try:
        for job in submitit.helpers.as_completed(list(jobs.values()),
                                                 poll_frequency=poll_s() if slurm else 1.0):
            cell = cell_of[job.job_id]
            try:
                outcome = Outcome(**job.result())
            except Exception as err:   # the job itself died: timeout, preemption, OOM kill
                outcome = _outcome_from_record(cell, time.perf_counter() - started,
                                               f"job {job.job_id} failed: {err}")
            outcomes.append(outcome)
            progress.finished(outcome)
    except KeyboardInterrupt:
        progress.echo("stopped waiting; the jobs keep running (check with `grid status`)")
        raise
    return outcomes


def submit_coordinator(grid: Grid, argv: list[str]) -> str:
    """`grid run` with `argv` as a Slurm job of its own; its job id, remembered."""
    from peft_utils.grid.slurm import COORDINATOR, Coordinator

    executor = submitit_executor(grid, coordinator=True)
    [job] = _submit_remembered(grid, executor, [COORDINATOR],
                               lambda: [executor.submit(Coordinator(), argv)],
                               "the coordinator job")
    return job.job_id
