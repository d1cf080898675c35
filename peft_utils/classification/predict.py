"""`python -m peft_utils predict RUN_DIR|EXPORT_DIR --input PATH [--out PATH]` (core.predict)
of a classification run: a trained classifier's predictions on new texts.

The input is a table (CSV, TSV, JSONL or Parquet, its texts in `--text-column`, default
`text`) or, with `--input -`, one text per line on stdin. The output is the input's rows with
`pred` (the predicted label; multilabel: the labels, comma-separated) and one `score_<label>`
column per label (softmax probabilities; multilabel: each label's sigmoid score) added, made
as the run made its own predictions: its max_length, long_text strategy (chunks pooled) and
tuned threshold. It is written atomically to `--out` (its format from the suffix) or printed
to stdout (CSV).

The input may also be a folder in the layout of the run's data set (a SemEval release root,
or one language folder of it): its `--split` (default test, which needs no labels) is read by
the data set's loader for the run's task, and the predictions are written to the folder
`--out` in the official submission format, one file per language, as training writes its own.

RUN_DIR is a finished run's folder; EXPORT_DIR a `merged`, `adapter` or `onnx` export of one
(the run's head hooks, such as mean pooling, are put back on a merged or adapter model; an
adapter export loads its base model from where its metadata says).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from peft_utils.classification.config import RunConfig
from peft_utils.classification.export import Settings, load
from peft_utils.classification.head import pool_by_mean, skip_virtual_tokens
from peft_utils.classification.inference import collator, infer_logits, onnx_logits
from peft_utils.core.config import ConfigError
from peft_utils.core import methods
from peft_utils.core.export import (METADATA, ONNX_FILE, finished_run, load_adapter,
                                    onnx_session, read_metadata)
# The table I/O every study's `predict` shares (multitask imports it from here too).
from peft_utils.data.table_io import (STDIN, encode_table, output_kind,  # noqa: F401
                                      read_input, write_table_out)


@dataclass
class Predictor:
    """A trained classifier as predictions need it: its settings, tokenizer and logits."""
    settings: Settings
    tokenizer: Any
    logits: Callable[[list[dict]], np.ndarray]   # tokenised rows -> their logits


def load_predictor(source: str | Path) -> Predictor:
    """The predictor of a run folder or of a merged, adapter or onnx export folder."""
    folder = Path(source)
    meta = read_metadata(folder)
    if meta is None:
        run = load(folder, finished_run(folder))
        return _torch_predictor(run.settings, run.tokenizer, run.model)
    settings = Settings(**meta["settings"])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if meta["format"] == "onnx":
        session = onnx_session(folder / ONNX_FILE)
        collate = collator(tokenizer, settings)
        return Predictor(settings, tokenizer, lambda rows: onnx_logits(
            session, rows, settings.eval_batch_size, collate))
    model = _adapter_model(folder, meta, settings) if meta["format"] == "adapter" else \
        with_head_hooks(_load_model(str(folder)), settings)
    return _torch_predictor(settings, tokenizer, model.eval())


def source_settings(source: str | Path) -> Settings:
    """The settings of a run folder or an export, without loading the model."""
    folder = Path(source)
    meta = read_metadata(folder)
    if meta is not None:
        return Settings(**meta["settings"])
    record = finished_run(folder)
    return Settings.of_run(RunConfig.from_dict(json.loads(
        (folder / "config.json").read_text(encoding="utf-8"))), record)


def _load_model(name: str, **kwargs):
    from transformers import AutoModelForSequenceClassification

    from peft_utils.core.modeling import load_pretrained

    return load_pretrained(AutoModelForSequenceClassification, name, **kwargs)


def with_head_hooks(model, settings: Settings):
    """The run's head hooks (not in any saved weights) put back on a plain model: reading past
    a soft prompt's virtual tokens, mean pooling; in the order the run's model has them."""
    skip_virtual_tokens(model, settings.virtual_tokens)
    if settings.pooling == "mean":
        pool_by_mean(model)
    return model


def _adapter_model(folder: Path, meta: dict[str, Any], settings: Settings):
    """An adapter export on its base model (by name or path, from the metadata) with the run's
    labels and head hooks, loaded by the method's library."""
    entry = methods.get(meta["method"])
    id2label = {int(k): v for k, v in meta["id2label"].items()}
    try:
        base = _load_model(settings.base_model, id2label=id2label,
                           label2id={v: k for k, v in id2label.items()},
                           problem_type=meta["problem_type"],
                           **({"attn_implementation": "eager"} if entry.needs_eager else {}))
    except (OSError, ValueError) as err:   # not found; not a folder nor a hub name
        raise ConfigError(f"{folder}: its base model {settings.base_model} does not load "
                          f"({str(err).splitlines()[0]}); put it where settings.base_model in "
                          f"{METADATA} says, or edit that path") from None
    return load_adapter(with_head_hooks(base, settings), entry, folder)


