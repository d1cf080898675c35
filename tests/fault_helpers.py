"""Helpers of the crash-safety tests (test_faults.py, test_mt_faults.py): interrupting a run
after a given checkpoint, killing a process group at its first checkpoint, waiting for locks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peft_utils.core import checkpoints
from peft_utils.core.runs import is_locked, read_record, validate_record

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def interrupt_after(monkeypatch):
    """Raise KeyboardInterrupt (what SIGTERM becomes in a grid worker) as soon as the
    checkpoint of `step` is complete; returns a function that disarms it."""
    # Imported here: conftest imports this module, and the trainer loads transformers.
    from peft_utils.core import trainer as core_trainer

    original = core_trainer.atomic_write_text

    def arm(step: int):
        def write(path, text):
            original(path, text)
            if Path(path).name == checkpoints.PROGRESS and json.loads(text)["step"] == step:
                raise KeyboardInterrupt(f"interrupted after the checkpoint of step {step}")

        monkeypatch.setattr(core_trainer, "atomic_write_text", write)
        return lambda: monkeypatch.setattr(core_trainer, "atomic_write_text", original)

    return arm


def assert_resumes_to(whole_record: dict, train, config, step: int, arm) -> None:
    """Interrupt `train(config)` after the checkpoint of `step` (`arm`: the interrupt_after
    fixture), run it again, and check that it resumed there to `whole_record`'s metrics."""
    disarm = arm(step)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    disarm()
    train(config)
    record = read_record(Path(config.results_dir) / config.run_id)
    assert record["meta"]["resumed_from_step"] == step
    assert record["metrics"] == whole_record["metrics"]


def temp_files(root: Path) -> list[Path]:
    return list(root.rglob("*.tmp"))


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def newest_checkpoint(folder: Path) -> int | None:
    steps = [int(p.parent.name.split("-")[1]) for p in folder.glob("trainer/checkpoint-*/"
                                                                    + checkpoints.PROGRESS)]
    return max(steps) if steps else None


def kill_at_first_checkpoint(proc: subprocess.Popen, folder: Path, timeout: float = 240) -> int:
    """SIGKILL the process group of `proc` as soon as `folder` has a complete checkpoint."""
    deadline = time.monotonic() + timeout
    while newest_checkpoint(folder) is None:
        assert proc.poll() is None, f"exited before a checkpoint: {proc.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return newest_checkpoint(folder)


def wait_unlocked(folder: Path, timeout: float = 60) -> None:
    """Until no process (an orphaned worker or kernel) holds the folder's locks."""
    deadline = time.monotonic() + timeout
    while is_locked(folder) or is_locked(folder, ".cell.lock"):
        assert time.monotonic() < deadline, f"{folder} still locked"
        time.sleep(0.2)


def kill_grid_and_rerun(grid: Path, results: Path, schema: str = "record",
                        timeout: float = 500) -> tuple[object, int]:
    """Run `grid` (a short cell, then a long one), SIGKILL the runner as soon as the long cell
    has a checkpoint, run the grid again, and check the outcome: the short cell is not run
    again, exactly one complete, schema-valid record per cell with its executed notebook, no
    checkpoints or temporary files left. Returns (the long cell, the step it resumed from)."""
    from peft_utils.grid import load_grid

    loaded = load_grid(grid, results_dir=results)
    short, long = loaded.cells
    # Both cells in one worker's kept kernel: the runner's death must end the kernel too.
    command = [sys.executable, "-m", "peft_utils", "grid", "run", str(grid),
               "--results", str(results), "--keep-kernels"]
    proc = subprocess.Popen(command, cwd=REPO, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_at_first_checkpoint(proc, results / long.run_id)
    short_record = results / short.run_id / "record.json"
    assert read_record(short_record.parent)["status"] == "complete"
    finished_at = short_record.stat().st_mtime_ns
    # The runner's worker and kernel have sessions of their own: they notice and exit (the
    # kernel may write a checkpoint or two first).
    wait_unlocked(results / long.run_id)
    assert not (results / long.run_id / "record.json").exists()
    step = newest_checkpoint(results / long.run_id)

    done = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "1 already complete (skipped), 1 to run" in done.stdout
    assert short_record.stat().st_mtime_ns == finished_at          # not run again
    records = sorted(results.glob("*/record.json"))
    assert [p.parent.name for p in records] == sorted([short.run_id, long.run_id])
    html = loaded.study.notebook.with_suffix(".html").name
    for path in records:
        record = json.loads(path.read_text())
        validate_record(record, schema)
        assert record["status"] == "complete"
        assert (path.parent / html).is_file()
        assert not (path.parent / "trainer").exists()
    assert read_record(results / long.run_id)["meta"]["resumed_from_step"] == step
    assert temp_files(results) == []
    return long, step
