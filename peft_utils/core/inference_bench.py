"""`python -m peft_utils bench-inference RESULTS_DIR`: the inference cost of finished runs
measured side by side.

Timings taken by separate processes at different times do not compare on a shared machine,
so the runs a report compares (same study and the same leading keys but the method and the
seed: one task and scenario) are loaded into this one process together and timed in
interleaved rounds, the order rotated each round; each figure is the median over rounds.
Each model is timed as trained, merged where its method merges, and (unless `--no-onnx`) as
ONNX: the merged model exported to a temporary ONNX graph (the study's `export --format onnx`,
checked against PyTorch) and run by ONNX Runtime on CPU with PyTorch's thread count. The
results go to `RESULTS_DIR/inference-bench.json` (entries of runs measured earlier are kept,
each with the session that measured it); the report's inference table and its ratios to FFT
come from there, and fall back to each run's own figures where a run was not benched.
"""
from __future__ import annotations

import fnmatch
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from peft_utils.core.runs import atomic_write_text, environment, is_trial, scan_runs
from peft_utils.core.study import study_of_config

BENCH_FILE = "inference-bench.json"
METRICS = ("examples_per_s", "latency_ms_median", "latency_ms_p95")


def group_key(record: dict[str, Any]) -> tuple:
    """The runs compared together: the study and its leading keys except method and seed."""
    info = record["run_info"]
    kind = study_of_config(info)
    return (kind.name, *(str(info.get(k)) for k in kind.leading_keys
                         if k not in ("method", "seed")))


def select_runs(root: Path, patterns: list[str] | None) -> dict[tuple, list]:
    """Complete final runs (no trials) whose id matches a pattern, by comparison group."""
    groups: dict[tuple, list] = {}
    for run in scan_runs(root):
        if run.status != "complete" or is_trial(run.record) or "inference" not in run.record:
            continue
        if patterns and not any(fnmatch.fnmatch(run.run_id, p) for p in patterns):
            continue
        groups.setdefault(group_key(run.record), []).append(run)
    return groups


def bench_group(runs: list, rounds: int, onnx: bool = True) -> dict[str, dict[str, Any]]:
    """Each run's model as trained, its merged copy and (`onnx`) its merged model run by ONNX
    Runtime on CPU, timed in `rounds` interleaved rounds on the same rows."""
    subjects = {run.run_id: study_of_config(run.record["run_info"]).serving_subject(run.folder)
                for run in runs}
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as folder:
        variants = [(run_id, name, model, None) for run_id, subject in subjects.items()
                    for name, model in (("unmerged", subject.model),
                                        ("merged", subject.merged()))
                    if model is not None]
        if onnx:
            variants += onnx_variants(subjects, Path(folder))
        timings = interleaved(subjects, variants, rounds)
    out = {}
    for run_id, subject in subjects.items():
        out[run_id] = {"method": subject.entry.name, "merged": None,
                       "device": next(subject.model.parameters()).device.type}
        if onnx:
            out[run_id]["onnx"] = None
        for name in ("unmerged", "merged", "onnx"):
            if (run_id, name) in timings:
                out[run_id][name] = {m: statistics.median(t[m] for t in timings[run_id, name])
                                     for m in METRICS}
    return out


def onnx_variants(subjects: dict[str, Any], folder: Path) -> list[tuple]:
    """(run id, "onnx", session, infer) of every subject whose study writes ONNX and whose
    method has an ONNX form (it merges, or adds nothing: core.export.format_problem), the
    graphs written under `folder`; ONNX Runtime gets as many threads as PyTorch has."""
    import torch

    from peft_utils.core.export import format_problem

    found = []
    for run_id, subject in subjects.items():
        if subject.onnx is None or format_problem(subject.entry, "onnx") is not None:
            continue
        session, infer = subject.onnx(folder / run_id, torch.get_num_threads())
        found.append((run_id, "onnx", session, infer))
    return found


def interleaved(subjects: dict[str, Any], variants: list[tuple], rounds: int
                ) -> dict[tuple[str, str], list[dict[str, float]]]:
    """(run id, variant) -> its timings, one per round, the order rotated each round."""
    timings: dict[tuple[str, str], list[dict[str, float]]] = {}
    for k in range(rounds):
        shift = k % len(variants)
        for run_id, name, model, infer in variants[shift:] + variants[:shift]:
            timings.setdefault((run_id, name), []).append(subjects[run_id].timed(model, infer))
    return timings


def read_bench(root: str | Path) -> dict[str, Any]:
    """The bench file's content ({} when there is none)."""
    path = Path(root) / BENCH_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def run_bench(root: str | Path, patterns: list[str] | None = None, rounds: int = 3,
              onnx: bool = True) -> Path:
    root = Path(root)
    groups = select_runs(root, patterns)
    if not groups:
        raise SystemExit(f"bench-inference: no complete run with an inference block in {root}"
                         + (f" matching {patterns}" if patterns else ""))
    session = time.strftime("%Y-%m-%dT%H:%M:%S")
    bench = read_bench(root)
    entries = bench.get("runs", {})
    for key, runs in groups.items():
        print(f"{' '.join(key)}: {len(runs)} runs", file=sys.stderr)
        for run_id, entry in bench_group(runs, rounds, onnx).items():
            entries[run_id] = {**entry, "group": list(key), "session": session}
    import torch

    devices = ",".join(sorted({e["device"] for e in entries.values() if "device" in e}))
    bench = {"session": session, "rounds": rounds, "threads": torch.get_num_threads(),
             "environment": environment(devices), "runs": entries}
    path = root / BENCH_FILE
    atomic_write_text(path, json.dumps(bench, indent=2))
    return path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench-inference", help="time finished runs' inference side by side in one process")
    parser.add_argument("results", help="a results folder")
    parser.add_argument("--runs", nargs="*", default=None, metavar="PATTERN",
                        help="run ids or shell patterns (default: every complete run)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false",
                        help="skip the ONNX Runtime timing (it exports each merging run's "
                             "model to ONNX first)")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    path = run_bench(args.results, args.runs, args.rounds, args.onnx)
    for run_id, entry in sorted(read_bench(args.results)["runs"].items()):
        merged, onnx = entry.get("merged") or {}, entry.get("onnx") or {}
        print(f"{run_id:55s} {entry['unmerged']['examples_per_s']:8.1f} ex/s  "
              f"{entry['unmerged']['latency_ms_median']:7.2f} ms"
              + (f"  merged {merged['latency_ms_median']:7.2f} ms" if merged else "")
              + (f"  onnx {onnx['latency_ms_median']:7.2f} ms" if onnx else ""))
    print(f"written: {path}", file=sys.stderr)
    return 0
