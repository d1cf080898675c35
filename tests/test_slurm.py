"""Grids on a real Slurm scheduler (the single-node cluster of tests/slurm_cluster.py, started
once for the module): a tuned grid's trials and finals run as array jobs, detached behind a
coordinator job, with the local executor's exact records; the grid file's job options reach
the job and one Slurm refuses is a one-line error; a requeued (preempted) job and a cancelled
one resume from their checkpoints; a runner killed while its jobs are queued or running
re-attaches to them instead of submitting again, also when it was killed before it noted
their job ids; cells another runner holds are left to it;
a runner that starts while another submits waits for it and submits no cell twice.

`make test-slurm` runs these (marker `slurm`); `make test` leaves them out.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fault_helpers import newest_checkpoint
from peft_utils.core.runs import read_record, run_lock
from peft_utils.grid import load_grid
from peft_utils.grid.cell import CELL_LOCK
from peft_utils.grid.slurm import ACTIVE, scheduler_states
from test_storage import _tiny_grid, check_shared, choices, run_together
from test_tuning import records, write_yaml

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

REPO = Path(__file__).resolve().parents[1]
JOB = {"cluster": "slurm", "timeout_min": 20, "cpus_per_task": 1, "mem_gb": 2}
# Cells long enough to be caught mid-training: a checkpoint every 20 steps.
LONG = dict(dataset="sib200", train_langs=["en", "fr"], eval_langs=["en", "fr", "es"],
            max_length=64, learning_rate=3e-3, batch_size=8, eval_batch_size=16,
            warmup_steps=0, num_epochs=1, max_steps=160, eval_steps=20, seed=5)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def cli(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peft_utils", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def start(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "w", encoding="utf-8") as out:
        return subprocess.Popen([sys.executable, "-m", "peft_utils", *args], cwd=cwd, env=env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def jobs_of(results: Path, grid: str) -> dict[str, str]:
    """The runner's job memory: run id (or `coordinator`) -> job id."""
    path = results / "_submitit" / grid / "jobs.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def sacct(*args: str) -> list[list[str]]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", *args], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def cell_jobs(name: str) -> list[list[str]]:
    """(job id, state) of every job (array task) named `name`, once accounting (a few
    seconds behind the controller) has seen them all end."""
    from peft_utils.grid.slurm import ACTIVE

    def ended():
        jobs = sacct("-o", "JobID,State", "--name", name)
        return jobs if jobs and not any(s.split()[0] in ACTIVE for _, s in jobs) else None

    return wait_for(ended, 60, f"accounting to see the jobs of {name} end")


def scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True,
                          check=True).stdout


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None,
             log: Path | None = None):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the runner exited while waiting for {what}:\n"
                        + (log.read_text()[-3000:] if log else ""))
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def metrics(results: Path) -> dict[str, dict]:
    return {r["run_info"]["run_id"]: r["metrics"] for r in records(results)}


# ---- a tuned grid, detached -------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_tuned(tmp_path_factory, sib_root, tiny_model) -> Path:
    """The tiny tuned grid (2 methods × 2 scenarios, 2 trials each) run by the local executor:
    the results folder every other runner of it must reproduce."""
    local = tmp_path_factory.mktemp("local")
    grid_file = _tiny_grid(local, sib_root, tiny_model, {})
    done = cli("grid", "run", str(grid_file), "--workers", "2", cwd=local)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return local / "results"


