"""Grid files expand into cells; `grid run` executes the train notebook once per cell,
resumes after an interruption without re-running finished cells, isolates failures, and
reports; `grid status` reads the run folders; submitit runs cells as jobs. Each cell gets its
own kernel, unless `--keep-kernels`: then a worker keeps it from cell to cell, emptied in
between, with the same metrics, each cell's own run.log, a new kernel after a failed cell."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from peft_utils.cli import main
from peft_utils.core.config import ConfigError
from peft_utils.core.devices import peak_memory, reset_peak_memory
from peft_utils.core.runs import HEADLESS, read_record
from peft_utils.grid import expand_grid, load_grid
from peft_utils.grid.cell import Outcome, run_cell, write_spec
from peft_utils.grid.executors import Progress, cell_env

REPO = Path(__file__).resolve().parents[1]
TINY = dict(dataset="sib200", train_langs=["en", "fr"], eval_langs=["en", "fr", "es"],
            max_length=64, learning_rate=3.0e-3, batch_size=8, eval_batch_size=16,
            warmup_steps=0, max_steps=10, eval_steps=5)


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def presets(tmp_path, sib_root, tiny_model) -> Path:
    folder = tmp_path / "configs"
    write_yaml(folder / "presets" / "tiny.yaml",
               {**TINY, "data_root": str(sib_root), "model": str(tiny_model)})
    # Same settings, a model folder without weights: a valid config that fails in the notebook.
    broken = tmp_path / "no-weights-model"
    broken.mkdir()
    shutil.copy(tiny_model / "config.json", broken)
    write_yaml(folder / "presets" / "broken.yaml", {"base": "tiny.yaml", "model": str(broken)})
    return folder


def cli(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "peft_utils", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


# ---- expansion ------------------------------------------------------------
def test_expand_grid_product_set_sweep_exclude_and_duplicates(tmp_path, presets):
    grid = write_yaml(presets / "grids" / "g.yaml", {
        "presets": ["../presets/tiny.yaml"],
        "set": {"max_train_samples": 16},
        "grid": {"method": ["fft", "lora"], "seed": [1, 2]},
        "sweep": {"learning_rate": ["1e-4", 3.0e-4]},
        "exclude": [{"method": "fft", "learning_rate": 1e-4}],
    })
    configs = expand_grid(grid, base_dir=tmp_path)
    assert len(configs) == 2 * 2 * 2 - 2
    assert {(c.method, c.seed, c.learning_rate) for c in configs} >= {("lora", 1, 1e-4),
                                                                      ("fft", 2, 3e-4)}
    assert not any(c.method == "fft" and c.learning_rate == 1e-4 for c in configs)
    assert all(c.max_train_samples == 16 for c in configs)
    assert all(c.results_dir == str(tmp_path / "results") for c in configs)
    assert len({c.run_id for c in configs}) == len(configs)

    # The same preset twice, and a seed listed twice: one cell each.
    write_yaml(grid, {"presets": ["../presets/tiny.yaml", "../presets/tiny.yaml"],
                      "grid": {"seed": [1, 1, 2]}})
    loaded = load_grid(grid, base_dir=tmp_path)
    assert len(loaded.cells) == 2 and loaded.duplicates == 4


def test_grid_method_overrides_beat_the_presets_and_lose_to_axes(tmp_path, presets):
    write_yaml(presets / "presets" / "per-method.yaml",
               {"base": "tiny.yaml", "method_overrides": {"lora": {"learning_rate": 1e-3,
                                                                   "lora_r": 4}}})
    grid = write_yaml(presets / "g.yaml", {
        "presets": ["presets/per-method.yaml"],
        "method_overrides": {"lora": {"learning_rate": 5e-4}, "fft": {"learning_rate": 2e-5}},
        "grid": {"method": ["fft", "lora", "pfeiffer"], "seed": [1, 2]}})
    got = {(c.method, c.learning_rate, c.lora_r) for c in expand_grid(grid, base_dir=tmp_path)}
    assert got == {("fft", 2e-5, 8), ("lora", 5e-4, 4), ("pfeiffer", TINY["learning_rate"], 8)}
    write_yaml(grid, {"presets": ["presets/per-method.yaml"], "grid": {"method": ["lora"]},
                      "method_overrides": {"lora": {"learning_rate": 5e-4}},
                      "sweep": {"learning_rate": [0.01]}})
    assert [c.learning_rate for c in expand_grid(grid, base_dir=tmp_path)] == [0.01]


def test_demo_grids_expand_as_documented(tmp_path, monkeypatch):
    # Expanded from a folder holding a stand-in for the offline model (a fresh clone has none).
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "models" / "multilingual-e5-small"
    model.mkdir(parents=True)
    shutil.copy(REPO / "peft_utils" / "model_configs" / "multilingual-e5-small.json",
                model / "config.json")
    grid = load_grid(REPO / "configs" / "demo.yaml")
    demo = grid.cells
    # Three seeds per final: the intervals cover the seed-to-seed spread. BRIGHTER runs the
    # multilingual scenario only (docs/demo.md: its English finals kept their start).
    assert len(demo) == 48 and {c.config.seed for c in demo} == {2, 3, 4}
    assert {c.config.scenario for c in demo if c.config.dataset == "brighter"} == \
        {"multilingual"}
    # The bottleneck adapters start as the identity (zero up-projection), as LoRA does: every
    # method starts from the same function and the same probe head.
    assert {c.config.method: (c.config.method_config or {}).get("init_weights")
            for c in demo} == {"fft": None, "lora": None, "pfeiffer": "mam_adapter",
                               "houlsby": "mam_adapter"}
    assert {c.config.pooling for c in demo} == {"mean"}
    # Every head starts from the probe and goes on at one small rate (docs/demo/head-init.md).
    assert {(c.config.head_init, c.config.head_learning_rate) for c in demo} == {("probe", 1e-4)}
    # The size that fits three seeds per final (docs/demo.md): dev scored at the end only.
    assert {(c.config.dataset, c.config.max_steps, c.config.eval_steps) for c in demo} == \
        {("sib200", 24, 24), ("brighter", 40, 40)}
    # Tuned first: 3 trials per method and data set, seed 1, on the multilingual scenario,
    # at half a final's steps.
    from peft_utils.grid.tuning import planned_trials

    trials = planned_trials(grid)
    assert len(trials) == 2 * 4 * 3 and grid.tune.extend == 1
    assert {(c.config.seed, c.config.scenario) for t in trials for c in t.runs} == \
        {(1, "multilingual")}
    assert {(c.config.dataset, c.config.max_steps) for t in trials for c in t.runs} == \
        {("sib200", 12), ("brighter", 20)}
    # The paper's head on the same grid, tuning and budget.
    random = load_grid(REPO / "configs" / "demo-random-head.yaml")
    assert {(c.config.head_init, c.config.head_learning_rate) for c in random.cells} == \
        {("random", 1e-2)}
    assert {c.config.head_bias for c in random.cells if c.config.dataset == "brighter"} == \
        {"prior"}
    assert [c.values for c in random.cells] == [c.values for c in demo]
    assert random.tune == grid.tune
    full = [c.config for c in load_grid(REPO / "configs" / "demo-full.yaml").cells]
    # The complete data for 3 epochs, evaluated per epoch: no step budget left from the demo.
    assert {(c.max_steps, c.eval_steps, c.num_epochs, c.max_train_samples)
            for c in full} == {(-1, None, 3, None)}
    assert {c.method: c.learning_rate for c in full}["fft"] == 5e-5


def test_expand_grid_makes_paths_absolute(tmp_path, sib_root, tiny_model, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m").symlink_to(tiny_model)
    write_yaml(tmp_path / "p.yaml", {**TINY, "data_root": "data/x", "model": "models/m"})
    grid = write_yaml(tmp_path / "g.yaml", {"presets": ["p.yaml"], "results_dir": "out"})
    monkeypatch.chdir(tmp_path)
    (config,) = expand_grid(grid)
    assert config.data_root == str(tmp_path / "data" / "x")
    assert config.model == str(tmp_path / "models" / "m")
    assert config.results_dir == str(tmp_path / "out")
    write_yaml(tmp_path / "p.yaml", {**TINY, "model": "xlm-roberta-base"})   # a hub name
    assert expand_grid(grid)[0].model == "xlm-roberta-base"


@pytest.mark.parametrize("content, message", [
    ({"grid": {"method": ["lora"]}}, r"`presets` is required"),
    ({"presets": ["missing.yaml"]}, r"preset 'missing.yaml' not found"),
    ({"presets": ["p.yaml"], "grid": {"methods": ["lora"]}}, r"unknown RunConfig key 'methods'"),
    ({"presets": ["p.yaml"], "sets": {}}, r"unknown grid key\(s\) sets"),
    ({"presets": ["p.yaml"], "grid": {"method": "lora"}}, r"grid.method must be a non-empty list"),
    ({"presets": ["p.yaml"], "grid": {"method": ["lora", "qlora"]}},
     r"cell \{'method': 'qlora'\}.*unknown method 'qlora'"),
    ({"presets": ["p.yaml"], "set": {"lora_r": 0}}, r"lora_r must be a positive number"),
    ({"presets": ["p.yaml"], "set": {"seed": 1}, "grid": {"seed": [1, 2]}},
     r"seed set in more than one"),
    ({"presets": ["p.yaml"], "exclude": [{"metod": "fft"}]}, r"unknown RunConfig key 'metod'"),
    ({"presets": ["p.yaml"], "method_overrides": {"lora": {"lr": 1}}},
     r"unknown RunConfig key 'lr'"),
    ({"presets": ["p.yaml"], "method_overrides": {"lora": 0.1}},
     r"method_overrides.lora must be a mapping"),
])
def test_expand_grid_errors_name_the_grid_file(tmp_path, content, message):
    write_yaml(tmp_path / "p.yaml", dict(TINY))
    grid = write_yaml(tmp_path / "bad-grid.yaml", content)
    with pytest.raises(ConfigError, match=message) as err:
        expand_grid(grid, base_dir=tmp_path)
    assert str(err.value).startswith(str(grid))


def test_paper_grid_dry_run_lists_81_cells(capsys):
    assert main(["grid", "run", str(REPO / "configs" / "paper.yaml"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "81 cells" and len(lines) == 82
    assert len({line.split()[0] for line in lines[:-1]}) == 81
    first = lines[0]
    assert first.startswith("semeval2023-st1-fft-multilingual-s1-")
    assert "method=fft" in first and "learning_rate=1e-05" in first   # from method_overrides
    cells = load_grid(REPO / "configs" / "paper.yaml").cells
    assert {(c.config.subtask, c.config.method) for c in cells if c.config.learning_rate == 2e-4} \
        == {(2, "pfeiffer"), (3, "pfeiffer")}
    assert all(c.config.model == "xlm-roberta-large" for c in cells)


def test_bad_grid_is_a_clean_cli_error(tmp_path, capsys):
    grid = write_yaml(tmp_path / "g.yaml", {"presets": ["nope.yaml"]})
    assert main(["grid", "run", str(grid), "--dry-run"]) == 2
    assert f"error: {grid}: preset 'nope.yaml' not found" in capsys.readouterr().err


# ---- workers --------------------------------------------------------------
def test_cell_env_splits_cpu_threads_or_hands_out_gpus(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cell_env(0, 4, [])["OMP_NUM_THREADS"] == "2"
    assert cell_env(0, 16, [])["OMP_NUM_THREADS"] == "1"
    assert [cell_env(slot, 3, ["4", "6"])["CUDA_VISIBLE_DEVICES"] for slot in range(3)] == \
        ["4", "6", "4"]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")   # the user's choice wins
    assert cell_env(0, 4, [])["OMP_NUM_THREADS"] == "3"


def test_progress_reports_done_failures_and_eta():
    lines = []
    progress = Progress(4, echo=lines.append)
    progress.finished(Outcome("a", "complete", None, 2.0))
    progress.finished(Outcome("b", "failed", "boom", 1.0))
    assert lines[0].startswith("[1/4] complete a (0:00:02) | 0 failed | ETA ")
    assert lines[1].startswith("[2/4] failed   b (0:00:01) | 1 failed | ETA ")


def test_cell_failing_before_training_gets_a_failed_record(tmp_path, presets):
    """A notebook that dies before train_and_evaluate: the runner records the failure and
    keeps the executed notebook (and its HTML)."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("config_file = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("raise RuntimeError('broke before training')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    notebook = tmp_path / "broken.ipynb"
    nbformat.write(nb, notebook)
    grid = write_yaml(presets / "g.yaml", {"presets": ["presets/tiny.yaml"]})
    (cell,) = load_grid(grid, base_dir=tmp_path).cells
    outcome = run_cell(write_spec(cell.config, grid, notebook))
    assert outcome["status"] == "failed" and "broke before training" in outcome["error"]
    assert HEADLESS not in os.environ   # a cell run in this process leaves its env as it was
    folder = tmp_path / "results" / cell.run_id
    record = read_record(folder)
    assert record["status"] == "failed" and "broke before training" in record["error"]
    assert record["run_info"]["run_id"] == cell.run_id
    assert (folder / "train.ipynb").is_file() and (folder / "train.html").is_file()
    assert main(["grid", "status", str(grid), "--results", str(tmp_path / "results")]) == 0


# ---- end to end -----------------------------------------------------------
def wait_for_finished_cell(results: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until one cell is fully done: a complete record and its rendered notebook."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for path in results.glob("*/train.html"):
            try:
                if read_record(path.parent)["status"] == "complete":
                    return
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
    raise AssertionError(f"no finished cell before the grid ended or timed out (rc={proc.poll()})")


def test_grid_runs_resumes_after_interrupt_and_isolates_failures(tmp_path, presets):
    grid = write_yaml(presets / "grids" / "e2e.yaml", {
        "presets": ["../presets/tiny.yaml", "../presets/broken.yaml"],
        "grid": {"method": ["lora", "bitfit"], "seed": [1, 2]},
        # the broken preset keeps one cell: lora, seed 1
        "exclude": [{"model": str(tmp_path / "no-weights-model"), "method": "bitfit"},
                    {"model": str(tmp_path / "no-weights-model"), "seed": 2}],
    })
    results = tmp_path / "results"
    dry = cli("grid", "run", str(grid), "--dry-run", "--results", str(results))
    assert dry.returncode == 0 and dry.stdout.strip().splitlines()[-1] == "5 cells"
    cells = load_grid(grid, results_dir=results).cells
    broken = next(c for c in cells if "no-weights-model" in c.config.model)

    # 1. Interrupt (Ctrl-C) once a cell is finished.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "peft_utils", "grid", "run", str(grid),
                             "--results", str(results), "--workers", "2"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_finished_cell(results, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "run the same command again" in err
    first = {p.parent.name: p.stat().st_mtime_ns for p in results.glob("*/record.json")
             if json.loads(p.read_text())["status"] == "complete"}
    assert 1 <= len(first) < 4

    status = cli("grid", "status", str(grid), "--results", str(results)).stdout
    assert f"{len(first)} complete" in status and "pending" in status

    # 2. Resume: finished cells are skipped, the failing cell does not stop the others.
    rerun = cli("grid", "run", str(grid), "--results", str(results), "--workers", "2")
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    assert f"{len(first)} already complete (skipped), {5 - len(first)} to run" in rerun.stdout
    assert f"[{5 - len(first)}/{5 - len(first)}]" in rerun.stdout and "ETA" in rerun.stdout
    assert "failed cells:" in rerun.stderr and broken.run_id in rerun.stderr
    assert "no-weights-model" in rerun.stderr
    for run_id, mtime in first.items():   # not run twice
        assert (results / run_id / "record.json").stat().st_mtime_ns == mtime

    for cell in cells:
        folder = results / cell.run_id
        record = read_record(folder)
        assert record["status"] == ("failed" if cell is broken else "complete")
        assert (folder / "train.ipynb").is_file() and (folder / "train.html").is_file()
        assert record["run_info"]["run_id"] == cell.run_id
        if cell is not broken:   # headless progress: a log line per evaluation, no bar
            log = (folder / "run.log").read_text()
            # A cell interrupted after its last checkpoint resumes with no evaluation left.
            if record["meta"]["resumed_from_step"] is not None:
                assert f"resuming {cell.run_id} from" in log
            else:
                assert re.search(rf"{cell.run_id} step \d+/\d+: loss [\d.]+, dev [\d.]+", log)
            assert "it/s]" not in log and "<progress" not in (folder / "train.ipynb").read_text()
    executed = nbformat.read(results / broken.run_id / "train.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in executed.cells
               for o in c.get("outputs", []))

    status = cli("grid", "status", str(grid), "--results", str(results)).stdout
    assert "4 complete, 1 failed, 0 running-or-partial, 0 pending of 5 cells" in status
    assert broken.run_id in status and "method=lora" in status


def test_submitit_local_executor_runs_cells_as_jobs(tmp_path, presets):
    grid = write_yaml(presets / "grids" / "jobs.yaml", {
        "presets": ["../presets/tiny.yaml"], "grid": {"method": ["bitfit"]},
        "slurm": {"cluster": "local", "timeout_min": 10, "partition": "ignored-locally"},
    })
    results = tmp_path / "results"
    env_note = cli("grid", "run", str(grid), "--results", str(results), "--executor", "slurm")
    assert env_note.returncode == 0, env_note.stdout + env_note.stderr
    assert "submitted 1 jobs" in env_note.stdout and "[1/1] complete" in env_note.stdout
    (cell,) = load_grid(grid, results_dir=results).cells
    assert read_record(results / cell.run_id)["status"] == "complete"
    assert (results / cell.run_id / "train.html").is_file()
    assert list((results / "_submitit" / "jobs").glob("*/*_log.out"))



def test_slurm_executor_without_slurm_is_a_clean_error(tmp_path, presets, monkeypatch, capsys):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    grid = write_yaml(presets / "g.yaml", {"presets": ["presets/tiny.yaml"]})
    assert main(["grid", "run", str(grid), "--executor", "slurm",
                 "--results", str(tmp_path / "results")]) == 2
    assert "set `cluster: local` under `slurm:`" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()   # nothing submitted, nothing half-written

def test_job_memory_merges_submissions_and_forgets_a_torn_file(tmp_path, presets, monkeypatch):
    """The Slurm runner's memory of which job runs which cell (tests/test_slurm.py runs it
    against a real scheduler); without Slurm commands, `grid status` shows the jobs' state as
    UNKNOWN instead of failing."""
    from peft_utils.grid.slurm import (JOBS, announce, jobs_folder, remember, remembered,
                                       under_way)
    from peft_utils.grid.state import status_table

    grid = load_grid(write_yaml(presets / "g.yaml", {"presets": ["presets/tiny.yaml"]}),
                     results_dir=tmp_path / "results")
    (cell,) = grid.cells
    assert remembered(grid) == {}
    remember(grid, {cell.run_id: "7_0", "coordinator": "6"})
    remember(grid, {cell.run_id: "9_0"})   # resubmitted after its first job ended
    assert remembered(grid) == {cell.run_id: "9_0", "coordinator": "6"}
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    table = status_table(grid)
    assert "coordinator job 6 UNKNOWN" in table and "9_0 UNKNOWN" in table
    # A submission announced and never remembered stays noted while squeue cannot answer
    # for its jobs; remembering its jobs settles it.
    token = announce(grid, [cell.run_id])
    status_table(grid)
    assert under_way(grid) == {token: [cell.run_id]}
    remember(grid, {cell.run_id: "11"}, token)
    assert under_way(grid) == {} and remembered(grid)[cell.run_id] == "11"
    (jobs_folder(grid) / JOBS).write_text('{"' + cell.run_id + '": "9_')   # torn by hand
    assert remembered(grid) == {}
    assert not list(jobs_folder(grid).glob("*.tmp"))


def test_a_cell_another_runner_starts_after_the_check_is_left_to_it_untouched(
        tmp_path, presets, monkeypatch):
    """Another runner takes the cell's lock between this runner's check and its write of the
    cell's spec: the cell is left to it at once and its folder untouched. Written without the
    lock, the spec's temporary file could be swept away by that runner's start (its clean-up of
    a killed writer's files), which stopped a runner on CI (2026-12-03)."""
    from peft_utils.core.runs import run_dir, run_lock
    from peft_utils.grid import executors
    from peft_utils.grid.cell import CELL_LOCK, ELSEWHERE, SPEC

    grid = load_grid(write_yaml(presets / "e.yaml", {"presets": ["presets/tiny.yaml"]}),
                     results_dir=tmp_path / "results")
    (cell,) = grid.cells
    folder = run_dir(cell.config.results_dir, cell.run_id)
    monkeypatch.setattr(executors, "running_elsewhere", lambda cell: False)   # checked before
    with run_lock(folder, CELL_LOCK):   # ... the other runner started the cell
        outcomes = executors.run_local(grid, [cell], 1, Progress(1, echo=lambda line: None))
    assert [o.status for o in outcomes] == [ELSEWHERE]
    assert not (folder / SPEC).exists() and not (folder / "run.log").exists()


def test_the_jobs_comment_ends_in_the_submission_token_after_the_grid_files_own(presets):
    from peft_utils.grid.slurm import tagged_comment

    def comment(slurm):
        grid = load_grid(write_yaml(presets / "c.yaml", {"presets": ["presets/tiny.yaml"],
                                                          "slurm": slurm}))
        return tagged_comment(grid, "peft-utils-ab12")

    assert comment({}) == {"slurm_comment": "peft-utils-ab12"}
    assert comment({"comment": "study-7"}) == {"slurm_comment": "study-7;peft-utils-ab12"}
    # sbatch lines of the grid file's own win over the executor's parameters: the token
    # goes there.
    assert comment({"additional_parameters": {"comment": "x", "hint": "nomultithread"}}) == {
        "slurm_additional_parameters": {"comment": "x;peft-utils-ab12", "hint": "nomultithread"}}


def test_detach_needs_the_slurm_executor(tmp_path, presets, capsys):
    grid = write_yaml(presets / "g.yaml", {"presets": ["presets/tiny.yaml"]})
    assert main(["grid", "run", str(grid), "--detach", "--results", str(tmp_path / "r")]) == 2
    assert "--detach needs --executor slurm" in capsys.readouterr().err


@pytest.mark.slow
def test_one_cell_on_two_processes_with_accelerate(tmp_path, sib_root, tiny_model):
    """The documented multi-GPU command, on CPU: two processes, one record from rank 0."""
    config = write_yaml(tmp_path / "tiny.yaml",
                        {**TINY, "data_root": str(sib_root), "model": str(tiny_model)})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
              "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", "0",
              "-m", "peft_utils", "train", "--config", str(config),
              "--results", str(tmp_path / "results")]
    done = subprocess.run(launch, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (record_path,) = (tmp_path / "results").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "complete"
    # 140 training rows, batch 8 per process: 9 steps per epoch on two processes, not 18.
    assert record["costs"]["train_steps"] == 10
    assert record["costs"]["epochs"] == pytest.approx(10 / 9)


# ---- a local worker keeps its kernel from cell to cell ----------------------------
# Inserted after the parameters: which kernel runs the cell, and whether anything the
# previous cell defined is still there.
PROBE = ('import os\nprint("kernel pid", os.getpid())\n'
         'print("leftover from an earlier cell:", "leftover" in globals())\nleftover = 1')


def probed_notebook(folder: Path) -> Path:
    notebook = nbformat.read(REPO / "notebooks" / "train.ipynb", as_version=4)
    at = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    notebook.cells.insert(at + 1, nbformat.v4.new_code_cell(PROBE))
    path = folder / "train.ipynb"
    nbformat.write(notebook, path)
    return path


def probe_output(executed: Path) -> tuple[int, bool, int]:
    """(the kernel's pid, whether the namespace held an earlier cell's name, the first code
    cell's execution count)."""
    notebook = nbformat.read(executed, as_version=4)
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    pid = int(re.search(r"kernel pid (\d+)", text).group(1))
    counts = [c.execution_count for c in notebook.cells if c.cell_type == "code"]
    return pid, "earlier cell: True" in text, counts[0]


def test_reset_peak_memory_forgets_an_earlier_peak():
    import numpy as np

    block = np.ones(400 * 2**20 // 8)   # 400 MiB resident
    high, kind = peak_memory("cpu")
    del block
    assert kind == "cpu_peak_rss" and reset_peak_memory()
    assert peak_memory("cpu")[0] < high - 300


def test_worker_reuses_its_kernel_resets_it_and_replaces_it_after_a_failure(tmp_path, presets,
                                                                            monkeypatch):
    notebook = probed_notebook(tmp_path)
    grid = write_yaml(presets / "grids" / "warm.yaml", {
        "presets": ["../presets/broken.yaml", "../presets/tiny.yaml"],
        "grid": {"method": ["lora", "bitfit"]},
        # on one worker, in the grid's order: the broken lora cell, then lora, then bitfit
        "exclude": [{"model": str(tmp_path / "no-weights-model"), "method": "bitfit"}]})
    results = tmp_path / "results"
    out = cli("grid", "run", str(grid), "--results", str(results), "--notebook", str(notebook),
              "--keep-kernels")
    assert out.returncode == 1, out.stdout + out.stderr   # the broken cell fails
    assert "kernels kept from cell to cell" in out.stdout
    broken, lora, bitfit = load_grid(grid, results_dir=results).cells
    assert "no-weights-model" in broken.config.model
    probes = [probe_output(results / c.run_id / "train.ipynb") for c in (broken, lora, bitfit)]
    assert probes[1][0] != probes[0][0]   # a new kernel after the failed cell ...
    assert probes[2] == (probes[1][0], False, 1)   # ... kept, emptied, counting from 1 again
    for cell, other in ((lora, bitfit), (bitfit, lora)):
        folder = results / cell.run_id
        assert read_record(folder)["status"] == "complete" and (folder / "train.html").is_file()
        log = (folder / "run.log").read_text()   # each cell's output in its own log
        assert f"{cell.run_id} step" in log and "kernel pid" in log and other.run_id not in log

    # The warm cell's results are those of the same cell alone in a new kernel.
    alone = bitfit.config.replace(results_dir=str(tmp_path / "alone"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # as the grid's worker had
    assert run_cell(write_spec(alone, grid, notebook))["status"] == "complete"
    warm = read_record(results / bitfit.run_id)
    assert warm["metrics"] == read_record(tmp_path / "alone" / bitfit.run_id)["metrics"]


def test_every_cell_gets_its_own_kernel_and_its_seeds_share_it(tmp_path, presets):
    """By default a cell's seeds run one after another in one kernel (emptied between them)
    and the next cell starts a new one: every method has one cold seed, the rest warm."""
    notebook = probed_notebook(tmp_path)
    grid = write_yaml(presets / "grids" / "cold.yaml", {
        "presets": ["../presets/tiny.yaml"],
        "grid": {"method": ["lora", "bitfit"], "seed": [1, 2]}})
    results = tmp_path / "results"
    out = cli("grid", "run", str(grid), "--results", str(results), "--notebook", str(notebook),
              "--workers", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "kernels kept" not in out.stdout
    cells = load_grid(grid, results_dir=results).cells
    probes = {(c.config.method, c.config.seed): probe_output(results / c.run_id / "train.ipynb")
              for c in cells}
    assert probes["lora", 2] == (probes["lora", 1][0], False, 1)   # same kernel, emptied
    assert probes["bitfit", 2][0] == probes["bitfit", 1][0]
    assert probes["bitfit", 1][0] != probes["lora", 1][0]            # a new one per cell
