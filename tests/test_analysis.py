"""The analysis reads results folders only: tables on hand-built records with known answers,
the bootstrap on synthetic predictions whose answer is known, and the whole report (package
and notebook) on runs actually trained on fixture data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from peft_utils.classification import analysis as A
from peft_utils.classification import metrics as M
from peft_utils.core.runs import write_record
from peft_utils.data.labels import EMOTIONS, SIB200_LABELS
from peft_utils.data.registry import get

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
COSTS = {"trainable": 1000, "total": 1000, "backbone": 900, "head": 100, "method_params": 0,
         "percent_trainable": 100.0, "train_wall_s": 10.0, "train_samples_per_s": 50.0,
         "train_tokens_per_s": 500.0, "peak_memory_mb": 800.0, "peak_memory_kind": "cpu_peak_rss",
         "checkpoint_mb": 4.0}


# ---- hand-built results folders -------------------------------------------------
def write_run(root: Path, method: str, seed: int, *, dataset: str = "sib200",
              scenario: str = "multilingual", metrics: dict | None = None,
              examples: dict[str, pd.DataFrame] | None = None, costs: dict | None = None,
              baselines: dict | None = None, zero_shot=("es",), langs=("en", "fr", "es"),
              extra_metrics: dict | None = None, run_info: dict | None = None,
              inference: dict | None = None) -> str:
    """A complete run folder. With `examples`, the record's scores are computed from them
    with peft_utils.classification.metrics, as training does (rows whose gold is None are unscored)."""
    run_id = f"{dataset}-{method}-{scenario}-s{seed}-fake"
    folder = root / run_id
    multilabel = dataset == "brighter"
    if examples is not None:
        metrics = {split: _scores(table, multilabel) for split, table in examples.items()}
        (folder / "predictions").mkdir(parents=True, exist_ok=True)
        for split, table in examples.items():
            table.assign(gold=table["gold"].fillna("")).to_csv(
                folder / "predictions" / f"{split}-examples.csv", index=False)
    main = get(dataset).task().metric
    metrics = metrics or {split: {"overall": {main: 0.5, "n": 30}} for split in ("dev", "test")}
    record = {
        "status": "complete", "error": None,
        "run_info": {"run_id": run_id, "dataset": dataset, "subtask": None, "method": method,
                     "scenario": scenario, "model": "tiny", "seed": seed,
                     "learning_rate": 1e-3, "multilabel": multilabel,
                     "eval_langs_resolved": list(langs), "zero_shot_langs": list(zero_shot),
                     **(run_info or {})},
        "metrics": {"main_metric": main, "dev": metrics.get("dev", {}),
                    "test": metrics.get("test", {}),
                    "baselines": baselines or {"majority": {main: 0.1, "n": 30}},
                    **(extra_metrics or {})},
        "costs": {**COSTS, **(costs or {})},
        "meta": {"packages": {"torch": "x"}, "git_commit": "abc", "device": "cpu",
                 "seed": seed},
        **({"inference": inference} if inference else {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    write_record(folder, record)
    return run_id


def _scores(table: pd.DataFrame, multilabel: bool) -> dict:
    scored = table[table["gold"].notna()]
    if multilabel:
        split = lambda col: [[x for x in v.split(",") if x] for v in scored[col]]  # noqa: E731
        gold, pred = M.multihot(split("gold"), EMOTIONS), M.multihot(split("pred"), EMOTIONS)
        n_labels = len(EMOTIONS)
    else:
        lookup = {label: i for i, label in enumerate(SIB200_LABELS)}
        gold, pred = scored["gold"].map(lookup).to_numpy(), scored["pred"].map(lookup).to_numpy()
        n_labels = len(lookup)
    return M.per_language(scored["lang"].to_numpy(), gold, pred, multilabel, n_labels)


def examples_table(gold: list, pred: list, langs: list) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"x{i}" for i in range(len(gold))], "line": "", "lang": langs,
                         "pred": pred, "gold": gold})


def sib_examples(rng: np.random.Generator, n_per_lang: int = 30):
    langs = [lang for lang in ("en", "fr", "es") for _ in range(n_per_lang)]
    gold = list(rng.choice(SIB200_LABELS, size=len(langs)))
    return gold, langs


def test_f1_table_mean_std_markers_and_fallback(tmp_path):
    main = "macro_f1"
    for seed, score in zip((1, 2, 3), (0.5, 0.6, 0.7)):
        # German has no gold on test: its dev score stands in.
        write_run(tmp_path, "fft", seed, langs=("en", "de", "es"), metrics={
            "test": {"en": {main: score, "n": 10}, "es": {main: 0.2, "n": 10},
                     "overall": {main: score - 0.1, "n": 20}},
            "dev": {"en": {main: 0.9, "n": 10}, "de": {main: score / 2, "n": 10},
                    "es": {main: 0.1, "n": 10}, "overall": {main: 0.5, "n": 30}}})
    write_run(tmp_path, "lora", 1, langs=("en", "de", "es"), metrics={
        "test": {"en": {main: 0.55, "n": 10}, "es": {main: 0.3, "n": 10},
                 "overall": {main: 0.4, "n": 20}},
        "dev": {"en": {main: 0.9, "n": 10}, "de": {main: 0.2, "n": 10},
                "es": {main: 0.1, "n": 10}, "overall": {main: 0.5, "n": 30}}})

    table = A.f1_table(tmp_path)
    assert len(table) == 2 * 4  # methods × (en, de, es, overall)
    fft_en = table.query("method == 'fft' and lang == 'en'").iloc[0]
    assert fft_en["mean"] == pytest.approx(0.6) and fft_en["std"] == pytest.approx(0.1)
    assert fft_en["n_seeds"] == 3 and fft_en["split"] == "test"
    fft_de = table.query("method == 'fft' and lang == 'de'").iloc[0]
    assert fft_de["split"] == "dev" and fft_de["mean"] == pytest.approx(0.3)
    assert table.query("lang == 'es'")["zero_shot"].all()
    assert list(table.query("method == 'fft'")["lang"]) == ["en", "de", "es", "overall"]
    assert np.isnan(table.query("method == 'lora' and lang == 'en'").iloc[0]["std"])

    wide = A.f1_wide(table).set_index("method")
    assert wide.loc["fft", "en"] == "0.600 ± 0.100"
    assert wide.loc["fft", "de"] == "0.300 ± 0.050†"
    assert wide.loc["fft", "es"] == "0.200 ± 0.000*"
    assert wide.loc["lora", "en"] == "0.550 ± –"   # a single seed has no spread
    assert list(wide.columns)[-1] == "overall"


def test_cost_table_ratios_and_missing_fft(tmp_path):
    for seed, wall in ((1, 9.0), (2, 11.0)):
        write_run(tmp_path, "fft", seed, costs={"train_wall_s": wall, "peak_memory_mb": 1000})
        write_run(tmp_path, "lora", seed, costs={"trainable": 10, "total": 1010,
                                                 "train_wall_s": 6.0, "peak_memory_mb": 600})
    write_run(tmp_path, "lora", 1, scenario="en", costs={"trainable": 10})  # no FFT run here

    costs = A.cost_table(tmp_path).set_index(["scenario", "method"])
    lora = costs.loc[("multilingual", "lora")]
    assert lora["ratio_to_fft"] == pytest.approx(100)
    assert lora["time_reduction_pct"] == pytest.approx(40)
    assert lora["memory_reduction_pct"] == pytest.approx(40)
    assert costs.loc[("multilingual", "fft"), "train_wall_s"] == pytest.approx(10)
    assert np.isnan(costs.loc[("en", "lora"), "ratio_to_fft"])
    shown = A.cost_display(A.cost_table(tmp_path)).set_index(["scenario", "method"])
    assert shown.loc[("multilingual", "lora"), "FFT / method"] == "100×"
    assert shown.loc[("multilingual", "lora"), "time vs FFT"] == "-40.0%"
    assert shown.loc[("en", "lora"), "FFT / method"] == "–"
    ranges = A.cost_ranges(A.cost_table(tmp_path))
    assert list(ranges["method"]) == ["lora"] and ranges["cells"].iloc[0] == 1


def timing(per_s: float, ms: float) -> dict:
    return {"examples_per_s": per_s, "latency_ms_median": ms, "latency_ms_p95": 2 * ms}


def inference_block(merge: str, serve: int, unmerged: dict, merged: dict | None = None) -> dict:
    return {"rows": 30, "batch_size": 16, "merge": merge, "unmerged": unmerged,
            "merged": merged, "merge_max_diff": 0.0 if merged else None, "serve_bytes": serve,
            "full_model_bytes": 1000}


def test_inference_table_ratios_storage_and_bench_over_record(tmp_path):
    from peft_utils.classification.analysis import serving as S
    from peft_utils.core.inference_bench import BENCH_FILE

    fft = write_run(tmp_path, "fft", 1, inference=inference_block(
        "nothing to merge", 1000, timing(100.0, 10.0)))
    write_run(tmp_path, "lora", 1, inference=inference_block(
        "merges", 10, timing(50.0, 20.0), timing(100.0, 10.0)))
    write_run(tmp_path, "pfeiffer", 1, inference=inference_block(
        "cannot merge", 20, timing(80.0, 12.0)))
    table = S.inference_table(A.load_results(tmp_path), k_tasks=4).set_index("method")
    assert table.loc["lora", "latency_vs_fft"] == 2.0
    assert table.loc["lora", "merged_latency_vs_fft"] == 1.0
    assert table.loc["lora", "throughput_vs_fft"] == 0.5
    assert np.isnan(table.loc["pfeiffer", "merged_latency_vs_fft"])
    assert table.loc["pfeiffer", "best_latency_ms"] == 12.0
    # 4 tasks: one base + 4 × own parameters, against 4 full models.
    assert table.loc["lora", "k_tasks_gb"] == pytest.approx((1000 + 4 * 10) / 1e9)
    assert table.loc["fft", "k_tasks_gb"] == pytest.approx(4000 / 1e9)
    assert table.loc["lora", "k_tasks_vs_fft"] == pytest.approx(1040 / 4000)
    assert (table["timing"] == "per run").all()
    # The side-by-side bench, where it measured a run, replaces the run's own figures.
    (tmp_path / BENCH_FILE).write_text(json.dumps({"runs": {fft: {
        "method": "fft", "unmerged": timing(200.0, 5.0), "merged": None}}}))
    table = S.inference_table(A.load_results(tmp_path), k_tasks=4).set_index("method")
    assert table.loc["fft", "timing"] == "side by side"
    assert table.loc["lora", "latency_vs_fft"] == 4.0
    display = S.inference_display(table.reset_index())
    assert list(display["merge"]) == ["nothing to merge", "merges", "cannot merge"]
    assert (display["storage"] == "projected").all()
    assert "ONNX vs FFT" not in display   # a bench file of before the ONNX timing
    # Where the bench timed ONNX Runtime: its own column, its ratio to FFT.
    (tmp_path / BENCH_FILE).write_text(json.dumps({"runs": {
        fft: {"method": "fft", "unmerged": timing(200.0, 5.0), "merged": None,
              "onnx": timing(400.0, 2.5)}}}))
    table = S.inference_table(A.load_results(tmp_path), k_tasks=4).set_index("method")
    assert table.loc["fft", "onnx_latency_vs_fft"] == 0.5
    assert np.isnan(table.loc["lora", "onnx_latency_vs_fft"])
    display = S.inference_display(table.reset_index()).set_index("method")
    assert display.loc["fft", "ONNX latency ms"] == "2.5"
    assert display.loc["fft", "ONNX vs FFT"] == "0.50×"


def test_storage_is_measured_where_the_multitask_bench_measured_it(tmp_path):
    """benchmarks/multitask.py's held bytes for K tasks replace the projection (that K only)."""
    from peft_utils.classification.analysis import serving as S
    from peft_utils.core.cost_of_use import MULTITASK_BENCH

    write_run(tmp_path, "fft", 1, inference=inference_block(
        "nothing to merge", 1000, timing(100.0, 10.0)))
    write_run(tmp_path, "lora", 1, inference=inference_block(
        "merges", 10, timing(50.0, 20.0), timing(100.0, 10.0)))
    (tmp_path / MULTITASK_BENCH).write_text(json.dumps({"figures": [
        {"method": "lora", "k": 4, "held_bytes": 1100}, {"method": "lora", "k": 2,
                                                          "held_bytes": 1050}]}))
    table = S.inference_table(A.load_results(tmp_path), k_tasks=4).set_index("method")
    assert table.loc["lora", "k_tasks_gb"] == pytest.approx(1100 / 1e9)
    assert table.loc["lora", "k_tasks_vs_fft"] == pytest.approx(1100 / 4000)
    assert table.loc["fft", "k_tasks_gb"] == pytest.approx(4000 / 1e9)
    assert dict(table["storage"]) == {"fft": "projected", "lora": "measured"}


