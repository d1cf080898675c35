"""Verdicts that hold: an interval over seeds and examples, no verdict from one seed, Holm's
correction over a family, the probability of improvement, the forest plot drawn from its table,
and whether tuning could tell its values apart. Synthetic scores with answers known in advance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_analysis import examples_table, sib_examples, write_run

from peft_utils.classification import analysis as A
from peft_utils.classification.analysis.bootstrap import (ONE_SEED, holm_verdicts,
                                                          improvement_probability,
                                                          seed_differences)
from peft_utils.classification.analysis.figures import forest_figure
from peft_utils.classification.analysis.tuning import separability
from peft_utils.data.labels import SIB200_LABELS


def noisy(rng, gold, accuracy):
    """Predictions right with probability `accuracy`, else a label drawn at random."""
    return [g if rng.random() < accuracy else str(rng.choice(SIB200_LABELS)) for g in gold]


def write_seeds(root, method_preds: dict[str, list[list[str]]], gold, langs, seeds=(1, 2, 3)):
    for method, per_seed in method_preds.items():
        for seed, pred in zip(seeds, per_seed):
            table = examples_table(gold, pred, langs)
            write_run(root, method, seed, examples={"dev": table, "test": table})


def test_a_difference_carried_by_one_seed_is_no_verdict(tmp_path):
    """LoRA beats FFT by a wide margin on seed 1 and predicts as FFT on seeds 2 and 3: the
    examples alone would call it better; the interval over seeds must not."""
    rng = np.random.default_rng(5)
    gold, langs = sib_examples(rng, n_per_lang=60)
    fft = [noisy(rng, gold, 0.4) for _ in range(3)]
    lora = [list(gold), fft[1], fft[2]]
    write_seeds(tmp_path, {"fft": fft, "lora": lora}, gold, langs)
    row = A.bootstrap_differences(tmp_path, n_boot=1000).iloc[0]
    assert row["n_seeds"] == 3 and row["paired_seeds"]
    assert row["diff"] > 0.15                       # a large mean difference ...
    assert row["ci_low"] <= 0 and row["verdict"] == "comparable"   # ... carried by one seed
    a, b = row["method_seed_scores"], row["reference_seed_scores"]
    assert a[1:] == b[1:]   # seeds 2 and 3 tie, seed 1 beats each FFT run
    expected = (3 + sum((x > y) + 0.5 * (x == y) for x in a[1:] for y in b)) / 9
    assert row["prob_improvement"] == pytest.approx(expected)
    # The same gain on every seed is a verdict.
    better = tmp_path / "better"
    write_seeds(better, {"fft": fft, "lora": [list(gold)] * 3}, gold, langs)
    row = A.bootstrap_differences(better, n_boot=1000).iloc[0]
    assert row["verdict"] == "better" and row["ci_low"] > 0
    assert row["prob_improvement"] == 1.0 and row["pi_low"] == 1.0
    assert row["p_value"] == pytest.approx(2 / 1001)   # no replicate at or below 0


def test_the_same_records_in_another_clone_give_the_same_intervals(tmp_path):
    """The resampling stream is keyed by what is compared, not by where the model folder lies:
    two clones' reports of identical runs agree on every interval, p-value and verdict."""
    rng = np.random.default_rng(6)
    gold, langs = sib_examples(rng, n_per_lang=40)
    preds = {m: [noisy(rng, gold, acc) for _ in range(3)] for m, acc in
             (("fft", 0.5), ("lora", 0.6))}
    tables = []
    for clone in ("a", "b"):
        root = tmp_path / clone
        for method, per_seed in preds.items():
            for seed, pred in zip((1, 2, 3), per_seed):
                table = examples_table(gold, pred, langs)
                write_run(root, method, seed, examples={"dev": table, "test": table},
                          run_info={"model": f"/{clone}/models/multilingual-e5-small"})
        tables.append(A.bootstrap_differences(root, n_boot=200).reset_index(drop=True))
    columns = ["diff", "ci_low", "ci_high", "p_value", "prob_improvement", "verdict"]
    pd.testing.assert_frame_equal(tables[0][columns], tables[1][columns])


def test_one_seed_cells_show_a_difference_and_no_verdict(tmp_path):
    rng = np.random.default_rng(6)
    gold, langs = sib_examples(rng)
    write_seeds(tmp_path, {"fft": [noisy(rng, gold, 0.3)], "lora": [list(gold)]}, gold, langs,
                seeds=(1,))
    table = A.bootstrap_differences(tmp_path, n_boot=200, by_language=True)
    assert (table["verdict"] == ONE_SEED).all() and table["p_holm"].isna().all()
    overall = table[table["lang"] == "overall"].iloc[0]
    assert overall["diff"] > 0.5 and not overall["contains_zero"]   # a difference, shown
    assert overall["verdict_unadjusted"] == ONE_SEED
    counts = A.verdict_counts(table).set_index("method")
    assert counts.loc["lora", ONE_SEED] == 1 and counts.loc["lora", "better"] == 0