def test_detached_tuned_grid_runs_as_array_jobs_with_the_local_records(local_tuned, tmp_path,
                                                                       sib_root, tiny_model):
    """The tiny tuned grid on Slurm with `--detach`: a coordinator job runs both stages as
    array jobs (2 at a time); `grid status` follows it; `grid run` waits for it; every trial
    and final has the local run's id, choice and exact metrics, and every cell had one job."""
    remote = tmp_path / "slurm"
    grid_file = _tiny_grid(remote, sib_root, tiny_model, {})
    write_yaml(grid_file, {**yaml.safe_load(grid_file.read_text()), "slurm": JOB})
    began = time.monotonic()
    detached = cli("grid", "run", str(grid_file), "--executor", "slurm", "--workers", "2",
                   "--detach", cwd=remote, timeout=60)
    assert detached.returncode == 0, detached.stdout + detached.stderr
    assert time.monotonic() - began < 30 and "submitted coordinator job" in detached.stdout
    results = remote / "results"
    coordinator = jobs_of(results, "g")["coordinator"]
    status = cli("grid", "status", str(grid_file), cwd=remote).stdout
    assert re.search(rf"coordinator job {coordinator} (PENDING|RUNNING)", status), status

    followed = cli("grid", "run", str(grid_file), "--executor", "slurm", "--workers", "2",
                   cwd=remote)
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert f"coordinator job {coordinator} is running it; waiting" in followed.stdout
    assert "0 to run" in followed.stdout   # the coordinator finished everything

    assert choices(results) == choices(local_tuned)
    assert metrics(results) == metrics(local_tuned)
    # Trials, then finals: array jobs of at most 2 tasks at once (--workers 2).
    scripts = list((results / "_submitit" / "g").glob("*/*_submission.sh"))
    arrays = [re.search(r"#SBATCH --array=(\S+)", p.read_text()) for p in scripts]
    assert arrays and all(a and a.group(1).endswith("%2") for a in arrays if a), arrays
    # One job per run, all completed, and accounting knows of no other job of the grid's.
    jobs = {k: v for k, v in jobs_of(results, "g").items() if k != "coordinator"}
    assert sorted(jobs) == sorted(metrics(results))
    assert len(set(jobs.values())) == len(jobs)
    assert set(scheduler_states(list(jobs.values())).values()) == {"COMPLETED"}
    assert {j for j, _ in cell_jobs("grid-g")} <= set(jobs.values())
    assert wait_for(lambda: sacct("-o", "State", "-j", coordinator) == [["COMPLETED"]], 60,
                    "accounting to see the coordinator end")
    status = cli("grid", "status", str(grid_file), cwd=remote).stdout
    assert f"coordinator job {coordinator} COMPLETED" in status and " COMPLETED " in status


def test_two_runners_share_a_mysql_storage(local_tuned, slurm_cluster, tmp_path, sib_root,
                                           tiny_model):
    """tune.storage: mysql+pymysql://... (the cluster's MariaDB): two runners started at once
    on one results folder ask each trial once, train each final once, and choose as the
    local runner with its SQLite file did."""
    pytest.importorskip("pymysql", reason="pip install 'peft-utils[cluster]' (pymysql)")
    url = slurm_cluster.mysql_url(f"tuning_{int(time.time() * 1000)}")
    grid_file = _tiny_grid(tmp_path, sib_root, tiny_model, {"storage": url})
    outputs = run_together(grid_file, tmp_path)
    check_shared(tmp_path, url, choices(local_tuned), outputs)
    assert all("trials in mysql+pymysql://slurm:***@" in out for out in outputs)   # no password
    assert metrics(tmp_path / "results") == metrics(local_tuned)


# ---- job options ---------------------------------------------------------------------------------
@pytest.fixture
def presets(tmp_path, sib_root, tiny_model) -> Path:
    from test_grid import TINY

    return write_yaml(tmp_path / "configs" / "tiny.yaml",
                      {**TINY, "data_root": str(sib_root), "model": str(tiny_model)})


