"""Release trees in the states real users hold them: no test split, an unlabelled test split,
zero-shot languages without a folder, splits left empty by filtering, no dev rows for the
training languages. Each trains or stops with a DataError naming the folder, and the record
says what was absent; nothing fails inside the tokenizer or the Trainer."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fixtures_data import make_semeval_tree, make_sib200_tree

from peft_utils.classification.config import RunConfig
from peft_utils.classification.run_data import load_run_data
from peft_utils.classification.training import train_and_evaluate
from peft_utils.cli import main
from peft_utils.core.config import ConfigError
from peft_utils.core.runs import read_record, validate_record
from peft_utils.data import encode_texts
from peft_utils.data.errors import DataError

TINY = dict(max_length=48, batch_size=4, eval_batch_size=8, warmup_steps=0, num_epochs=1,
            max_steps=6, eval_steps=3, learning_rate=1e-2, method="lora")


def semeval(root: Path, model: Path, tmp_path: Path, **kw) -> RunConfig:
    return RunConfig(**{**TINY, "dataset": "semeval2023", "subtask": 1, "data_root": str(root),
                        "model": str(model), "train_langs": ["en", "de"],
                        "results_dir": str(tmp_path / "results"), **kw})


def test_empty_text_list_encodes_to_nothing(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for strategy in ("head", "head+tail", "chunks"):
        out = encode_texts([], tokenizer, 32, strategy=strategy, stride=4)
        assert out == {"input_ids": [], "attention_mask": [], "example_index": [],
                       "n_tokens": []}


def test_tree_with_train_and_dev_only(tmp_path, tiny_model):
    """The public release for most of its life: no test split; es/el/ka have no folder."""
    root = make_semeval_tree(tmp_path, langs=("en", "ge"), splits=("train", "dev"),
                             n_articles=8)
    result = train_and_evaluate(semeval(root, tiny_model, tmp_path))
    record = read_record(result.run_dir)
    validate_record(record)
    metrics = record["metrics"]
    assert metrics["test"] == {}
    assert set(metrics["coverage"]["test"].values()) == {"absent"}
    assert metrics["coverage"]["dev"] == {"en": "labelled", "de": "labelled", "es": "absent",
                                          "el": "absent", "ka": "absent"}
    assert set(metrics["dev"]) == {"en", "de", "overall"}
    assert metrics["selection_dev"]["n"] == 16
    predictions = result.run_dir / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == [
        "dev-de.txt", "dev-en.txt", "dev-examples.csv"]


def test_unlabelled_test_split_gets_official_predictions(tmp_path, tiny_model):
    """Test articles without labels (the release's test split): predicted in the official
    submission format, never scored."""
    root = make_semeval_tree(tmp_path, langs=("en", "ge", "es"), n_articles=6)
    result = train_and_evaluate(semeval(root, tiny_model, tmp_path, eval_langs=["en", "de", "es"]))
    metrics = result.record["metrics"]
    assert metrics["test"] == {}
    assert metrics["coverage"]["test"] == {"en": "unlabelled", "de": "unlabelled",
                                           "es": "unlabelled"}
    assert metrics["coverage"]["dev"]["es"] == "absent"   # es: test only, as in the release
    articles = sorted(p.name.removeprefix("article").removesuffix(".txt") for p in
                      (root / "es" / "test-articles-subtask-1").iterdir())
    lines = (result.run_dir / "predictions" / "test-es.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == articles
    assert all(line.split("\t")[1] in ("reporting", "opinion", "satire") for line in lines)


def _textless_st3_split(lang_dir: Path, split: str) -> None:
    """A subtask 3 split whose label rows all point past the article's end, as titles
    missing from the template would: the loader excludes (and reports) every row."""
    arts = lang_dir / f"{split}-articles-subtask-3"
    arts.mkdir(parents=True)
    (arts / "article9001.txt").write_text("A title\n\nA paragraph.\n", encoding="utf-8")
    (lang_dir / f"{split}-labels-subtask-3.txt").write_text("9001\t7\tSlogans\n9001\t9\t\n",
                                                             encoding="utf-8")
    (lang_dir / f"{split}-labels-subtask-3.template").write_text("9001\t3\tA paragraph.\n",
                                                                 encoding="utf-8")


def test_split_left_empty_by_filtering_is_recorded_not_crashed(tmp_path, tiny_model):
    root = make_semeval_tree(tmp_path, langs=("en",), splits=("train", "dev"), subtasks=(3,),
                             n_articles=6)
    _textless_st3_split(root / "ge", "dev")        # German dev: every row excluded
    config = semeval(root, tiny_model, tmp_path, subtask=3, train_langs=["en"],
                     eval_langs=["en", "de"])
    data = load_run_data(config)
    assert data.coverage["dev"] == {"en": "labelled", "de": "empty"}
    assert "dev empty after filtering: de" in data.notes()
    result = train_and_evaluate(config)
    assert set(result.record["metrics"]["dev"]) == {"en", "overall"}
    assert result.record["metrics"]["coverage"]["dev"]["de"] == "empty"


def test_no_training_rows_is_a_data_error_naming_the_folder(tmp_path, tiny_model):
    root = make_semeval_tree(tmp_path, langs=("en",), splits=("dev",), subtasks=(3,),
                             n_articles=4)
    _textless_st3_split(root / "en", "train")
    config = semeval(root, tiny_model, tmp_path, subtask=3, train_langs=["en"],
                     eval_langs=["en"])
    with pytest.raises(DataError, match=r"en/train-articles-subtask-3: the multilingual "
                                         r"scenario has no training rows"):
        train_and_evaluate(config)
    record = read_record(Path(config.results_dir) / config.run_id)
    assert record["status"] == "failed" and "DataError" in record["error"]


def test_selection_needs_labelled_dev_rows_of_the_training_languages(tmp_path, tiny_model):
    """German dev only: training on English has nothing to be selected on. The default is a
    DataError before training; selection: last is the documented way out."""
    root = make_semeval_tree(tmp_path, langs=("en",), splits=("train",), n_articles=8)
    make_semeval_tree(tmp_path, langs=("ge",), splits=("dev",), n_articles=6)
    config = semeval(root, tiny_model, tmp_path, train_langs=["en"], eval_langs=["en", "de"])
    with pytest.raises(DataError, match=r"no labelled dev rows for the training languages "
                                        r"\(en: absent\).*selection: last"):
        train_and_evaluate(config)
    with pytest.raises(ConfigError, match="threshold: tune needs dev rows"):
        RunConfig(**{**config.to_dict(), "selection": "last", "subtask": 2,
                     "threshold": "tune"}).validate()
    result = train_and_evaluate(config.replace(selection="last"))
    metrics = result.record["metrics"]
    assert metrics["selection_dev"] is None and metrics["best_step"] is None
    assert metrics["dev_curve"] == [] and set(metrics["dev"]) == {"de", "overall"}
    assert result.record["costs"]["train_steps"] == TINY["max_steps"]


def test_new_settings_keep_earlier_run_ids():
    """class_weights and selection enter the run id only away from their defaults, so the
    ids of runs made before they existed stay valid."""
    config = RunConfig(model="xlm-roberta-large")
    assert "class_weights" not in config.identity() and "selection" not in config.identity()
    assert config.replace(class_weights="balanced").run_id != config.run_id
    assert config.replace(selection="last").run_id != config.run_id
    # The id of the default config, as computed before these settings existed.
    assert config.run_id == "sib200-lora-multilingual-s42-" + config.digest()


def _yaml(path: Path, content: dict) -> Path:
    path.write_text(yaml.safe_dump(content), encoding="utf-8")
    return path


def test_grid_prerun_checks_report_release_variants(tmp_path, tiny_model, capsys):
    """`grid run` names, before anything trains, what each cell lacks: absent splits and
    languages as notes, a cell with nothing to select on as a problem (exit 2)."""
    root = make_semeval_tree(tmp_path, langs=("en", "ge"), splits=("train", "dev"),
                             n_articles=4)
    sib = make_sib200_tree(tmp_path, langs=("eng_Latn",), sizes={"train": 14, "test": 7})
    common = {**TINY, "model": str(tiny_model)}
    _yaml(tmp_path / "semeval.yaml", {**common, "dataset": "semeval2023", "subtask": 1,
                                      "data_root": str(root), "train_langs": ["en", "de"]})
    _yaml(tmp_path / "sib.yaml", {**common, "dataset": "sib200", "data_root": str(sib),
                                  "train_langs": ["en"], "eval_langs": ["en"]})
    results = tmp_path / "results"
    grid = _yaml(tmp_path / "g.yaml", {"presets": ["semeval.yaml", "sib.yaml"],
                                       "grid": {"seed": [1, 2]}})
    assert main(["grid", "run", str(grid), "--results", str(results)]) == 2
    out = capsys.readouterr()
    assert "2 problem(s), nothing was run" in out.err
    assert "sib200-lora-multilingual-s1" in out.err and "no labelled dev rows" in out.err
    notes = [line for line in out.out.splitlines() if line.startswith("note:")]
    assert "note: test absent (not on disk): en, de, es, el, ka (2 cell(s): " \
        "semeval2023-st1-lora-multilingual-s1-" in out.out
    assert len([n for n in notes if "dev absent (not on disk): es, el, ka (2 cell(s)" in n]) == 1
    assert not results.exists() or not any(results.iterdir())
