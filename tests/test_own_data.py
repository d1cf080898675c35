"""Your own table at full size: the README's preset (configs/presets/own-data.yaml) uses every
row; `train` and `grid run` say at the start which rows they use, per split and language, and
name the limit that cut them; building a run's model does not print transformers' "newly
initialized ... You should probably TRAIN this model" warning (the run sets the head itself),
while loading a model whose head really is untrained still does."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fixtures_data import make_sib200_tree, make_table_tree
from peft_utils.classification.config import RunConfig, load_config
from peft_utils.classification.models import build_model
from peft_utils.classification.run_data import load_run_data, split_summary
from peft_utils.cli import main

PRESET = Path(__file__).resolve().parents[1] / "configs" / "presets" / "own-data.yaml"
SIZES = {"train": 30, "dev": 10, "test": 10}   # per language: en, de, fr (test: es too)
SHORT = {"max_steps": 2, "eval_steps": 1, "max_length": 48, "batch_size": 8,
         "warmup_steps": 0}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    return make_table_tree(tmp_path_factory.mktemp("own"), sizes=SIZES)


def data_lines(err: str) -> list[str]:
    return [line.split(": data ", 1)[1] for line in err.splitlines() if ": data " in line]


def test_the_preset_uses_every_row_of_a_table(table):
    config = load_config(PRESET, {"data_root": str(table), "model": "xlm-roberta-base"})
    assert config.max_train_samples is None and config.max_eval_samples is None
    assert config.max_steps == -1 and config.num_epochs > 0 and config.eval_steps is None
    assert config.pooling == "mean" and config.head_init == "probe"
    assert load_run_data(config).summary(config) == [
        "train: 90 rows (en 30, de 30, fr 30)", "dev: 30 rows (en 10, de 10, fr 10)",
        "test: 40 rows (en 10, de 10, fr 10, es 10)"]


def test_a_cut_names_its_limit_and_what_there_was(table):
    config = RunConfig(dataset="table", data_root=str(table), model="xlm-roberta-base",
                       max_train_samples=12, max_eval_samples=30)
    train, dev, test = load_run_data(config).summary(config)
    assert train == ("train: 12 of 30 rows per language (max_train_samples: 12), 36 of 90 in "
                     "all (en, de, fr)")
    assert dev == "dev: 30 rows (en 10, de 10, fr 10)" and " of " not in test
    # Languages of different sizes: each named with what it kept of what it had.
    frame = pd.DataFrame({"lang": ["en"] * 64 + ["sw"] * 20})
    assert split_summary("train", frame, {"en": 858, "sw": 20}, "max_train_samples", 64) == \
        "train: 84 of 878 rows (max_train_samples: 64; en 64 of 858, sw 20)"


def test_train_says_at_the_start_which_rows_it_uses(table, tiny_model, tmp_path, capsys):
    sets = {**SHORT, "data_root": str(table), "model": str(tiny_model),
            "max_train_samples": 12, "results_dir": str(tmp_path / "results")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--config", str(PRESET),
                     *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = data_lines(capsys.readouterr().err)
    assert lines[0] == ("train: 12 of 30 rows per language (max_train_samples: 12), 36 of 90 "
                        "in all (en, de, fr)")
    assert lines[1:] == ["dev: 30 rows (en 10, de 10, fr 10)",
                         "test: 40 rows (en 10, de 10, fr 10, es 10)"]


def test_grid_run_says_once_per_data_set_which_rows_its_cells_use(table, tiny_model, tmp_path,
                                                                   capsys):
    """Before any cell: one `data` line per data selection (the cells it concerns); here a
    second preset's problem (no dev rows to select on) stops the grid before anything runs."""
    common = {**SHORT, "model": str(tiny_model), "pooling": "mean"}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(
        {**common, "dataset": "table", "data_root": str(table), "max_train_samples": 12}))
    sib = make_sib200_tree(tmp_path, langs=("eng_Latn",), sizes={"train": 14, "test": 7})
    (tmp_path / "sib.yaml").write_text(yaml.safe_dump(
        {**common, "dataset": "sib200", "data_root": str(sib), "train_langs": ["en"],
         "eval_langs": ["en"]}))
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(
        {"presets": ["own.yaml", "sib.yaml"], "grid": {"seed": [1, 2]}}))
    assert main(["grid", "run", str(tmp_path / "g.yaml"), "--results",
                 str(tmp_path / "results")]) == 2
    out = capsys.readouterr().out
    data = [line for line in out.splitlines() if line.startswith("data ")]
    assert len(data) == 1, out
    assert data[0].startswith(
        "data (table, multilingual): train: 12 of 30 rows per language (max_train_samples: 12)"
        ", 36 of 90 in all (en, de, fr); dev: 30 rows (en 10, de 10, fr 10); test: 40 rows ")
    assert "(2 cell(s): reviews-lora-multilingual-s1-" in data[0]


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_warnings():
    logger = logging.getLogger("transformers.modeling_utils")
    records = Records()
    logger.addHandler(records)
    yield records.messages
    logger.removeHandler(records)


def test_building_a_run_model_does_not_ask_to_train_its_head(table, tiny_model,
                                                             transformers_warnings):
    config = RunConfig(dataset="table", data_root=str(table), model=str(tiny_model),
                       pooling="mean")
    build_model(config)
    assert not [m for m in transformers_warnings if "newly initialized" in m]
    # A model whose head really is untrained still says so.
    from transformers import AutoModelForSequenceClassification

    from peft_utils.core.modeling import load_pretrained

    load_pretrained(AutoModelForSequenceClassification, str(tiny_model), num_labels=3)
    warned = [m for m in transformers_warnings if "newly initialized" in m]
    assert len(warned) == 1 and "TRAIN this model" in warned[0]
