"""The recipes of docs/contributing.md, done exactly as written there."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from test_tuning import cli, records, write_yaml

# ---- Add a method: one registry entry, with the helpers ----------------------------------
def test_recipe_add_a_method_is_one_registry_entry(monkeypatch, tmp_path, sib_root, tiny_model,
                                                   capsys):
    from peft_utils.classification.training import train_and_evaluate
    from peft_utils.cli import main
    from peft_utils.core import methods
    from test_methods import tiny

    # 1-2. The entry, written with a helper: peft's LoRA at rank 2 on the paper's targets,
    # without a paper setting (`_lora` would size it by the run's lora_r).
    entry = methods._peft("lora_r2", "LoraConfig", "LoRA at rank 2 (a recipe test)", r=2)
    monkeypatch.setitem(methods.REGISTRY, "lora_r2", entry)
    # 5. Its row in `methods`, counted like the others.
    assert main(["methods", "--json", "--config", "configs/demo/sib200.yaml",
                 "--set", f"model={tiny_model}"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["lora_r2"]["status"] == "ok"
    assert rows["lora_r2"]["method_params"] * 4 == rows["lora"]["method_params"]   # r 2 vs 8
    # 4. A run: the library receives the entry's defaults, the record says so.
    config = tiny(tmp_path, sib_root, tiny_model, "lora_r2", "results").replace(max_steps=4,
                                                                                 eval_steps=2)
    record = train_and_evaluate(config).record
    assert record["meta"]["method"]["settings"]["r"] == 2
    assert record["run_info"]["run_id"].startswith("sib200-lora_r2-multilingual-")
    assert record["costs"]["method_params"] == rows["lora_r2"]["method_params"]


# ---- Add a data set: a loader, a layout, an entry, an entry point ----------------------------
TOY_MODULE = '''
"""A toy data set in its own layout: <root>/<lang>/<split>.txt, lines "label<TAB>text"."""
from pathlib import Path

import pandas as pd

from peft_utils.data.entry import DataSet, Task
from peft_utils.data.errors import DataError
from peft_utils.data.summary import attach, combine

FOLDERS = {"english": "en", "german": "de", "spanish": "es"}


def layout(root, split, folder, subtask):
    return Path(root) / folder / f"{split}.txt"


def load(root, split, langs, subtask, strict):
    folders = [f for f in FOLDERS if layout(root, split, f, None).is_file()] if langs is None \\
        else [ENTRY.to_folder(code) for code in langs]
    frames = []
    for folder in folders:
        path, rows = layout(root, split, folder, None), []
        for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            label, sep, text = line.partition("\\t")
            if not sep or label not in ENTRY.task().labels:
                raise DataError(path, f"bad line {line!r}", line=ln, fix="write label<TAB>text")
            rows.append({"id": f"{folder}-{ln}", "lang": FOLDERS[folder], "text": text,
                         "labels": [label], "gold": True})
        frames.append(attach(pd.DataFrame(rows), source=[path]))
    return combine(frames)


ENTRY = DataSet(
    name="toy", title="Toy topics", languages=FOLDERS, train_langs=("en", "de"),
    zero_shot_langs=("es",),
    tasks={None: Task(("sports", "politics"), multilabel=False, metric="macro_f1",
                      unit="sentence")},
    loader="toy_data:load", layout="toy_data:layout")
'''
CUES = {"sports": "FIFA football champion", "politics": "Parliament election minister"}
FILLER = {"english": "The report was published this week", "german": "Der Stadtrat tagte",
          "spanish": "El informe se publicó esta semana"}


def make_toy_package(folder: Path) -> Path:
    """toy_data.py and its distribution metadata, as `pip install` of a package whose
    pyproject.toml has `[project.entry-points."peft_utils.datasets"] toy = "toy_data:ENTRY"`
    would leave them."""
    folder.mkdir(parents=True)
    (folder / "toy_data.py").write_text(textwrap.dedent(TOY_MODULE))
    info = folder / "toy_data-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-data\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[peft_utils.datasets]\ntoy = toy_data:ENTRY\n")
    return folder


def make_toy_tree(root: Path) -> Path:
    for folder, filler in FILLER.items():
        for split, n in (("train", 12), ("dev", 4), ("test", 4)):
            if folder == "spanish" and split != "test":
                continue
            labels = list(CUES) * (n // 2)
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{split}.txt").write_text("".join(
                f"{label}\t{filler}, {CUES[label]} {i}.\n" for i, label in enumerate(labels)))
    return root


@pytest.mark.slow
def test_recipe_add_a_data_set_trains_tunes_and_reports(tmp_path, tiny_model, monkeypatch):
    plugins = make_toy_package(tmp_path / "plugins")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(plugins), os.environ.get("PYTHONPATH", "")]))
    root = make_toy_tree(tmp_path / "data" / "toy")
    listed = cli("data", "list", "--json", "--data-root", str(tmp_path / "data"), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    toy = next(e for e in json.loads(listed.stdout) if e["name"] == "toy")
    assert toy["present"]["default"]["test"] == {"en": 4, "de": 4, "es": 4}

    write_yaml(tmp_path / "configs" / "toy.yaml", {
        "dataset": "toy", "data_root": str(root), "model": str(tiny_model), "max_length": 32,
        "batch_size": 8, "eval_batch_size": 32, "warmup_steps": 0, "max_steps": 4,
        "eval_steps": 2, "checkpoint_steps": 0})
    grid = write_yaml(tmp_path / "configs" / "g.yaml", {
        "presets": ["toy.yaml"], "grid": {"method": ["fft", "lora"], "seed": [1]},
        "tune": {"trials": 2, "seeds": [1],
                 "space": {"learning_rate": {"range": "registry", "scale": 30}}}})
    out = cli("grid", "run", str(grid), "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    done = records(tmp_path / "results")
    assert len(done) == 6 and all(r["run_info"]["run_id"].startswith("toy-") for r in done)
    finals = [r for r in done if r["run_info"]["tuning"]["stage"] == "final"]
    assert all(r["metrics"]["test"]["es"]["n"] == 4 for r in finals)   # the zero-shot language

    from peft_utils.classification.analysis import write_report

    report = write_report(tmp_path / "results", tmp_path / "tables", tmp_path / "figures",
                          n_boot=50)
    assert list(report.tables["peft_vs_fft"]["task"]) == ["toy"]
    assert "es" in set(report.tables["f1_by_language"]["lang"])
