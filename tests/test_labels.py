"""Per-label scores, per-label differences to FFT, confusions and disagreements, on hand-built
results folders whose per-example predictions are known (tests/test_analysis.py's runs)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from peft_utils.classification.analysis import errors as E
from peft_utils.classification.analysis import labels as L
from peft_utils.data.labels import EMOTIONS, SIB200_LABELS
from test_analysis import examples_table, write_run

LANGS = ("en", "fr", "es")
UNSUPPORTED_SIB = "geography"     # never in the gold of the fixture, sometimes predicted
UNSUPPORTED_EMOTION = "fear"
RARE_SIB = "entertainment"        # 3 gold examples: below MIN_SUPPORT


def _text(lang: str, i: int) -> str:
    return f"{lang} example {i}: " + "a sentence long enough to be shortened " * 5


def _sib_gold(rng: np.random.Generator, n_per_lang: int) -> list[str]:
    common = [l for l in SIB200_LABELS if l not in (UNSUPPORTED_SIB, RARE_SIB)]
    gold = list(rng.choice(common, size=n_per_lang * len(LANGS)))
    gold[:3] = [RARE_SIB] * 3
    return gold


def _noisy(rng: np.random.Generator, gold: list[str], rate: float) -> list[str]:
    return [g if rng.random() > rate else str(rng.choice(SIB200_LABELS)) for g in gold]


def _sets(rng: np.random.Generator, n: int, exclude: str) -> list[str]:
    labels = [l for l in EMOTIONS if l != exclude]
    return [",".join(l for l in labels if rng.random() < 0.3) for _ in range(n)]


def _noisy_sets(rng: np.random.Generator, gold: list[str], rate: float) -> list[str]:
    out = []
    for row in gold:
        have = set(filter(None, row.split(",")))
        flip = {l for l in EMOTIONS if rng.random() < rate}
        out.append(",".join(l for l in EMOTIONS if (l in have) != (l in flip)))
    return out


def build_results(root: Path, seeds=(1, 2, 3), n_per_lang: int = 30,
                  methods=("fft", "lora")) -> Path:
    """SIB-200 (multiclass) and BRIGHTER (multilabel) runs of `methods` × `seeds` with
    per-example predictions carrying a `text` column; each task has a label absent from the
    gold, SIB-200 a label with 3 gold examples."""
    rng = np.random.default_rng(0)
    langs = [lang for lang in LANGS for _ in range(n_per_lang)]
    sib_gold = _sib_gold(rng, n_per_lang)
    emo_gold = _sets(rng, len(langs), UNSUPPORTED_EMOTION)
    texts = [_text(lang, i) for i, lang in enumerate(langs)]
    for method, rate in zip(methods, (0.2, 0.35, 0.5)):
        for seed in seeds:
            sib = examples_table(sib_gold, _noisy(rng, sib_gold, rate), langs)
            write_run(root, method, seed, examples={"test": sib.assign(text=texts)})
            emo = examples_table(emo_gold, _noisy_sets(rng, emo_gold, rate / 2), langs)
            write_run(root, method, seed, dataset="brighter", zero_shot=(),
                      examples={"test": emo.assign(text=texts)})
    return root


@pytest.fixture(scope="module")
def results_root(tmp_path_factory) -> Path:
    return build_results(tmp_path_factory.mktemp("labels") / "results")


def _binary(values: pd.Series, labels: list[str]) -> np.ndarray:
    """Comma-separated label sets -> 0/1 [n, L] (scikit-learn's binarizer)."""
    from sklearn.preprocessing import MultiLabelBinarizer

    sets = [[x for x in v.split(",") if x] for v in values]
    return MultiLabelBinarizer(classes=labels).fit([labels]).transform(sets)


def _read(root: Path, run_id: str) -> pd.DataFrame:
    return pd.read_csv(root / run_id / "predictions" / "test-examples.csv", dtype=str,
                       keep_default_na=False)


# ---- per-label scores equal scikit-learn's --------------------------------------------------
@pytest.mark.parametrize("zero_div", [0.0, 1.0])
def test_label_scores_equal_sklearn_multiclass_with_an_unsupported_label(zero_div):
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 5, 200)            # labels 5 and 6: never gold
    pred = np.where(rng.random(200) < 0.6, gold, rng.integers(0, 7, 200))
    pred[pred == 6] = 0                       # label 6: never predicted either
    names = [f"c{i}" for i in range(7)]
    ours = L.label_scores(gold, pred, names, multilabel=False, zero_div=zero_div)
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=range(7), average=None,
                                                 zero_division=zero_div)
    np.testing.assert_allclose(ours["precision"], p)
    np.testing.assert_allclose(ours["recall"], r)
    np.testing.assert_allclose(ours["f1"], f)
    np.testing.assert_array_equal(ours["support"], s)
    assert ours.loc[5, "support"] == 0 and ours.loc[6, "predicted"] == 0


