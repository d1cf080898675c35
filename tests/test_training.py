"""Every method trains a tiny XLM-R on fixture data: loss falls, only the intended parameters
move, the head trains, a saved run reloads to identical predictions, the record validates."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from peft_utils.classification.config import RunConfig
from peft_utils.core.methods import PAPER_METHODS
from peft_utils.classification.models import build_model
from peft_utils.classification.training import encode, load_run, predict_logits, train_and_evaluate
from peft_utils.core.modeling import seed_everything
from peft_utils.core.runs import read_record, validate_record

# What each method may change besides the head (parameter-name patterns).
MOVES = {
    "lora": r"lora_[AB]",
    "ia3": r"ia3_l",
    "pfeiffer": r"adapters\.task\.",
    "houlsby": r"adapters\.task\.",
    "prefix": r"prefix_tunings?\.",
    "bitfit": r"\.bias$",
}
HEAD = r"classifier\."


def tiny_config(tmp_path, root, model, **kw) -> RunConfig:
    base = dict(dataset="sib200", data_root=str(root), model=str(model),
                train_langs=["en", "fr"], eval_langs=["en", "fr", "es"], max_length=64,
                learning_rate=3e-3, batch_size=8, eval_batch_size=16, warmup_steps=0,
                num_epochs=1, max_steps=40, eval_steps=20, seed=7,
                results_dir=str(tmp_path / "results"))
    return RunConfig(**{**base, **kw})


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_method_trains_only_its_parameters(method, tmp_path, sib_root, tiny_model):
    config = tiny_config(tmp_path, sib_root, tiny_model, method=method,
                         learning_rate=1e-2)
    seed_everything(config.seed)
    initial = {n: p.detach().clone() for n, p in build_model(config).model.named_parameters()}
    result = train_and_evaluate(config)

    losses = [e["loss"] for e in result.metrics["learning_curve"]]
    # Quarters of the curve, not a few steps: single-batch losses are noisy.
    quarter = len(losses) // 4
    assert len(losses) >= 20 and \
        np.mean(losses[-quarter:]) < np.mean(losses[:quarter]) - 0.1, losses

    trained = dict(result.model.named_parameters())
    assert set(trained) == set(initial)
    moved = {n for n, p in trained.items() if not torch.equal(p.detach().cpu(), initial[n])}
    frozen_moved = [n for n in moved if not trained[n].requires_grad]
    assert frozen_moved == []  # frozen base weights are bit-for-bit unchanged
    assert any(re.search(HEAD, n) and ".original_module." not in n for n in moved)  # head trains
    if method == "fft":
        backbone = [n for n in trained if n.startswith("roberta.encoder")]
        assert set(backbone) <= moved
    else:
        pattern = re.compile(f"{MOVES[method]}|{HEAD}")
        assert all(pattern.search(n) for n in moved), sorted(moved - {
            n for n in moved if pattern.search(n)})[:5]
        assert any(re.search(MOVES[method], n) for n in moved)
        report = result.record["costs"]
        # Prefix tuning's reparametrisation MLP outweighs a 32-wide model; not at scale.
        assert report["trainable"] < report["total"] / (1 if method == "prefix" else 3)

    record = read_record(result.run_dir)
    validate_record(record)
    assert record["status"] == "complete" and record["run_info"]["run_id"] == config.run_id
    assert set(record["metrics"]["dev"]) == {"en", "fr", "es", "overall"}
    assert record["run_info"]["zero_shot_langs"] == ["es"]
    assert record["costs"]["checkpoint_mb"] > 0 and record["costs"]["train_wall_s"] > 0


@pytest.mark.parametrize("method, pooling", [("lora", "cls"), ("pfeiffer", "mean"),
                                             ("fft", "cls")])
def test_saved_run_reloads_to_identical_predictions(method, pooling, tmp_path, sib_root,
                                                    tiny_model):
    config = tiny_config(tmp_path, sib_root, tiny_model, method=method, max_steps=10,
                         eval_steps=5, pooling=pooling)
    result = train_and_evaluate(config)
    reloaded_config, built, tokenizer = load_run(result.run_dir)
    assert reloaded_config == config
    from peft_utils.classification.run_data import load_frames

    dev = encode(load_frames(config)["dev"], tokenizer, config, built.labels)
    before = predict_logits(result.model, dev, tokenizer, 16, config)
    after = predict_logits(built.model, dev, tokenizer, 16, config)
    np.testing.assert_array_equal(before.argmax(-1), after.argmax(-1))
    np.testing.assert_allclose(before, after, rtol=0, atol=1e-6)
    # The saved predictions are those of the restored model.
    lines = (result.run_dir / "predictions" / "dev-en.txt").read_text().splitlines()
    en = (dev.frame["lang"] == "en").to_numpy()
    assert [l.split("\t")[1] for l in lines] == [built.labels[i] for i in after.argmax(-1)[en]]


def test_best_dev_state_is_restored(tmp_path, sib_root, tiny_model):
    config = tiny_config(tmp_path, sib_root, tiny_model, method="lora", max_steps=30,
                         eval_steps=10)
    result = train_and_evaluate(config)
    record = result.record
    curve = record["metrics"]["dev_curve"]
    assert len(curve) == 3
    best = max(curve, key=lambda e: e["dev"])
    assert record["metrics"]["best_step"] == best["step"]
    # The restored model's dev score on the training languages is the best one seen.
    import pandas as pd
    from sklearn.metrics import f1_score

    examples = pd.read_csv(result.run_dir / "predictions" / "dev-examples.csv")
    chosen = examples[examples["lang"].isin(["en", "fr"])]
    assert f1_score(chosen["gold"], chosen["pred"], average="macro") == pytest.approx(best["dev"])


def test_the_final_dev_pass_predicts_only_rows_the_kept_evaluation_did_not(
        tmp_path, sib_root, tiny_model, monkeypatch):
    """The kept state's evaluation during training predicted the selection-dev rows (the
    training languages' dev): the final dev pass predicts only the zero-shot language's rows
    and takes the others from that evaluation, whose numbers are those of a full pass."""
    from peft_utils.classification import training as T

    config = tiny_config(tmp_path, sib_root, tiny_model, method="lora", max_steps=20,
                         eval_steps=10)
    prep = T._prepare(config)
    model = T._fit(config, tmp_path / "run", prep).trainer.model
    dev = prep.splits["dev"]
    known = prep.selection[dev.example_index]
    assert prep.kept_selection_logits is not None and 0 < known.sum() < len(dev.rows)
    full = predict_logits(model, dev, prep.tokenizer, config.eval_batch_size, config)
    np.testing.assert_allclose(prep.kept_selection_logits, full[known], rtol=0, atol=1e-6)

    predicted = []
    stock = T.predict_logits
    monkeypatch.setattr(T, "predict_logits", lambda model, split, *a: predicted.append(
        len(split.rows)) or stock(model, split, *a))
    # The other rows are batched among themselves: other padding, logits equal to ~1e-6.
    np.testing.assert_allclose(T._predict(config, prep, model, "dev"), full, rtol=0, atol=1e-5)
    assert predicted == [int((~known).sum())]
    T._predict(config, prep, model, "test")
    assert predicted[1] == len(prep.splits["test"].rows)   # test has no earlier pass


def test_a_kept_start_or_a_restored_best_has_no_earlier_outputs():
    """Step 0 scored beforehand and a best state restored from a checkpoint had no pass the
    final evaluation could reuse."""
    from peft_utils.core.trainer import BestDevState

    class State:
        global_step, epoch = 10, 1.0

    last = {"outputs": "pass at step 10"}
    best = BestDevState(outputs=lambda: last["outputs"])
    model = torch.nn.Linear(2, 2)
    best.on_evaluate(None, State, None, model=model, metrics={"eval_main": 0.5})
    assert best.best_outputs == "pass at step 10"
    best.record_start(0.9, model)
    assert best.best_outputs is None
    best.on_evaluate(None, State, None, model=model, metrics={"eval_main": 0.4})   # worse
    assert best.best_outputs is None


def test_early_stopping_stops_after_patience(tmp_path, sib_root, tiny_model):
    config = tiny_config(tmp_path, sib_root, tiny_model, method="lora", learning_rate=1e-9,
                         max_steps=60, eval_steps=5, early_stopping_patience=2)
    record = train_and_evaluate(config).record
    assert len(record["metrics"]["dev_curve"]) == 3  # best at the first, two worse-or-equal
    assert record["costs"]["train_steps"] == 15


@pytest.mark.parametrize("threshold", [0.4, "tune"])
def test_multilabel_threshold_recorded(threshold, tmp_path, brighter_root, tiny_model):
    config = RunConfig(dataset="brighter", data_root=str(brighter_root), model=str(tiny_model),
                       method="lora", train_langs=["en", "de"], eval_langs=["en", "de", "ru"],
                       max_length=64, learning_rate=3e-3, batch_size=8, warmup_steps=0,
                       max_steps=20, eval_steps=10, threshold=threshold,
                       results_dir=str(tmp_path / "results"))
    record = train_and_evaluate(config).record
    metrics = record["metrics"]
    assert metrics["threshold_mode"] == ("tune" if threshold == "tune" else "fixed")
    if threshold == "tune":
        assert 0 < metrics["threshold"] < 1
    else:
        assert metrics["threshold"] == 0.4
    assert metrics["main_metric"] == "macro_f1"
    assert set(metrics["baselines"]) == {"all_negative", "all_positive", "frequency"}
    # Learning is judged on the training languages' dev rows, the baselines on the same rows.
    selection = metrics["selection_dev"]
    assert selection["langs"] == ["de", "en"] and selection["n"] == 40
    assert {b["n"] for b in metrics["baselines"].values()} == {40}
    # The English test split has no labels upstream: predicted, not scored.
    assert "en" not in metrics["test"] and "de" in metrics["test"]
    assert (record and (next(iter(metrics["test"].values()))["n"] == 20))


def test_semeval_subtask3_predictions_in_official_format(tmp_path, semeval_root, tiny_model):
    config = RunConfig(dataset="semeval2023", subtask=3, data_root=str(semeval_root),
                       model=str(tiny_model), method="lora", train_langs=["en", "de"],
                       eval_langs=["en", "de", "es"], max_length=64, learning_rate=3e-3,
                       batch_size=8, warmup_steps=0, max_steps=6, eval_steps=3, threshold=0.3,
                       results_dir=str(tmp_path / "results"))
    result = train_and_evaluate(config)
    assert result.metrics["main_metric"] == "micro_f1"
    test_es = (result.run_dir / "predictions" / "test-es.txt").read_text().splitlines()
    assert test_es and all(re.fullmatch(r"\d+\t\d+\t[\w,-]*", line) for line in test_es)
    assert "es" not in result.metrics["test"]  # unlabelled test split: predictions only


def test_chunked_long_texts_pool_to_one_prediction_per_article(tmp_path, semeval_root, tiny_model):
    config = RunConfig(dataset="semeval2023", subtask=1, data_root=str(semeval_root),
                       model=str(tiny_model), method="lora", train_langs=["en"],
                       eval_langs=["en", "de"], max_length=16, long_text="chunks",
                       chunk_stride=4, learning_rate=3e-3, batch_size=8, warmup_steps=0,
                       max_steps=4, eval_steps=2, results_dir=str(tmp_path / "results"))
    result = train_and_evaluate(config)
    costs = result.record["costs"]
    assert costs["train_rows"] > costs["train_examples"]  # articles split into windows
    dev_en = (result.run_dir / "predictions" / "dev-en.txt").read_text().splitlines()
    assert len(dev_en) == 12  # one line per article


def test_failed_run_writes_failed_record(tmp_path, sib_root):
    config = RunConfig(dataset="sib200", data_root=str(sib_root), model=str(tmp_path / "nope"),
                       method="lora", train_langs=["en"], results_dir=str(tmp_path / "results"), max_steps=1)
    with pytest.raises(Exception):
        train_and_evaluate(config)
    record = json.loads((tmp_path / "results" / config.run_id / "record.json").read_text())
    assert record["status"] == "failed" and "nope" in record["error"]


def test_subsets_differ_per_language_but_translations_follow_english(sib_root):
    from peft_utils.classification.run_data import load_frames

    def train_ids(scenario):
        config = RunConfig(dataset="sib200", data_root=str(sib_root), scenario=scenario,
                           train_langs=["en", "fr", "de"], eval_langs=["en"],
                           max_train_samples=10)
        frame = load_frames(config)["train"]
        assert frame.groupby("lang").size().to_dict() == {"de": 10, "en": 10, "fr": 10}
        return {lang: set(part["id"]) for lang, part in frame.groupby("lang")}

    native = train_ids("multilingual")  # SIB-200 is parallel: subsets must not coincide
    assert native["en"] != native["fr"] and native["en"] != native["de"]
    translated = train_ids("en+translations")
    assert translated["en"] == translated["fr"] == translated["de"] == native["en"]
