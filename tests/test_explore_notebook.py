"""notebooks/explore.ipynb runs headless with papermill, on its defaults and on a choice, on a
small results folder of hand-built runs (tests/test_labels.py), reading only that folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_labels import build_results

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore.ipynb"


@pytest.fixture(scope="module")
def results_root(tmp_path_factory) -> Path:
    return build_results(tmp_path_factory.mktemp("explore") / "results", seeds=(1, 2),
                         n_per_lang=20)


def _execute(tmp_path: Path, **parameters) -> list[dict]:
    import papermill as pm

    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "explore.ipynb"
    # cwd: an empty folder, so that nothing but the results folder is there to read
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(tmp_path),
                        parameters=parameters, progress_bar=False)
    return json.loads(out.read_text())["cells"]


def _text(cells: list[dict]) -> str:
    parts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            parts += data.get("text/markdown", []) + data.get("text/plain", [])
            parts += output.get("text", [])
    return "".join(parts)


def _images(cells: list[dict]) -> int:
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))


def test_parameters_cell_is_tagged_with_defaults_for_any_folder():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for name in ("results_dir", "task", "scenario", "methods", "languages", "labels",
                 "cell_method", "cell_gold", "cell_pred", "texts_from_data"):
        assert f"{name} =" in source
    assert 'task = ""' in source and "texts_from_data = False" in source


def test_explore_notebook_runs_on_its_defaults(results_root, tmp_path):
    cells = _execute(tmp_path / "run", results_dir=str(results_root), n_boot=200)
    text = _text(cells)
    assert "brighter" in text and "sib200" in text
    # the first task found (brighter, alphabetically first run folder) with its tables
    assert "labels_vs_fft" in text and "missed_together" in text
    assert "Examples behind the cell" in text and "(none)" in text
    assert _images(cells) >= 2      # per-label heat map, missed labels together


def test_explore_notebook_on_a_choice_shows_the_confusion_and_its_texts(results_root, tmp_path):
    cells = _execute(tmp_path / "run", results_dir=str(results_root), task="sib200",
                     languages=["en", "fr"], labels=["travel", "politics", "sports"],
                     cell_method="lora", cell_gold="travel", cell_pred="politics",
                     n_boot=200, use_widgets=False)
    text = _text(cells)
    assert "sib200 · multilingual" in text and "languages: en, fr" in text
    assert "confusion" in text and "gold `travel` → predicted `politics`" in text
    assert "en example" in text      # texts from the runs' examples tables
    assert "health" not in text.split("labels_by_language")[0].split("**labels**")[-1]
    assert _images(cells) >= 2      # per-label heat map, confusion matrices
