"""Crash safety: an interrupted or killed run resumes from its last checkpoint to exactly the
result of an uninterrupted one; a killed grid finishes on the next `grid run` with one
complete record per cell; a full disk or an unwritable folder stops with a clear error and
leaves earlier results as they were; two processes never write one run folder."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from fault_helpers import env, kill_at_first_checkpoint, kill_grid_and_rerun, temp_files
from peft_utils.classification.config import RunConfig
from peft_utils.classification.training import train_and_evaluate
from peft_utils.core import checkpoints
from peft_utils.core.methods import PAPER_METHODS
from peft_utils.core.runs import (RunBusyError, WriteError, is_locked, read_record, run_lock,
                                  validate_record)

REPO = Path(__file__).resolve().parents[1]
FAST_METHODS = ("lora", "pfeiffer", "fft")   # peft, adapters and the plain trainer
SETTINGS = dict(dataset="sib200", train_langs=["en", "fr"], eval_langs=["en", "fr", "es"],
                max_length=64, learning_rate=3e-3, batch_size=8, eval_batch_size=16,
                warmup_steps=0, num_epochs=1)


pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.one_thread


def tiny(tmp_path: Path, root: Path, model: Path, folder: str = "results", **kw) -> RunConfig:
    # 140 training rows in batches of 8: 18 steps per epoch, so step 20 lies inside epoch 2.
    base = dict(SETTINGS, data_root=str(root), model=str(model), max_steps=30, eval_steps=10,
                seed=5, results_dir=str(tmp_path / folder))
    return RunConfig(**{**base, **kw})


# ---- resume, in process -------------------------------------------------------------
@pytest.mark.parametrize("method", [*FAST_METHODS, *(pytest.param(m, marks=pytest.mark.slow)
                                                      for m in PAPER_METHODS if m not in FAST_METHODS)])
def test_interrupted_run_resumes_to_the_uninterrupted_result(method, tmp_path, sib_root,
                                                             tiny_model, interrupt_after):
    whole = train_and_evaluate(tiny(tmp_path, sib_root, tiny_model, "whole", method=method))

    config = tiny(tmp_path, sib_root, tiny_model, method=method)
    disarm = interrupt_after(20)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config)
    disarm()
    out = tmp_path / "results" / config.run_id
    assert read_record(out)["status"] == "failed"
    assert (out / "trainer" / "checkpoint-20" / checkpoints.PROGRESS).is_file()

    train_and_evaluate(config)
    record = read_record(out)
    validate_record(record)
    assert record["status"] == "complete" and record["meta"]["resumed_from_step"] == 20
    # Exactly the uninterrupted run: every metric, the dev and loss curves, the final loss.
    assert record["metrics"] == whole.record["metrics"]
    for key in ("final_train_loss", "train_steps", "epochs"):
        assert record["costs"][key] == whole.record["costs"][key], key
    for name in ("dev-examples.csv", "test-examples.csv"):
        assert (out / "predictions" / name).read_bytes() == \
            (whole.run_dir / "predictions" / name).read_bytes()
    assert not (out / "trainer").exists()
    assert (out / "checkpoint" / "trainable.safetensors").is_file()
    assert temp_files(tmp_path) == []


def test_run_interrupted_after_its_last_step_only_evaluates(tmp_path, sib_root, tiny_model,
                                                            interrupt_after, monkeypatch):
    """Early stopping ended training at step 15; the kill came during evaluation."""
    settings = dict(method="lora", learning_rate=1e-9, max_steps=60, eval_steps=5,
                    early_stopping_patience=2)
    whole = train_and_evaluate(tiny(tmp_path, sib_root, tiny_model, "whole", **settings))
    assert whole.record["costs"]["train_steps"] == 15
    config = tiny(tmp_path, sib_root, tiny_model, **settings)
    disarm = interrupt_after(15)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config)
    disarm()
    monkeypatch.setattr("transformers.Trainer.train",
                        lambda *a, **k: pytest.fail("nothing was left to train"))
    record = train_and_evaluate(config).record
    assert record["meta"]["resumed_from_step"] == 15 and record["costs"]["train_steps"] == 15
    assert record["metrics"] == whole.record["metrics"]
    assert record["costs"]["final_train_loss"] == whole.record["costs"]["final_train_loss"]


def test_stale_temp_files_and_half_written_checkpoints_are_cleaned(tmp_path, sib_root,
                                                                  tiny_model):
    config = tiny(tmp_path, sib_root, tiny_model, method="bitfit", max_steps=10, eval_steps=5)
    out = tmp_path / "results" / config.run_id
    half = out / "trainer" / "checkpoint-5"
    half.mkdir(parents=True)
    (half / checkpoints.TRAINABLE).write_bytes(b"\x00" * 10)   # killed before progress.json
    (out / ".record.json.x1y2.tmp").write_text('{"status": "comp')
    (out / "predictions").mkdir()
    (out / "predictions" / ".dev-en.txt.abc.tmp").write_text("half")
    record = train_and_evaluate(config).record
    assert record["status"] == "complete" and record["meta"]["resumed_from_step"] is None
    assert temp_files(tmp_path) == [] and not (out / "trainer").exists()


def test_one_writer_per_run_folder(tmp_path, sib_root, tiny_model, monkeypatch):
    monkeypatch.setattr("peft_utils.core.runs.LOCK_TIMEOUT_S", 0.5)
    config = tiny(tmp_path, sib_root, tiny_model, method="lora")
    out = tmp_path / "results" / config.run_id
    with run_lock(out):   # as a live process writing the run would
        assert is_locked(out)
        with pytest.raises(RunBusyError, match="another process is writing this run"):
            train_and_evaluate(config)
    assert not (out / "record.json").exists() and not is_locked(out)


# ---- full disk, unwritable folder ----------------------------------------------------
def disk_full_for(monkeypatch, matches) -> None:
    """Files whose temporary path `matches` are written to /dev/full, so the writes fail
    with the kernel's own ENOSPC as on a full disk (tests run as root, and no small
    file system can be mounted here)."""
    real = tempfile.mkstemp

    def mkstemp(suffix=None, prefix=None, dir=None, text=False):
        fd, path = real(suffix=suffix, prefix=prefix, dir=dir, text=text)
        if matches(Path(path)):
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_full_disk_when_recording_keeps_the_earlier_record(tmp_path, sib_root, tiny_model,
                                                           monkeypatch):
    config = tiny(tmp_path, sib_root, tiny_model, method="lora", max_steps=10, eval_steps=5)
    first = train_and_evaluate(config)
    before = (first.run_dir / "record.json").read_bytes()
    disk_full_for(monkeypatch, lambda p: p.name.startswith(".record.json."))
    with pytest.raises(WriteError) as err:
        train_and_evaluate(config)
    message = str(err.value)
    assert "record.json" in message and "No space left on device" in message
    assert "the disk is full" in message and "earlier results are left as they were" in message
    assert err.value.errno == errno.ENOSPC
    assert (first.run_dir / "record.json").read_bytes() == before
    assert temp_files(tmp_path) == []


def test_full_disk_at_a_checkpoint_stops_and_the_run_resumes_later(tmp_path, sib_root,
                                                                   tiny_model, monkeypatch):
    config = tiny(tmp_path, sib_root, tiny_model, method="pfeiffer")
    disk_full_for(monkeypatch, lambda p: p.parent.name == "checkpoint-20")
    with pytest.raises(WriteError, match=r"checkpoint-20.*No space left on device"):
        train_and_evaluate(config)
    out = tmp_path / "results" / config.run_id
    assert read_record(out)["status"] == "failed"
    assert not (out / "trainer" / "checkpoint-20").exists()      # space handed back
    assert (out / "trainer" / "checkpoint-10" / checkpoints.PROGRESS).is_file()
    monkeypatch.undo()   # space freed
    record = train_and_evaluate(config).record
    assert record["status"] == "complete" and record["meta"]["resumed_from_step"] == 10
    assert temp_files(tmp_path) == []


def test_unwritable_results_folder_is_refused_before_anything_runs(tmp_path, sib_root,
                                                                   tiny_model, monkeypatch,
                                                                   capsys):
    """Root ignores permission bits, so the folder's EACCES is what the OS call returns."""
    from peft_utils.cli import main

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    monkeypatch.setattr("peft_utils.classification.training.build_model",
                        lambda *a, **k: pytest.fail("training started"))
    config = tiny(tmp_path, sib_root, tiny_model, method="lora")
    with pytest.raises(WriteError, match="Permission denied.*not writable"):
        train_and_evaluate(config)

    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({**SETTINGS, "data_root": str(sib_root),
                                      "model": str(tiny_model), "max_steps": 2}))
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"presets": ["p.yaml"]}))
    assert main(["grid", "run", str(grid), "--results", str(tmp_path / "locked")]) == 2
    assert "is not writable (Permission denied" in capsys.readouterr().err


