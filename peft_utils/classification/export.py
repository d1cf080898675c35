"""Exporting a finished classification run (`python -m peft_utils export`; the formats' rules
are core.export's).

A `merged` folder is what `AutoModelForSequenceClassification.from_pretrained(OUT)` and
`pipeline("text-classification", model=OUT)` load: the weights with the method folded in, the
config with id2label, label2id and the problem type, the tokenizer (its model_max_length the
run's max_length, so `truncation=True` cuts where the run did). A run with `pooling: mean`
ships its pooling as model code beside the weights (MODELING_FILE, named by config.json's
`auto_map`, the hub's convention), which transformers runs with `trust_remote_code=True`.
What the pipeline cannot know is in the metadata's `settings` (threshold, max_length,
long_text, pooling) and `notes` (what loading with the plain library does not reproduce).
An `onnx` folder holds the same model as a graph, the pooling and the head inside it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from peft_utils.classification.config import RunConfig
from peft_utils.classification.head import MEAN_POOLING_SLOT, pool_by_mean
from peft_utils.classification.inference import collator, infer_logits, onnx_logits
from peft_utils.classification.models import ADAPTER_NAME, labelled_config, method_settings
from peft_utils.classification.run_data import load_frames
from peft_utils.core import methods
from peft_utils.core.config import ConfigError
from peft_utils.core.export import (ONNX_FILE, ONNX_TOLERANCE, copy_weights, finish_export,
                                    finished_run, format_problem, onnx_session, save_adapter,
                                    staged, write_onnx)
from peft_utils.core.runs import atomic_write_text
from peft_utils.core.serving import merge_status, merged_copy
from peft_utils.data.errors import DataError
from peft_utils.data.long_text import encode_texts

CHECK_ROWS = 64   # rows of the run's test split (else dev) each export is checked on
# When the run's data is not where its config says (a copied run folder): texts enough to
# compare two models' numbers, which is all the check needs.
PROBE_TEXTS = ["a short text", "a somewhat longer text, with a comma and more words in it",
               "one", "and she said no way twice"]


@dataclass
class Settings:
    """How a run turns texts into predictions, beyond the weights: what a loader needs."""
    labels: list[str]
    multilabel: bool
    threshold: float | None      # multilabel: a label is predicted where its score >= this
    max_length: int
    long_text: str               # head | head+tail | chunks (classification.config)
    chunk_stride: int
    pooling: str                 # cls | mean
    padding: str                 # dynamic | max_length
    eval_batch_size: int
    base_model: str
    # The run's data (exports written before these fields have none): what reading a folder
    # in the data set's own layout needs, and the unit a row is (the official file format).
    dataset: str | None = None
    subtask: int | None = None
    unit: str = "text"
    virtual_tokens: int = 0      # the soft prompt's tokens the head reads past

    @classmethod
    def of_run(cls, config: RunConfig, record: dict[str, Any]) -> "Settings":
        entry = methods.get(config.method)
        return cls(list(config.task.labels), config.multilabel,
                   record["metrics"].get("threshold"), config.max_length, config.long_text,
                   config.chunk_stride, config.pooling, config.padding, config.eval_batch_size,
                   config.model, config.dataset, config.subtask, config.task.unit,
                   methods.virtual_token_count(entry, method_settings(config)))

    def rows(self, texts: list[str], tokenizer) -> tuple[list[dict], np.ndarray]:
        """The model inputs of `texts` as the run made them (max_length, long_text), and the
        text each row comes from (several with long_text: chunks)."""
        enc = encode_texts(texts, tokenizer, self.max_length, self.long_text, self.chunk_stride)
        rows = [{"input_ids": ids, "attention_mask": mask}
                for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
        return rows, np.asarray(enc["example_index"], dtype=np.int64)


@dataclass
class Run:
    """A finished run loaded back (classification.training.load_run)."""
    folder: Path
    config: RunConfig
    model: Any
    tokenizer: Any
    entry: methods.Method
    settings: Settings
    record: dict[str, Any]


def load(folder: Path, record: dict[str, Any]) -> Run:
    from peft_utils.classification.training import load_run

    config, built, tokenizer = load_run(folder)
    built.model.eval()
    return Run(folder, config, built.model, tokenizer, methods.get(config.method),
               Settings.of_run(config, record), record)


def notes(settings: Settings, entry: methods.Method, fmt: str) -> list[str]:
    """What loading the export with its plain library alone does not reproduce."""
    found = []
    if settings.pooling == "mean" and fmt == "merged":
        found.append(f"the run's head reads the mean of the token states (pooling: mean), not "
                     f"a standard transformers head: the folder ships it as code "
                     f"({MODELING_FILE}, named by config.json's auto_map), which transformers "
                     "runs with trust_remote_code=True (pipeline('text-classification', "
                     "model=OUT, trust_remote_code=True)); loaded without it, the model reads "
                     "the first token and predicts differently")
    if settings.pooling == "mean" and fmt == "adapter":
        found.append("the run's head reads the mean of the token states (pooling: mean, a "
                     "forward hook of this project), not a standard transformers head: loaded "
                     "with transformers alone it reads the first token and predicts "
                     "differently; use --format merged (its pooling is code that "
                     "trust_remote_code=True loads), --format onnx or "
                     "`python -m peft_utils predict`")
    if entry.virtual_tokens and fmt == "adapter":
        found.append(f"{entry.name}'s head reads the text past its virtual tokens (a forward "
                     "hook of this project); loaded with its library alone the head reads a "
                     "virtual token and predicts differently")
    if settings.long_text != "head":
        found.append(f"the run read long texts with long_text: {settings.long_text}; a "
                     f"tokenizer with truncation=True keeps the first {settings.max_length} "
                     "tokens only (`python -m peft_utils predict` applies the run's strategy)")
    if settings.multilabel:
        found.append(f"multilabel: a label is predicted where its sigmoid score is >= "
                     f"{settings.threshold} (settings.threshold), not by the pipeline's top_k")
    return found


def metadata(run: Run, fmt: str) -> dict[str, Any]:
    metrics = run.record["metrics"]
    main = metrics["main_metric"]
    return {"format": fmt, "study": "classification", "run_id": run.config.run_id,
            "method": run.entry.name, "library": run.entry.library,
            "merge": merge_status(run.entry),
            "standard_head": run.settings.pooling == "cls" and not run.entry.virtual_tokens,
            "settings": asdict(run.settings),
            "scores": {"metric": main,
                       **{split: (metrics.get(split) or {}).get("overall", {}).get(main)
                          for split in ("dev", "test")},
                       "selection_dev": (metrics.get("selection_dev") or {}).get(main)},
            "notes": notes(run.settings, run.entry, fmt),
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# ---- the checks ---------------------------------------------------------------------------
def check_texts(config: RunConfig) -> tuple[list[str], str]:
    """Up to CHECK_ROWS texts of the run's test split (else dev) and where they come from;
    the probe texts when the run's data is not there."""
    try:
        frames = load_frames(config)
    except (DataError, ConfigError, OSError):
        return PROBE_TEXTS, "probe texts (the run's data was not found)"
    name = "test" if len(frames["test"]) else "dev"
    return list(frames[name]["text"][:CHECK_ROWS]), f"{name} split"


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