def test_pareto_front_keeps_the_undominated_points():
    from peft_utils.core.cost_of_use import pareto_front

    score = pd.Series([0.9, 0.8, 0.7, 0.85, 0.8])
    cost = pd.Series([100.0, 10.0, 10.0, 100.0, 5.0])
    # 0.9@100 (best score), 0.8@5 (cheapest at 0.8); 0.8@10, 0.7@10, 0.85@100 are dominated.
    assert list(pareto_front(score, cost)) == [True, False, False, False, True]


def test_baselines_beside_dev_scores(tmp_path):
    main = "macro_f1"
    for seed, dev in ((1, 0.30), (2, 0.05)):
        write_run(tmp_path, "lora", seed, metrics={"dev": {"overall": {main: dev, "n": 30}}},
                  baselines={"majority": {main: 0.10, "n": 30}})
    table = A.baseline_table(tmp_path).iloc[0]
    assert table["dev_mean"] == pytest.approx(0.175) and table["baseline"] == pytest.approx(0.1)
    assert table["margin"] == pytest.approx(0.075)
    assert table["min_run_margin"] == pytest.approx(-0.05) and not table["beats_all"]


@pytest.mark.parametrize("scores, clear", [((0.45, 0.25), True), ((0.45, 0.15), False)])
def test_every_run_must_beat_the_baseline_by_a_clear_margin(tmp_path, scores, clear):
    for seed, dev in enumerate(scores, 1):
        write_run(tmp_path, "lora", seed, metrics={"dev": {"overall": {"macro_f1": dev, "n": 30}}},
                  baselines={"majority": {"macro_f1": 0.10, "n": 30}})
    table = A.baseline_table(tmp_path)
    assert A.tables.CLEAR_MARGIN == 0.10 and bool(table["beats_all"].iloc[0]) is clear
    shown = A.baseline_display(table)["every run beats it by ≥ 0.10"].iloc[0]
    assert shown == ("yes" if clear else "NO")


