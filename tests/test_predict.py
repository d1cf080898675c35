"""`python -m peft_utils predict`: a run folder, or a merged, adapter or onnx export of it,
predicts on a table or on stdin lines what the run predicted (its max_length, long-text
strategy and tuned threshold), the input's columns kept; on a SemEval release folder (or one
language folder) it writes the official submission files the run itself wrote; bad input gets
one-line errors with exit status 2."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from peft_utils.classification.config import RunConfig
from peft_utils.classification.export import export_run
from peft_utils.classification.run_data import load_frames
from peft_utils.classification.training import train_and_evaluate
from peft_utils.cli import main
from peft_utils.core.export import METADATA, ONNX_TOLERANCE


def finished(config: RunConfig):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_and_evaluate(config).run_dir
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sib_run(tmp_path_factory, sib_root, tiny_model):
    """A tiny LoRA run whose head reads the mean of the token states."""
    root = tmp_path_factory.mktemp("predict")
    return finished(RunConfig(
        dataset="sib200", data_root=str(sib_root), model=str(tiny_model), method="lora",
        train_langs=["en", "fr"], eval_langs=["en", "fr"], max_length=64, batch_size=8,
        eval_batch_size=16, learning_rate=1e-2, warmup_steps=0, max_steps=4, eval_steps=2,
        head_learning_rate=0.1, seed=3, pooling="mean", results_dir=str(root / "results")))


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory, brighter_root, tiny_model):
    """A tiny multilabel run with a tuned threshold, reading long texts in chunks."""
    root = tmp_path_factory.mktemp("predict")
    return finished(RunConfig(
        dataset="brighter", data_root=str(brighter_root), model=str(tiny_model), method="lora",
        train_langs=["en", "de"], eval_langs=["en", "de"], max_length=12, long_text="chunks",
        chunk_stride=4, batch_size=8, eval_batch_size=16, learning_rate=1e-2, warmup_steps=0,
        max_steps=4, eval_steps=2, threshold="tune", seed=3, results_dir=str(root / "results")))


def write_input(run_dir, path, kind: str = "csv"):
    """The run's test texts as a table with an extra column, and its recorded predictions."""
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    frame = load_frames(config)["test"]
    table = pd.DataFrame({"doc": [f"d{i}" for i in range(len(frame))],
                          "text": list(frame["text"])})
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_dict("records")))
    else:
        table.to_csv(path, index=False, sep="\t" if kind == "tsv" else ",")
    recorded = pd.read_csv(run_dir / "predictions" / "test-examples.csv",
                           keep_default_na=False)["pred"].tolist()
    return recorded


def predicted(source, table, out, capsys=None) -> pd.DataFrame:
    assert main(["predict", str(source), "--input", str(table), "--out", str(out)]) == 0
    if out.suffix == ".jsonl":
        return pd.read_json(out, lines=True)
    return pd.read_csv(out, sep="\t" if out.suffix == ".tsv" else ",", keep_default_na=False)


def scores(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame if c.startswith("score_")]].to_numpy(float)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_a_run_predicts_what_it_recorded(kind, sib_run, tmp_path):
    recorded = write_input(sib_run, tmp_path / f"in.{kind}", kind)
    out = predicted(sib_run, tmp_path / f"in.{kind}", tmp_path / f"out.{kind}")
    assert out["pred"].tolist() == recorded
    assert out["doc"].tolist() == [f"d{i}" for i in range(len(out))]   # input columns kept
    np.testing.assert_allclose(scores(out).sum(axis=1), 1.0, atol=1e-4)
    assert not list(tmp_path.glob(".out*"))   # written atomically: no temporary file left


def test_multilabel_chunks_and_the_tuned_threshold_as_in_the_run(multilabel_run, tmp_path):
    record = json.loads((multilabel_run / "record.json").read_text())
    threshold = record["metrics"]["threshold"]
    recorded = write_input(multilabel_run, tmp_path / "in.tsv", "tsv")
    out = predicted(multilabel_run, tmp_path / "in.tsv", tmp_path / "out.tsv")
    assert out["pred"].tolist() == recorded
    probs, labels = scores(out), [c[len("score_"):] for c in out if c.startswith("score_")]
    # pred holds exactly the labels whose score reaches the threshold (scores rounded: away
    # from it)
    clear = np.abs(probs - threshold).min(axis=1) > 1e-5
    expected = [",".join(lab for lab, p in zip(labels, row) if p >= threshold) for row in probs]
    assert [e for e, c in zip(expected, clear) if c] == \
        [p for p, c in zip(out["pred"], clear) if c]