def _torch_predictor(settings: Settings, tokenizer, model) -> Predictor:
    collate = collator(tokenizer, settings)
    return Predictor(settings, tokenizer,
                     lambda rows: infer_logits(model, rows, settings.eval_batch_size, collate))


def predict(predictor: Predictor, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """(the predicted label(s) of each text, its per-label probabilities)."""
    from types import SimpleNamespace

    from peft_utils.classification import metrics as M
    from peft_utils.classification.training import example_scores, label_names

    settings = predictor.settings
    rows, index = settings.rows(texts, predictor.tokenizer)
    # Chunks of one text pooled as the run's evaluation pooled them.
    scores = example_scores(SimpleNamespace(example_index=index, frame=texts),
                            predictor.logits(rows), settings.multilabel)
    picked = M.decide(scores, settings.multilabel,
                      settings.threshold if settings.multilabel else 0.5)
    names = label_names(picked, settings.labels, settings.multilabel)   # as the run writes
    if settings.multilabel:
        return names, scores
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    return names, probs / probs.sum(axis=1, keepdims=True)


# ---- input and output -----------------------------------------------------------------------
def with_predictions(frame, settings: Settings, preds: list[str], probs: np.ndarray):
    out = frame.copy()
    out["pred"] = preds
    for j, label in enumerate(settings.labels):
        out[f"score_{label}"] = probs[:, j].astype(float).round(6)
    return out


# ---- a folder in the data set's layout -------------------------------------------------------
def read_folder(folder: str | Path, settings: Settings, split: str):
    """The `split` rows of `folder`, a root or one language folder in the layout of the data
    set the run was trained on, read by that data set's loader for the run's task."""
    from peft_utils.data import registry
    from peft_utils.data.folders import load_folder

    if settings.dataset is None:
        raise ConfigError(f"--input {folder}: the export does not name its run's data set "
                          "(written before exports did); export the run again")
    entry = registry.get(settings.dataset, folder)
    return load_folder(entry, folder, split, settings.subtask)


def output_folder(out: str | None, source: str) -> Path:
    if out is None:
        raise ConfigError(f"--input {source} is a folder: its predictions are one file per "
                          "language; give --out, the folder to write them into")
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the prediction files")
    return Path(out)


def predict_folder(source: str | Path, folder: str | Path, out: str | Path,
                   split: str = "test") -> list[Path]:
    """Predictions for every row of `folder` (read_folder) in the official submission format,
    one file per language in `out`, named and written as the run's own (training's
    `write_official`: `<split>-<lang>.txt`); the files written."""
    from peft_utils.classification.training import prediction_table, write_official

    settings = source_settings(source)
    frame = read_folder(folder, settings, split)   # bad data fails before the model loads
    preds, _ = predict(load_predictor(source), list(frame["text"]))
    return write_official(Path(out), split, prediction_table(frame, preds), settings.unit)


# ---- the command (core.predict parses it; this study's `predict`) ---------------------------
def predict_command(args) -> int:
    if Path(args.input).is_dir():
        out = output_folder(args.out, args.input)
        written = predict_folder(args.source, args.input, out, args.split)
        print(f"{len(written)} prediction files: {', '.join(map(str, written))}",
              file=sys.stderr)
        return 0
    kind = output_kind(args.out)   # before any work: a wrong suffix fails at once
    frame, texts = read_input(args.input, args.text_column)
    predictor = load_predictor(args.source)
    preds, probs = predict(predictor, texts)
    frame = with_predictions(frame, predictor.settings, preds, probs)
    write_table_out(encode_table(frame, kind), args.out, f"{len(texts)} predictions")
    return 0
