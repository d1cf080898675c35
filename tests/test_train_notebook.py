"""notebooks/train.ipynb: a tagged parameters cell, parameters checked against the config
schema, and a papermill run on tiny data that writes the run's record and shows its results."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from peft_utils.classification.notebook import build_config, language_table
from peft_utils.classification.study import STUDY
from peft_utils.core.config import ConfigError
from peft_utils.core.runs import HEADLESS, read_record
from peft_utils.grid.cell import KERNEL

NOTEBOOK = STUDY.notebook

REPO = Path(__file__).resolve().parents[1]
PARAMETERS = ("config_file", "dataset", "subtask", "method", "scenario", "model", "seed",
              "overrides", "results_dir")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # Two cores shared with the papermill client: more torch threads only spin-wait.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def parameters_cell() -> dict:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    return tagged[0]


def test_notebook_is_clean_and_declares_its_parameters():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == KERNEL
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    namespace: dict = {}
    exec(parameters_cell().source, namespace)  # plain assignments, nothing else
    assert set(PARAMETERS) <= set(namespace)
    assert namespace["overrides"] == {} and namespace["seed"] is None


def tiny_parameters(sib_root, tiny_model, results, **overrides) -> dict:
    settings = dict(data_root=str(sib_root), train_langs=["en", "fr"],
                    eval_langs=["en", "fr", "es"], max_length=64, learning_rate=3e-3,
                    batch_size=8, eval_batch_size=16, warmup_steps=0, max_steps=10,
                    eval_steps=5)
    return dict(config_file=None, dataset="sib200", method="lora", scenario="multilingual",
                model=str(tiny_model), seed=3, overrides={**settings, **overrides},
                results_dir=str(results))


def test_papermill_run_writes_record_curve_and_language_table(tmp_path, sib_root, tiny_model,
                                                             monkeypatch):
    import papermill as pm

    monkeypatch.delenv(HEADLESS, raising=False)   # as in JupyterLab: not a grid cell

    params = tiny_parameters(sib_root, tiny_model, tmp_path / "results")
    out = tmp_path / "train.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters=params, kernel_name=KERNEL,
                        cwd=str(NOTEBOOK.parent), progress_bar=False)

    expected = build_config(None, {k: params[k] for k in ("dataset", "method", "scenario",
                                                          "model", "seed")},
                            params["overrides"], params["results_dir"])
    record = read_record(tmp_path / "results" / expected.run_id)
    assert record["status"] == "complete" and record["run_info"]["seed"] == 3
    assert record["metrics"]["learning_curve"] and len(record["metrics"]["dev_curve"]) == 2

    cells = {c.get("id"): c for c in nbformat.read(out, as_version=4).cells}
    assert any("image/png" in o.get("data", {}) for o in cells["curve"].outputs)
    table = cells["langs"].outputs[0]["data"]["text/plain"]
    assert "zero-shot" in table and "overall" in table
    es_line = next(line for line in table.splitlines() if line.startswith("es"))
    assert "yes" in es_line  # es has no training data: zero-shot
    summary = cells["baselines"].outputs[0]["data"]["text/plain"]
    assert "frozen-feature probe" in summary and "majority" in summary
    # Outside a grid cell the kernel shows the Trainer's live progress table (step, loss,
    # dev score); a grid cell logs lines instead (tests/test_grid.py).
    html = "".join(o.get("data", {}).get("text/html", "") for c in cells.values()
                   for o in c.get("outputs", []))
    assert "<progress" in html and "Main" in html


def test_bad_parameters_stop_with_a_config_error(tmp_path, sib_root, tiny_model):
    params = dict(dataset="sib200", method="lorra", scenario=None, model=str(tiny_model),
                  seed=None)
    with pytest.raises(ConfigError, match=r"notebook parameters.*unknown method 'lorra'.*fft"):
        build_config(None, params, {"data_root": str(sib_root)})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) learning_rat\b"):
        build_config(None, {**params, "method": "lora"}, {"learning_rat": 1e-4})
    with pytest.raises(ConfigError, match="overrides must be a dict"):
        build_config(None, {**params, "method": "lora"}, [("learning_rate", 1e-4)])
    with pytest.raises(ConfigError, match="config_file 'nope.yaml' not found"):
        build_config("nope.yaml", {**params, "method": "lora"})


def test_preset_parameters_and_paths(tmp_path, monkeypatch, tiny_model):
    # A project with a preset; the notebook runs from its notebooks/ folder.
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    (project / "notebooks").mkdir()
    (project / "pyproject.toml").write_text("")
    shutil.copytree(REPO / "configs" / "semeval", project / "configs" / "semeval")
    shutil.copy(REPO / "configs" / "defaults.yaml", project / "configs")
    monkeypatch.chdir(project / "notebooks")

    config = build_config("../configs/semeval/st1.yaml",
                          dict(method="fft", seed=2, model=None, dataset=None),
                          {"translations_dir": "../data/tr"}, "../results")
    assert (config.subtask, config.method, config.seed) == (1, "fft", 2)
    assert config.learning_rate == 1e-5                           # the preset's FFT rate
    assert config.model == "xlm-roberta-large"                    # the preset's model
    assert config.data_root == str(project / "data" / "semeval2023")   # preset: project root
    assert config.translations_dir == str(project / "data" / "tr")     # parameter: notebook dir
    assert config.results_dir == str(project / "results")

    # A missing preset is an error (the preset is the one place of its settings); without a
    # preset, the parameters alone, and model None: the offline default.
    with pytest.raises(ConfigError, match="config_file '../configs/demo/missing.yaml' not found"):
        build_config("../configs/demo/missing.yaml", dict(method=None, seed=None))
    monkeypatch.setattr("peft_utils.modelprep.e5_convert.default_model_name",
                        lambda: str(tiny_model))
    config = build_config(None, dict(method=None, seed=None),
                          dict(dataset="sib200", data_root="../data/sib200",
                               max_train_samples=64, num_epochs=1))
    assert config.data_root == str(project / "data" / "sib200")
    assert config.max_train_samples == 64 and config.model == str(tiny_model)


def test_language_table_marks_zero_shot_languages():
    record = {"run_info": {"zero_shot_langs": ["es"]},
              "metrics": {"main_metric": "macro_f1",
                          "dev": {"en": {"macro_f1": 0.5, "n": 3}, "es": {"macro_f1": 0.25, "n": 4},
                                  "overall": {"macro_f1": 0.4, "n": 7}},
                          "test": {"en": {"macro_f1": 0.6, "n": 3}}}}
    table = language_table(record)
    assert list(table.index) == ["en", "es", "overall"]
    assert list(table["zero-shot"]) == ["", "yes", ""]
    assert table.loc["es", "dev macro_f1"] == 0.25 and table.loc["en", "test n"] == 3


def test_language_table_lists_absent_languages_with_the_reason():
    record = {"run_info": {"zero_shot_langs": ["es", "el"]},
              "metrics": {"main_metric": "macro_f1",
                          "dev": {"en": {"macro_f1": 0.5, "n": 3}, "overall": {"macro_f1": 0.5,
                                                                               "n": 3}},
                          "test": {},
                          "coverage": {"dev": {"en": "labelled", "es": "empty", "el": "absent"},
                                       "test": {"en": "unlabelled", "es": "absent",
                                                "el": "absent"}}}}
    table = language_table(record)
    assert list(table.index) == ["en", "es", "el", "overall"]
    assert list(table["dev data"]) == ["labelled", "empty", "absent", ""]
    assert list(table["test data"]) == ["unlabelled", "absent", "absent", ""]
    assert list(table["zero-shot"]) == ["", "yes", "yes", ""]


@pytest.mark.slow
def test_defaults_run_on_cpu(tmp_path):
    """The notebook as a user opens it: the demo preset (or, without it, the inline demo
    settings), SIB-200 demo data, the offline default model. A few minutes on a CPU."""
    import papermill as pm

    from peft_utils.data.prepare import prepare

    shared = REPO.parent / "shared" / "data" / "sib200"
    if not shared.is_dir():
        pytest.skip(f"no demo data at {shared}")
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    shutil.copytree(REPO / "configs", project / "configs")
    if (REPO / "models" / "multilingual-e5-small").is_dir():   # reuse a converted model
        (project / "models").mkdir()
        (project / "models" / "multilingual-e5-small").symlink_to(
            REPO / "models" / "multilingual-e5-small")
    prepare("sib200", dest_root=project / "data", mirror=shared)
    notebook = project / "notebooks" / "train.ipynb"
    shutil.copy(NOTEBOOK, notebook)
    pm.execute_notebook(str(notebook), str(tmp_path / "out.ipynb"), kernel_name=KERNEL,
                        cwd=str(notebook.parent), progress_bar=False,
                        parameters={"overrides": {"device": "cpu"}})
    records = list((project / "results").glob("*/record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["status"] == "complete" and record["run_info"]["dataset"] == "sib200"
