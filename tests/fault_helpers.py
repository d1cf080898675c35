"""Helpers of the crash-safety tests (test_faults.py, test_mt_faults.py): interrupting a run
after a given checkpoint, killing a process group at its first checkpoint, waiting for locks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from peft_utils.core import checkpoints
from peft_utils.core import trainer as core_trainer
from peft_utils.core.runs import is_locked


@pytest.fixture
def interrupt_after(monkeypatch):
    """Raise KeyboardInterrupt (what SIGTERM becomes in a grid worker) as soon as the
    checkpoint of `step` is complete; returns a function that disarms it."""
    original = core_trainer.atomic_write_text

    def arm(step: int):
        def write(path, text):
            original(path, text)
            if Path(path).name == checkpoints.PROGRESS and json.loads(text)["step"] == step:
                raise KeyboardInterrupt(f"interrupted after the checkpoint of step {step}")

        monkeypatch.setattr(core_trainer, "atomic_write_text", write)
        return lambda: monkeypatch.setattr(core_trainer, "atomic_write_text", original)

    return arm


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
