"""`python -m peft_utils translate`: SemEval-layout articles in, the translations folder of the
classification `en+translations` scenario out (line structure kept, resumable, ids kept)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from peft_utils.cli import main
from peft_utils.data import build_scenario
from peft_utils.mt.translate import segments, translate_articles


@pytest.fixture(scope="module")
def tiny_translator(semeval_root, tmp_path_factory) -> Path:
    from peft_utils.mt.testing import make_tiny_mt_model

    texts = [p.read_text(encoding="utf-8")
             for p in (semeval_root / "en").glob("train-articles-subtask-1/*.txt")]
    return make_tiny_mt_model(tmp_path_factory.mktemp("models") / "tiny-mt", texts)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def run_translate(model, semeval_root, out, *extra) -> int:
    return main(["translate", "--model", str(model), "--src-lang", "en", "--in",
                 str(semeval_root), "--out", str(out), "--batch-size", "16", "--num-beams", "1",
                 "--max-length", "24", "--device", "cpu", *extra])


def test_translations_keep_layout_and_lines_and_load_as_a_scenario(
        semeval_root, tiny_translator, tmp_path, capsys):
    out = tmp_path / "translations"
    assert run_translate(tiny_translator, semeval_root, out, "--tgt-lang", "de", "fr") == 0
    printed = capsys.readouterr().out
    assert "en->de: 12 translated, 24 copied from another subtask" in printed
    for lang in ("de", "fr"):
        for k in (1, 2, 3):
            source = sorted((semeval_root / "en" / f"train-articles-subtask-{k}").glob("*.txt"))
            target = out / lang / f"train-articles-subtask-{k}"
            assert sorted(p.name for p in target.glob("*.txt")) == [p.name for p in source]
            for src in source:
                a = src.read_text(encoding="utf-8").split("\n")
                b = (target / src.name).read_text(encoding="utf-8").split("\n")
                assert len(a) == len(b)   # line N translates line N: ST3 labels still apply
                assert [bool(x.strip()) for x in a] == [bool(y.strip()) for y in b]
    info = json.loads((out / "de" / "translation-info.json").read_text())
    assert info["tgt_lang"] == "de" and info["scheme"] == "tags" and info["translated"] == 12

    # The classification scenario reads the folder: English labels reused by id (and line).
    for k in (1, 3):
        frame = build_scenario("semeval2023", semeval_root, "en+translations", langs=["de", "fr"],
                               subtask=k, translations_dir=out)
        english = frame[frame["origin"] == "original"]
        for lang in ("de", "fr"):
            part = frame[frame["lang"] == lang]
            assert sorted(part["id"]) == sorted(english["id"])
            assert (part["origin"] == "translation").all()
        if k == 3:
            assert frame.attrs["summary"]["excluded"] == 0


def test_translate_resumes_and_refuses_what_it_cannot_do(semeval_root, tiny_translator,
                                                         tmp_path, capsys):
    out = tmp_path / "translations"
    assert run_translate(tiny_translator, semeval_root, out, "--tgt-lang", "de",
                         "--subtask", "1") == 0
    folder = out / "de" / "train-articles-subtask-1"
    first = sorted(folder.glob("*.txt"))
    kept = first[1].read_text(encoding="utf-8")
    first[0].unlink()
    capsys.readouterr()
    assert run_translate(tiny_translator, semeval_root, out, "--tgt-lang", "de",
                         "--subtask", "1") == 0
    assert "1 translated, 0 copied from another subtask, 11 already there" in \
        capsys.readouterr().out
    assert first[0].is_file() and first[1].read_text(encoding="utf-8") == kept
    assert not list(folder.glob(".*.tmp"))

    with pytest.raises(FileNotFoundError, match="no folder for language 'ka'"):
        run_translate(tiny_translator, semeval_root, out, "--tgt-lang", "de",
                      "--src-lang", "ka")


def test_long_lines_are_split_into_sentences_and_rejoined():
    def fits(text: str) -> bool:
        return len(text.split()) <= 4

    line = "One two three. Four five six seven eight nine ten. Eleven."
    assert segments(line, fits) == ["One two three.", "Four five six seven",
                                    "eight nine ten.", "Eleven."]
    upper = translate_articles([f"Title\n\n{line}\n"], lambda xs: [x.upper() for x in xs], fits)
    assert upper == [f"TITLE\n\n{line.upper()}\n"]