# ---- the formats --------------------------------------------------------------------------
def plain_model(run: Run):
    """The run's model as a plain transformers model with the method merged in, the run's
    pooling hook on (a hook is not saved with the weights)."""
    from transformers import AutoModelForSequenceClassification

    twin = run.model if merge_status(run.entry) == "nothing to merge" else \
        merged_copy(run.model, run.entry, ADAPTER_NAME)
    plain = AutoModelForSequenceClassification.from_config(
        labelled_config(run.config, run.settings.labels))
    copy_weights(twin, plain)
    if run.settings.pooling == "mean":
        pool_by_mean(plain)
    return plain.eval()


def save_tokenizer(run: Run, folder: Path) -> None:
    # A loader that truncates (truncation=True) cuts at the run's max_length.
    run.tokenizer.model_max_length = run.settings.max_length
    run.tokenizer.save_pretrained(folder)


def _merged(run: Run, folder: Path, rows: list[dict], reference: np.ndarray) -> dict[str, Any]:
    plain = plain_model(run)
    logits = infer_logits(plain, rows, run.settings.eval_batch_size,
                          collator(run.tokenizer, run.settings))
    code = run.settings.pooling == "mean"
    if code:
        plain.config.auto_map = {
            "AutoModelForSequenceClassification": write_mean_pooling_code(plain, folder)}
    plain.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(run, folder)
    return {"merge_max_diff": max_diff(logits, reference),
            **({"remote_code": MODELING_FILE} if code else {}),
            "load": LOADING["merged-mean" if code else "merged"]}


