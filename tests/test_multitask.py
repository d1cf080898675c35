"""Several tasks from one base (classification.multitask): finished runs of different tasks
(SIB-200 multiclass, BRIGHTER multilabel) loaded on one shared base predict, task by task and
all tasks in one pass, what each run predicts on its own."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from peft_utils.classification.config import RunConfig
from peft_utils.classification.multitask import load_tasks, shareable
from peft_utils.classification.predict import Predictor, load_predictor, predict
from peft_utils.classification.run_data import load_frames
from peft_utils.cli import main
from peft_utils.core.config import ConfigError
from peft_utils.core.modeling import unique_parameters
from test_predict import finished

TOLERANCE = 1e-5


def tiny_config(dataset: str, root, model, method: str, results, **kw) -> RunConfig:
    langs = ["en", "de"] if dataset == "brighter" else ["en", "fr"]
    settings = dict(dataset=dataset, data_root=str(root), model=str(model), method=method,
                    train_langs=langs, eval_langs=langs, max_length=32, batch_size=8,
                    eval_batch_size=16, learning_rate=1e-2, warmup_steps=0, max_steps=4,
                    eval_steps=2, head_learning_rate=0.1, seed=3, pooling="mean",
                    reduction_factor=4, results_dir=str(results))
    return RunConfig(**{**settings, **kw})


@pytest.fixture(scope="module", params=["lora", "pfeiffer"])
def runs(request, tmp_path_factory, sib_root, brighter_root, tiny_model):
    """A SIB-200 and a BRIGHTER run of one method on the tiny base."""
    results = tmp_path_factory.mktemp("multitask") / "results"
    roots = {"sib200": sib_root, "brighter": brighter_root}
    return [finished(tiny_config(name, root, tiny_model, request.param, results))
            for name, root in roots.items()]


def texts_of(folder) -> list[str]:
    config = RunConfig.from_dict(json.loads((folder / "config.json").read_text()))
    return list(load_frames(config)["test"]["text"])


def recorded(folder) -> list[str]:
    return pd.read_csv(folder / "predictions" / "test-examples.csv",
                       keep_default_na=False)["pred"].tolist()


def test_each_task_predicts_what_its_run_does(runs):
    shared = load_tasks(runs, device="cpu")
    for folder, task in zip(runs, shared.tasks.values()):
        alone = load_predictor(folder)
        texts = texts_of(folder)
        rows, _ = task.settings.rows(texts, shared.tokenizer)
        np.testing.assert_allclose(shared.logits(task.name, rows), alone.logits(rows),
                                   atol=TOLERANCE, rtol=0)
        served = Predictor(task.settings, shared.tokenizer,
                           lambda r, name=task.name: shared.logits(name, r))
        assert predict(served, texts)[0] == recorded(folder)


def test_every_task_in_one_pass_matches_one_at_a_time(runs):
    """adapters: Parallel composition; peft: a mixed batch. The same run under a second name
    is a third task."""
    shared = load_tasks([*runs, runs[0]], names=["sib", "brighter", "sib_again"], device="cpu")
    texts = texts_of(runs[0])
    rows, _ = shared.tasks["sib"].settings.rows(texts, shared.tokenizer)
    together = shared.every_task_logits(rows)
    assert list(together) == ["sib", "brighter", "sib_again"]
    for name, logits in together.items():
        np.testing.assert_allclose(logits, shared.logits(name, rows), atol=TOLERANCE, rtol=0)
    # Not bit-identical: the two copies sit at different rows of one batched pass, and the
    # CPU kernels may block the rows differently (4.8e-7 seen on 2 busy cores).
    np.testing.assert_allclose(together["sib"], together["sib_again"], atol=TOLERANCE, rtol=0)


def test_each_task_reads_its_own_adapter(runs):
    """The same run under two names, one adapter's weights zeroed: the tasks' logits differ
    (the adapters are not a no-op the comparisons above would miss)."""
    shared = load_tasks([runs[0], runs[0]], names=["kept", "zeroed"], device="cpu")
    with torch.no_grad():
        for name, param in shared.model.named_parameters():
            if "zeroed" in name.split("."):
                param.zero_()
    rows, _ = shared.tasks["kept"].settings.rows(texts_of(runs[0]), shared.tokenizer)
    both = shared.every_task_logits(rows)
    assert np.abs(both["kept"] - both["zeroed"]).max() > 1e-3
    np.testing.assert_allclose(both["zeroed"], shared.logits("zeroed", rows), atol=TOLERANCE)


def test_the_tasks_share_one_copy_of_the_base(runs):
    """The shared model's base parameters are one encoder's (the run's backbone); the rest
    are each task's adapter, as many as its run trained besides its head."""
    shared = load_tasks([*runs, runs[0]], names=["a1", "b1", "a2"], device="cpu")
    costs = [json.loads((f / "record.json").read_text())["costs"] for f in runs]
    per_task = {n: 0 for n in shared.tasks}
    base = 0
    for name, param in unique_parameters(shared.model):
        owner = next((n for n in shared.tasks if n in name.split(".")), None)
        if owner is None:
            base += param.numel()
        else:
            per_task[owner] += param.numel()
    assert base == costs[0]["backbone"] == costs[1]["backbone"]
    assert list(per_task.values()) == [costs[0]["method_params"], costs[1]["method_params"],
                                       costs[0]["method_params"]]


def test_predict_tasks_writes_every_task_s_predictions(runs, tmp_path):
    """`python -m peft_utils predict-tasks RUN... --input T`: the input's columns, then each
    task's predictions, as `predict` gives each run's."""
    table = tmp_path / "in.csv"
    pd.DataFrame({"doc": range(len(texts_of(runs[0]))), "text": texts_of(runs[0])}).to_csv(
        table, index=False)
    out = tmp_path / "out.csv"
    assert main(["predict-tasks", *map(str, runs), "--names", "sib", "brighter",
                 "--input", str(table), "--out", str(out)]) == 0
    both = pd.read_csv(out, keep_default_na=False)
    assert list(both.columns[:2]) == ["doc", "text"]
    assert both["sib_pred"].tolist() == recorded(runs[0])
    alone = tmp_path / "brighter.csv"
    assert main(["predict", str(runs[1]), "--input", str(table), "--out", str(alone)]) == 0
    expected = pd.read_csv(alone, keep_default_na=False)
    assert both["brighter_pred"].tolist() == expected["pred"].tolist()
    scores = [c for c in expected if c.startswith("score_")]
    np.testing.assert_allclose(both[[f"brighter_{c}" for c in scores]], expected[scores],
                               atol=1e-5)


@pytest.mark.parametrize("methods_, change, problem", [
    (("lora", "fft"), {}, "trains or rewrites the base"),
    (("lora", "pfeiffer"), {}, "mix adapter libraries"),
    (("lora", "lora"), {"pooling": "cls"}, "pooling differs"),
    (("lora", "prompt"), {}, "virtual tokens"),
    (("pfeiffer", "prefix"), {}, "eager attention"),
])
def test_runs_that_cannot_share_a_base_are_refused(methods_, change, problem):
    configs = [RunConfig(dataset="sib200", model="m", method=methods_[0], pooling="mean"),
               RunConfig(dataset="brighter", model="m", method=methods_[1],
                         **{"pooling": "mean", **change})]
    with pytest.raises(ConfigError, match=problem):
        shareable(configs, ["a", "b"])


def test_task_names_must_be_distinct_and_plain():
    configs = [RunConfig(dataset="sib200", model="m", method="lora")] * 2
    for names in (["a", "a"], ["a.b", "c"], ["0", "c"], ["a"]):
        with pytest.raises(ConfigError, match="task name"):
            shareable(configs, names)
