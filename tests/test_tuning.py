"""Equal tuning (peft_utils.grid.tuning): a grid's `tune:` stage gives every method the same
number of trials, selects on dev (never test), runs the final cells at the chosen values,
survives a SIGKILL, and draws the same trials whatever the number of workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from peft_utils.core.config import ConfigError
from peft_utils.core.runs import read_record
from peft_utils.grid import load_grid
from peft_utils.grid.tuning import Trial, groups, planned_trials

REPO = Path(__file__).resolve().parents[1]
TINY = dict(dataset="sib200", train_langs=["en", "fr"], eval_langs=["en", "fr", "es"],
            max_length=64, batch_size=8, eval_batch_size=32, warmup_steps=0, max_steps=6,
            eval_steps=3, max_train_samples=24, max_eval_samples=8, checkpoint_steps=0)


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def tuned_grid(tmp_path, sib_root, tiny_model):
    """A grid of two methods × two scenarios × one seed, tuned with 2 trials per method on the
    learning rate, shared across scenarios: 4 trial runs, then 4 final cells."""
    write_yaml(tmp_path / "configs" / "tiny.yaml",
               {**TINY, "data_root": str(sib_root), "model": str(tiny_model)})

    def make(name: str = "g.yaml", **tune) -> Path:
        return write_yaml(tmp_path / "configs" / name, {
            "presets": ["tiny.yaml"],
            "grid": {"method": ["fft", "lora"], "scenario": ["multilingual", "en"], "seed": [1]},
            "tune": {"trials": 2, "seeds": [1], "share": ["scenario"],
                     "space": {"learning_rate": {"range": "registry", "scale": 30}}, **tune},
        })
    return make


def cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "peft_utils", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def records(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*/record.json"))]


# ---- planning (no training) -----------------------------------------------------------
def test_plan_gives_every_method_the_same_trials_at_the_same_relative_positions(tuned_grid,
                                                                                  tmp_path):
    grid = load_grid(tuned_grid(trials=4), base_dir=tmp_path)
    trials = planned_trials(grid)
    per_group = {}
    for t in trials:
        per_group.setdefault(t.group.name, []).append(t)
    assert sorted(per_group) == ["tiny method=fft", "tiny method=lora"]
    assert {len(v) for v in per_group.values()} == {4}
    # The same Sobol positions in each method's own (log) registry range, times the scale.
    from peft_utils.core import methods

    def position(t: Trial) -> float:
        low, high = (30 * x for x in methods.get(t.group.method).lr_range)
        import math
        return (math.log(t.values["learning_rate"]) - math.log(low)) / math.log(high / low)

    fft, lora = per_group["tiny method=fft"], per_group["tiny method=lora"]
    assert [round(position(a), 2) for a in fft] == [round(position(b), 2) for b in lora]
    assert len({t.values["learning_rate"] for t in fft}) == 4
    # Trials run at the first value of the shared axis; the finals span every scenario.
    assert {c.config.scenario for t in trials for c in t.runs} == {"multilingual"}
    assert all(c.config.is_trial and "-t" in c.run_id for t in trials for c in t.runs)
    assert [len(g.cells) for g in groups(grid)] == [2, 2]
    # Planned twice: the same values (the plan depends on nothing that runs).
    again = planned_trials(load_grid(tuned_grid(trials=4), base_dir=tmp_path))
    assert [t.values for t in again] == [t.values for t in trials]


def test_dry_run_json_lists_trials_per_method_and_final_cells(tuned_grid, tmp_path):
    grid_file = tuned_grid(trials=3, seeds=[1, 2])
    out = cli("grid", "run", str(grid_file), "--dry-run", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    cells = json.loads(out.stdout)
    tune = [c for c in cells if c["stage"] == "tune"]
    final = [c for c in cells if c["stage"] == "final"]
    assert len(final) == 4 and all(c["run_id"] is None for c in final)
    for method in ("fft", "lora"):
        mine = [c for c in tune if c["method"] == method]
        assert sorted({c["trial"] for c in mine}) == [0, 1, 2]
        assert len(mine) == 3 * 2   # trials × tuning seeds
    assert {"stage", "task", "scenario", "method", "seed", "trial"} <= set(tune[0])
    assert not (tmp_path / "results").exists()   # a dry run writes nothing
    text = cli("grid", "run", str(grid_file), "--dry-run", cwd=tmp_path)
    assert "stage 1 (tune)" in text.stdout and "3 trials" in text.stdout
    assert "each method's registry range × 30" in text.stdout


def test_bad_tune_sections_name_the_problem(tuned_grid, tmp_path):
    cases = [({"trials": 0}, "tune.trials"),
             ({"sampler": "annealing"}, "tune.sampler"),
             ({"space": {"learning_rate": {"low": 1e-3}}}, "tune.space.learning_rate"),
             ({"space": {"no_such_key": {"low": 1, "high": 2}}}, "not a config key"),
             ({"share": ["seed"]}, "tune.share"),
             ({"sampler": "grid", "trials": 3, "space": {
                 "learning_rate": "registry", "warmup_steps": {"low": 0, "high": 4, "int": True}}},
              "whole number"),
             ({"colour": 1}, "unknown tune key")]
    for tune, expected in cases:
        with pytest.raises(ConfigError, match=expected):
            load_grid(tuned_grid(**tune), base_dir=tmp_path)


def test_selection_reads_dev_and_never_test():
    """The best trial is the best on dev even where test ranks the trials the other way: a
    selection that read test would pick trial 1."""
    from peft_utils.classification.study import selection_score

    dev_better = {"metrics": {"main_metric": "macro_f1", "selection_dev": {"macro_f1": 0.8},
                              "test": {"overall": {"macro_f1": 0.1}}}}
    test_better = {"metrics": {"main_metric": "macro_f1", "selection_dev": {"macro_f1": 0.5},
                               "test": {"overall": {"macro_f1": 0.9}}}}
    assert selection_score(dev_better) > selection_score(test_better)


# ---- end to end ------------------------------------------------------------------------
def check_tuned_results(results: Path, grid) -> dict[str, dict]:
    """Trials: 2 per method, scored on dev alone; finals: every cell at its group's best."""
    recs = records(results)
    assert all(r["status"] == "complete" for r in recs)
    trials = [r for r in recs if r["run_info"]["tuning"].get("stage") == "tune"]
    finals = [r for r in recs if r["run_info"]["tuning"].get("stage") == "final"]
    assert len(trials) == 4 and len(finals) == 4
    best = {}
    for method in ("fft", "lora"):
        mine = [r for r in trials if r["run_info"]["method"] == method]
        assert sorted(r["run_info"]["tuning"]["trial"] for r in mine) == [0, 1]
        for r in mine:   # never scored on test, no probe, no weights kept
            assert r["metrics"]["test"] == {} and r["metrics"]["frozen_probe"] is None
            assert not (results / r["run_info"]["run_id"] / "checkpoint").exists()
            assert r["run_info"]["scenario"] == "multilingual"
        top = max(mine, key=lambda r: (r["metrics"]["selection_dev"]["macro_f1"],
                                       -r["run_info"]["tuning"]["trial"]))
        best[method] = top
        for r in (f for f in finals if f["run_info"]["method"] == method):
            tuning = r["run_info"]["tuning"]
            assert tuning["trial"] == top["run_info"]["tuning"]["trial"]
            assert tuning["trial_dev"] == pytest.approx(top["metrics"]["selection_dev"]["macro_f1"])
            assert r["run_info"]["learning_rate"] == top["run_info"]["learning_rate"]
            assert r["metrics"]["test"]["overall"]["n"] > 0
    assert {r["run_info"]["scenario"] for r in finals} == {"multilingual", "en"}
    return best