@pytest.fixture(scope="module")
def pfeiffer_run(tmp_path_factory, sib_root, tiny_model):
    """A tiny bottleneck-adapter run (the adapters library): it exports as an adapter only."""
    from test_methods import TINY

    root = tmp_path_factory.mktemp("predict")
    return finished(RunConfig(
        dataset="sib200", data_root=str(sib_root), model=str(tiny_model), method="pfeiffer",
        method_config=TINY.get("pfeiffer"), train_langs=["en", "fr"], eval_langs=["en", "fr"],
        max_length=64, batch_size=8, eval_batch_size=16, learning_rate=1e-2, warmup_steps=0,
        max_steps=4, eval_steps=2, head_learning_rate=0.1, seed=3,
        results_dir=str(root / "results")))


@pytest.mark.parametrize("fmt, run", [("merged", "sib_run"), ("onnx", "sib_run"),
                                      ("adapter", "sib_run"), ("adapter", "pfeiffer_run")])
def test_an_export_predicts_what_its_run_does(fmt, run, request, tmp_path):
    """Every format, mean pooling included: predict puts the head's hook back on a merged
    model and on an adapter's base model (peft: LoRA; the adapters library: Pfeiffer)."""
    run = request.getfixturevalue(run)
    write_input(run, tmp_path / "in.csv")
    export_run(run, tmp_path / "export", fmt)
    from_run = predicted(run, tmp_path / "in.csv", tmp_path / "run.csv")
    from_export = predicted(tmp_path / "export", tmp_path / "in.csv", tmp_path / "export.csv")
    assert from_export["pred"].tolist() == from_run["pred"].tolist()
    np.testing.assert_allclose(scores(from_export), scores(from_run), atol=ONNX_TOLERANCE)


