"""`python -m peft_utils data summary|prepare` on fixture trees."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

from fixtures_data import make_prepare_mirror, make_semeval_tree, make_sib200_tree

from peft_utils.cli import main

REPO = Path(__file__).parents[1]


def test_summary_json_via_subprocess(tmp_path):
    root = make_semeval_tree(tmp_path, textless_rows=1)
    proc = subprocess.run(
        [sys.executable, "-m", "peft_utils", "data", "summary", "--dataset", "semeval2023",
         "--root", str(root), "--subtask", "3", "--split", "train", "--langs", "en", "ge",
         "--json"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {"rows", "labelled", "by_lang", "excluded", "excluded_reasons"} <= set(summary)
    assert set(summary["by_lang"]) == {"en", "de"}
    assert all({"rows", "labelled"} <= set(c) for c in summary["by_lang"].values())
    assert summary["rows"] == sum(c["rows"] for c in summary["by_lang"].values()) == 60
    assert summary["excluded"] == 2
    assert {"file", "line", "id", "reason"} <= set(summary["excluded_reasons"][0])


def test_summary_table_and_strict_error(tmp_path, capsys):
    root = make_semeval_tree(tmp_path, langs=("en",), textless_rows=1)
    args = ["data", "summary", "--dataset", "semeval2023", "--root", str(root),
            "--subtask", "3", "--split", "train"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "total" in out and "excluded: 1" in out and "train-labels-subtask-3.txt:6" in out
    # --strict turns the exclusion into an error: message on stderr, exit code 2.
    assert main(args + ["--strict"]) == 2
    err = capsys.readouterr().err
    assert "train-labels-subtask-3.txt:6" in err and "no text" in err


def test_summary_sib200_json(tmp_path, capsys):
    root = make_sib200_tree(tmp_path)
    assert main(["data", "summary", "--dataset", "sib200", "--root", str(root), "--split", "dev",
                 "--langs", "eng_Latn", "fr", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["by_lang"] == {"en": {"rows": 7, "labelled": 7, "unlabelled": 0},
                                  "fr": {"rows": 7, "labelled": 7, "unlabelled": 0}}
    assert summary["excluded"] == 0 and summary["excluded_reasons"] == []


def test_bad_data_exits_with_code_2(tmp_path, capsys):
    root = make_sib200_tree(tmp_path, langs=("eng_Latn",))
    path = root / "eng_Latn" / "train.tsv"
    path.write_text("index_id\tcategory\ttext\n1\tcooking\tSoup.\n", encoding="utf-8")
    assert main(["data", "summary", "--dataset", "sib200", "--root", str(root),
                 "--langs", "en", "--json"]) == 2
    assert "train.tsv:2: unknown label 'cooking'" in capsys.readouterr().err


def test_prepare_command_with_mirror(tmp_path, capsys, monkeypatch):
    mirror, manifest = make_prepare_mirror(tmp_path)
    module = importlib.import_module("peft_utils.data.prepare")
    monkeypatch.setattr(module, "load_manifest", lambda name: manifest)
    dest = tmp_path / "out"
    assert main(["data", "prepare", "sib200", "--mirror", str(mirror), "--dest", str(dest)]) == 0
    assert capsys.readouterr().out.strip() == str(dest / "sib200")
    assert (dest / "sib200" / "labels.txt").is_file()
    (mirror / "labels.txt").write_text("changed\n")
    assert main(["data", "prepare", "sib200", "--mirror", str(mirror),
                 "--dest", str(tmp_path / "other")]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
