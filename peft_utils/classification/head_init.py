"""`head_init: probe`: the head starts from a linear probe, then the method trains as configured
(LP-FT: Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution"). A random head sends large, uninformative gradients into
the encoder during the first steps; a head that already reads the features well leaves the
method to add what the encoder can add, and the run starts at the probe's score.

The probe is fitted on what the head's output layer receives at step 0, so that the model
before its first step predicts exactly as the probe:
- a linear head on the pooled features (BERT's classifier under mean pooling): the pooled
  features themselves, i.e. the frozen-feature probe of the record;
- a head with a hidden layer (XLM-R's dense + tanh + out_proj): the dense layer becomes the
  probe's standardiser, tanh((x - mean) / (2 sd)) per feature over the training rows (half a
  standard deviation per unit keeps most values in tanh's near-linear range, so the hidden
  features carry what the pooled ones do), and out_proj the probe fitted on those hidden
  features. A random dense layer (the seeded draw) lost 0.01-0.07 of the frozen probe's dev
  score on the demo; the standardiser keeps it. The hidden layer then trains with the rest.

Where a method leaves the encoder as it was at initialisation (FFT, LoRA with its zero B, most
of peft), the pooled features are the frozen encoder's, cached on disk and shared with the
frozen-feature probe (probe.FEATURE_CACHE). Where it does not (the adapters library starts its
bottleneck adapters at small random weights), they are the model's own at step 0, computed once
per method, seed and data selection and cached too. A comparison of a few training rows decides
which, so no method is special-cased.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import numpy as np

from peft_utils.classification.head import (MEAN_POOLING_SLOT, head_module, output_layers,
                                            set_output_layer)
from peft_utils.classification.inference import collator, sorted_batches
from peft_utils.classification.probe import (balanced_probe, cached_array, features_key,
                                             fit_probe, load_encoder, per_example,
                                             probe_scores, split_features)

HIDDEN_SCALE = 2.0         # standard deviations per unit of the hidden layer's tanh input
SAMPLE_ROWS = 8            # training rows compared to decide whether the frozen features serve
RELATIVE_TOLERANCE = 1e-5  # of the features' largest magnitude: float noise, not a method's init


def head_inputs(model, rows, batch_size: int, collate, precision: str) -> np.ndarray:
    """What the head receives for each row at the model's current state, pooled as it reads
    it (XLM-R's head reads position 0 of the sequence it is given; BERT's a vector)."""
    out: list[tuple[np.ndarray, np.ndarray]] = []
    seen: list[Any] = []
    hook = head_module(model).register_forward_pre_hook(
        lambda module, args: seen.append(args[0]))
    try:
        for idx, _, _ in sorted_batches(model, rows, batch_size, collate, precision):
            value = seen.pop()
            value = value[:, 0] if value.dim() == 3 else value
            out.append((idx, value.float().cpu().numpy()))
    finally:
        hook.remove()
    features = np.zeros((len(rows), out[0][1].shape[1]), dtype=np.float32)
    for idx, value in out:
        features[idx] = value
    return features


def set_hidden_layer_to_standardise(model, pooled: np.ndarray, n_labels: int) -> None:
    """A head with a square hidden layer before its output layer (XLM-R's dense): set it to
    standardise the pooled features (`pooled`: the training rows'), scaled by HIDDEN_SCALE.
    A linear head has none and is left as it is."""
    import torch

    outputs = {id(m) for m in output_layers(model, n_labels)}
    hidden = [m for m in head_module(model).modules() if isinstance(m, torch.nn.Linear)
              and id(m) not in outputs and m.in_features == m.out_features == pooled.shape[1]]
    if not hidden:
        return
    mean, scale = pooled.mean(axis=0), HIDDEN_SCALE * (pooled.std(axis=0) + 1e-6)
    with torch.no_grad():
        for layer in hidden:   # peft keeps a frozen copy of the head beside the trained one
            layer.weight.copy_(torch.diag(torch.as_tensor(1 / scale, dtype=layer.weight.dtype)))
            layer.bias.copy_(torch.as_tensor(-mean / scale, dtype=layer.bias.dtype))


def output_layer_inputs(model, pooled: np.ndarray, n_labels: int) -> np.ndarray:
    """What the head's output layer receives for the pooled features `pooled` (the head's
    layers before it applied in eval mode; the pooled features themselves for a linear head)."""
    import torch

    head = head_module(model)
    layer = output_layers(model, n_labels)
    seen: list[Any] = []
    hooks = [m.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
             for m in layer]
    was_training = head.training
    head.eval()
    try:
        device = next(head.parameters()).device
        dtype = next(head.parameters()).dtype
        x = torch.as_tensor(pooled, device=device, dtype=dtype)
        with torch.inference_mode():   # XLM-R's head reads position 0 of a sequence
            head(x[:, None, :] if MEAN_POOLING_SLOT[model.config.model_type] == 0 else x)
    finally:
        head.train(was_training)
        for hook in hooks:
            hook.remove()
    return seen[-1].float().cpu().numpy()


def _init_key(config, n_labels: int, rows) -> str:
    """The cache key of a method's own step-0 features: what decides its initial weights."""
    from peft_utils.classification.models import method_settings

    identity = json.dumps({"method": config.method, "settings": method_settings(config),
                           "seed": config.seed, "labels": n_labels,
                           "dataset": config.dataset, "subtask": config.subtask},
                          sort_keys=True, default=str)
    base = features_key(config.model, config.pooling, [r["input_ids"] for r in rows])
    return hashlib.sha256(f"{base}|init|{identity}".encode()).hexdigest()


def step0_features(config, model, splits, names, n_labels, tokenizer, device, precision,
                   cache_dir) -> tuple[dict[str, np.ndarray], str]:
    """Per split in `names`: the pooled features the head receives at step 0, one row per
    tokenised row; and where they came from (`frozen encoder` or `model at step 0`)."""
    collate = collator(tokenizer, config)
    encoder: list[Any] = []

    def factory():
        if not encoder:
            encoder.append(load_encoder(config, device))
        return encoder[0]

    frozen, _ = split_features(config, splits, names, factory, collate, precision, cache_dir,
                               pool=False)
    train = splits["train"].rows[:SAMPLE_ROWS]
    own = head_inputs(model, train, config.eval_batch_size, collate, precision)
    reference = frozen["train"][:SAMPLE_ROWS]
    scale = max(float(np.abs(reference).max()), 1e-12)
    if own.shape == reference.shape and float(np.abs(own - reference).max()) <= \
            RELATIVE_TOLERANCE * scale:
        return frozen, "frozen encoder"
    found = {}
    for name in names:
        rows = splits[name].rows
        found[name] = cached_array(_init_key(config, n_labels, rows), lambda: head_inputs(
            model, rows, config.eval_batch_size, collate, precision), cache_dir)[0]
    return found, "model at step 0"


def init_head_from_probe(config, model, splits, selection, n_labels: int, tokenizer,
                         device: str, precision: str, cache_dir) -> dict[str, Any]:
    """Fit the probe on the output layer's step-0 inputs of the training examples (chunks
    averaged, as the run pools its scores) and copy it into the output layer. Returns what the
    record keeps: the features' source, the probe's score on the selection-dev rows (the run's
    score before its first step) and the seconds it took."""
    begin = time.perf_counter()
    if model.config.model_type not in MEAN_POOLING_SLOT:
        raise ValueError(f"head_init: probe supports the {', '.join(MEAN_POOLING_SLOT)} heads, "
                         f"not {model.config.model_type}; use head_init: random")
    names = ["train"] + (["dev"] if selection is not None and selection.any() else [])
    pooled, source = step0_features(config, model, splits, names, n_labels, tokenizer, device,
                                    precision, cache_dir)
    set_hidden_layer_to_standardise(model, pooled["train"], n_labels)
    inputs = {name: per_example(splits[name], output_layer_inputs(model, pooled[name], n_labels))
              for name in names}
    probe = fit_probe(inputs["train"], splits["train"].gold, config.multilabel, n_labels,
                      balanced_probe(config))
    set_output_layer(model, probe.weight, probe.bias)
    start = None
    if "dev" in inputs:
        start = probe_scores(config, splits, {"dev": probe.scores(inputs["dev"])}, selection,
                             n_labels)["selection_dev"]
    return {"setting": "probe", "features": source, "selection_dev": start,
            "seconds": time.perf_counter() - begin}
