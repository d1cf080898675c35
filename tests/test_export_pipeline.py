"""A merged export of a run whose head reads the mean of the token states (`pooling: mean`)
works through transformers' `pipeline("text-classification", model=OUT,
trust_remote_code=True)` alone, in a fresh process that cannot import this project: the
folder ships the pooling as model code (config.json's `auto_map`), and the pipeline's labels
and scores are the run's own (`predict` on the run folder, and the recorded test predictions).
Without trust_remote_code the same folder loads as the plain class, which reads the first
token: the code is what makes the difference. Multilabel: `function_to_apply="sigmoid"`,
`top_k=None` give the run's per-label scores, its threshold (metadata) its labels."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures_data import (EMOTION_CUES, FILLER, FRAME_CUES, GENRE_CUES, SIB200_CUES,
                           TECHNIQUE_CUES)
from peft_utils.classification.config import RunConfig
from peft_utils.classification.export import MODELING_FILE, export_run
from peft_utils.classification.predict import load_predictor, predict
from peft_utils.classification.run_data import load_frames
from peft_utils.classification.training import train_and_evaluate
from peft_utils.core.export import read_metadata
from test_export import in_fresh_process

SCORE_TOLERANCE = 1e-5   # softmax / sigmoid scores, fp32 on CPU, differently padded batches

# argv: folder, a JSON file of texts; prints the pipeline's outputs with and without the code.
PIPELINE = """
import json, sys
from transformers import pipeline
folder, texts = sys.argv[1], json.load(open(sys.argv[2]))
meta = json.load(open(folder + "/peft_utils_export.json"))
extra = {"function_to_apply": "sigmoid"} if meta["settings"]["multilabel"] else {}
remote = pipeline("text-classification", model=folder, truncation=True, trust_remote_code=True)
plain = pipeline("text-classification", model=folder, truncation=True)
out = {"ranked": remote(texts, top_k=None, **extra),
       "batched": remote(texts, top_k=None, batch_size=8, **extra),
       "top": [p["label"] for p in remote(texts)],
       "plain": plain(texts, top_k=None, **extra),
       "class": type(remote.model).__name__, "plain_class": type(plain.model).__name__,
       "modules": sorted(sys.modules)}
print(json.dumps(out))
"""


def tiny_xlmr_or_bert(tmp_path_factory, tiny_model, architecture: str):
    if architecture == "xlm-roberta":
        return tiny_model
    from peft_utils.classification.testing import make_tiny_model

    texts = [t for v in FILLER.values() for t in v]
    texts += [*GENRE_CUES.values(), *FRAME_CUES.values(), *TECHNIQUE_CUES.values(),
              *SIB200_CUES.values(), *EMOTION_CUES.values()] + [str(i) for i in range(100)]
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-bert", texts,
                           max_length=256, architecture="bert")


@pytest.fixture(scope="module")
def mean_run(tmp_path_factory, sib_root, brighter_root, tiny_model):
    """(task, architecture) -> a tiny finished LoRA run with `pooling: mean`."""
    root, done = tmp_path_factory.mktemp("pipeline"), {}

    def get(task: str, architecture: str = "xlm-roberta"):
        if (task, architecture) not in done:
            model = tiny_xlmr_or_bert(tmp_path_factory, tiny_model, architecture)
            data = dict(dataset="sib200", data_root=str(sib_root)) if task == "multiclass" \
                else dict(dataset="brighter", data_root=str(brighter_root), threshold="tune")
            config = RunConfig(
                **data, model=str(model), method="lora", train_langs=["en", "de"]
                if task == "multilabel" else ["en", "fr"], eval_langs=None, max_length=64,
                batch_size=8, eval_batch_size=16, learning_rate=1e-2, warmup_steps=0,
                max_steps=4, eval_steps=2, head_learning_rate=0.1, seed=3, pooling="mean",
                results_dir=str(root / "results"))
            config = config.replace(eval_langs=config.train_langs)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                done[task, architecture] = train_and_evaluate(config).run_dir
            finally:
                torch.set_num_threads(threads)
        return done[task, architecture]

    return get


def by_label(outputs: list[list[dict]], labels: list[str]) -> np.ndarray:
    """The pipeline's top_k=None outputs as a [texts, labels] matrix in the run's label order."""
    return np.asarray([[{d["label"]: d["score"] for d in row}[label] for label in labels]
                       for row in outputs])


def piped(run_dir, tmp_path):
    """(the export's metadata, the run's test texts, the pipeline's outputs on them)."""
    out = tmp_path / "export-merged"
    meta = export_run(run_dir, out, "merged")
    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    texts = list(load_frames(config)["test"]["text"])
    got = in_fresh_process(PIPELINE, out, texts, tmp_path)
    assert not any(m.startswith("peft_utils") for m in got["modules"])
    return meta, texts, got


@pytest.mark.parametrize("architecture", ["xlm-roberta", "bert"])
def test_mean_pooled_merged_export_predicts_the_run_through_pipeline(
        architecture, mean_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))   # the copied code
    run_dir = mean_run("multiclass", architecture)
    meta, texts, got = piped(run_dir, tmp_path)
    folder = tmp_path / "export-merged"
    config = json.loads((folder / "config.json").read_text())
    assert (folder / MODELING_FILE).is_file() and meta["remote_code"] == MODELING_FILE
    assert config["auto_map"]["AutoModelForSequenceClassification"].startswith(
        "modeling_mean_pooled.MeanPooled")
    assert got["class"].startswith("MeanPooled") and not got["plain_class"].startswith("Mean")
    assert "trust_remote_code=True" in meta["load"] and "trust_remote_code" in meta["notes"][0]

    labels = meta["settings"]["labels"]
    names, probs = predict(load_predictor(run_dir), texts)        # the run's own predictions
    recorded = pd.read_csv(run_dir / "predictions" / "test-examples.csv")["pred"].tolist()
    scores = by_label(got["ranked"], labels)
    np.testing.assert_allclose(scores, probs, rtol=0, atol=SCORE_TOLERANCE)
    np.testing.assert_allclose(by_label(got["batched"], labels), probs, rtol=0,
                               atol=SCORE_TOLERANCE)               # padded batches: same
    top2 = np.sort(probs, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 10 * SCORE_TOLERANCE
    assert clear.mean() > 0.9
    assert [g for g, c in zip(got["top"], clear) if c] == [n for n, c in zip(names, clear) if c]
    assert [g for g, c in zip(got["top"], clear) if c] == \
        [r for r, c in zip(recorded, clear) if c]
    # Without the code the head reads the first token: other scores.
    assert np.abs(by_label(got["plain"], labels) - probs).max() > 1e-3


def test_multilabel_merged_export_through_pipeline_with_sigmoid(mean_run, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    run_dir = mean_run("multilabel")
    meta, texts, got = piped(run_dir, tmp_path)
    settings = meta["settings"]
    names, probs = predict(load_predictor(run_dir), texts)
    scores = by_label(got["ranked"], settings["labels"])
    np.testing.assert_allclose(scores, probs, rtol=0, atol=SCORE_TOLERANCE)
    # The run's labels: every label whose sigmoid score reaches the metadata's threshold.
    near = np.abs(probs - settings["threshold"]) <= SCORE_TOLERANCE
    picked = [",".join(label for label, s in zip(settings["labels"], row)
                       if s >= settings["threshold"]) for row in scores]
    assert [p for p, n in zip(picked, near.any(axis=1)) if not n] == \
        [x for x, n in zip(names, near.any(axis=1)) if not n]
    assert "multilabel" in " ".join(meta["notes"])
