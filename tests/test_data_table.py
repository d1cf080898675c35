"""Your own data set without code (peft_utils.data.table): a folder of tables and a data card
load like a built-in set, every bad table is a one-line error naming the file, the row and the
column, and nothing is dropped without a word."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from fixtures_data import make_table_tree
from peft_utils.classification.config import RunConfig
from peft_utils.core.config import ConfigError
from peft_utils.data import DataError, build_scenario, load_split
from peft_utils.data.registry import get


def edit_card(root, **changes):
    card = yaml.safe_load((root / "dataset.yaml").read_text())
    card.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del card[key]
    (root / "dataset.yaml").write_text(yaml.safe_dump(card))


def rewrite(path, old, new, count=1):
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, count), encoding="utf-8")


# ---- what loads ---------------------------------------------------------------------------
def test_csv_table_is_a_data_set_like_the_built_in_ones(tmp_path):
    root = make_table_tree(tmp_path)
    entry = get("table", root)
    assert entry.train_langs == ("en", "de", "fr") and entry.zero_shot_langs == ("es",)
    assert entry.task().labels == ("negative", "neutral", "positive")   # sorted, as seen
    assert not entry.task().multilabel and entry.task_name() == "reviews"
    test = load_split("table", root, "test")
    assert test.attrs["summary"]["by_lang"]["es"] == {"rows": 6, "labelled": 6, "unlabelled": 0}
    assert list(test.columns[:4]) == ["id", "lang", "text", "labels"]
    assert test.loc[0, "id"] == "test-0-en" and test.loc[0, "labels"] == ["negative"]


def test_tsv_and_parquet_read_the_same_rows_as_csv(tmp_path):
    csv_rows = load_split("table", make_table_tree(tmp_path / "a"), "train")
    tsv_rows = load_split("table", make_table_tree(tmp_path / "b", fmt="tsv"), "train")
    parquet_root = make_table_tree(tmp_path / "c")
    for split in ("train", "dev", "test"):
        frame = pd.read_csv(parquet_root / f"{split}.csv", dtype=str, keep_default_na=False)
        frame.to_parquet(parquet_root / f"{split}.parquet")
        (parquet_root / f"{split}.csv").unlink()
    parquet_rows = load_split("table", parquet_root, "train")
    for other in (tsv_rows, parquet_rows):
        pd.testing.assert_frame_equal(csv_rows, other)


def test_jsonl_multilabel_with_a_split_column(tmp_path):
    root = make_table_tree(tmp_path, fmt="jsonl", name="feelings", multilabel=True)
    entry = get("table", root)
    assert entry.task().multilabel and entry.task().labels[0] == "anger"   # the card's order
    dev = load_split("table", root, "dev")
    assert set(dev["lang"]) == {"en", "de", "fr"} and len(dev) == 18
    assert [] in list(dev["labels"])        # no emotion is an answer, not a missing label


def test_delimited_labels_and_an_unlabelled_test_split(tmp_path):
    root = make_table_tree(tmp_path)
    edit_card(root, label=None, labels="stars", delimiter="|")
    rewrite(root / "train.csv", ",negative,", ",negative|neutral,")
    train = load_split("table", root, "train")
    assert train.loc[0, "labels"] == ["negative", "neutral"]
    assert get("table", root).task().multilabel
    # A test split whose label column is all empty is unlabelled, not "no label" everywhere.
    test = pd.read_csv(root / "test.csv", dtype=str, keep_default_na=False)
    test.assign(stars="").to_csv(root / "test.csv", index=False)
    summary = load_split("table", root, "test").attrs["summary"]
    assert summary["unlabelled"] == summary["rows"] == 24 and summary["labelled"] == 0


def test_a_language_without_labels_in_a_labelled_split_is_unlabelled(tmp_path):
    root = make_table_tree(tmp_path)   # test labels released for some languages only
    test = pd.read_csv(root / "test.csv", dtype=str, keep_default_na=False)
    test.loc[test["lang"] == "es", "stars"] = ""
    test.to_csv(root / "test.csv", index=False)
    by_lang = load_split("table", root, "test").attrs["summary"]["by_lang"]
    assert by_lang["es"] == {"rows": 6, "labelled": 0, "unlabelled": 6}
    assert by_lang["de"] == {"rows": 6, "labelled": 6, "unlabelled": 0}


def test_en_translations_links_rows_by_their_translation_of_column(tmp_path):
    root = make_table_tree(tmp_path)
    rows = build_scenario("table", root, "en+translations")
    assert rows["origin"].value_counts().to_dict() == {"translation": 36, "original": 18}
    german = rows[rows["lang"] == "de"].iloc[0]
    english = rows[rows["id"] == german["translation_of"]].iloc[0]
    assert german["labels"] == english["labels"]
    # A translation of nothing in English is left out, and the summary says so.
    rewrite(root / "train.csv", ",train-3-en\n", ",train-99-en\n")
    with pytest.raises(DataError, match="English id.*no de translation"):
        build_scenario("table", root, "en+translations", langs=["de"])
    rewrite(root / "train.csv", "train-3-de,de,", "train-3b-de,de,")
    rewrite(root / "train.csv", ",train-99-en\n", ",train-3-en\n")
    extra = root / "train.csv"
    extra.write_text(extra.read_text() + "stray-de,de,Der Bericht,neutral,train-77-en\n")
    rows = build_scenario("table", root, "en+translations", langs=["de"])
    reasons = rows.attrs["summary"]["excluded_reasons"]
    assert [r["id"] for r in reasons] == ["stray-de"] and "train-77-en" in reasons[0]["reason"]


def test_a_table_run_config_names_runs_by_the_card(tmp_path):
    root = make_table_tree(tmp_path)
    config = RunConfig.from_dict({"dataset": "table", "data_root": str(root), "method": "lora"})
    assert config.run_id.startswith("reviews-lora-multilingual-s42-")
    assert config.resolved_eval_langs == ["en", "de", "fr", "es"] and not config.multilabel
    assert config.run_info()["task"]["labels"] == ["negative", "neutral", "positive"]
    # Another card is another data set, even with the same settings.
    other = make_table_tree(tmp_path / "x", name="reviews")
    edit_card(other, label_set=["positive", "neutral", "negative"])
    again = RunConfig.from_dict({"dataset": "table", "data_root": str(other), "method": "lora"})
    assert again.run_id != config.run_id
    # The built-in sets keep their ids: the registry adds nothing to their identity.
    assert "data_set" not in RunConfig.from_dict({"dataset": "sib200"}).identity()


# ---- bad tables: one line naming the file, the row, the column, and what to do -------------
BAD = {
    "missing column": (lambda r: edit_card(r, text="body"),
                       r"train.csv:1: no column 'body' \(the text column.*\(add it, or name"),
    "label outside the set": (lambda r: rewrite(r / "dev.csv", ",neutral,", ",neutrall,"),
                              r"dev.csv:\d+: label 'neutrall' in column 'stars' is not in the "
                              r"label set \(negative, neutral, positive\) \(correct the label"),
    "duplicate id": (lambda r: rewrite(r / "test.csv", "test-1-de,", "test-0-de,"),
                     r"test.csv:\d+: duplicate id 'test-0-de' in column 'review_id' \(first on "
                     r"line \d+\) \(keep one row per id\)"),
    "language without training rows": (lambda r: edit_card(r, zero_shot=[]),
                                       r"test.csv:\d+: language 'es' has no training rows "
                                       r"\(list it under zero_shot"),
    "unreadable file": (lambda r: (r / "train.csv").write_bytes(b"\xff\xfe\x00bad"),
                        r"train.csv:1: invalid UTF-8 \(byte 0xff\) \(re-save the file as UTF-8"),
    "a row with a stray delimiter": (
        lambda r: rewrite(r / "dev.csv", "dev-1-en,en,", "dev-1-en,en,x,"),
        r"dev.csv:\d+: 6 fields where the header has 5 \(quote fields that hold the delimiter"),
    "no card": (lambda r: (r / "dataset.yaml").unlink(), r"dataset.yaml: no data card"),
    "text labels without a delimiter": (
        lambda r: edit_card(r, label=None, labels="stars"),
        r"train.csv:2: column 'stars' holds text, not a list \(name the separator"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_tables_are_one_line_errors_naming_file_row_and_column(tmp_path, case):
    root = make_table_tree(tmp_path)
    damage, message = BAD[case]
    damage(root)
    with pytest.raises(DataError, match=message) as info:
        for split in ("train", "dev", "test"):
            load_split("table", root, split)
    assert "\n" not in str(info.value)


def test_empty_text_names_the_row_and_the_column(tmp_path):
    root = make_table_tree(tmp_path)
    text = (root / "train.csv").read_text().splitlines()
    line = next(i for i, row in enumerate(text, 1) if row.startswith("train-2-en,"))
    fields = text[line - 1].split(",")
    text[line - 1] = ",".join([fields[0], fields[1], '""', *fields[-2:]])
    (root / "train.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=rf"train.csv:{line}: empty 'text' \(fill in the cell"):
        load_split("table", root, "train")


def test_parquet_errors_name_the_row(tmp_path):
    root = make_table_tree(tmp_path)
    for split in ("train", "dev", "test"):
        frame = pd.read_csv(root / f"{split}.csv", dtype=str, keep_default_na=False)
        if split == "dev":
            frame.loc[4, "stars"] = "great"
        frame.to_parquet(root / f"{split}.parquet")
        (root / f"{split}.csv").unlink()
    load_split("table", root, "train")
    with pytest.raises(DataError, match=r"dev.parquet: row 5: label 'great' in column 'stars'"):
        load_split("table", root, "dev")


def test_a_bad_card_is_a_config_error_naming_the_card(tmp_path):
    root = make_table_tree(tmp_path)
    edit_card(root, metric="accuracy")
    with pytest.raises(ConfigError, match=r"dataset.yaml: metric 'accuracy' is not one of"):
        RunConfig.from_dict({"dataset": "table", "data_root": str(root)})


# ---- the registry, listed ---------------------------------------------------------------------
def test_data_list_json_prints_the_registry_and_what_is_present(tmp_path, sib_root):
    table = make_table_tree(tmp_path)
    data_root = sib_root.parent   # holds sib200/ only
    out = subprocess.run([sys.executable, "-m", "peft_utils", "data", "list", "--json",
                          "--data-root", str(data_root), "--table", str(table)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    entries = {e["name"]: e for e in json.loads(out.stdout)}
    assert set(entries) == {"semeval2023", "sib200", "brighter", "reviews"}
    semeval = entries["semeval2023"]
    assert semeval["languages"]["de"] == "ge" and semeval["zero_shot_langs"] == ["es", "el", "ka"]
    assert semeval["tasks"]["3"]["unit"] == "paragraph" and len(semeval["tasks"]["2"]["labels"]) == 14
    assert semeval["present"] is None and semeval["parallel"] == "folder"
    sib = entries["sib200"]
    dev = load_split("sib200", sib_root, "dev")
    assert sib["prepare"] == "sib200" and sib["present"]["default"]["dev"] == \
        dev.groupby("lang", sort=False).size().to_dict()
    assert entries["reviews"]["present"]["default"]["test"] == {"en": 6, "de": 6, "fr": 6, "es": 6}
    assert entries["brighter"]["tasks"]["default"]["multilabel"] is True


# ---- end to end: train, tune and report on a table, like on the built-in sets ---------------
def run_tuned_table_grid(tmp_path, root, tiny_model, scenarios):
    from test_tuning import cli, records, write_yaml

    write_yaml(tmp_path / "configs" / "table.yaml", {
        "dataset": "table", "data_root": str(root), "model": str(tiny_model),
        "max_length": 64, "batch_size": 8, "eval_batch_size": 32, "warmup_steps": 0,
        "max_steps": 6, "eval_steps": 3, "checkpoint_steps": 0, "threshold": "tune"})
    grid = write_yaml(tmp_path / "configs" / "g.yaml", {
        "presets": ["table.yaml"],
        "grid": {"method": ["fft", "lora"], "scenario": scenarios, "seed": [1]},
        "tune": {"trials": 2, "seeds": [1], "share": ["scenario"],
                 "space": {"learning_rate": {"range": "registry", "scale": 30}}}})
    out = cli("grid", "run", str(grid), "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    done = records(tmp_path / "results")
    assert len(done) == 4 + 2 * len(scenarios) and {r["status"] for r in done} == {"complete"}
    from peft_utils.classification.analysis import load_results, write_report

    results = load_results(tmp_path / "results")
    report = write_report(tmp_path / "results", tmp_path / "tables", tmp_path / "figures",
                          n_boot=50)
    return done, results, report


@pytest.mark.slow
def test_csv_table_trains_tunes_and_reports_end_to_end(tmp_path, tiny_model):
    root = make_table_tree(tmp_path / "data")
    done, results, report = run_tuned_table_grid(tmp_path, root, tiny_model,
                                                 ["multilingual", "en+translations"])
    finals = [r for r in done if r["run_info"]["tuning"]["stage"] == "final"]
    assert all(r["run_info"]["run_id"].startswith("reviews-") for r in done)
    assert all(r["metrics"]["test"]["es"]["n"] == 6 for r in finals)   # zero-shot, scored
    assert set(results.runs["task"]) == {"reviews"} and len(results.runs) == 4
    assert "sensitivity_reviews-multilingual" in report.figures
    assert "es" in set(report.tables["f1_by_language"]["lang"])
    verdicts = report.tables["peft_vs_fft"]
    assert set(verdicts["task"]) == {"reviews"} and len(verdicts) == 2   # lora vs fft, twice


@pytest.mark.slow
def test_jsonl_multilabel_table_trains_tunes_and_reports_end_to_end(tmp_path, tiny_model):
    root = make_table_tree(tmp_path / "data", fmt="jsonl", name="feelings", multilabel=True)
    done, results, report = run_tuned_table_grid(tmp_path, root, tiny_model, ["multilingual"])
    finals = [r for r in done if r["run_info"]["tuning"]["stage"] == "final"]
    assert {r["metrics"]["threshold_mode"] for r in finals} == {"tune"}
    assert all(r["run_info"]["task"]["labels"][0] == "anger" for r in finals)
    assert set(results.runs["task"]) == {"feelings"} and bool(results.runs["multilabel"].all())
    assert "sensitivity_feelings-multilingual" in report.figures
    verdicts = report.tables["peft_vs_fft"]
    assert list(verdicts["task"]) == ["feelings"] and verdicts["matches_record"].all()
