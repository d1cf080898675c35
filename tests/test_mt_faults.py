"""Crash safety of MT runs, the guarantees classification runs have (tests/test_faults.py):
an interrupted run resumes from its last checkpoint to exactly the metrics of an uninterrupted
one; a killed MT grid finishes on the next `grid run` with one complete record per cell; one
process writes a run folder; a full disk is a WriteError naming the file; a run that fails
leaves a failed record. On a tiny random mBART and a small NTREX tree."""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import yaml

from fault_helpers import kill_grid_and_rerun, temp_files
from peft_utils.core import checkpoints
from peft_utils.core.runs import RunBusyError, WriteError, read_record, run_lock, validate_record
from peft_utils.mt.config import MTConfig
from peft_utils.mt.testing import make_ntrex_tree, make_tiny_mt_model
from peft_utils.mt.training import train_and_evaluate

REPO = Path(__file__).resolve().parents[1]
# 8 documents of 10 sentences, 85% for training: about 68 rows, 9 steps of 8 per epoch, so
# the checkpoint of step 12 lies inside the second epoch.
SETTINGS = dict(max_steps=18, eval_steps=6, max_eval_samples=8, max_source_length=24,
                max_target_length=16, batch_size=8, eval_batch_size=16, warmup_steps=0,
                select_on="chrf", learning_rate=3e-3, seed=3, device="cpu",
                label_smoothing=0.1)

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.one_thread


@pytest.fixture(scope="module")
def mt_setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mtfaults")
    data = make_ntrex_tree(root / "ntrex", n_docs=8)
    texts = [line for f in data.glob("newstest2019-*.txt")
             for line in f.read_text(encoding="utf-8").splitlines()]
    return data, make_tiny_mt_model(root / "tiny-mt", texts)


def mt_config(tmp_path: Path, setup, folder: str = "results", **kw) -> MTConfig:
    data, model = setup
    return MTConfig(**{**SETTINGS, "data_root": str(data), "model": str(model),
                       "results_dir": str(tmp_path / folder), **kw})


@pytest.mark.parametrize("method,budget", [("lora", 0.1), ("pfeiffer", 0.1), ("fft", None)])
def test_interrupted_mt_run_resumes_to_the_uninterrupted_result(method, budget, tmp_path,
                                                                mt_setup, interrupt_after):
    """peft, the adapters library's seq2seq trainer and the plain Seq2SeqTrainer."""
    config = mt_config(tmp_path, mt_setup, method=method, budget=budget)
    disarm = interrupt_after(12)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(config)
    out = tmp_path / "results" / config.run_id
    assert read_record(out)["status"] == "failed"
    assert (out / "trainer" / "checkpoint-12" / checkpoints.PROGRESS).is_file()
    disarm()
    resumed = train_and_evaluate(config).record
    assert resumed["status"] == "complete" and resumed["meta"]["resumed_from_step"] == 12
    whole = train_and_evaluate(mt_config(tmp_path, mt_setup, "whole", method=method,
                                         budget=budget)).record
    assert whole["meta"]["resumed_from_step"] is None
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["costs"]["train_steps"] == whole["costs"]["train_steps"] == 18
    assert not (out / "trainer").exists()      # checkpoints go once the record is complete
    assert temp_files(tmp_path) == []


def test_mt_selects_on_dev_loss_and_stops_early(tmp_path, mt_setup):
    """select_on: loss keeps the state of the lowest dev loss; early_stopping_patience stops
    after that many worse evaluations (a learning rate far too high makes them come)."""
    config = mt_config(tmp_path, mt_setup, method="lora", budget=0.1, select_on="loss",
                       learning_rate=0.5, max_steps=60, eval_steps=3,
                       early_stopping_patience=1)
    record = train_and_evaluate(config).record
    curve = record["metrics"]["dev_curve"]
    assert all(point["dev"] == -point["loss"] for point in curve)   # the negated dev loss
    assert record["metrics"]["best_dev"] == max(point["dev"] for point in curve)
    assert record["costs"]["train_steps"] < 60 and curve[-1]["dev"] < record["metrics"]["best_dev"]


def test_mt_run_folder_has_one_writer_and_a_failure_record(tmp_path, mt_setup, monkeypatch):
    monkeypatch.setattr("peft_utils.core.runs.LOCK_TIMEOUT_S", 0.5)
    config = mt_config(tmp_path, mt_setup, method="lora", budget=0.1, max_steps=2,
                       eval_steps=2)
    out = tmp_path / "results" / config.run_id
    with run_lock(out):
        with pytest.raises(RunBusyError, match="another process is writing this run"):
            train_and_evaluate(config)
    assert not (out / "record.json").exists()    # the holder's folder is not touched
    missing = config.replace(data_root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="data_root .* does not exist"):
        train_and_evaluate(missing)
    record = read_record(out)
    validate_record(record, "mt_record")
    assert record["status"] == "failed" and record["kind"] == "mt"
    assert "prepare it with `python -m peft_utils data prepare ntrex`" in record["error"]


def test_full_disk_at_an_mt_checkpoint_stops_and_the_run_resumes_later(tmp_path, mt_setup,
                                                                       monkeypatch):
    config = mt_config(tmp_path, mt_setup, method="lora", budget=0.1)
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, path = real_mkstemp(*args, **kwargs)
        if Path(path).parent.name == "checkpoint-12":
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(WriteError, match=r"checkpoint-12.*No space left on device") as err:
        train_and_evaluate(config)
    assert err.value.errno == errno.ENOSPC
    out = tmp_path / "results" / config.run_id
    assert read_record(out)["status"] == "failed"
    assert not (out / "trainer" / "checkpoint-12").exists()      # space handed back
    monkeypatch.undo()
    record = train_and_evaluate(config).record
    assert record["status"] == "complete" and record["meta"]["resumed_from_step"] == 6
    assert temp_files(tmp_path) == []


def test_killed_mt_grid_finishes_on_the_next_run(tmp_path, mt_setup):
    """SIGKILL of `grid run` while an MT cell trains; the rerun skips the finished cell,
    resumes the killed one from its checkpoint, and its metrics are those of a run never
    interrupted."""
    data, model = mt_setup
    preset = tmp_path / "configs" / "tiny.yaml"
    preset.parent.mkdir()
    settings = {k: v for k, v in SETTINGS.items() if k != "max_steps"}
    preset.write_text(yaml.safe_dump({**settings, "method": "lora", "budget": 0.1,
                                      "data_root": str(data), "model": str(model)}))
    grid = tmp_path / "configs" / "grid.yaml"   # a short cell first, then a long one
    grid.write_text(yaml.safe_dump({"kind": "mt", "presets": ["tiny.yaml"],
                                    "grid": {"max_steps": [6, 120]}}))
    long, _ = kill_grid_and_rerun(grid, tmp_path / "results", "mt_record")
    resumed = read_record(tmp_path / "results" / long.run_id)
    whole = train_and_evaluate(long.config.replace(results_dir=str(tmp_path / "whole")))
    assert resumed["metrics"] == whole.record["metrics"]