# ---- killed for real: subprocesses and SIGKILL ----------------------------------------
def test_training_killed_after_a_checkpoint_resumes_exactly(tmp_path, sib_root, tiny_model):
    settings = dict(method="lora", max_steps=240, eval_steps=40)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**SETTINGS, **settings, "seed": 5, "data_root": str(sib_root),
                                    "model": str(tiny_model)}))
    config = tiny(tmp_path, sib_root, tiny_model, **settings)
    command = [sys.executable, "-m", "peft_utils", "train", "--config", str(path),
               "--results", str(tmp_path / "results")]
    proc = subprocess.Popen(command, cwd=REPO, env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "results" / config.run_id
    step = kill_at_first_checkpoint(proc, out)
    assert not (out / "record.json").exists()
    done = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"(step {step})" in done.stderr
    record = read_record(out)
    assert record["meta"]["resumed_from_step"] == step

    # The same run uninterrupted, in this process, with the same single thread.
    whole = train_and_evaluate(tiny(tmp_path, sib_root, tiny_model, "whole", **settings))
    assert record["metrics"] == whole.record["metrics"]
    assert temp_files(tmp_path) == []


def test_killed_grid_finishes_on_the_next_run(tmp_path, sib_root, tiny_model):
    preset = tmp_path / "configs" / "tiny.yaml"
    preset.parent.mkdir()
    preset.write_text(yaml.safe_dump({**SETTINGS, "method": "lora", "data_root": str(sib_root),
                                      "model": str(tiny_model), "eval_steps": 40}))
    grid = tmp_path / "configs" / "grid.yaml"   # a short cell first, then a long one
    grid.write_text(yaml.safe_dump({"presets": ["tiny.yaml"], "grid": {"max_steps": [10, 400]}}))
    kill_grid_and_rerun(grid, tmp_path / "results", timeout=400)
