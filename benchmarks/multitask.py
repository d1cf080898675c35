"""K tasks served from one base model (`peft_utils.classification.multitask`) against K
separate fully fine-tuned models: memory and time, measured side by side in one run.

    python benchmarks/multitask.py RESULTS [--tasks 1 3 10] [--rounds 3] [--out FILE]

From RESULTS: per method, one complete final run per data set (the first by run id; trials
left out). The K tasks are those runs in turn under K names: with two data sets, K = 10 is
each run's adapter (or FFT model) loaded 5 times, as 10 separate copies, so the memory and
time are those of 10 tasks, not their scores. Adapter methods serve every task from one base
(peft: the request's adapter selected, all tasks at once in a mixed batch; the adapters
library: `Parallel` composition); the reference method (FFT) keeps K whole models.

- memory, each (method, K) loaded in a fresh child process: the bytes of the parameters and
  buffers it holds (exact), and the RSS delta: resident memory after loading and one pass of
  every task over the batch below, minus before (torch and the libraries imported), with its
  file-backed part. transformers maps the base weights from the model's safetensors file,
  and a page is resident only once read or written: the embedding rows of tokens never
  seen stay out, so the shared base's RSS is below its bytes; FFT writes every weight (its
  trained state), and the allocator keeps part of the freed checkpoint buffers, so its RSS
  is above;
- time, all methods in this process, in interleaved rounds (order rotated each round;
  medians): a request (one row at batch 1 to task i mod K, over 16 test rows spread over the
  lengths) and every task on one batch of 8 rows (one pass through the shared base; K passes
  of the K models).

Prints a Markdown table and writes the figures to --out (default RESULTS/multitask-bench.json,
where the classification report's storage column reads them: `measured` for the methods and
the K measured).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from peft_utils.classification.config import RunConfig
from peft_utils.classification.export import Settings
from peft_utils.classification.inference import collator, infer_logits
from peft_utils.classification.models import load_tokenizer
from peft_utils.classification.multitask import load_tasks
from peft_utils.classification.run_data import load_frames
from peft_utils.classification.training import load_run
from peft_utils.core import methods
from peft_utils.core.cost_of_use import MULTITASK_BENCH
from peft_utils.core.devices import prepare_device
from peft_utils.core.export import finished_run
from peft_utils.core.outputs import fmt_number
from peft_utils.core.pipeline import read_config
from peft_utils.core.runs import atomic_write_text, environment, is_trial, scan_runs
from peft_utils.core.serving import LATENCY_ROWS, spread

BATCH_ROWS = 8


@dataclass
class System:
    """K tasks' models as the timings see them."""
    method: str
    request: Callable[[int, dict], Any]         # (task index, row) -> its logits
    every_task: Callable[[int, list], Any]      # (K, rows) -> the first K tasks' logits
    modules: list                                # what it holds (for its bytes)


def finals(root: Path) -> dict[str, list[Path]]:
    """Per method, one complete final run per data set."""
    picked: dict[str, dict[str, Path]] = {}
    for run in scan_runs(root):
        if run.status != "complete" or is_trial(run.record):
            continue
        info = run.record["run_info"]
        picked.setdefault(info["method"], {}).setdefault(info["dataset"], run.folder)
    return {method: list(runs.values()) for method, runs in picked.items()}


def reference_of(runs: dict[str, list[Path]]) -> str:
    """The method the others are compared with (the registry's reference, FFT)."""
    found = [m for m in runs if methods.get(m).reference]
    if not found:
        raise SystemExit("no run of the reference method to compare with")
    return found[0]


def cycled(folders: list[Path], k: int) -> list[Path]:
    return [folders[i % len(folders)] for i in range(k)]


def shared_system(method: str, folders: list[Path], k: int) -> System:
    names = [f"task{i}" for i in range(k)]
    tasks = load_tasks(cycled(folders, k), names)
    return System(method, lambda i, row: tasks.logits(names[i], [row], 1),
                  lambda n, rows: tasks.every_task_logits(rows, len(rows), names[:n]),
                  [tasks.model, *(t.head for t in tasks.tasks.values())])


def separate_system(method: str, folders: list[Path], k: int) -> System:
    loaded = [load_run(folder) for folder in cycled(folders, k)]
    config, _, tokenizer = loaded[0]
    _, precision = prepare_device(config)
    collate = collator(tokenizer, config)
    models = [built.model.eval() for _, built, _ in loaded]

    def infer(i: int, rows: list) -> Any:
        return infer_logits(models[i], rows, len(rows), collate, precision)

    return System(method, lambda i, row: infer(i, [row]),
                  lambda n, rows: [infer(i, rows) for i in range(n)], models)


def system(method: str, folders: list[Path], k: int) -> System:
    """K tasks of `method`: on one shared base, or K whole models for a method whose runs
    keep a full copy (the reference)."""
    entry = methods.get(method)
    build = separate_system if entry.full_copy else shared_system
    return build(method, folders, k)


# ---- memory: one child process per (method, K) ---------------------------------------------
def held_bytes(modules: list) -> int:
    """Bytes of the parameters and buffers of `modules`, each tensor once."""
    seen, total = set(), 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total


