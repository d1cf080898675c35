"""What using a trained model costs, the same way in every study: inference throughput and
batch-1 latency, as trained and merged into the base weights where the method can merge, and
the bytes a served model must keep.

A study passes `infer(model, rows, batch_size)`, which runs its model over a list of its
tokenised rows and returns what it predicts (classification: logits; MT: translations), and
`differ(a, b)`, the disagreement of two such outputs (0 when they agree).

In a run, the throughput as trained is the run's own evaluation pass over its test rows (its
evaluation texts at its evaluation batch size, timed as it happens: no extra pass), and the
merged model makes the same pass, which also checks that it predicts what the trained one
did. `bench-inference` times models side by side on up to BENCH_ROWS of those rows.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from peft_utils.core.methods import Method
from peft_utils.core.modeling import unique_parameters

BENCH_ROWS = 128     # rows `bench-inference` times at the evaluation batch size, per round
LATENCY_ROWS = 16    # rows timed one at a time (batch 1)

Infer = Callable[[Any, Sequence[dict], int], Any]


def spread(rows: Sequence[dict], n: int) -> list[dict]:
    """`n` of `rows` evenly spread over their lengths (all of them when fewer): timings then
    cover short and long inputs alike, whatever order the split came in."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    if len(order) <= n:
        return [rows[i] for i in order]
    return [rows[order[round(k * (len(order) - 1) / (n - 1))]] for k in range(n)]


def timed_pass(model, infer: Infer, rows: Sequence[dict], batch_size: int) -> tuple[Any, float]:
    """(the outputs, examples per second) of one pass over `rows` at `batch_size`."""
    start = time.perf_counter()
    outputs = infer(model, rows, batch_size)
    return outputs, len(rows) / (time.perf_counter() - start)


def latency(model, infer: Infer, rows: Sequence[dict]) -> dict[str, float]:
    """Median and 95th percentile milliseconds of single rows (batch 1)."""
    times = []
    for row in spread(rows, LATENCY_ROWS):
        start = time.perf_counter()
        infer(model, [row], 1)
        times.append(1000 * (time.perf_counter() - start))
    ordered = sorted(times)
    return {"latency_ms_median": statistics.median(times),
            "latency_ms_p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


def time_model(model, infer: Infer, rows: Sequence[dict], batch_size: int) -> dict[str, float]:
    """Examples per second over up to BENCH_ROWS rows after a warm-up batch (first-call
    allocations), and the batch-1 latency: one round of `bench-inference`."""
    sample = spread(rows, BENCH_ROWS)
    infer(model, sample[:batch_size], batch_size)
    _, per_s = timed_pass(model, infer, sample, batch_size)
    return {"examples_per_s": per_s, **latency(model, infer, rows)}


def merge_status(entry: Method) -> str:
    """How the method serves: `merges` (its update folds into the base weights), `nothing to
    merge` (it adds no modules: FFT, BitFit, ...) or `cannot merge` (it adds computation to
    every forward pass: bottleneck adapters, prompts, prefixes, ...); its backend says."""
    return entry.backend.merge_status(entry)


def merged_copy(model, entry: Method, adapter_name: str):
    """A copy of `model` with the method merged into the base weights by its backend
    (core.backends), the trained model left as it is. peft: `merge_adapter` on the copy, then
    every tuner layer replaced by its base layer and the head wrapper by its trained head,
    which leaves the plain transformers model, as `merge_and_unload` would (that fails for
    every non-LoRA tuner when the head is in `modules_to_save`, peft 0.21). The adapters
    library: `merge_adapter(name)`."""
    twin = entry.backend.merge(copy.deepcopy(model), adapter_name)
    twin.eval()
    return twin


def serving_bytes(model, entry: Method) -> dict[str, int]:
    """Bytes a served run keeps beside a shared base model (its trained parameters, the head
    included; the full model for methods that train a full copy (FFT) or rewrite the base
    weights, which cannot share it) and the full model's bytes."""
    trained = full = 0
    for _, param in unique_parameters(model):
        size = param.numel() * param.element_size()
        full += size
        trained += size if param.requires_grad else 0
    own_copy = entry.full_copy or entry.changes_base
    return {"serve_bytes": full if own_copy else trained, "full_model_bytes": full}


@dataclass
class Subject:
    """A trained model as the serving measurements see it, from any study."""
    model: Any
    entry: Method
    adapter_name: str
    infer: Infer                             # (model, rows, batch size) -> its outputs
    differ: Callable[[Any, Any], float]      # disagreement of two outputs (0: they agree)
    rows: Sequence[dict]                     # the run's own evaluation rows (test)
    batch_size: int                          # the run's evaluation batch size
    # (folder, threads) -> (an ONNX Runtime session, its infer): the merged model written as
    # an ONNX graph into `folder` (`bench-inference` times it on CPU); None: the study has
    # no ONNX form of its models (MT: generation is a loop, not one graph).
    onnx: Callable[[Any, int], tuple[Any, Infer]] | None = None

    def timed(self, model, infer: Infer | None = None) -> dict[str, float]:
        return time_model(model, infer or self.infer, self.rows, self.batch_size)

    def merged(self):
        """The merged copy, or None when the method does not merge."""
        if merge_status(self.entry) != "merges":
            return None
        return merged_copy(self.model, self.entry, self.adapter_name)


def measure_serving(subject: Subject, outputs: Any, examples_per_s: float) -> dict[str, Any]:
    """The record's `inference` block, right after the run's evaluation pass over
    `subject.rows` gave `outputs` at `examples_per_s`: that throughput and the batch-1
    latency as trained; where the method merges, the same for the merged copy, and its
    disagreement with `outputs`; the serving bytes."""
    block: dict[str, Any] = {"rows": len(subject.rows), "batch_size": subject.batch_size,
                             "merge": merge_status(subject.entry),
                             "unmerged": {"examples_per_s": examples_per_s,
                                          **latency(subject.model, subject.infer, subject.rows)},
                             "merged": None, "merge_max_diff": None,
                             **serving_bytes(subject.model, subject.entry)}
    twin = subject.merged()
    if twin is not None:
        merged_outputs, per_s = timed_pass(twin, subject.infer, subject.rows, subject.batch_size)
        block["merge_max_diff"] = float(subject.differ(outputs, merged_outputs))
        block["merged"] = {"examples_per_s": per_s,
                           **latency(twin, subject.infer, subject.rows)}
    return block