@pytest.mark.parametrize("zero_div", [0.0, 1.0])
def test_label_scores_equal_sklearn_multilabel_with_an_unsupported_label(zero_div):
    rng = np.random.default_rng(2)
    gold = (rng.random((150, 6)) < 0.3).astype(int)
    gold[:, 2] = 0                            # never gold, sometimes predicted
    pred = np.where(rng.random((150, 6)) < 0.8, gold, 1 - gold)
    pred[:, 4] = 0                            # never predicted
    ours = L.label_scores(gold, pred, list(EMOTIONS), multilabel=True, zero_div=zero_div)
    p, r, f, s = precision_recall_fscore_support(gold, pred, average=None,
                                                 zero_division=zero_div)
    for column, expected in zip(("precision", "recall", "f1", "support"), (p, r, f, s)):
        np.testing.assert_allclose(ours[column], expected, err_msg=column)


@pytest.mark.parametrize("dataset", ["sib200", "brighter"])
def test_per_label_runs_from_a_results_folder_equal_sklearn(results_root, dataset):
    """Each run's per-label scores, read from its examples table, equal scikit-learn's on the
    same file (overall and per language), unsupported labels included."""
    runs = L.per_label_runs(L.conditions(results_root, task=dataset))
    labels = list(SIB200_LABELS if dataset == "sib200" else EMOTIONS)
    assert set(runs["method"]) == {"fft", "lora"} and runs["seed"].nunique() == 3
    for run_id, part in runs.groupby("run_id"):
        table = _read(results_root, run_id)
        for lang in (*LANGS, "overall"):
            rows = table if lang == "overall" else table[table["lang"] == lang]
            if dataset == "sib200":
                gold, pred, kw = rows["gold"], rows["pred"], {"labels": labels}
            else:
                gold, pred, kw = _binary(rows["gold"], labels), _binary(rows["pred"], labels), {}
            p, r, f, s = precision_recall_fscore_support(gold, pred, average=None,
                                                         zero_division=0.0, **kw)
            ours = part[part["lang"] == lang].set_index("label").loc[labels]
            np.testing.assert_allclose(ours["precision"], p)
            np.testing.assert_allclose(ours["recall"], r)
            np.testing.assert_allclose(ours["f1"], f)
            np.testing.assert_array_equal(ours["support"], s)
    unsupported = UNSUPPORTED_SIB if dataset == "sib200" else UNSUPPORTED_EMOTION
    assert (runs.loc[(runs["label"] == unsupported), "support"] == 0).all()


def test_too_few_gold_examples_are_flagged_not_scored(results_root):
    table = L.per_label_scores(results_root)
    sib = table[(table["task"] == "sib200") & (table["lang"] == "overall")]
    rare = sib[sib["label"] == RARE_SIB]
    assert (rare["support"] == 3).all() and rare["too_few"].all()
    assert rare["f1_mean"].isna().all() and rare["precision_sd"].isna().all()
    assert sib[sib["label"] == UNSUPPORTED_SIB]["too_few"].all()
    common = sib[~sib["label"].isin([RARE_SIB, UNSUPPORTED_SIB])]
    assert not common["too_few"].any() and common["f1_mean"].between(0, 1).all()
    assert (common["n_seeds"] == 3).all() and common["f1_sd"].notna().all()
    shown = L.per_label_display(table).set_index(["task", "method", "label"])
    assert shown.loc[("sib200", "fft", RARE_SIB), "f1"] == f"n<{L.MIN_SUPPORT}"
    assert " ± " in shown.loc[("sib200", "fft", "travel"), "f1"]