def test_frozen_probe_beside_the_baselines_flags_runs_below_it(tmp_path):
    """Every run must beat the frozen-feature probe scored on the same rows; one seed below
    it flags the cell. A record from before the probe existed is not flagged."""
    def probe(dev, test):
        return {"frozen_probe": {"selection_dev": {"macro_f1": dev, "n": 30}, "dev": {},
                                 "test": {"overall": {"macro_f1": test, "n": 30}},
                                 "pooling": "mean", "class_weights": "balanced"}}
    for seed, dev in ((1, 0.60), (2, 0.40)):
        write_run(tmp_path, "lora", seed, metrics={"dev": {"overall": {"macro_f1": dev, "n": 30}},
                                                   "test": {"overall": {"macro_f1": dev, "n": 30}}},
                  extra_metrics=probe(0.45, 0.5), run_info={"class_weights": "balanced"})
    for seed in (1, 2):
        write_run(tmp_path, "fft", seed, metrics={"dev": {"overall": {"macro_f1": 0.7, "n": 30}}},
                  extra_metrics=probe(0.45, 0.5), run_info={"class_weights": "balanced"})
    write_run(tmp_path, "pfeiffer", 1, metrics={"dev": {"overall": {"macro_f1": 0.7, "n": 30}}},
              run_info={"class_weights": "balanced"})
    table = A.baseline_table(tmp_path).set_index("method")
    assert table.loc["lora", "probe"] == pytest.approx(0.45)
    assert table.loc["lora", "beats_probe"] is False and table.loc["fft", "beats_probe"] is True
    assert table.loc["pfeiffer", "beats_probe"] is None
    assert table.loc["lora", "probe_test"] == pytest.approx(0.5)
    shown = A.baseline_display(table.reset_index()).set_index("method")
    assert list(shown["no run below the probe"]) == ["yes", "NO", "–"]
    assert shown.loc["lora", "frozen probe"] == "0.450"
    assert set(shown["class weights"]) == {"balanced"}