def test_job_options_reach_the_job_and_a_refused_one_is_a_one_line_error(tmp_path, presets):
    options = {**JOB, "partition": "long", "timeout_min": 7, "cpus_per_task": 2, "mem_gb": 1,
               "gres": "scratch:1", "account": "peft", "qos": "normal",
               "additional_parameters": {"comment": "peft-ci"},
               "setup": ["echo setup-line-ran"]}
    grid_file = write_yaml(tmp_path / "configs" / "opts.yaml", {
        "presets": ["tiny.yaml"], "grid": {"method": ["bitfit"]}, "slurm": options})
    detached = cli("grid", "run", str(grid_file), "--executor", "slurm", "--detach",
                   cwd=tmp_path, timeout=120)
    assert detached.returncode == 0, detached.stdout + detached.stderr
    assert "detached: follow with `grid status" in detached.stdout
    results = tmp_path / "results"
    (cell,) = load_grid(grid_file, results_dir=results).cells
    job = jobs_of(results, "opts")[cell.run_id]
    shown = scontrol(job)
    for expected in ("Partition=long", "TimeLimit=00:07:00", "CPUs/Task=2", "mem=1G",
                     "gres:scratch:1", "Account=peft", "QOS=normal", "Comment=peft-ci;peft-utils-"):
        assert expected in shown, f"{expected} not in\n{shown}"
    status = cli("grid", "status", str(grid_file), cwd=tmp_path).stdout
    assert re.search(rf"{job} (PENDING|RUNNING|COMPLETED)", status), status

    # A later runner collects the job it finds instead of submitting another.
    collected = cli("grid", "run", str(grid_file), "--executor", "slurm", cwd=tmp_path)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    if "0 to run" not in collected.stdout:   # it had not finished yet
        assert "1 cell(s) already have a job queued or running" in collected.stdout
        assert "submitted" not in collected.stdout
    assert read_record(results / cell.run_id)["status"] == "complete"
    assert [j for j, _ in cell_jobs("grid-opts")] == [job]
    log = next((results / "_submitit" / "opts").glob(f"{job}/*_log.out")).read_text()
    assert "setup-line-ran" in log

    # An option Slurm refuses: sbatch's own words, one line, naming the grid file.
    write_yaml(grid_file, {"presets": ["tiny.yaml"], "grid": {"method": ["lora"]},
                           "slurm": {**options, "partition": "no-such-partition"}})
    refused = cli("grid", "run", str(grid_file), "--executor", "slurm", cwd=tmp_path)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert str(grid_file) in line and "invalid partition" in line.lower(), line