def test_mean_and_sd_over_seeds_of_the_per_run_scores(results_root):
    runs = L.per_label_runs(results_root, by_language=False)
    table = L.per_label_table(runs)
    one = runs[(runs["task"] == "brighter") & (runs["method"] == "lora")
               & (runs["label"] == "joy")]
    row = table[(table["task"] == "brighter") & (table["method"] == "lora")
                & (table["label"] == "joy")].iloc[0]
    assert row["f1_mean"] == pytest.approx(one["f1"].mean())
    assert row["f1_sd"] == pytest.approx(one["f1"].std(ddof=1))


def test_prior_rate_baseline_and_unlearned_labels():
    """2p/(1+p) is the best expected F1 of a predictor blind to the text (always predict the
    label); a label every method scores at or below it is named."""
    assert L.prior_f1(0.25) == pytest.approx(0.4)
    p = 0.2
    best = max(2 * p * q / (p + q) for q in np.linspace(0.01, 1, 100))
    assert L.prior_f1(p) == pytest.approx(best)
    table = pd.DataFrame({"task": "t", "scenario": "s", "model": "m", "setting": "",
                          "method": ["fft", "lora", "fft", "lora"], "variant": "",
                          "split": "test", "lang": "overall", "label": ["a", "a", "b", "b"],
                          "support": 20, "too_few": False, "prior_f1": 0.3,
                          "f1_mean": [0.25, 0.3, 0.6, 0.2]})
    table["learned"] = table["f1_mean"] > table["prior_f1"]
    unlearned = L.unlearned_labels(table)
    assert list(unlearned["label"]) == ["a"] and unlearned["best_f1"].iloc[0] == 0.3
    assert "no method learns a" in L.label_findings(table, pd.DataFrame())[0]


# ---- per-label differences --------------------------------------------------------------------
def _one_label_better(root: Path, better_seeds: set[int], seeds=(1, 2, 3)) -> Path:
    """FFT predicts `sports` as `health`; LoRA gets `sports` right on `better_seeds` and
    otherwise predicts exactly as FFT."""
    rng = np.random.default_rng(3)
    langs = [lang for lang in LANGS for _ in range(40)]
    gold = list(rng.choice(SIB200_LABELS, size=len(langs)))
    fft = ["health" if g == "sports" else g for g in gold]
    for seed in seeds:
        write_run(root, "fft", seed, examples={"test": examples_table(gold, fft, langs)})
        lora = gold if seed in better_seeds else fft
        write_run(root, "lora", seed, examples={"test": examples_table(gold, lora, langs)})
    return root


def _sports(diffs: pd.DataFrame) -> pd.Series:
    return diffs.set_index("label").loc["sports"]


def test_a_label_better_on_one_seed_only_is_not_a_verdict(tmp_path):
    diffs = L.label_differences(_one_label_better(tmp_path, {2}), n_boot=2000)
    sports = _sports(diffs)
    assert sports["diff"] > 0.2 and sports["ci_low"] <= 0     # one seed: 0 stays in reach
    assert sports["verdict"] == "comparable"
    assert set(diffs["verdict"]) == {"comparable"}


def test_a_label_better_on_every_seed_is_better_after_holm(tmp_path):
    diffs = L.label_differences(_one_label_better(tmp_path, {1, 2, 3}), n_boot=2000)
    sports = _sports(diffs)
    assert sports["verdict"] == "better" and sports["ci_low"] > 0
    assert sports["p_holm"] >= sports["p_value"]
    # the family: every supported label of the condition, corrected together
    assert diffs["p_holm"].notna().all() and len(diffs) == len(SIB200_LABELS)
    assert diffs.set_index("label").loc["politics", "verdict"] == "comparable"
    findings = L.label_findings(L.per_label_scores(tmp_path), diffs)
    assert any("better than FFT: lora on sports" in line for line in findings)
    assert any("health" in line and "better than FFT" in line for line in findings)