def test_a_run_that_kept_its_start_ties_the_probe_and_is_not_below_it(tmp_path):
    """With the head from the probe, a run whose best dev state is step 0 scores exactly the
    probe's selection-dev score: it is not below the probe (it was called below before)."""
    probe = {"frozen_probe": {"selection_dev": {"macro_f1": 0.45, "n": 30}, "dev": {},
                              "test": {"overall": {"macro_f1": 0.5, "n": 30}},
                              "pooling": "mean", "class_weights": "none"}}
    for seed in (1, 2):
        write_run(tmp_path, "lora", seed, metrics={"dev": {"overall": {"macro_f1": 0.45, "n": 30}}},
                  extra_metrics={**probe, "best_step": 0})
    write_run(tmp_path, "fft", 1, metrics={"dev": {"overall": {"macro_f1": 0.45 - 1e-4, "n": 30}}},
              extra_metrics=probe)
    table = A.baseline_table(tmp_path).set_index("method")
    assert bool(table.loc["lora", "beats_probe"]) and table.loc["lora", "kept_start"] == 2
    assert not bool(table.loc["fft", "beats_probe"])

def test_absent_languages_are_named_not_dropped(tmp_path):
    """A language with no score (absent from the tree, or no gold) gets a column that says
    why, and the coverage table lists every split; records before coverage still read."""
    coverage = {"dev": {"en": "labelled", "es": "absent"},
                "test": {"en": "unlabelled", "es": "absent"}}
    for method in ("fft", "lora"):
        write_run(tmp_path, method, 1, metrics={"dev": {"en": {"macro_f1": 0.5, "n": 3},
                                                        "overall": {"macro_f1": 0.5, "n": 3}}},
                  extra_metrics={"coverage": coverage}, langs=("en", "es"))
    results = A.load_results(tmp_path)
    wide = A.f1_wide(A.f1_table(results), coverage=A.coverage_table(results))
    assert list(wide.columns[-3:]) == ["en", "es", "overall"]
    assert list(wide["es"]) == ["absent*", "absent*"] and wide["en"].iloc[0] == "0.500 ± –†"
    shown = A.coverage_display(A.coverage_table(results))
    assert list(shown["split"]) == ["dev", "test"]
    assert list(shown["absent"]) == ["es", "es"]
    assert list(shown["no gold (predicted only)"]) == ["–", "en"]
    assert list(shown["scored"]) == ["en", "–"]
    (tmp_path / "old").mkdir()
    write_run(tmp_path / "old", "fft", 1)
    old = A.load_results(tmp_path / "old")
    assert A.coverage_table(old).empty and old.runs["class_weights"].iloc[0] == "none"