@pytest.mark.slow
def test_tuned_grid_end_to_end_then_analysis(tuned_grid, tmp_path):
    grid_file = tuned_grid()
    out = cli("grid", "run", str(grid_file), "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "stage 1 (tune)" in out.stdout and "stage 2 (final)" in out.stdout
    results = tmp_path / "results"
    check_tuned_results(results, load_grid(grid_file, base_dir=tmp_path))
    # The Optuna storage agrees with the records: 2 complete trials per group.
    import optuna

    storage = f"sqlite:///{results / 'tuning.db'}"
    summaries = optuna.get_all_study_summaries(storage)
    assert sorted(s.study_name for s in summaries) == ["g/tiny method=fft", "g/tiny method=lora"]
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # Rerun: nothing left to do.
    again = cli("grid", "run", str(grid_file), cwd=tmp_path)
    assert again.returncode == 0 and "0 to run" in again.stdout, again.stdout
    status = cli("grid", "status", str(grid_file), cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("complete") >= 8, status.stdout

    # The analysis compares finals only and shows what tuning chose, with its budget.
    from peft_utils.classification.analysis import load_results, tuning, write_report

    res = load_results(results)
    assert len(res.runs) == 4 and set(res.runs["stage"]) == {"final"}
    assert len(res.trials) == 4
    chosen = tuning.chosen_table(res)
    assert sorted(chosen["method"]) == ["fft", "lora"] and (chosen["trials"] == 2).all()
    assert set(chosen["position"]) <= {"bottom edge of learning_rate",
                                       "top edge of learning_rate"}   # 2 trials: both edges
    report = write_report(results, tmp_path / "tables", tmp_path / "figures", n_boot=50)
    assert "2 trials per method" in report.tuning_budget and "never on test" in report.tuning_budget
    assert "sensitivity_sib200-multilingual" in report.figures
    assert report.tables["tuning_trials"]["chosen"].sum() == 2
    assert any(line.startswith("**Tuning**: 0 of 2 tuned choices are interior")
               for line in report.findings)


@pytest.mark.slow
def test_same_trials_with_one_and_two_workers(tuned_grid, tmp_path):
    grid_file = tuned_grid()
    seen = []
    for workers in ("1", "2"):
        results = tmp_path / f"results-{workers}"
        out = cli("grid", "run", str(grid_file), "--workers", workers, "--results",
                  str(results), cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        seen.append(sorted((r["run_info"]["run_id"], r["run_info"]["learning_rate"])
                           for r in records(results)
                           if r["run_info"]["tuning"]["stage"] == "tune"))
    assert seen[0] == seen[1] and len(seen[0]) == 4


@pytest.mark.slow
def test_sigkill_during_tuning_resumes_without_losing_or_repeating_trials(tuned_grid, tmp_path):
    grid_file = tuned_grid()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "peft_utils", "grid", "run", str(grid_file),
                             "--workers", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    results = tmp_path / "results"
    deadline = time.monotonic() + 300
    # Kill once the first trial has finished and others are under way.
    while time.monotonic() < deadline and proc.poll() is None:
        done = [r for r in records(results) if r["status"] == "complete"]
        if done:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the grid finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {r["run_info"]["run_id"] for r in records(results) if r["status"] == "complete"}
    assert 1 <= len(before) < 8

    out = cli("grid", "run", str(grid_file), "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    check_tuned_results(results, load_grid(grid_file, base_dir=tmp_path))
    import optuna

    storage = f"sqlite:///{results / 'tuning.db'}"
    for s in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        assert sorted(t.user_attrs["index"] for t in study.trials) == [0, 1]
        assert {t.state.name for t in study.trials} == {"COMPLETE"}


def test_a_failed_trial_is_told_fail_the_others_choose_and_a_retry_counts_once(
        tuned_grid, tmp_path, one_thread):
    """Real runs through the Tuner: one trial fails (its record says so, Optuna says FAIL),
    the group is chosen from the others; a later rerun of the failed trial adds one COMPLETE
    trial at the same position with the same values, not a second trial."""

    from peft_utils.classification.training import train_and_evaluate
    from peft_utils.core.runs import write_failure
    from peft_utils.grid.tuning import Tuner

    grid = load_grid(tuned_grid(), base_dir=tmp_path)
    tuner = Tuner(grid)
    trials = tuner.trials()
    assert len(trials) == 4
    broken = next(t for t in trials if t.group.method == "lora" and t.index == 1)
    for t in trials:
        for cell in t.runs:
            if t is broken:
                write_failure(cell.config, "RuntimeError: boom")
            else:
                train_and_evaluate(cell.config)
    assert tuner.tell(trials) == 4 and tuner.finished()
    lora = tuner.studies["tiny method=lora"]
    assert [t.state.name for t in lora.trials] == ["COMPLETE", "FAIL"]
    assert tuner.best(broken.group)[0] == 0
    finals, untuned = tuner.finals()
    assert len(finals) == 4 and not untuned
    assert all(c.config.tuning["trial"] == 0 for c in finals if c.config.method == "lora")

    # Asking again (a rerun) asks nothing new: the same 4 trials, the same values.
    again = Tuner(grid).trials()
    assert [(t.group.name, t.index, t.values) for t in again] == \
        [(t.group.name, t.index, t.values) for t in trials]
    retried = next(t for t in again if t.group.method == "lora" and t.index == 1)
    for cell in retried.runs:
        train_and_evaluate(cell.config)
    assert tuner.tell(again) == 1
    states = [(t.user_attrs["index"], t.state.name) for t in lora.get_trials()]
    assert sorted(states) == [(0, "COMPLETE"), (1, "COMPLETE"), (1, "FAIL")]
    assert lora.trials[-1].params == broken.values
    assert tuner.tell(again) == 0   # told once
    cell = broken.runs[0]
    assert read_record(Path(cell.config.results_dir) / cell.run_id)["status"] == "complete"


# ---- the edge rule (tune.extend) ---------------------------------------------------------
def tell_scores(tuner, scores: dict[str, list[float]]) -> list[Trial]:
    """Ask the tuner's trials and tell Optuna each one's dev score (per method, by position):
    the bookkeeping under test, without training."""
    asked = tuner.trials()
    for t in asked:
        study = tuner.studies[t.group.name]
        number = tuner._by_index(t.group)[t.index][-1].number
        if study.trials[number].state.name == "RUNNING":
            study.tell(number, scores[t.group.method][t.index])
    return asked


def test_edge_rule_gives_every_method_the_same_extra_trials_beyond_its_edge(tuned_grid,
                                                                            tmp_path):
    """FFT chooses the bottom of its range, LoRA the middle: each gets one more trial, FFT's
    a grid step below its lowest rate, LoRA's between its best and a neighbour; a rerun asks
    nothing new, and the choice can fall on the extension."""
    from peft_utils.grid.tuning import Tuner

    grid = load_grid(tuned_grid(trials=3, sampler="grid", extend=1), base_dir=tmp_path)
    tuner = Tuner(grid)
    base = tell_scores(tuner, {"fft": [0.9, 0.5, 0.4], "lora": [0.5, 0.8, 0.6]})
    assert len(base) == 6 and not tuner.finished()
    rates = {m: sorted(t.values["learning_rate"] for t in base if t.group.method == m)
             for m in ("fft", "lora")}
    extra = tell_scores(tuner, {"fft": [None] * 3 + [0.95], "lora": [None] * 3 + [0.7]})[6:]
    assert sorted((t.group.method, t.index) for t in extra) == [("fft", 3), ("lora", 3)]
    by_method = {t.group.method: t.values["learning_rate"] for t in extra}
    low, mid, high = rates["fft"]
    assert by_method["fft"] == pytest.approx(low * low / mid, rel=0.01)   # one grid step below
    low, mid, high = rates["lora"]
    assert mid < by_method["lora"] < high                                  # halfway up
    assert tuner.finished()
    assert len(Tuner(grid).trials()) == 8                                 # nothing new asked
    assert tuner.best(groups(grid)[0])[0] == 3                             # fft: the extension
    assert tuner.best(groups(grid)[1])[0] == 1                             # lora: still interior


def test_no_edge_no_extra_trials_and_extend_needs_a_fixed_sampler(tuned_grid, tmp_path):
    from peft_utils.grid.tuning import Tuner

    grid = load_grid(tuned_grid(trials=3, sampler="grid", extend=2), base_dir=tmp_path)
    tuner = Tuner(grid)
    tell_scores(tuner, {"fft": [0.5, 0.9, 0.4], "lora": [0.5, 0.8, 0.6]})
    assert tuner.finished() and len(tuner.trials()) == 6
    with pytest.raises(ConfigError, match="tune.extend needs a fixed sampler"):
        load_grid(tuned_grid(name="tpe.yaml", sampler="tpe", extend=1), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="tune.extend must be"):
        load_grid(tuned_grid(name="neg.yaml", extend=-1), base_dir=tmp_path)


def test_trials_at_a_lower_fidelity_run_a_share_of_the_finals_steps(tuned_grid, tmp_path):
    """tune.fidelity: every trial runs that share of a final run's steps, its warm-up and
    evaluation interval scaled alike; the finals keep the grid's budget."""
    from peft_utils.grid.tuning import Tuner

    grid = load_grid(tuned_grid(fidelity=0.5, sampler="grid"), base_dir=tmp_path)
    final = grid.cells[0].config
    trials = planned_trials(grid)
    assert trials and all(
        run.config.max_steps == round(final.max_steps / 2)
        and run.config.eval_steps == max(round(final.eval_steps / 2), 1)
        and run.config.warmup_steps == round(final.warmup_steps / 2)
        for t in trials for run in t.runs)
    assert Tuner(grid).trials()[0].runs[0].config.max_steps == round(final.max_steps / 2)
    full = load_grid(tuned_grid(name="full.yaml", sampler="grid"), base_dir=tmp_path)
    assert all(run.config.max_steps == final.max_steps
               for t in planned_trials(full) for run in t.runs)
    for bad in (0, 1.5, "half", True):
        with pytest.raises(ConfigError, match="tune.fidelity must be"):
            load_grid(tuned_grid(name="bad.yaml", fidelity=bad), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="cannot tune them too"):
        load_grid(tuned_grid(name="both.yaml", fidelity=0.5, space={
            "learning_rate": "registry", "warmup_steps": {"low": 0, "high": 4, "int": True}}),
            base_dir=tmp_path)


# ---- how stage 2 is scheduled ------------------------------------------------------------
def test_the_finals_of_the_group_whose_trials_took_longest_start_first(tuned_grid, tmp_path):
    """Stage 2 starts with the finals of the group whose trials took longest, so that the
    local pool does not end with one worker alone on a long cell; untimed, grid order."""
    from peft_utils.grid.executors import seed_groups
    from peft_utils.grid.tuning import Tuner

    grid = load_grid(tuned_grid(trials=3, sampler="grid"), base_dir=tmp_path)
    tuner = Tuner(grid)
    asked = tell_scores(tuner, {"fft": [0.5, 0.6, 0.4], "lora": [0.5, 0.6, 0.4]})
    finals, _ = tuner.finals()
    assert [c.config.method for c in finals] == ["fft", "fft", "lora", "lora"]   # grid order
    assert tuner.longest_first(finals) == finals   # nothing timed yet: as they come
    for t in asked:   # LoRA's trials took three times FFT's
        for cell in t.runs:
            seconds = 30.0 if t.group.method == "lora" else 10.0
            folder = Path(cell.config.results_dir) / cell.run_id
            folder.mkdir(parents=True)
            (folder / "record.json").write_text(json.dumps({"status": "complete", "costs": {
                "phases": {"started_at": 1.8e9, "prepare_s": 1.0, "train_s": seconds}}}))
    assert tuner.trial_seconds(asked[0].group) == pytest.approx(11.0)
    ordered = tuner.longest_first(finals)
    assert [c.config.method for c in ordered] == ["lora", "lora", "fft", "fft"]
    assert [c.config.scenario for c in ordered] == ["multilingual", "en"] * 2   # stable
    # The local pool hands out its groups in that order.
    assert [g[0].config.method for g in seed_groups(ordered)] == ["lora", "lora", "fft", "fft"]
