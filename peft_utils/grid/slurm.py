"""A grid's Slurm jobs: which job runs which cell, remembered in the results folder
(`_submitit/<grid>/jobs.json`) so that a runner that was killed, or one started later, finds
the jobs still queued or running and waits for them instead of submitting a second job
(a runner killed between sbatch and that file leaves its jobs a token in their comment, by
which the next one finds them); what
the scheduler says of them (squeue, else sacct); the job a cell runs in (requeued, and resumed
from its checkpoint, when it reaches its time limit or is preempted); and the coordinator job
of `grid run --detach` that runs a tuned grid's stages without a runner on the login node.
"""
from __future__ import annotations

import contextlib
import functools
import getpass
import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from peft_utils.core.config import ConfigError
from peft_utils.core.runs import atomic_write_text
from peft_utils.grid.spec import Grid

JOBS = "jobs.json"
# Submissions under way: token -> the keys (run ids, COORDINATOR) of its jobs in task order.
# Written before sbatch and cleared once jobs.json has the job ids, so that the jobs of a
# runner killed in between are found again by the token in their Slurm comment.
UNDER_WAY = "submitting.json"
SUBMIT_LOCK = ".submit.lock"
TOKEN_PREFIX = "peft-utils-"
COORDINATOR = "coordinator"   # the key of the `--detach` coordinator job in jobs.json
# Scheduler states of a job that will still run (or is running): its cell must not get another.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
          "SUSPENDED", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "PREEMPTED",
          "RESV_DEL_HOLD", "SPECIAL_EXIT"}


def jobs_folder(grid: Grid) -> Path:
    """Where submitit keeps the grid's job files (`%j` is the job id)."""
    return grid.results_dir / "_submitit" / grid.name