def test_one_seed_per_side_gives_no_verdict(tmp_path):
    diffs = L.label_differences(_one_label_better(tmp_path, {1}, seeds=(1,)), n_boot=200)
    assert set(diffs["verdict"]) == {"one seed"} and diffs["p_holm"].isna().all()


def test_too_few_replicates_for_the_family_warn(tmp_path):
    with pytest.warns(UserWarning, match="cannot resolve a family of 7"):
        L.label_differences(_one_label_better(tmp_path, {1, 2, 3}), n_boot=100)
    assert L.min_boot(7) == 280


# ---- confusions and errors ------------------------------------------------------------------
def test_confusion_matrix_is_row_normalised_and_pooled_over_seeds(results_root):
    conds = L.conditions(results_root, task="sib200")
    table = E.confusion_table(conds)
    lora = E.confusion_matrix(table, {"method": "lora"}, "count")
    expected = sum(confusion_matrix(_read(results_root, r)["gold"],
                                    _read(results_root, r)["pred"], labels=list(SIB200_LABELS))
                   for r in conds[0].runs.query("method == 'lora'")["run_id"])
    np.testing.assert_array_equal(lora.to_numpy(), expected)
    shares = E.confusion_matrix(table, {"method": "lora"})
    supported = shares.drop(index=UNSUPPORTED_SIB)
    np.testing.assert_allclose(supported.sum(axis=1), 1.0)
    assert shares.loc[UNSUPPORTED_SIB].isna().all()    # no gold row to normalise
    assert E.confusion_table(L.conditions(results_root, task="brighter")).empty


def test_false_positives_negatives_and_missed_together(results_root):
    conds = L.conditions(results_root, task="brighter")
    errors = E.error_table(conds).set_index(["method", "label"])
    runs = conds[0].runs.query("method == 'fft'")["run_id"]
    fn = np.mean([sum(("joy" in g.split(",")) and ("joy" not in p.split(","))
                      for g, p in zip(t["gold"], t["pred"]))
                  for t in (_read(results_root, r) for r in runs)])
    assert errors.loc[("fft", "joy"), "fn"] == pytest.approx(fn)
    assert errors.loc[("fft", UNSUPPORTED_EMOTION), "fn"] == 0
    together = E.missed_cooccurrence(conds).set_index(["method", "missed", "also_missed"])
    assert together.loc[("fft", "joy", "joy"), "count"] == pytest.approx(fn)
    assert together.loc[("fft", "joy", "joy"), "share"] == 1.0


# ---- disagreements --------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["sib200", "brighter"])
def test_disagreement_sample_comes_from_the_runs_prediction_files(results_root, dataset):
    conds = L.conditions(results_root, task=dataset)
    dis = E.disagreements(conds)
    sample = E.disagreement_sample(dis, n=6, seed=1, width=40)
    assert len(sample) == 6 and (sample["method"] == "lora").all()
    for row in sample.itertuples(index=False):
        mine = _read(results_root, row.run_id).set_index(["lang", "id"]).loc[(row.lang, row.id)]
        fft = _read(results_root, row.reference_run_id).set_index(["lang", "id"]).loc[
            (row.lang, row.id)]
        assert row.run_id.startswith(f"{dataset}-lora-")
        assert row.reference_run_id.startswith(f"{dataset}-fft-")
        assert row.seed == row.reference_seed
        assert (row.pred, row.gold) == (mine["pred"], mine["gold"])
        assert row.reference_pred == fft["pred"] and row.reference_pred != row.pred
        assert row.text == E.shorten(mine["text"], 40) and row.text.endswith("…")
    # how many: every example on which the two files differ, per seed pair
    counts = dis.groupby("seed").size()
    for seed, run_id, _, ref_id in E.seed_pairs(conds[0].runs.query("method == 'lora'"),
                                               conds[0].reference()):
        a, b = _read(results_root, run_id), _read(results_root, ref_id)
        differ = sum(set(x.split(",")) != set(y.split(",")) for x, y in zip(a["pred"], b["pred"]))
        assert counts[seed] == differ
    summary = E.disagreement_summary(dis, conds).iloc[0]
    assert summary["disagree"] == pytest.approx(counts.mean())
    assert summary["method_closer"] + summary["fft_closer"] + summary["neither"] == \
        pytest.approx(summary["disagree"])


