"""`python -m peft_utils predict RUN_DIR|EXPORT_DIR --input PATH [--out PATH]`: a trained
classifier's predictions on new texts.

The input is a table (CSV, TSV, JSONL or Parquet, its texts in `--text-column`, default
`text`) or, with `--input -`, one text per line on stdin. The output is the input's rows with
`pred` (the predicted label; multilabel: the labels, comma-separated) and one `score_<label>`
column per label (softmax probabilities; multilabel: each label's sigmoid score) added, made
as the run made its own predictions: its max_length, long_text strategy (chunks pooled) and
tuned threshold. It is written atomically to `--out` (its format from the suffix) or printed
to stdout (CSV).

RUN_DIR is a finished run's folder; EXPORT_DIR a `merged` or `onnx` export of one (the
run's head hooks, such as mean pooling, are put back on a merged model).
"""
from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from peft_utils.classification.export import Settings, load
from peft_utils.classification.head import pool_by_mean
from peft_utils.classification.inference import collator, infer_logits, onnx_logits
from peft_utils.core.config import ConfigError
from peft_utils.core.export import ONNX_FILE, finished_run, onnx_session, read_metadata
from peft_utils.core.runs import atomic_write_bytes, json_default
from peft_utils.data.errors import DataError
from peft_utils.data.table import FORMATS, read_rows

STDIN = "-"


@dataclass
class Predictor:
    """A trained classifier as predictions need it: its settings, tokenizer and logits."""
    settings: Settings
    tokenizer: Any
    logits: Callable[[list[dict]], np.ndarray]   # tokenised rows -> their logits


def load_predictor(source: str | Path) -> Predictor:
    """The predictor of a run folder or of a merged / onnx export folder."""
    folder = Path(source)
    meta = read_metadata(folder)
    if meta is None:
        run = load(folder, finished_run(folder))
        return _torch_predictor(run.settings, run.tokenizer, run.model)
    settings = Settings(**meta["settings"])
    if meta["format"] == "adapter":
        raise ConfigError(f"{folder}: predict reads a run folder or a merged or onnx export, "
                          "not an adapter export; give the run folder")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if meta["format"] == "onnx":
        session = onnx_session(folder / ONNX_FILE)
        collate = collator(tokenizer, settings)
        return Predictor(settings, tokenizer, lambda rows: onnx_logits(
            session, rows, settings.eval_batch_size, collate))
    from transformers import AutoModelForSequenceClassification

    from peft_utils.core.modeling import load_pretrained

    model = load_pretrained(AutoModelForSequenceClassification, str(folder))
    if settings.pooling == "mean":   # the head's hook is not in the saved weights
        pool_by_mean(model)
    return _torch_predictor(settings, tokenizer, model.eval())


def _torch_predictor(settings: Settings, tokenizer, model) -> Predictor:
    collate = collator(tokenizer, settings)
    return Predictor(settings, tokenizer,
                     lambda rows: infer_logits(model, rows, settings.eval_batch_size, collate))


def predict(predictor: Predictor, texts: list[str]) -> tuple[list[str], np.ndarray]:
    """(the predicted label(s) of each text, its per-label probabilities)."""
    from types import SimpleNamespace

    from peft_utils.classification import metrics as M
    from peft_utils.classification.training import example_scores

    settings = predictor.settings
    rows, index = settings.rows(texts, predictor.tokenizer)
    # Chunks of one text pooled as the run's evaluation pooled them.
    scores = example_scores(SimpleNamespace(example_index=index, frame=texts),
                            predictor.logits(rows), settings.multilabel)
    picked = M.decide(scores, settings.multilabel,
                      settings.threshold if settings.multilabel else 0.5)
    labels = settings.labels
    if settings.multilabel:
        return [",".join(labels[j] for j in np.flatnonzero(row)) for row in picked], scores
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    return [labels[int(i)] for i in picked], probs / probs.sum(axis=1, keepdims=True)


# ---- input and output -----------------------------------------------------------------------
def read_input(source: str, text_column: str):
    """The input rows as a DataFrame (every column kept) and their texts."""
    import pandas as pd

    if source == STDIN:
        texts = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not texts:
            raise DataError("<stdin>", "no text lines", fix="write one text per line")
        return pd.DataFrame({text_column: texts}), texts
    path = Path(source)
    rows = read_rows(path)
    if not rows:
        raise DataError(path, "no rows", fix="write a header line and one row per text")
    for line, row in rows:
        if text_column not in row:
            raise DataError(path, f"no column {text_column!r} (columns: {', '.join(row)})",
                            line=line, fix="name the text column with --text-column")
        if row[text_column] is None or not isinstance(row[text_column], str):
            raise DataError(path, f"column {text_column!r} holds {row[text_column]!r}, not a "
                            "text", line=line, fix="give every row a text")
    frame = pd.DataFrame([row for _, row in rows])
    return frame, list(frame[text_column])


def with_predictions(frame, settings: Settings, preds: list[str], probs: np.ndarray):
    out = frame.copy()
    out["pred"] = preds
    for j, label in enumerate(settings.labels):
        out[f"score_{label}"] = probs[:, j].astype(float).round(6)
    return out


def encode_table(frame, kind: str) -> bytes:
    """`frame` in the file format `kind` (csv, tsv, jsonl, parquet)."""
    if kind == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if kind == "jsonl":
        text = "".join(json.dumps(record, ensure_ascii=False, default=json_default) + "\n"
                       for record in frame.to_dict("records"))
    else:
        text = frame.to_csv(index=False, sep="\t" if kind == "tsv" else ",")
    return text.encode("utf-8")


def output_kind(out: str | None) -> str:
    if out is None:
        return "csv"
    kind = FORMATS.get(Path(out).suffix.lower())
    if kind is None:
        raise ConfigError(f"--out {out}: unknown file type; end it in "
                          f"{', '.join(FORMATS)}")
    return kind


# ---- CLI ------------------------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="a trained classifier's predictions on new texts",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a finished run's folder, or a merged or onnx export")
    parser.add_argument("--input", required=True,
                        help="a CSV, TSV, JSONL or Parquet table, or - (lines on stdin)")
    parser.add_argument("--out", default=None, help="the table to write (default: stdout)")
    parser.add_argument("--text-column", default="text")
    parser.set_defaults(func=_predict_command)


def _predict_command(args) -> int:
    kind = output_kind(args.out)   # before any work: a wrong suffix fails at once
    frame, texts = read_input(args.input, args.text_column)
    predictor = load_predictor(args.source)
    preds, probs = predict(predictor, texts)
    data = encode_table(with_predictions(frame, predictor.settings, preds, probs), kind)
    if args.out is None:
        sys.stdout.write(data.decode("utf-8"))
    else:
        atomic_write_bytes(args.out, data)
        print(f"{len(texts)} predictions: {args.out}", file=sys.stderr)
    return 0