# ---- the job memory ---------------------------------------------------------------------
def remembered(grid: Grid) -> dict[str, str]:
    """run id (or COORDINATOR) -> the job id last submitted for it."""
    try:
        data = json.loads((jobs_folder(grid) / JOBS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def remember(grid: Grid, jobs: dict[str, str], token: str | None = None) -> None:
    """Add `jobs` to the memory (read, updated and written whole: call it inside
    `submitting`); `token`: the submission (`announce`) they came from, now settled."""
    folder = jobs_folder(grid)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / JOBS, json.dumps({**remembered(grid), **jobs}, indent=1,
                                               sort_keys=True))
    if token is not None:
        _write_under_way(grid, {t: k for t, k in under_way(grid).items() if t != token})


def under_way(grid: Grid) -> dict[str, list[str]]:
    """Submissions announced and not yet remembered: token -> keys in task order."""
    try:
        data = json.loads((jobs_folder(grid) / UNDER_WAY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_under_way(grid: Grid, submissions: dict[str, list[str]]) -> None:
    path = jobs_folder(grid) / UNDER_WAY
    if submissions:
        atomic_write_text(path, json.dumps(submissions, indent=1, sort_keys=True))
    else:
        path.unlink(missing_ok=True)


def announce(grid: Grid, keys: list[str]) -> str:
    """Before sbatch (inside `submitting`): note which keys the next submission is for,
    under a new token; its jobs carry the token in their comment (`tagged_comment`)."""
    token = TOKEN_PREFIX + uuid.uuid4().hex[:12]
    _write_under_way(grid, {**under_way(grid), token: list(keys)})
    return token


def tagged_comment(grid: Grid, token: str) -> dict[str, Any]:
    """The executor parameters that give the jobs a Slurm comment ending in the token, after
    the grid file's own `comment` if it has one (also where sbatch lines of its own,
    `additional_parameters`, would set it, as they override the executor's)."""
    extra = dict(grid.slurm.get("additional_parameters")
                 or grid.slurm.get("slurm_additional_parameters") or {})
    own = extra.get("comment") or grid.slurm.get("comment") or grid.slurm.get("slurm_comment")
    comment = f"{own};{token}" if own else token
    if "comment" in extra:
        return {"slurm_additional_parameters": {**extra, "comment": comment}}
    return {"slurm_comment": comment}


def _recover_under_way(grid: Grid) -> None:
    """Remember the jobs of submissions a killed runner announced but never remembered,
    found in squeue by their token; a token whose jobs the scheduler does not hold (sbatch
    never ran, or they ended long ago) is dropped. If squeue cannot answer, kept for later."""
    if not (pending := under_way(grid)):
        return
    try:
        out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-u", getpass.getuser(),
                              "-o", "%i|%k"], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return
    found: dict[str, str] = {}
    for line in out.splitlines():
        job_id, _, comment = line.strip().partition("|")
        token = comment.rsplit(";", 1)[-1]
        if keys := pending.get(token):
            task = job_id.partition("_")[2] or "0"
            if task.isdigit() and int(task) < len(keys):
                found[keys[int(task)]] = job_id
    remember(grid, found)
    _write_under_way(grid, {})


@contextlib.contextmanager
def submitting(grid: Grid, say: Callable[[str], None] | None = None):
    """Held while a runner looks up which cells (or which coordinator) already have a job,
    submits the others and remembers them: a second runner started at the same moment, on
    this node or another, waits here, then finds those jobs instead of submitting its own.
    An flock on a file beside jobs.json (NFSv4 and Lustre lock across nodes)."""
    import fcntl

    folder = jobs_folder(grid)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / SUBMIT_LOCK, "a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            (say or functools.partial(print, flush=True))(
                f"grid {grid.path.name}: another runner is submitting this grid's jobs; "
                f"waiting for it ({folder / SUBMIT_LOCK})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        _recover_under_way(grid)
        yield


def settle_under_way(grid: Grid) -> None:
    """Outside `submitting` (`grid status`, a runner about to follow the coordinator): the
    jobs of a half-recorded submission, remembered now, if there is one."""
    if (jobs_folder(grid) / UNDER_WAY).exists():
        with submitting(grid):
            pass


# ---- the scheduler ------------------------------------------------------------------------
def scheduler_states(job_ids: list[str]) -> dict[str, str]:
    """job id -> state (PENDING, RUNNING, COMPLETED, CANCELLED, ...): from squeue, the
    controller's own view, for the jobs it still holds; from sacct (accounting, which lags
    a few seconds behind but keeps ended jobs) for the others. Jobs neither knows are left
    out."""
    if not job_ids:
        return {}
    states: dict[str, dict[str, str]] = {}
    # One array job at a time: squeue refuses a whole list if one id has been purged.
    for main in sorted({_main(j) for j in job_ids}):
        states.update(_parse(["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", main],
                             header="JobID|State"))
    if missing := sorted({_main(j) for j in job_ids if j not in states}):
        ended = _parse(["sacct", "-X", "-o", "JobID,State", "--parsable2", "-j",
                        ",".join(missing)])
        states.update({j: s for j, s in ended.items() if j not in states})
    # "CANCELLED by 0" -> CANCELLED
    return {j: states[j]["State"].split()[0] for j in job_ids if states.get(j, {}).get("State")}


def _main(job_id: str) -> str:
    return job_id.split("_")[0]


def _parse(command: list[str], header: str = "") -> dict[str, dict[str, str]]:
    """sacct-style `JobID|State` lines, array ranges expanded (submitit's own parser)."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    text = f"{header}\n{out}" if header else out
    return submitit.slurm.slurm.SlurmInfoWatcher().read_info(text)


def job_lines(grid: Grid) -> dict[str, str]:
    """run id (or COORDINATOR) -> `JOBID STATE` of its remembered job, for `grid status`."""
    settle_under_way(grid)
    jobs = remembered(grid)
    states = scheduler_states(list(jobs.values()))
    return {key: f"{job} {states.get(job, 'UNKNOWN')}" for key, job in jobs.items()}


def active_jobs(grid: Grid, keys: list[str]) -> dict[str, str]:
    """Of `keys` (run ids, COORDINATOR), those whose remembered job is queued or running."""
    jobs = {k: j for k, j in remembered(grid).items() if k in set(keys)}
    states = scheduler_states(list(jobs.values()))
    return {k: j for k, j in jobs.items() if states.get(j) in ACTIVE}


def coordinator_running(grid: Grid) -> str | None:
    """The id of the grid's `--detach` coordinator job while it is queued or running."""
    return active_jobs(grid, [COORDINATOR]).get(COORDINATOR)


def poll_s() -> float:
    """Seconds between questions to the scheduler: gently on a cluster; the tests' own cluster
    answers at once (PEFT_UTILS_SLURM_POLL_S)."""
    return float(os.environ.get("PEFT_UTILS_SLURM_POLL_S", "15"))


def follow_coordinator(grid: Grid) -> bool:
    """Wait while the grid's coordinator job runs (a second runner beside it would only
    wait for the same jobs); False if Ctrl-C stopped the waiting (not the job)."""
    settle_under_way(grid)
    job = coordinator_running(grid)
    if job is None:
        return True
    print(f"grid {grid.path.name}: coordinator job {job} is running it; waiting for it to "
          "end (Ctrl-C stops the waiting, not the job)", flush=True)
    try:
        while coordinator_running(grid):
            time.sleep(poll_s())
    except KeyboardInterrupt:
        return False
    return True


def attach(grid: Grid, job_id: str) -> submitit.SlurmJob:
    """A job submitted earlier (by this runner or another), to wait for and collect."""
    return submitit.SlurmJob(folder=jobs_folder(grid) / "%j", job_id=job_id)


@contextlib.contextmanager
def sbatch_refusal(grid: Grid, what: str):
    """A submission sbatch refuses (a partition, account or option it does not know) as one
    ConfigError line naming the grid file, in sbatch's own words (its last error line);
    submitit would also print sbatch's whole stderr."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    except submitit.core.utils.FailedJobError as err:
        lines = [line for line in str(err).splitlines() if line.strip()] or [repr(err)]
        raise ConfigError(f"{grid.path}: sbatch refused {what}: {lines[-1]} (fix the grid "
                          "file's `slurm:` options)") from None


# ---- what runs in the jobs -------------------------------------------------------------------
class CellJob(submitit.helpers.Checkpointable):
    """One cell in a Slurm job. At its time limit, or when preempted, Slurm sends USR2 (the
    submitit executor asks for it); submitit then calls `checkpoint`, which (inherited) submits
    this same call again, and requeues the job: the cell resumes from its last training
    checkpoint in the requeued job."""

    def __call__(self, spec: str) -> dict[str, Any]:
        from peft_utils.grid.cell import run_cell

        return run_cell(spec)


class Coordinator(submitit.helpers.Checkpointable):
    """`python -m peft_utils grid run ... --executor slurm` inside a Slurm job (`grid run
    --detach` of a tuned grid): it submits each stage's jobs and tells Optuna their scores.
    Requeued like a cell; the requeued runner finds its cells' jobs in the job memory."""

    def __call__(self, argv: list[str]) -> int:
        # This job's own SLURM_* variables would reach the jobs it submits (sbatch copies the
        # environment) and contradict their own, e.g. srun's memory options.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SLURM_") or k == "SLURM_CONF"}
        code = subprocess.run([sys.executable, "-m", "peft_utils", *argv], env=env).returncode
        if code:
            raise RuntimeError(f"`peft-utils {' '.join(argv)}` exited with status {code}")
        return code
