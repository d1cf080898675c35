"""Records: atomic writes, schema validation, safe run folders, collection."""
from __future__ import annotations

import json

import jsonschema
import pytest

from peft_utils.classification.analysis.load import collect
from peft_utils.core.runs import (atomic_write_text, is_complete, run_dir, scan_runs,
                                  validate_record, write_record)


def minimal(status="failed", run_id="r1"):
    return {"status": status, "error": "boom", "meta": {"packages": {}, "git_commit": None,
                                                        "device": "cpu", "seed": 1},
            "run_info": {"run_id": run_id, "dataset": "sib200", "method": "lora",
                         "scenario": "en", "model": "m", "seed": 1}}


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    atomic_write_text(target, "old")

    def explode(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", explode)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # temp file removed


def test_schema_rejects_broken_records(tmp_path):
    write_record(tmp_path, minimal())
    record = json.loads((tmp_path / "record.json").read_text())
    validate_record(record)
    record["costs"] = {"trainable": -1}
    with pytest.raises(jsonschema.ValidationError):
        validate_record(record)
    assert not is_complete(tmp_path)


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden", "x" * 200])
def test_run_ids_cannot_escape_results(tmp_path, bad):
    with pytest.raises(ValueError):
        run_dir(tmp_path, bad)


def test_collect_skips_failed_and_unreadable(tmp_path):
    write_record(tmp_path / "r1", minimal())
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "record.json").write_text("{half")
    assert collect(tmp_path).empty
    assert len(collect(tmp_path, include_failed=True)) == 1


def test_scan_runs_lists_every_run_folder_and_why_it_is_not_complete(tmp_path):
    """The one reader of a results folder (both studies' analyses use it)."""
    write_record(tmp_path / "a-done", {**minimal("complete", "a-done"), "error": None})
    write_record(tmp_path / "b-failed", {**minimal("failed", "b-failed"),
                                         "error": "Traceback ...\nValueError: no rows\n"})
    (tmp_path / "c-half").mkdir()
    (tmp_path / "c-half" / "record.json").write_text("{half")
    (tmp_path / "d-running").mkdir()
    (tmp_path / "d-running" / "config.json").write_text("{}")
    for other in ("e-empty", ".hidden", "_submitit"):   # not run folders
        (tmp_path / other).mkdir()
    (tmp_path / "_submitit" / "config.json").write_text("{}")
    found = {run.folder.name: run for run in scan_runs(tmp_path)}
    assert list(found) == ["a-done", "b-failed", "c-half", "d-running"]
    assert (found["a-done"].status, found["a-done"].reason) == ("complete", None)
    assert found["a-done"].run_id == "a-done" and found["a-done"].record["status"] == "complete"
    assert (found["b-failed"].status, found["b-failed"].reason) == ("failed",
                                                                    "ValueError: no rows")
    assert found["c-half"].status == "unreadable" and found["c-half"].record is None
    assert "record.json" in found["c-half"].reason
    assert found["d-running"].status == "no record" and "still running" in found["d-running"].reason
