"""Reproducibility: the same config and seed on CPU give identical metrics and predictions;
`python -m peft_utils rerun results/<run_id>` retrains a run from its record alone and says
whether the metrics match (exit 0) or not (exit 1, with the differences)."""
from __future__ import annotations

import json

import pytest

from peft_utils.classification.config import RunConfig
from peft_utils.classification.training import train_and_evaluate
from peft_utils.cli import main
from peft_utils.core.config import ConfigError
from peft_utils.core.rerun import differences
from peft_utils.core.runs import read_record

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.one_thread


def test_same_config_twice_and_rerun_from_the_record(tmp_path, sib_root, tiny_model, capsys):
    config = RunConfig(dataset="sib200", data_root=str(sib_root), model=str(tiny_model),
                       method="pfeiffer", train_langs=["en", "fr"], eval_langs=["en", "fr", "es"],
                       max_length=64, learning_rate=3e-3, batch_size=8, eval_batch_size=16,
                       warmup_steps=0, num_epochs=1, max_steps=20, eval_steps=10, seed=11,
                       results_dir=str(tmp_path / "results"))
    first = train_and_evaluate(config)

    # The record alone (run_info) is enough to train the run again, elsewhere.
    assert main(["rerun", str(first.run_dir), "--results", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    assert f"identical: every metric of {config.run_id} matches" in out
    again = tmp_path / "again" / config.run_id
    assert read_record(again)["metrics"] == first.record["metrics"]
    for name in ("dev-examples.csv", "test-examples.csv", "test-es.txt"):
        assert (again / "predictions" / name).read_bytes() == \
            (first.run_dir / "predictions" / name).read_bytes()

    # A record whose numbers no longer come out: exit 1 and the differences.
    record = read_record(first.run_dir)
    recorded = record["metrics"]["dev"]["overall"]["macro_f1"]
    record["metrics"]["dev"]["overall"]["macro_f1"] = recorded + 0.125
    (first.run_dir / "record.json").write_text(json.dumps(record))
    assert main(["rerun", str(first.run_dir)]) == 1   # default: a sibling results-rerun/
    out = capsys.readouterr().out
    assert "different: 1 metric value(s)" in out
    assert f"metrics.dev.overall.macro_f1: {recorded + 0.125!r} -> {recorded!r}" in out
    assert (tmp_path / "results-rerun" / config.run_id / "record.json").is_file()


def test_rerun_refuses_what_it_cannot_compare(tmp_path, sib_root, tiny_model, capsys):
    config = RunConfig(dataset="sib200", data_root=str(sib_root), model=str(tmp_path / "gone"),
                       results_dir=str(tmp_path / "results"))
    with pytest.raises(ConfigError, match="does not exist"):
        train_and_evaluate(config)                      # a failed record
    folder = tmp_path / "results" / config.run_id
    assert main(["rerun", str(folder)]) == 2
    assert "only complete runs have metrics to compare" in capsys.readouterr().err

    record = read_record(folder)
    record.update(status="complete", metrics={}, run_info={**record["run_info"],
                                                            "model": str(tiny_model)})
    (folder / "record.json").write_text(json.dumps(record))
    assert main(["rerun", str(folder), "--set", "seed=3"]) == 2
    assert "these keys define the run" in capsys.readouterr().err
    assert main(["rerun", str(folder), "--results", str(tmp_path / "results")]) == 2
    assert "that is the recorded run's own folder" in capsys.readouterr().err
    assert main(["rerun", str(folder)]) == 2    # the model changed: another run id
    assert "this is not the same run" in capsys.readouterr().err


def test_differences_name_every_changed_leaf():
    old = {"dev": {"en": {"f1": 0.5, "n": 3}}, "curve": [1, 2], "gone": 1}
    new = {"dev": {"en": {"f1": 0.25, "n": 3}}, "curve": [1, 2, 3], "added": 2}
    assert differences(old, new) == ["metrics.dev.en.f1: 0.5 -> 0.25",
                                     "metrics.curve: 2 entries -> 3",
                                     "metrics.gone: only in the record",
                                     "metrics.added: only in the rerun"]


def test_rerun_of_an_mt_run_from_its_record(tmp_path):
    """The record names its study (run_info.kind): an MT run is retrained by the MT study and
    its metrics compared the same way."""
    from peft_utils.mt.config import MTConfig
    from peft_utils.mt.testing import make_ntrex_tree, make_tiny_mt_model
    from peft_utils.mt.training import train_and_evaluate as train_mt

    data = make_ntrex_tree(tmp_path / "ntrex", n_docs=8)
    texts = [line for f in data.glob("newstest2019-*.txt")
             for line in f.read_text(encoding="utf-8").splitlines()]
    model = make_tiny_mt_model(tmp_path / "tiny-mt", texts)
    first = train_mt(MTConfig(data_root=str(data), model=str(model), method="lora", budget=0.1,
                              max_steps=6, eval_steps=3, max_eval_samples=8, batch_size=8,
                              max_source_length=24, max_target_length=16, warmup_steps=0,
                              select_on="chrf", learning_rate=3e-3, device="cpu", seed=2,
                              results_dir=str(tmp_path / "results")))
    assert main(["rerun", str(first.run_dir), "--results", str(tmp_path / "again")]) == 0
    again = read_record(tmp_path / "again" / first.run_id)
    assert again["kind"] == "mt" and again["metrics"] == first.record["metrics"]
    assert main(["rerun", str(first.run_dir), "--set", "tgt_lang=ka"]) == 2   # defines the run
