"""MT grids: `kind: mt` grid files expand into MTConfig cells that the same grid runner executes
with notebooks/mt_train.ipynb; the MT analysis notebook turns their records into tables and
figures. End to end on a tiny random mBART and a small NTREX tree."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from peft_utils.core.config import ConfigError
from peft_utils.grid import load_grid
from peft_utils.grid.cell import KERNEL
from peft_utils.mt.config import MTConfig
from peft_utils.mt.testing import make_ntrex_tree, make_tiny_mt_model

REPO = Path(__file__).resolve().parents[1]
TRAIN_NB = REPO / "notebooks" / "mt_train.ipynb"
ANALYSIS_NB = REPO / "notebooks" / "mt_analysis.ipynb"


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def mt_project(tmp_path_factory) -> Path:
    """A project folder with NTREX-like data, a tiny model and a tiny MT preset."""
    root = tmp_path_factory.mktemp("mtproject")
    data = make_ntrex_tree(root / "data" / "ntrex", n_docs=16)
    texts = [line for f in data.glob("newstest2019-*.txt")
             for line in f.read_text(encoding="utf-8").splitlines()]
    model = make_tiny_mt_model(root / "models" / "tiny-mt", texts)
    write_yaml(root / "configs" / "tiny.yaml", {
        "data_root": str(data), "model": str(model), "max_steps": 6, "num_epochs": 1,
        "eval_steps": 3, "max_eval_samples": 10, "max_source_length": 24,
        "max_target_length": 24, "batch_size": 8, "eval_batch_size": 16, "warmup_steps": 0,
        "select_on": "chrf", "learning_rate": 3.0e-3})
    return root


def cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "peft_utils", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_mt_grid_expands_into_mt_cells(mt_project):
    grid_file = write_yaml(mt_project / "configs" / "g.yaml", {
        "kind": "mt", "presets": ["tiny.yaml"],
        "grid": {"tgt_lang": ["de", "ka"], "method": ["fft", "lora"], "budget": [None, 0.1]},
        "exclude": [{"method": "lora", "budget": None}], "results_dir": "out"})
    grid = load_grid(grid_file, base_dir=mt_project)
    assert grid.kind == "mt" and grid.notebook == TRAIN_NB
    assert all(isinstance(c.config, MTConfig) for c in grid.cells)
    # fft's budget is null whatever the axis says: its two budget values are one cell.
    assert len(grid.cells) == 4 and grid.duplicates == 2
    assert {(c.config.tgt_lang, c.config.method, c.config.budget) for c in grid.cells} == {
        ("de", "fft", None), ("ka", "fft", None), ("de", "lora", 0.1), ("ka", "lora", 0.1)}
    assert all(c.config.results_dir == str(mt_project / "out") for c in grid.cells)

    bad = write_yaml(mt_project / "configs" / "bad.yaml", {
        "kind": "mt", "presets": ["tiny.yaml"], "grid": {"scenario": ["en"]}})
    with pytest.raises(ConfigError, match="unknown MTConfig key 'scenario'"):
        load_grid(bad, base_dir=mt_project)
    write_yaml(bad, {"kind": "speech", "presets": ["tiny.yaml"]})
    with pytest.raises(ConfigError, match="unknown study kind 'speech'"):
        load_grid(bad, base_dir=mt_project)
    write_yaml(bad, {"kind": "mt", "presets": ["tiny.yaml"], "notebook": "nope.ipynb"})
    with pytest.raises(ConfigError, match="notebook 'nope.ipynb' not found"):
        load_grid(bad, base_dir=mt_project)


@pytest.mark.parametrize("name, cells", [("budgets", 88), ("data-size", 30),
                                         ("model-size", 40), ("model-size-nllb", 32),
                                         ("smoke", 6)])
def test_shipped_mt_grids_expand(name, cells):
    grid = load_grid(REPO / "configs" / "mt" / f"{name}.yaml", base_dir=REPO)
    assert grid.kind == "mt" and len(grid.cells) == cells


def test_mt_notebook_is_clean_and_declares_its_parameters():
    for path in (TRAIN_NB, ANALYSIS_NB):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == KERNEL
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1


def test_tiny_mt_grid_end_to_end_with_analysis(mt_project, tmp_path, capsys):
    """`grid run` on a kind: mt grid (2 cells, 2 workers), a re-run that skips them, a cell
    whose budget is out of reach refused before anything runs, then the analysis notebook."""
    import papermill as pm

    from peft_utils.cli import main

    grid_file = write_yaml(mt_project / "configs" / "e2e.yaml", {
        "kind": "mt", "presets": ["tiny.yaml"],
        "grid": {"tgt_lang": ["de"], "method": ["fft", "pfeiffer"], "budget": [None, 0.1]},
        "exclude": [{"method": "pfeiffer", "budget": None}], "results_dir": str(tmp_path / "r")})
    run = cli("grid", "run", str(grid_file), "--workers", "2", cwd=mt_project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 complete, 0 failed" in run.stdout
    folders = sorted(p for p in (tmp_path / "r").iterdir() if p.is_dir())
    assert len(folders) == 2
    for folder in folders:
        record = json.loads((folder / "record.json").read_text())
        assert record["kind"] == "mt" and record["status"] == "complete"
        assert (folder / "mt_train.ipynb").is_file() and (folder / "mt_train.html").is_file()
        assert (folder / "predictions" / "test-en-de.tsv").is_file()
        if record["run_info"]["method"] == "pfeiffer":
            assert record["budget"]["relative_error"] <= 0.1
    assert main(["grid", "run", str(grid_file)]) == 0
    assert "2 already complete (skipped), 0 to run" in capsys.readouterr().out
    assert main(["grid", "status", str(grid_file)]) == 0
    assert capsys.readouterr().out.count("complete") >= 2

    # A budget this model cannot reach is a problem found before any cell runs.
    write_yaml(grid_file, {"kind": "mt", "presets": ["tiny.yaml"],
                           "set": {"method": "lora", "budget": 0.001},
                           "results_dir": str(tmp_path / "r2")})
    assert main(["grid", "run", str(grid_file)]) == 2
    err = capsys.readouterr().err
    assert "nothing was run" in err and "budget 0.10% is not reachable with lora" in err

    out = tmp_path / "analysis.ipynb"
    pm.execute_notebook(str(ANALYSIS_NB), str(out), kernel_name=KERNEL,
                        cwd=str(ANALYSIS_NB.parent), progress_bar=False,
                        parameters={"results_dir": str(tmp_path / "r"),
                                    "tables_dir": str(tmp_path / "tables"),
                                    "figures_dir": str(tmp_path / "figures")})
    for name in ("mt_scores", "mt_budgets", "mt_vs_fft", "mt_close_vs_distant", "mt_data_size"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / "tables" / f"{name}.{ext}").is_file(), (name, ext)
    figures = {p.name for p in (tmp_path / "figures").iterdir()}
    assert any(n.startswith("mt_budget-bleu") and n.endswith(".png") for n in figures)
    executed = nbformat.read(out, as_version=4)
    assert any("image/png" in o.get("data", {}) for c in executed.cells
               for o in c.get("outputs", []))


def test_mt_grid_runs_as_slurm_jobs(mt_project, tmp_path):
    """The Slurm executor (submitit; `cluster: local` runs the job here) runs MT cells through
    the same run_cell as classification cells."""
    grid_file = write_yaml(mt_project / "configs" / "jobs.yaml", {
        "kind": "mt", "presets": ["tiny.yaml"], "grid": {"method": ["lora"], "budget": [0.1]},
        "slurm": {"cluster": "local", "timeout_min": 10}, "results_dir": str(tmp_path / "r")})
    run = cli("grid", "run", str(grid_file), "--executor", "slurm", cwd=mt_project)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "submitted 1 jobs" in run.stdout and "[1/1] complete" in run.stdout
    (folder,) = [p for p in (tmp_path / "r").iterdir() if p.is_dir() and p.name != "_submitit"]
    record = json.loads((folder / "record.json").read_text())
    assert record["kind"] == "mt" and record["status"] == "complete"
    assert (folder / "mt_train.html").is_file()


@pytest.mark.slow
def test_tuned_mt_grid_selects_on_dev_chrf_and_compares_finals_only(mt_project, tmp_path):
    """The tuning stage is the grid's, not a study's: an MT grid tunes the same way. Trials
    translate dev only; the finals carry their group's best trial (by dev chrF, `select_on`);
    the MT analysis reads the finals."""
    from peft_utils.mt.analysis import load_mt_results

    grid_file = write_yaml(mt_project / "configs" / "tuned.yaml", {
        "kind": "mt", "presets": ["tiny.yaml"], "results_dir": str(tmp_path / "out"),
        "grid": {"method": ["fft", "lora"], "seed": [1]},
        "tune": {"trials": 2, "space": {"learning_rate": {"range": "registry", "scale": 30}}}})
    out = cli("grid", "run", str(grid_file), "--workers", "2", cwd=mt_project, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*/record.json")]
    trials = [r for r in records if r["run_info"]["tuning"]["stage"] == "tune"]
    finals = [r for r in records if r["run_info"]["tuning"]["stage"] == "final"]
    assert len(trials) == 4 and len(finals) == 2
    assert all(r["metrics"]["test"] == {} for r in trials)
    for final in finals:
        mine = [r for r in trials if r["run_info"]["method"] == final["run_info"]["method"]]
        best = max(mine, key=lambda r: (r["metrics"]["dev"]["overall"]["chrf"],
                                        -r["run_info"]["tuning"]["trial"]))
        assert final["run_info"]["tuning"]["trial"] == best["run_info"]["tuning"]["trial"]
        assert final["run_info"]["learning_rate"] == best["run_info"]["learning_rate"]
        assert final["metrics"]["test"]["overall"]["chrf"] >= 0
    assert sorted(load_mt_results(tmp_path / "out").runs["method"]) == ["fft", "lora"]