def resident() -> dict[str, int]:
    """This process's resident bytes, and of them those backed by files (weights mapped
    from a safetensors file count only where touched, and the page cache can share them)."""
    import psutil

    info = psutil.Process().memory_info()
    return {"rss_delta_bytes": info.rss, "rss_file_delta_bytes": info.shared}


def memory_child(root: Path, method: str, k: int) -> None:
    """Print the memory of `method`'s K tasks loaded in this (fresh) process."""
    import adapters  # noqa: F401  (the libraries' own memory is not the tasks')
    import peft  # noqa: F401
    import transformers  # noqa: F401

    runs = finals(root)
    batch = spread(evaluation_rows(runs[reference_of(runs)][0]), BATCH_ROWS)
    gc.collect()
    before = resident()
    loaded = system(method, runs[method], k)
    loaded.every_task(k, batch)   # serving: the weights a pass reads are resident
    gc.collect()
    after = resident()
    print(json.dumps({"held_bytes": held_bytes(loaded.modules),
                      **{key: after[key] - before[key] for key in after}}))


def memory(root: Path, method: str, k: int) -> dict[str, int]:
    out = subprocess.run([sys.executable, __file__, str(root), "--memory-of", method, str(k)],
                         capture_output=True, text=True, check=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- time: every method side by side in this process ---------------------------------------
def milliseconds(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - start)


def one_round(sys_: System, k: int, rows: list, batch: list) -> dict[str, float]:
    requests = [milliseconds(lambda i=i, row=row: sys_.request(i % k, row))
                for i, row in enumerate(rows)]
    return {"request_ms": statistics.median(requests),
            "every_task_ms": milliseconds(lambda: sys_.every_task(k, batch))}


def timings(systems: list[System], ks: list[int], rows: list, rounds: int) -> dict:
    batch = spread(rows, BATCH_ROWS)
    requests = spread(rows, LATENCY_ROWS)
    for sys_ in systems:   # warm-up: first-call allocations
        sys_.every_task(max(ks), batch)
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    cells = [(s, k) for s in systems for k in ks]
    for r in range(rounds):
        for sys_, k in cells[r % len(cells):] + cells[:r % len(cells)]:
            runs.setdefault((sys_.method, k), []).append(one_round(sys_, k, requests, batch))
    return {key: {m: statistics.median(t[m] for t in times) for m in times[0]}
            for key, times in runs.items()}


def evaluation_rows(folder: Path) -> list[dict]:
    """A run's test rows as the run made them (its max_length and long-text strategy)."""
    config = read_config(folder, RunConfig)
    settings = Settings.of_run(config, finished_run(folder))
    texts = list(load_frames(config)["test"]["text"])
    return settings.rows(texts, load_tokenizer(config.model))[0]


# ---- the table -------------------------------------------------------------------------------
def table(figures: list[dict[str, Any]], reference: str) -> str:
    ref = {f["k"]: f for f in figures if f["method"] == reference}
    lines = [f"| method | K | held MiB (params + buffers) | vs K × {reference} | "
             f"RSS Δ MiB (file-backed) | "
             f"request ms (batch 1) | vs {reference} | every task, {BATCH_ROWS} rows, ms | "
             f"vs {reference} |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for f in figures:
        r = ref[f["k"]]
        lines.append(
            f"| {f['method']} | {f['k']} | {fmt_number(f['held_bytes'] / 2**20, 0)} | "
            f"{fmt_number(f['held_bytes'] / r['held_bytes'], 3, '×')} | "
            f"{fmt_number(f['rss_delta_bytes'] / 2**20, 0)} "
            f"({fmt_number(f['rss_file_delta_bytes'] / 2**20, 0)}) | "
            f"{fmt_number(f['request_ms'], 1)} | "
            f"{fmt_number(f['request_ms'] / r['request_ms'], 2, '×')} | "
            f"{fmt_number(f['every_task_ms'], 0)} | "
            f"{fmt_number(f['every_task_ms'] / r['every_task_ms'], 2, '×')} |")
    return "\n".join(lines)


def bench(root: Path, ks: list[int], rounds: int) -> tuple[list[dict[str, Any]], str]:
    runs = finals(root)
    reference = reference_of(runs)
    order = [reference, *sorted(m for m in runs if m != reference)]
    print(f"memory: {len(order) * len(ks)} child processes", file=sys.stderr)
    mem = {(m, k): memory(root, m, k) for m in order for k in ks}
    print("timing", file=sys.stderr)
    systems = [system(m, runs[m], max(ks)) for m in order]
    timed = timings(systems, ks, evaluation_rows(runs[reference][0]), rounds)
    figures = [{"method": m, "k": k, **mem[m, k], **timed[m, k]} for m in order for k in ks]
    return figures, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--memory-of", nargs=2, metavar=("METHOD", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        memory_child(args.results, args.memory_of[0], int(args.memory_of[1]))
        return
    import torch

    figures, reference = bench(args.results, args.tasks, args.rounds)
    text = table(figures, reference)
    out = args.out or args.results / MULTITASK_BENCH
    atomic_write_text(out, json.dumps({
        "session": time.strftime("%Y-%m-%dT%H:%M:%S"), "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "environment": environment("cuda" if torch.cuda.is_available() else "cpu"),
        "figures": figures, "table": text}, indent=2))
    print(text)
    print(f"written: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