# ---- requeue and cancel ------------------------------------------------------------------------
def test_requeued_and_cancelled_jobs_resume_from_their_checkpoints(tmp_path, sib_root,
                                                                   tiny_model, one_thread):
    """Two cells running as jobs: one gets USR2 (what Slurm sends before a time limit or a
    preemption: submitit requeues it), the other is cancelled. The first finishes in its
    requeued job, the second on the next `grid run`: both from their checkpoints, both to
    the metrics of an uninterrupted run."""
    from peft_utils.classification.training import train_and_evaluate

    write_yaml(tmp_path / "configs" / "long.yaml",
               {**LONG, "data_root": str(sib_root), "model": str(tiny_model)})
    grid_file = write_yaml(tmp_path / "configs" / "rq.yaml", {
        "presets": ["long.yaml"], "grid": {"method": ["lora", "bitfit"]}, "slurm": JOB})
    results = tmp_path / "results"
    requeued, cancelled = load_grid(grid_file, results_dir=results).cells
    log = tmp_path / "runner.log"
    runner = start("grid", "run", str(grid_file), "--executor", "slurm", "--workers", "2",
                   cwd=tmp_path, log=log)
    try:
        # Each job is signalled as soon as its own cell has a checkpoint: the two jobs may
        # run far apart on a loaded machine (one done with its 160 steps before the other's
        # first checkpoint), and a job signalled once its cell is complete resumes nothing.
        signals = {requeued.run_id: ["--signal=USR2"], cancelled.run_id: []}

        def signal_at_first_checkpoints() -> bool:
            for run_id in list(signals):
                if (step := newest_checkpoint(results / run_id)) is None:
                    continue
                assert step < LONG["max_steps"], f"{run_id} ended training before its signal"
                subprocess.run(["scancel", *signals.pop(run_id),
                                jobs_of(results, "rq")[run_id]], check=True)
            return not signals

        wait_for(signal_at_first_checkpoints, 300, "a checkpoint of each cell", runner, log)
        jobs = jobs_of(results, "rq")
        # Slurm holds a requeued job back for 2 minutes (its BeginTime): release it now.
        wait_for(lambda: {"Restarts=1", "JobState=PENDING"} <= set(
            scontrol(jobs[requeued.run_id]).split()), 120, "the requeue", runner, log)
        subprocess.run(["scontrol", "update", f"JobId={jobs[requeued.run_id]}",
                        "StartTime=now"], check=True)
        assert runner.wait(timeout=600) == 1, log.read_text()[-3000:]
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    out = log.read_text()
    assert f"complete {requeued.run_id}" in out and f"failed   {cancelled.run_id}" in out, out
    assert "Restarts=1" in scontrol(jobs[requeued.run_id])
    first = read_record(results / requeued.run_id)
    assert first["status"] == "complete" and first["meta"]["resumed_from_step"], first["meta"]

    again = cli("grid", "run", str(grid_file), "--executor", "slurm", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already complete (skipped), 1 to run" in again.stdout
    second = read_record(results / cancelled.run_id)
    assert second["status"] == "complete" and second["meta"]["resumed_from_step"]

    for cell, record in ((requeued, first), (cancelled, second)):
        whole = train_and_evaluate(dataclasses.replace(cell.config,
                                                       results_dir=str(tmp_path / "whole")))
        assert record["metrics"] == whole.record["metrics"], cell.run_id


# ---- a killed runner, a cell held elsewhere ----------------------------------------------
def test_killed_runner_reattaches_and_leaves_held_cells_to_their_runner(tmp_path, sib_root,
                                                                        tiny_model):
    """SIGKILL the runner while one job runs and one waits (--workers 1): `grid status` shows
    both jobs; the next runner waits for them instead of submitting again, and submits only
    the third cell, which another runner held (its lock) when the first one started."""
    # 100 steps: the first job still runs when the next runner asks (some 10 s after it
    # started; more on a loaded machine).
    write_yaml(tmp_path / "configs" / "long.yaml",
               {**LONG, "max_steps": 100, "data_root": str(sib_root), "model": str(tiny_model)})
    grid_file = write_yaml(tmp_path / "configs" / "k.yaml", {
        "presets": ["long.yaml"], "grid": {"method": ["bitfit", "lora", "ia3"]}, "slurm": JOB})
    results = tmp_path / "results"
    first, second, held = load_grid(grid_file, results_dir=results).cells
    log = tmp_path / "runner-1.log"
    with run_lock(results / held.run_id, CELL_LOCK):   # as another runner's worker would
        runner = start("grid", "run", str(grid_file), "--executor", "slurm", cwd=tmp_path,
                       log=log)
        try:
            jobs = wait_for(lambda: len(jobs_of(results, "k")) == 2 and jobs_of(results, "k"),
                            120, "the jobs", runner, log)
            wait_for(lambda: "RUNNING" in scontrol(jobs[first.run_id]), 120,
                     "the first job to run", runner, log)
        finally:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    assert held.run_id not in jobs
    status = cli("grid", "status", str(grid_file), cwd=tmp_path).stdout
    assert f"{jobs[first.run_id]} RUNNING" in status, status
    assert re.search(rf"{re.escape(jobs[second.run_id])} (PENDING|RUNNING)", status), status

    again = cli("grid", "run", str(grid_file), "--executor", "slurm", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 cell(s) already have a job queued or running" in again.stdout, again.stdout
    assert "submitted 1 jobs" in again.stdout
    assert all(read_record(results / c.run_id)["status"] == "complete"
               for c in (first, second, held))
    ran = cell_jobs("grid-k")
    assert len(ran) == 3 and {s for _, s in ran} == {"COMPLETED"}, ran


# A runner that sbatch has answered, killed before its job memory has the job ids.
KILLED_AFTER_SBATCH = """
import os, signal, sys
from peft_utils.grid import load_grid, slurm
from peft_utils.grid.executors import submit, submitit_executor

remember = slurm.remember
def killed(grid, jobs, token=None):
    if jobs:
        os.kill(os.getpid(), signal.SIGKILL)
    remember(grid, jobs, token)
slurm.remember = killed
grid = load_grid(sys.argv[1], results_dir=sys.argv[2])
with slurm.submitting(grid):
    submit(grid, submitit_executor(grid, workers=1), grid.cells, None)
"""


def test_a_runner_killed_before_it_remembers_its_jobs_leaves_no_cell_a_second_job(
        tmp_path, sib_root, tiny_model):
    """SIGKILL after sbatch returned and before the job ids reached jobs.json: the jobs carry
    their submission's token in their comment (after the grid file's own); `grid status`
    finds them by it, and the next runner waits for them: two jobs in all."""
    write_yaml(tmp_path / "configs" / "long.yaml",
               {**LONG, "max_steps": 100, "data_root": str(sib_root), "model": str(tiny_model)})
    grid_file = write_yaml(tmp_path / "configs" / "s.yaml", {
        "presets": ["long.yaml"], "grid": {"method": ["bitfit", "lora"]},
        "slurm": {**JOB, "comment": "study-7"}})
    results = tmp_path / "results"
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_SBATCH, str(grid_file),
                             str(results)], cwd=tmp_path, env=env(), capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert jobs_of(results, "s") == {}
    queued = subprocess.run(["squeue", "-h", "-r", "-n", "grid-s", "-o", "%i|%k"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert len(queued) == 2 and all("|study-7;peft-utils-" in q for q in queued), queued

    cells = load_grid(grid_file, results_dir=results).cells
    status = cli("grid", "status", str(grid_file), cwd=tmp_path).stdout
    jobs = jobs_of(results, "s")
    assert sorted(jobs.values()) == sorted(q.split("|")[0] for q in queued), (jobs, queued)
    assert all(re.search(rf"{re.escape(jobs[c.run_id])} (PENDING|RUNNING)", status)
               for c in cells), status
    again = cli("grid", "run", str(grid_file), "--executor", "slurm", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "submitted" not in again.stdout, again.stdout
    assert all(read_record(results / c.run_id)["status"] == "complete" for c in cells)
    assert sorted(j for j, s in cell_jobs("grid-s") if s == "COMPLETED") \
        == sorted(jobs.values())


def test_a_runner_waits_for_another_runners_submission_and_submits_no_cell_twice(
        tmp_path, presets):
    """Another runner is submitting (it holds the grid's submission lock): `grid run
    --detach` says so and waits; the other runner submits one cell's job and lets go; the
    waiting runner then submits only the other cell. Two jobs in all, each cell's once."""
    from peft_utils.grid.executors import submit, submitit_executor
    from peft_utils.grid.slurm import submitting

    grid_file = write_yaml(tmp_path / "configs" / "w.yaml", {
        "presets": ["tiny.yaml"], "grid": {"method": ["bitfit", "lora"]}, "slurm": JOB})
    grid = load_grid(grid_file, results_dir=tmp_path / "results")
    theirs, ours = grid.cells
    log = tmp_path / "runner.log"
    with submitting(grid):
        runner = start("grid", "run", str(grid_file), "--executor", "slurm", "--detach",
                       cwd=tmp_path, log=log)
        try:
            wait_for(lambda: "another runner is submitting" in log.read_text(), 120,
                     "the runner to wait for the submission lock", runner, log)
            assert jobs_of(grid.results_dir, "w") == {} and not sacct("--name", "grid-w")
            mine = submit(grid, submitit_executor(grid, None), [theirs], None)
        except BaseException:
            if runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
            raise
    assert runner.wait(timeout=120) == 0, log.read_text()
    out = log.read_text()
    assert f"1 cell(s) already have a job queued or running: {mine[theirs.run_id].job_id}" \
        in out and "submitted 1 jobs" in out, out
    jobs = jobs_of(grid.results_dir, "w")
    assert jobs[theirs.run_id] == mine[theirs.run_id].job_id and len(set(jobs.values())) == 2
    collected = cli("grid", "run", str(grid_file), "--executor", "slurm", cwd=tmp_path)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    assert sorted(j for j, _ in cell_jobs("grid-w")) == sorted(jobs.values())