def family(p_values, langs, diffs=None, seeds=3):
    n = len(p_values)
    diffs = diffs if diffs is not None else [0.1] * n
    return pd.DataFrame({"lang": langs, "p_value": p_values, "diff": diffs,
                         "contains_zero": [p >= 0.05 for p in p_values],
                         "n_seeds": seeds, "n_reference_seeds": seeds})


def test_holm_controls_each_family_and_keeps_the_unadjusted_verdict_beside():
    """Holm by hand: sorted p 0.01, 0.03, 0.04 of three overall cells -> 0.03, 0.06, 0.06;
    the per-language rows are their own family (0.04 alone stays 0.04)."""
    table = family([0.04, 0.01, 0.03, 0.04], ["overall", "overall", "overall", "en"],
                   diffs=[0.1, -0.2, 0.1, 0.1])
    out = holm_verdicts(table, ci=0.95)
    assert out["p_holm"].tolist() == pytest.approx([0.06, 0.03, 0.06, 0.04])
    assert out["verdict"].tolist() == ["comparable", "worse", "comparable", "better"]
    assert out["verdict_unadjusted"].tolist() == ["better", "worse", "better", "better"]
    # Cells with one seed on either side are not part of the family.
    mixed = family([0.01, 0.03], ["overall", "overall"])
    mixed.loc[0, "n_reference_seeds"] = 1
    out = holm_verdicts(mixed, ci=0.95)
    assert out["verdict"].tolist() == [ONE_SEED, "better"]
    assert out["p_holm"].iloc[1] == pytest.approx(0.03)


def test_probability_of_improvement_counts_ties_half():
    assert improvement_probability(np.array([[1.0, 1.0]]), np.array([[1.0, 1.0]]))[0] == 0.5
    assert improvement_probability(np.array([[0.9, 0.1]]), np.array([[0.5, 0.5]]))[0] == 0.5
    assert improvement_probability(np.array([[0.6, 0.7]]), np.array([[0.5, 0.2]]))[0] == 1.0


def test_forest_plot_draws_the_rows_of_its_table(tmp_path):
    rng = np.random.default_rng(7)
    gold, langs = sib_examples(rng)
    fft = [noisy(rng, gold, 0.5) for _ in range(3)]
    preds = {"fft": fft, "lora": [noisy(rng, gold, 0.8) for _ in range(3)],
             "pfeiffer": [noisy(rng, gold, 0.5) for _ in range(3)]}
    write_seeds(tmp_path, preds, gold, langs)
    diffs = A.bootstrap_differences(tmp_path, n_boot=200)
    seeds = seed_differences(diffs)
    assert len(seeds) == 6 and seeds["paired"].all()
    first = seeds[seeds["method"] == diffs["method"].iloc[0]]
    assert first["diff"].mean() == pytest.approx(diffs["diff"].iloc[0])
    fig = forest_figure(diffs, seeds)
    ax = fig.axes[0]
    bars = [c for c in ax.collections if c.get_gid() == "interval"]
    extents = sorted((seg[0][0], seg[1][0]) for bar in bars for seg in bar.get_segments())
    expected = sorted(zip(diffs["ci_low"], diffs["ci_high"]))
    assert np.allclose(extents, expected, rtol=0, atol=1e-12)
    dots = next(c for c in ax.collections if c.get_gid() == "seeds").get_offsets()
    assert sorted(np.asarray(dots)[:, 0]) == pytest.approx(sorted(seeds["diff"]))
    means = sorted(line.get_xdata()[0] for line in ax.lines if line.get_gid() == "mean")
    assert means == pytest.approx(sorted(diffs["diff"]))
    assert any(line.get_xdata()[0] == 0 for line in ax.lines)   # zero marked
    # The report opens its figures with it.
    report = A.write_report(tmp_path, tmp_path / "tables", tmp_path / "figures", n_boot=100)
    assert next(iter(report.figures)) == "verdicts_forest"
    assert (tmp_path / "tables" / "peft_vs_fft_seeds.csv").is_file()


def test_tuning_that_cannot_separate_its_values_is_named():
    trials = pd.DataFrame({"task": "t", "scenario": "multilingual", "method": ["lora"] * 3
                           + ["fft"] * 3, "group": [0, 0, 0, 1, 1, 1],
                           "dev": [0.50, 0.51, 0.52, 0.30, 0.50, 0.70]})
    chosen = pd.DataFrame({"task": "t", "scenario": "multilingual", "method": ["lora", "fft"],
                           "group": [0, 1], "position": "interior"})
    baselines = pd.DataFrame({"task": "t", "scenario": "multilingual", "method": ["lora", "fft"],
                              "dev_std": [0.05, 0.05], "n_seeds": [3, 3]})
    table = separability(chosen, trials, baselines).set_index("method")
    assert table.loc["lora", "separated"] is False or table.loc["lora", "separated"] == False  # noqa: E712
    assert table.loc["fft", "separated"] == True  # noqa: E712
    assert table.loc["fft", "sd_values"] == pytest.approx(0.2)
    one_seed = separability(chosen, trials, baselines.assign(n_seeds=1))
    assert one_seed["separated"].isna().all()