def test_failed_and_unfinished_runs_are_listed_not_used(tmp_path):
    write_run(tmp_path, "fft", 1, metrics={"dev": {"overall": {"macro_f1": 0.5, "n": 3}}})
    failed = tmp_path / "sib200-lora-multilingual-s1-bad"
    failed.mkdir()
    write_record(failed, {"status": "failed", "error": "Traceback\nValueError: out of memory\n",
                          "run_info": {"run_id": failed.name, "dataset": "sib200",
                                       "method": "lora", "scenario": "multilingual",
                                       "model": "tiny", "seed": 1},
                          "meta": {"packages": {}, "git_commit": None, "device": "cpu",
                                   "seed": 1}})
    (tmp_path / "sib200-ia3-running").mkdir()
    (tmp_path / "sib200-ia3-running" / "config.json").write_text("{}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "record.json").write_text("{not json")

    results = A.load_results(tmp_path)
    assert list(results.runs["method"]) == ["fft"]
    reasons = results.failed.set_index("status")["reason"]
    assert set(reasons.index) == {"failed", "no record", "unreadable"}
    assert reasons["failed"] == "ValueError: out of memory"


def test_write_report_without_fft_and_with_one_seed(tmp_path):
    rng = np.random.default_rng(4)
    gold, langs = sib_examples(rng, n_per_lang=10)
    write_run(tmp_path / "results", "lora", 1,
              examples={"test": examples_table(gold, list(rng.choice(SIB200_LABELS, 30)), langs)})
    report = A.write_report(tmp_path / "results", tmp_path / "tables", tmp_path / "figures",
                            n_boot=50)
    assert report.tables["peft_vs_fft"].empty and report.tables["cost_ranges"].empty
    assert report.display["costs"]["FFT / method"].tolist() == ["–"]
    assert "± –" in report.display["f1_by_language"]["overall"].iloc[0]
    assert "(no rows)" in (tmp_path / "tables" / "peft_vs_fft.md").read_text()
    assert all(path.is_file() for paths in report.figures.values() for path in paths)


def test_exports_table_links_each_final_run_to_its_export_command(tmp_path):
    """Final runs only (an untuned run beside them is not compared); merged for a method that
    merges (LoRA) or is the reference (FFT), adapter for one that cannot merge (Pfeiffer);
    each command is one the CLI accepts. Registered in TABLES: the report writes it."""
    import shlex

    from peft_utils.classification.analysis.exports import export_table
    from peft_utils.cli import build_parser

    gold, langs = sib_examples(np.random.default_rng(0), n_per_lang=10)
    examples = {"test": examples_table(gold, gold, langs)}
    final = {"tuning": {"stage": "final"}}
    for method in ("fft", "lora", "pfeiffer"):
        write_run(tmp_path / "results", method, 1, run_info=final, examples=examples)
    write_run(tmp_path / "results", "lora", 2, examples=examples)   # untuned
    numeric, display = export_table(A.load_results(tmp_path / "results"))
    assert numeric.set_index("method")["format"].to_dict() == \
        {"fft": "merged", "lora": "merged", "pfeiffer": "adapter"}
    assert display.equals(numeric) and set(numeric["seed"]) == {1}
    for run in numeric.itertuples():
        argv = shlex.split(run.command)
        assert argv[:4] == ["python", "-m", "peft_utils", "export"]
        args = build_parser("export").parse_args(argv[3:])
        assert Path(args.run_dir) == tmp_path / "results" / run.run_id
        assert (Path(args.out), args.format) == (Path("exports") / run.run_id, run.format)
    report = A.write_report(tmp_path / "results", tmp_path / "tables", tmp_path / "figures",
                            n_boot=20)
    assert report.display["exports"].equals(display)
    written = (tmp_path / "tables" / "exports.md").read_text()
    assert "--format adapter" in written and "Each compared run's export command" in written


def test_write_report_refuses_a_folder_without_complete_runs(tmp_path):
    (tmp_path / "results" / "killed").mkdir(parents=True)
    (tmp_path / "results" / "killed" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no complete run records"):
        A.write_report(tmp_path / "results", tmp_path / "tables", tmp_path / "figures")
    assert len(pd.read_csv(tmp_path / "tables" / "failed_runs.csv")) == 1


# ---- the metric behind the bootstrap ----------------------------------------------
@pytest.mark.parametrize("multilabel,zero_div", [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_weighted_scores_equal_metrics_module(multilabel, zero_div):
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, labels = int(rng.integers(5, 40)), int(rng.integers(2, 6))
        if multilabel:
            gold = (rng.random((n, labels)) < 0.3).astype(np.int64)
            pred = (rng.random((n, labels)) < 0.3).astype(np.int64)
        else:  # some classes absent from gold, prediction or both
            gold, pred = rng.integers(0, labels, n), rng.integers(0, labels + 1, n)
        counts = rng.integers(0, 3, n)
        counts[0] = max(counts[0], 1)
        for weights, rows in ((np.ones(n), np.arange(n)), (counts, np.repeat(np.arange(n),
                                                                               counts))):
            expected = M.scores(gold[rows], pred[rows], multilabel, labels + 1, zero_div)
            for metric in ("macro_f1", "micro_f1"):
                got = A.weighted_scores(weights[None], gold, pred, multilabel, metric, zero_div)
                assert got[0] == pytest.approx(expected[metric], abs=1e-12), (trial, metric)


# ---- bootstrap: answers known in advance -------------------------------------------
def test_bootstrap_identical_predictions_give_a_zero_interval(tmp_path):
    rng = np.random.default_rng(1)
    gold, langs = sib_examples(rng)
    for seed in (1, 2):
        pred = [g if rng.random() < 0.6 else SIB200_LABELS[0] for g in gold]
        for method in ("fft", "lora"):
            write_run(tmp_path, method, seed, examples={"test": examples_table(gold, pred, langs),
                                                        "dev": examples_table(gold, pred, langs)})
    table = A.bootstrap_differences(tmp_path, n_boot=300, by_language=True)
    assert list(table["lang"]) == ["en", "fr", "es", "overall"]
    assert (table["ci_low"] == 0).all() and (table["ci_high"] == 0).all()
    assert table["contains_zero"].all() and (table["verdict"] == "comparable").all()
    assert table["paired_seeds"].all() and table["matches_record"].all()
    assert (table["split"] == "test").all() and table["n_examples"].iloc[-1] == 90


def test_bootstrap_clearly_better_method_excludes_zero(tmp_path):
    rng = np.random.default_rng(2)
    gold, langs = sib_examples(rng)
    for seed in (1, 2, 3):
        noisy = [g if rng.random() < 0.3 else rng.choice(SIB200_LABELS) for g in gold]
        write_run(tmp_path, "fft", seed, examples={"dev": examples_table(gold, noisy, langs)})
        write_run(tmp_path, "lora", seed, examples={"dev": examples_table(gold, gold, langs)})
    row = A.bootstrap_differences(tmp_path, n_boot=500).iloc[0]
    assert row["split"] == "dev"  # no test predictions: dev stands in
    assert row["method_score"] == pytest.approx(1.0)
    assert row["ci_low"] > 0 and not row["contains_zero"] and row["verdict"] == "better"
    assert row["ci_low"] <= row["diff"] <= row["ci_high"] and row["matches_record"]
    # Reproducible for a given seed.
    again = A.bootstrap_differences(tmp_path, n_boot=500).iloc[0]
    assert (again["ci_low"], again["ci_high"]) == (row["ci_low"], row["ci_high"])


def test_bootstrap_multilabel_keeps_empty_gold_rows_of_scored_languages(tmp_path):
    """An empty gold field means "no emotion" in a scored language, "no gold" elsewhere."""
    rng = np.random.default_rng(3)
    langs = ["en"] * 20 + ["de"] * 20
    gold = [",".join(e for e in EMOTIONS if rng.random() < 0.3) for _ in langs]
    for seed in (1, 2):
        for method in ("fft", "lora"):
            pred = [",".join(e for e in EMOTIONS if rng.random() < 0.3) for _ in langs]
            test = examples_table([None] * 20 + gold[20:], pred, langs)  # English: no gold
            write_run(tmp_path, method, seed, dataset="brighter", langs=("en", "de"),
                      zero_shot=(), examples={"test": test,
                                              "dev": examples_table(gold, pred, langs)},
                      baselines={"all_negative": {"macro_f1": 0.0, "n": 40}})
    table = A.bootstrap_differences(tmp_path, n_boot=200, by_language=True)
    assert list(table["lang"]) == ["de", "overall"] and (table["n_examples"] == 20).all()
    assert table["matches_record"].all()
    f1 = A.f1_table(tmp_path).query("method == 'fft'").set_index("lang")
    assert f1.loc["en", "split"] == "dev" and f1.loc["de", "split"] == "test"


# ---- on runs actually trained --------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, sib_root, tiny_model) -> Path:
    """Three methods × two seeds trained on the SIB-200 fixture, plus one failed run."""
    import torch

    from peft_utils.classification.config import RunConfig
    from peft_utils.classification.training import train_and_evaluate

    root = tmp_path_factory.mktemp("analysis") / "results"
    base = dict(dataset="sib200", data_root=str(sib_root), model=str(tiny_model),
                scenario="multilingual", train_langs=["en", "fr"],
                eval_langs=["en", "fr", "es", "el"],   # el: no folder in the fixture tree
                max_length=64, learning_rate=3e-3, batch_size=8, eval_batch_size=16,
                warmup_steps=0, max_steps=10, eval_steps=5, results_dir=str(root))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend on a busy machine
    try:
        for method in ("fft", "lora", "pfeiffer"):
            for seed in (1, 2):
                train_and_evaluate(RunConfig(**base, method=method, seed=seed))
        with pytest.raises(Exception):
            train_and_evaluate(RunConfig(**{**base, "model": str(root / "missing-model")},
                                         method="lora", seed=3))
    finally:
        torch.set_num_threads(threads)
    return root


def test_tables_from_trained_runs(trained):
    results = A.load_results(trained)
    assert len(results.runs) == 6 and len(results.failed) == 1
    f1 = A.f1_table(results)
    assert len(f1) == 3 * 4 and (f1["n_seeds"] == 2).all() and (f1["split"] == "test").all()
    assert set(f1.loc[f1["zero_shot"], "lang"]) == {"es"}
    wide = A.f1_wide(f1, coverage=A.coverage_table(results))
    assert list(wide["method"]) == ["fft", "lora", "pfeiffer"]
    assert list(wide["el"]) == ["absent*"] * 3
    costs = A.cost_table(results).set_index("method")
    assert costs.loc["fft", "ratio_to_fft"] == 1 and costs.loc["lora", "ratio_to_fft"] > 1
    diffs = A.bootstrap_differences(results, n_boot=200)
    assert list(diffs["method"]) == ["lora", "pfeiffer"] and diffs["matches_record"].all()
    assert (diffs["n_examples"] == 63).all() and diffs["paired_seeds"].all()
    baselines = A.baseline_table(results)
    assert len(baselines) == 3 and baselines["probe"].between(0, 1).all()
    assert baselines["beats_probe"].map(lambda v: v in (True, False)).all()


def test_write_report_writes_tables_and_figures(trained, tmp_path):
    report = A.write_report(trained, tmp_path / "tables", tmp_path / "figures", n_boot=100)
    for name in ("f1_by_language", "coverage", "costs", "cost_ranges", "peft_vs_fft",
                 "verdicts", "baselines", "failed_runs", "runs", "provenance"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / "tables" / f"{name}.{ext}").stat().st_size > 0, (name, ext)
    assert len(pd.read_csv(tmp_path / "tables" / "failed_runs.csv")) == 1
    tex = (tmp_path / "tables" / "f1_by_language.tex").read_text()
    assert "$\\pm$" in tex and "±" not in tex
    names = {"verdicts_forest", "f1_by_language-sib200-multilingual", "f1_vs_params", "costs",
             "overall_heatmap", "language_heatmap", "pareto_sib200-multilingual",
             "labels-sib200-multilingual", "confusion-sib200-multilingual"}
    serving = pd.read_csv(tmp_path / "tables" / "inference.csv").set_index("method")
    assert serving.loc["fft", "latency_vs_fft"] == 1.0
    assert serving.loc["lora", "merge"] == "merges"
    assert serving.loc["lora", "merged_latency_vs_fft"] > 0
    assert serving.loc["pfeiffer", "merge"] == "cannot merge"
    assert set(report.figures) == names
    for name in names:
        for ext in ("png", "pdf"):
            assert (tmp_path / "figures" / f"{name}.{ext}").stat().st_size > 1000


def test_analysis_notebook_executes_on_results(trained, tmp_path):
    import papermill as pm

    out = tmp_path / "analysis.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", cwd=str(NOTEBOOK.parent),
                        parameters={"results_dir": str(trained),
                                    "tables_dir": str(tmp_path / "tables"),
                                    "figures_dir": str(tmp_path / "figures"), "bootstrap": 100},
                        progress_bar=False)
    assert len(pd.read_csv(tmp_path / "tables" / "f1_by_language.csv")) == 12
    assert len(pd.read_csv(tmp_path / "tables" / "peft_vs_fft.csv")) == 2
    assert len(pd.read_csv(tmp_path / "tables" / "costs.csv")) == 3
    assert (tmp_path / "figures" / "overall_heatmap.png").is_file()
    assert (tmp_path / "figures" / "f1_vs_params.pdf").is_file()
    executed = json.loads(out.read_text())
    images = [o for c in executed["cells"] for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 4


# ---- the findings section ----------------------------------------------------------
def test_findings_lead_with_verdicts_the_probe_check_and_where_runs_started(tmp_path):
    """FFT and LoRA predict the gold labels, Pfeiffer at random: LoRA is comparable to FFT,
    Pfeiffer worse and below the probe; each run's start (its head from the probe) is shown
    beside its end; the seeds per final are said next to the verdicts."""
    rng = np.random.default_rng(0)
    gold, langs = sib_examples(rng)
    for seed in (1, 2, 3):
        preds = {"fft": gold, "lora": gold,
                 "pfeiffer": list(rng.choice(SIB200_LABELS, len(gold)))}
        for method, pred in preds.items():
            table = examples_table(gold, pred, langs)
            score = 1.0 if method != "pfeiffer" else 0.2
            write_run(tmp_path, method, seed, examples={"dev": table, "test": table},
                      extra_metrics={
                          "best_step": 0 if (method, seed) == ("pfeiffer", 1) else 40,
                          "selection_dev": {"macro_f1": score, "n": 90},
                          "head_init": {"setting": "probe",
                                        "selection_dev": {"macro_f1": 0.6, "n": 90}},
                          "frozen_probe": {"selection_dev": {"macro_f1": 0.6, "n": 90},
                                           "dev": {},
                                           "test": {"overall": {"macro_f1": 0.55, "n": 90}},
                                           "pooling": "mean", "class_weights": "none"}})
    report = A.write_report(tmp_path, tmp_path / "tables", tmp_path / "figures", n_boot=100)
    text = "\n".join(report.findings)
    assert ("of 2 PEFT cells, 1 comparable, 0 better, 1 worse (unadjusted: 1 / 0 / 1); "
            "3 seeds per final") in text
    assert "2 of 3 final cells have no run below the frozen-feature probe" in text
    assert "below it: sib200 · multilingual · pfeiffer" in text
    assert "On test, 2 of 3 beat the probe's test score" in text
    assert "mean dev gain over that start: fft +0.400, lora +0.400, pfeiffer -0.400" in text
    assert ("Training added nothing (the best dev state was the start) in: sib200 · "
            "multilingual · pfeiffer (1 of 3 seeds)") in text
    assert "**Failures**: none." in text
    shown = report.display["findings"].set_index("method")
    assert shown.loc["pfeiffer", "verdict"] == "worse" and shown.loc["lora", "verdict"] == \
        "comparable"
    assert shown.loc["fft", "Δ test vs FFT [CI]"] == "reference"
    assert shown.loc["pfeiffer", "beats probe"] == "**no**"
    assert shown.loc["lora", "dev start → end"] == "0.600 → 1.000"
    assert (tmp_path / "tables" / "findings.md").is_file()


def test_a_tuned_choice_at_the_edge_of_what_was_tried_is_named():
    from peft_utils.classification.analysis.tuning import position

    trials = pd.DataFrame({"learning_rate": [1e-4, 1e-3, 1e-2], "warmup_steps": [0, 4, 8]})
    keys = ["learning_rate", "warmup_steps"]
    assert position(trials, trials.iloc[0], keys) == "bottom edge of learning_rate"
    assert position(trials, trials.iloc[2], keys) == "top edge of learning_rate"
    assert position(trials, trials.iloc[1], keys) == "interior"
    assert position(trials.iloc[:1], trials.iloc[0], keys) == "interior"   # one value: no edge
