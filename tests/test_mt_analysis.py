"""The MT analysis on hand-made records with known scores: differences to FFT, close vs
distant pairs, data-size curves, FFT-small vs PEFT-large, the inference table and Pareto
figures, failed runs listed, files written."""
from __future__ import annotations

import itertools

import pytest

from peft_utils.core.runs import write_failure, write_run_record
from peft_utils.mt.analysis import (close_vs_distant, inference_table, load_mt_results,
                                    model_size_table, score_table, vs_fft, write_mt_report)
from peft_utils.mt.config import MTConfig

SIZES = {"small": 100_000, "large": 200_000}


def bleu_of(model: str, tgt: str, method: str, budget, n: int, seed: int) -> float:
    """A made-up score: FFT 30 (+5 on the large model), PEFT loses 2 on close and 6 on distant
    pairs, more data +4, seeds ±0.5."""
    score = 30 + (5 if model == "large" else 0) + (4 if n == 1000 else 0)
    if method != "fft":
        score -= 2 if tgt == "de" else 6
    return score + (0.5 if seed == 1 else -0.5)


def timing(ms: float) -> dict:
    return {"examples_per_s": 1000 / ms, "latency_ms_median": ms, "latency_ms_p95": 2 * ms}


def inference_block(method: str, base: int, trainable: int) -> dict:
    """FFT 10 ms per sentence; LoRA 12 ms as trained, 10 ms merged."""
    lora = method != "fft"
    return {"rows": 50, "batch_size": 16, "merge": "merges" if lora else "nothing to merge",
            "unmerged": timing(12.0 if lora else 10.0), "merged": timing(10.0) if lora else None,
            "merge_max_diff": 0.0 if lora else None, "serve_bytes": 4 * trainable,
            "full_model_bytes": 4 * base}


def write_run(root, model, tgt, method, budget, n, seed):
    config = MTConfig(model=f"/models/{model}", tgt_lang=tgt, method=method, budget=budget,
                      train_size=None if n == 1000 else n, seed=seed, results_dir=str(root))
    base = SIZES[model]
    trainable = base if method == "fft" else int(base * budget)
    bleu = bleu_of(model, tgt, method, budget, n, seed)
    scores = {"bleu": bleu, "chrf": 2 * bleu, "n": 50}
    folder = root / config.run_id
    folder.mkdir(parents=True)
    write_run_record(folder, config, {
        "status": "complete", "error": None, "run_info": config.run_info(),
        "budget": {"method": method, "target": budget, "knob": None if method == "fft"
                   else "lora_r", "value": None if method == "fft" else 4,
                   "trainable": trainable, "base": base, "fraction": trainable / base,
                   "relative_error": None if method == "fft" else 0.0},
        "metrics": {"main_metric": "bleu", "dev": {tgt: scores, "overall": scores},
                    "test": {tgt: scores, "overall": scores}, "signatures": {}},
        "costs": {"trainable": trainable, "total": base + (0 if method == "fft" else trainable),
                  "base": base, "percent_trainable": 1.0, "fraction_of_base": trainable / base,
                  "train_wall_s": 1.0, "train_samples_per_s": 1.0, "train_tokens_per_s": 1.0,
                  "peak_memory_mb": 1.0, "peak_memory_kind": "cpu_peak_rss",
                  "checkpoint_mb": 0.0, "train_sentences": n},
        "meta": {"packages": {}, "git_commit": None, "device": "cpu", "seed": seed},
        # older records have no inference block: the large model's small-data runs here
        **({} if (model, n) == ("large", 100) else
           {"inference": inference_block(method, base, trainable)})})


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results-mt")
    settings = [("fft", None), ("lora", 0.01), ("lora", 0.1)]
    for model, tgt, (method, budget), n, seed in itertools.product(
            SIZES, ("de", "ka"), settings, (100, 1000), (1, 2)):
        write_run(root, model, tgt, method, budget, n, seed)
    write_failure(MTConfig(tgt_lang="fr", method="prefix", budget=0.1, results_dir=str(root)),
                  "Traceback ...\nBudgetError: budget 10.00% is not reachable")
    return root


def test_scores_and_differences_to_fft(results):
    loaded = load_mt_results(results)
    assert len(loaded.runs) == 2 * 2 * 3 * 2 * 2
    assert loaded.failed["reason"].str.contains("not reachable").any()
    scores = score_table(loaded)
    row = scores[(scores["model"] == "small") & (scores["pair"] == "en-ka") &
                 (scores["method"] == "lora") & (scores["budget"] == 0.1) &
                 (scores["train_sentences"] == 100)].iloc[0]
    assert row["test_bleu_mean"] == pytest.approx(24.0) and row["n_seeds"] == 2
    assert row["test_bleu_std"] == pytest.approx(0.7071, abs=1e-3)
    deltas = vs_fft(scores)
    assert set(deltas.loc[deltas["pair"] == "en-de", "delta_bleu"].round(6)) == {-2.0}
    assert set(deltas.loc[deltas["pair"] == "en-ka", "delta_chrf"].round(6)) == {-12.0}
    groups = close_vs_distant(deltas).set_index(["model", "train_sentences", "method",
                                                 "budget", "group"])
    assert groups.loc[("small", 100, "lora", 0.01, "distant"), "delta_bleu"] == pytest.approx(-6)
    assert groups.loc[("small", 100, "lora", 0.01, "close"), "pairs"] == 1


def test_fft_on_the_smaller_model_beside_peft_on_the_larger(results):
    loaded = load_mt_results(results)
    table = model_size_table(score_table(loaded), loaded.runs)
    assert set(table["small_model"]) == {"small"} and set(table["large_model"]) == {"large"}
    de = table[(table["pair"] == "en-de") & (table["train_sentences"] == 1000)]
    assert len(de) == 2 and (de["delta_bleu"].round(6) == 3.0).all()   # +5 model, -2 PEFT


def test_inference_table_ratios_to_fft_and_storage(results):
    table = inference_table(load_mt_results(results), k_tasks=4)
    assert set(zip(table["model"], table["train_sentences"])) == {
        ("small", 100), ("small", 1000), ("large", 1000)}   # older records left out
    lora = table[(table["method"] == "lora") & (table["budget"] == 0.1)].iloc[0]
    assert lora["latency_vs_fft"] == pytest.approx(1.2)
    assert lora["merged_latency_vs_fft"] == pytest.approx(1.0)
    assert lora["throughput_vs_fft"] == pytest.approx(10 / 12)
    base = SIZES[lora["model"]] * 4
    assert lora["k_tasks_gb"] == pytest.approx((base + 4 * 0.1 * base) / 1e9)
    fft = table[table["method"] == "fft"].iloc[0]
    assert fft["k_tasks_vs_fft"] == pytest.approx(1.0) and fft["n_seeds"] == 2


def test_report_writes_tables_and_figures(results, tmp_path):
    report = write_mt_report(results, tmp_path / "tables", tmp_path / "figures")
    for name in ("mt_scores", "mt_budgets", "mt_vs_fft", "mt_close_vs_distant",
                 "mt_data_size", "mt_model_size", "mt_inference", "mt_failed_runs"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / "tables" / f"{name}.{ext}").stat().st_size > 0
    names = set(report.figures)
    assert {"mt_data_size-small", "mt_data_size-large", "mt_model_size",
            "mt_pareto-small-n100", "mt_pareto-large-n1000"} <= names
    assert any(n.startswith("mt_close_vs_distant-large") for n in names)
    assert all(p.stat().st_size > 0 for paths in report.figures.values() for p in paths)
    assert "30.0 ± 0.7" in (tmp_path / "tables" / "mt_scores.md").read_text()
