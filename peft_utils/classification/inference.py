"""Running a model over tokenised rows without gradients, the same way for every caller (the
run's evaluation, the frozen-feature probe): the run's padding collator, batches sorted by
length (less padding), bf16 autocast where the run trains in bf16."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

MODEL_INPUTS = ("input_ids", "attention_mask")


def collator(tokenizer, config):
    """Pads each batch to its longest row, or to max_length as the paper's pipeline did."""
    from transformers import DataCollatorWithPadding

    if config.padding == "max_length":
        return DataCollatorWithPadding(tokenizer, padding="max_length",
                                       max_length=config.max_length)
    return DataCollatorWithPadding(tokenizer)


def sorted_batches(model, rows: Sequence[dict[str, Any]], batch_size: int, collate,
                   precision: str = "fp32") -> Iterator[tuple[np.ndarray, Any, Any]]:
    """(row indices, padded batch on the model's device, the model's output) per batch of
    `rows`, shortest rows first, under inference mode (and bf16 autocast for bf16 runs)."""
    import torch

    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    model.eval()
    with torch.inference_mode(), autocast:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = collate([{k: rows[i][k] for k in MODEL_INPUTS} for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            yield idx, batch, model(**batch)


def infer_logits(model, rows: Sequence[dict[str, Any]], batch_size: int, collate,
                 precision: str = "fp32") -> np.ndarray:
    """Logits of every row, in row order, batches sorted by length."""
    out = None
    for idx, _, output in sorted_batches(model, rows, batch_size, collate, precision):
        logits = output.logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out


def onnx_logits(session, rows: Sequence[dict[str, Any]], batch_size: int,
                collate) -> np.ndarray:
    """`infer_logits` for an ONNX Runtime session of an exported classifier (inputs
    input_ids and attention_mask, output the logits)."""
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    out = None
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = collate([{k: rows[i][k] for k in MODEL_INPUTS} for i in idx])
        logits = session.run(None, {k: batch[k].numpy() for k in MODEL_INPUTS})[0]
        if out is None:
            out = np.zeros((len(rows), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out