# The pooling of a `pooling: mean` run as model code in its merged export (the hub's
# `auto_map` convention): the base model's class, with the forward hook of
# classification.head.pool_by_mean written out, needing torch and transformers only.
MODELING_FILE = "modeling_mean_pooled.py"
MEAN_POOLING_CODE = '''"""{cls} reading the mean of the token states, written by peft_utils' export.

The run this model comes from trained its head on the mean of the encoder's token states over
the attention mask (padding excluded; `pooling: mean`), not on {reads}. The class below puts
that mean where the head reads it, so that
`pipeline("text-classification", model=FOLDER, trust_remote_code=True)` and
`AutoModelForSequenceClassification.from_pretrained(FOLDER, trust_remote_code=True)` predict
what the run predicted. Loaded without trust_remote_code, the model is a plain {base} and
its head reads {reads}.
"""
import torch
from transformers import {base}

SLOT = {slot}   # what the head reads: 0 the token states (the first), 1 the pooler's output


def masked_mean(hidden, mask):
    """The mean of the token states over the real tokens (mask 1), padding excluded."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def put_mean_where_the_head_reads(module, args, kwargs, output):
    hidden = output[0]
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], device=hidden.device)
    mean = masked_mean(hidden, mask)
    value = torch.cat([mean.unsqueeze(1), hidden[:, 1:]], dim=1) if SLOT == 0 else mean
    if isinstance(output, tuple):
        return (*output[:SLOT], value, *output[SLOT + 1:])
    output[list(output.keys())[SLOT]] = value
    return output


class {cls}({base}):
    def __init__(self, config):
        super().__init__(config)
        self.base_model.register_forward_hook(put_mean_where_the_head_reads, with_kwargs=True)
'''


def write_mean_pooling_code(plain, folder: Path) -> str:
    """Write MODELING_FILE for `plain`'s class into `folder`; its `auto_map` entry."""
    base = type(plain).__name__
    slot = MEAN_POOLING_SLOT[plain.config.model_type]
    reads = "the first token's state" if slot == 0 else "the pooler's output"
    cls = f"MeanPooled{base}"
    atomic_write_text(folder / MODELING_FILE, MEAN_POOLING_CODE.format(
        cls=cls, base=base, slot=slot, reads=reads))
    return f"{MODELING_FILE[:-3]}.{cls}"


# How each export loads, for the metadata (BASE: the base model with the run's labels; an
# adapter export: BASE, then its backend's `load_code`, core.backends).
BASE = ("base = AutoModelForSequenceClassification.from_pretrained(settings.base_model, "
        "id2label=id2label, label2id=label2id, problem_type=problem_type)")
LOADING = {
    "merged": "AutoModelForSequenceClassification.from_pretrained(OUT) or "
              "pipeline('text-classification', model=OUT, truncation=True)",
    "merged-mean": "AutoModelForSequenceClassification.from_pretrained(OUT, "
                   "trust_remote_code=True) or pipeline('text-classification', model=OUT, "
                   "truncation=True, trust_remote_code=True): the pooling is code in OUT",
    "onnx": "onnxruntime.InferenceSession(OUT/model.onnx) on AutoTokenizer.from_pretrained(OUT)"
            "(text, truncation=True): inputs input_ids, attention_mask (int64); output logits",
}


