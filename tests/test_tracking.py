"""Progress and experiment tracking: `report_to` hands logging to transformers' integrations
(TensorBoard event files in the run folder, readable), without changing the run id; grid
cells never show a progress bar."""
from __future__ import annotations

import pytest

from peft_utils.classification.config import RunConfig
from peft_utils.core.runs import HEADLESS
from peft_utils.core.trainer import shows_progress_bar


def tiny(tmp_path, root, model, **kw) -> RunConfig:
    return RunConfig(dataset="sib200", data_root=str(root), model=str(model), method="lora",
                     train_langs=["en", "fr"], eval_langs=["en", "fr"], max_length=64,
                     batch_size=8, eval_batch_size=16, warmup_steps=0, max_steps=6,
                     eval_steps=3, seed=3, results_dir=str(tmp_path / "results"), **kw)


@pytest.mark.usefixtures("one_thread")
def test_tensorboard_event_files_are_written_and_readable(tmp_path, sib_root, tiny_model):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from peft_utils.classification.training import train_and_evaluate

    config = tiny(tmp_path, sib_root, tiny_model, report_to=["tensorboard"])
    assert config.run_id == tiny(tmp_path, sib_root, tiny_model).run_id   # not in the id
    result = train_and_evaluate(config)
    events = list((result.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    scalars = set()
    for path in events:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        scalars |= set(accumulator.Tags()["scalars"])
    assert {"train/loss", "eval/main"} <= scalars


def test_report_to_must_be_a_list_of_names(tmp_path, sib_root, tiny_model):
    from peft_utils.core.config import ConfigError

    with pytest.raises(ConfigError, match="report_to"):
        tiny(tmp_path, sib_root, tiny_model, report_to="tensorboard").validate()


def test_grid_cells_never_show_a_bar(monkeypatch):
    monkeypatch.setenv(HEADLESS, "1")
    assert not shows_progress_bar()