def test_lines_on_stdin(sib_run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("the team won\n\nthe minister spoke\n"))
    assert main(["predict", str(sib_run), "--input", "-"]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert out["text"].tolist() == ["the team won", "the minister spoke"]
    assert len(out["pred"]) == 2 and scores(out).shape == (2, 7)


@pytest.mark.parametrize("name, content, message", [
    ("in.csv", "id,body\n1,some text\n", "no column 'text' (columns: id, body)"),
    ("in.csv", "", "file is empty"),
    ("in.csv", "id,text\n", "no rows"),
    ("in.csv", b"id,text\n1,caf\xe9\n", "invalid UTF-8"),
    ("in.jsonl", '{"text": "ok"}\n{"text": 3}\n', "holds 3, not a text"),
    ("in.jsonl", '{"text": "ok"}\nnot json\n', "not a JSON object"),
    ("in.xlsx", "x", "unknown file type"),
    ("missing.csv", None, "file not found"),
])
def test_bad_input_gets_one_line(name, content, message, sib_run, tmp_path, capsys):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["predict", str(sib_run), "--input", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err


def test_bad_sources_and_outputs_get_one_line(sib_run, tmp_path, capsys):
    write_input(sib_run, tmp_path / "in.csv")
    assert main(["predict", str(sib_run), "--input", str(tmp_path / "in.csv"),
                 "--out", str(tmp_path / "out.xlsx")]) == 2
    assert "unknown file type" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--input", str(tmp_path / "in.csv")]) == 2
    assert "no record.json" in capsys.readouterr().err
    export_run(sib_run, tmp_path / "adapter", "adapter")
    meta_path = tmp_path / "adapter" / METADATA
    meta = json.loads(meta_path.read_text())
    meta["settings"]["base_model"] = str(tmp_path / "gone")
    meta_path.write_text(json.dumps(meta))
    assert main(["predict", str(tmp_path / "adapter"), "--input", str(tmp_path / "in.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "its base model" in err and "gone" in err


# ---- a SemEval release folder: the official submission files ---------------------------------
def semeval_run(root, semeval_root, tiny_model, subtask: int):
    return finished(RunConfig(
        dataset="semeval2023", subtask=subtask, data_root=str(semeval_root),
        model=str(tiny_model), method="lora", train_langs=["en", "de"],
        eval_langs=["en", "de", "es"], max_length=64, batch_size=8, eval_batch_size=16,
        learning_rate=1e-2, warmup_steps=0, max_steps=4, eval_steps=2, head_learning_rate=0.1,
        seed=3, results_dir=str(root / "results")))


@pytest.fixture(scope="module")
def semeval_runs(tmp_path_factory, semeval_root, tiny_model):
    """subtask -> a tiny run of it (1: an article's genre; 3: a paragraph's techniques)."""
    root = tmp_path_factory.mktemp("predict")
    return {k: semeval_run(root, semeval_root, tiny_model, k) for k in (1, 3)}


def official(path, subtask: int) -> dict:
    """A prediction file read by the package's strict reader of the official format (the
    release's label files: id<TAB>label[s], subtask 3 id<TAB>line<TAB>techniques; labels of
    the task only, one row per id or (id, line)): (id, line or None) -> labels."""
    from peft_utils.data.semeval import _read_labels

    rows = _read_labels(path, subtask)
    fields = 3 if subtask == 3 else 2
    assert all(len(line.split("\t")) == fields
               for line in path.read_text().splitlines()), path
    return {(article, line): labels for _, article, line, labels in rows}


def input_units(lang_dir, subtask: int) -> set:
    """Every article (subtask 3: every paragraph the release's template lists) of the test
    split in `lang_dir`."""
    if subtask == 3:
        lines = (lang_dir / "test-labels-subtask-3.template").read_text().splitlines()
        return {(row.split("\t")[0], int(row.split("\t")[1])) for row in lines if row.strip()}
    return {(p.stem[len("article"):], None)
            for p in (lang_dir / f"test-articles-subtask-{subtask}").glob("article*.txt")}


@pytest.mark.parametrize("subtask", [1, 3])
def test_a_semeval_release_gets_the_official_files_the_run_wrote(subtask, semeval_runs,
                                                                 semeval_root, tmp_path, capsys):
    run = semeval_runs[subtask]
    out = tmp_path / "submission"
    assert main(["predict", str(run), "--input", str(semeval_root), "--out", str(out)]) == 0
    assert "3 prediction files" in capsys.readouterr().err
    folders = {"en": "en", "de": "ge", "es": "es"}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"test-{iso}.txt" for iso in folders)
    for iso, folder in folders.items():
        got = official(out / f"test-{iso}.txt", subtask)
        assert set(got) == input_units(semeval_root / folder, subtask)   # each once
        assert got == official(run / "predictions" / f"test-{iso}.txt", subtask)
    if subtask == 1:   # one language folder: its file alone, the same predictions
        assert main(["predict", str(run), "--input", str(semeval_root / "ge"),
                     "--out", str(tmp_path / "ge")]) == 0
        assert [p.name for p in (tmp_path / "ge").iterdir()] == ["test-de.txt"]
        assert (tmp_path / "ge" / "test-de.txt").read_text() == \
            (out / "test-de.txt").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no temporary files


def test_bad_semeval_folders_get_one_line(semeval_runs, semeval_root, sib_run, tmp_path,
                                          capsys):
    import shutil

    def fails(source, folder, message, *extra):
        args = ["predict", str(source), "--input", str(folder), *extra]
        assert main([*args, "--out", str(tmp_path / "out")] if not extra else args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / "out").exists()

    run = semeval_runs[1]
    empty = tmp_path / "release" / "en" / "test-articles-subtask-1"
    empty.mkdir(parents=True)
    fails(run, tmp_path / "release", "no article<ID>.txt files found")
    fails(run, tmp_path / "release" / "en", "no article<ID>.txt files found")
    (tmp_path / "nothing").mkdir()
    fails(run, tmp_path / "nothing", "no test data of semeval2023-st1")
    shutil.copytree(semeval_root / "en", tmp_path / "other" / "zz")   # not a language of it
    fails(run, tmp_path / "other" / "zz", "neither one of its language folders (en, fr, ge")
    fails(sib_run, semeval_root, "no test data of sib200: neither one of its language folders "
          "(eng_Latn")
    fails(sib_run, semeval_root, "it holds semeval2023-st1, semeval2023-st2, semeval2023-st3")
    fails(run, semeval_root, "give --out", "--split", "test")