def test_disagreement_labels_count_what_changes():
    dis = pd.DataFrame({"task": "t", "scenario": "s", "model": "m", "setting": "",
                        "method": "lora", "variant": "", "seed_pairs": 2,
                        "gold": ["a", "a,b", "c"], "gained": ["a", "", "b"],
                        "lost": ["c", "b", ""]})
    changed = E.disagreement_labels(dis).set_index("label")
    assert changed.loc["a", "gained"] == 0.5 and changed.loc["a", "gained_right"] == 0.5
    assert changed.loc["b", "lost"] == 0.5 and changed.loc["b", "lost_right"] == 0
    assert changed.loc["c", "lost_right"] == 0.5
    assert changed.loc["b", "net_fixed"] == -1.0      # dropped a gold b, added a wrong b


def test_examples_behind_a_confusion_cell(results_root):
    found = E.explore(results_root, "sib200", languages=["en", "fr"], n_boot=200)
    method, gold, pred = found.default_cell()
    assert method == "lora" and gold != pred
    rows = found.examples(method, gold, pred)
    assert len(rows) and set(rows["lang"]) <= {"en", "fr"}
    assert (rows["gold"] == gold).all() and (rows["pred"] == pred).all()
    for row in rows.itertuples(index=False):
        file = _read(results_root, row.run_id).set_index(["lang", "id"])
        assert file.loc[(row.lang, row.id), "pred"] == pred
    emotions = E.explore(results_root, "brighter", n_boot=200)
    method, gold, pred = emotions.default_cell()
    missed = emotions.examples(method, gold, E.NONE)
    assert all(gold in g.split(",") and gold not in p.split(",")
               for g, p in zip(missed["gold"], missed["pred"]))


# ---- written for the report ---------------------------------------------------------------
def test_write_label_outputs_writes_tables_and_figures(results_root, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = E.write_label_outputs(results_root, tmp_path / "tables", tmp_path / "figures",
                                       n_boot=200)
    for name in ("labels", "labels_by_language", "labels_vs_fft", "labels_unlearned",
                 "confusion", "label_errors", "missed_together", "disagreements",
                 "disagreement_labels", "disagreement_sample"):
        for ext in ("csv", "md", "tex"):
            assert (tmp_path / "tables" / f"{name}.{ext}").is_file(), (name, ext)
    assert {"labels-sib200-multilingual", "labels-brighter-multilingual",
            "confusion-sib200-multilingual", "missed_together-brighter-multilingual"} \
        == set(report.figures)
    for paths in report.figures.values():
        assert all(p.stat().st_size > 1000 for p in paths)
    sample = pd.read_csv(tmp_path / "tables" / "disagreement_sample.csv")
    assert sample["text"].str.contains("example").all()
    assert len(report.findings) >= 2 and "sib200 · multilingual" in report.findings[-2]
    assert "n<5" in (tmp_path / "tables" / "labels.md").read_text()


def test_a_multilabel_task_alone_has_no_confusion_matrix(results_root, tmp_path):
    """A results folder with no multiclass task (a multilabel table of one's own) still gets
    its per-label outputs; the confusion table stays empty and draws no figure."""
    only = tmp_path / "results"
    only.mkdir()
    for run in results_root.glob("brighter-*"):
        (only / run.name).symlink_to(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = E.write_label_outputs(only, tmp_path / "tables", tmp_path / "figures",
                                       n_boot=200)
    assert report.tables["confusion"].empty
    assert set(report.figures) == {"labels-brighter-multilingual",
                                   "missed_together-brighter-multilingual"}