def _adapter(run: Run, folder: Path, rows: list[dict], reference: np.ndarray) -> dict[str, Any]:
    save_adapter(run.model, run.entry, ADAPTER_NAME, folder)
    save_tokenizer(run, folder)
    return {"adapter_name": ADAPTER_NAME, "id2label": dict(enumerate(run.settings.labels)),
            "problem_type": labelled_config(run.config, run.settings.labels).problem_type,
            "load": f"{BASE}; {run.entry.backend.load_code()}"}


def logits_module(model):
    """The classifier as a module of (input_ids, attention_mask) -> logits, for tracing."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    return Logits().eval()


def _onnx(run: Run, folder: Path, rows: list[dict], reference: np.ndarray) -> dict[str, Any]:
    plain = plain_model(run)
    collate, size = collator(run.tokenizer, run.settings), run.settings.eval_batch_size
    inputs = ("input_ids", "attention_mask")
    example = collate([{k: rows[0][k] for k in inputs}] * 2)
    axes = {0: "batch", 1: "sequence"}
    write_onnx(logits_module(plain), {k: example[k] for k in inputs}, folder / ONNX_FILE,
               "logits", {k: axes for k in inputs})
    torch_logits = infer_logits(plain, rows, size, collate)
    diff = max_diff(onnx_logits(onnx_session(folder / ONNX_FILE), rows, size, collate),
                    torch_logits)
    if diff > ONNX_TOLERANCE:
        raise ValueError(f"the ONNX graph's logits differ from PyTorch's by {diff:.2e} "
                         f"(> {ONNX_TOLERANCE}); the export is broken, please report it")
    plain.config.save_pretrained(folder)   # id2label, label2id, problem type
    save_tokenizer(run, folder)
    return {"onnx_file": ONNX_FILE, "onnx_inputs": list(inputs), "onnx_output": "logits",
            "onnx_max_diff": diff, "onnx_tolerance": ONNX_TOLERANCE,
            "merge_max_diff": max_diff(torch_logits, reference), "load": LOADING["onnx"]}


WRITERS = {"merged": _merged, "adapter": _adapter, "onnx": _onnx}


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "merged",
               force: bool = False) -> dict[str, Any]:
    """Write the `fmt` export of the finished run in `run_dir` to `out`; its metadata."""
    folder = Path(run_dir)
    record = finished_run(folder)
    problem = format_problem(methods.get(record["run_info"]["method"]), fmt)
    if problem:
        raise ConfigError(f"{folder}: {problem}")
    run = load(folder, record)
    texts, source = check_texts(run.config)
    rows, _ = run.settings.rows(texts, run.tokenizer)
    reference = infer_logits(run.model, rows, run.settings.eval_batch_size,
                             collator(run.tokenizer, run.settings))
    meta = {**metadata(run, fmt), "checked_on": {"rows": len(rows), "texts": source}}
    with staged(out, force) as tmp:
        meta.update(WRITERS[fmt](run, tmp, rows, reference))
        finish_export(tmp, meta)
    return meta


def onnx_for_timing(run_dir: Path, folder: Path, threads: int):
    """(an ONNX Runtime session, its infer) of the run's `onnx` export written into `folder`
    (checked against PyTorch as every export is), `threads` intra-op threads: what
    `bench-inference` times beside the PyTorch models, on the same rows."""
    from transformers import AutoTokenizer

    meta = export_run(run_dir, folder, "onnx")
    settings = Settings(**meta["settings"])
    collate = collator(AutoTokenizer.from_pretrained(folder, trust_remote_code=False), settings)
    return (onnx_session(folder / ONNX_FILE, threads),
            lambda session, rows, size: onnx_logits(session, rows, size, collate))
