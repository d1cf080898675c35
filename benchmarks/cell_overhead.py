"""Where a demo grid cell's wall time goes: worker and kernel start-up with the imports,
data and model loading, training, evaluation, the probe, saving, the inference measurement,
and what follows the record (plots, the executed notebook, its HTML).

Runs the demo's SIB-200 final cell of each method given (default: pfeiffer, the issue's "PEFT
demo cell") as `grid run` does by default (a worker process and kernel of its own), one
after the other in a fresh results folder, with one torch thread (as each of the demo's two
workers has). The record's stage times (costs.phases) and its start time place the stages
inside the cell's wall time.

With --warm it also runs the same cells through one `grid worker` after a LoRA warm-up cell,
as `grid run --keep-kernels` runs every cell after a worker's first (the kernel reset between
cells): what the warm kernel saves, and whether the records' metrics stay the same.

    python benchmarks/cell_overhead.py [--methods pfeiffer lora fft] [--scenario en] [--warm]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "train", "evaluate", "probe", "save", "inference")


def demo_cell(method: str, scenario: str, results: Path):
    from peft_utils.classification.config import load_config

    config = load_config(REPO / "configs" / "demo" / "sib200.yaml",
                         {"method": method, "scenario": scenario, "seed": 2,
                          "head_learning_rate": 1e-2, "results_dir": str(results)})
    # As in a grid cell: every path absolute (the kernel runs in notebooks/).
    return config.replace(data_root=str(REPO / config.data_root), model=str(REPO / config.model))


def _parts(record_path: Path, start: float, wall: float) -> dict[str, float]:
    """The cell's wall time split by the record's stage times (costs.phases)."""
    record = json.loads(record_path.read_text())
    phases = record["costs"]["phases"]
    inside = sum(phases.get(f"{s}_s", 0.0) for s in STAGES)
    return {"wall": wall, "start-up (worker, kernel, imports, config)":
            phases["started_at"] - start,
            **{s: phases.get(f"{s}_s", 0.0) for s in STAGES},
            "after the record (plots, notebook, HTML)":
                wall - (phases["started_at"] - start) - inside,
            "training loop": record["costs"]["train_wall_s"]}


def time_cells(configs, keep_kernels: bool) -> list[dict[str, float]]:
    """Each config's cell through one slot's `grid worker`, as `grid run` hands them to it
    (with `keep_kernels` as `grid run --keep-kernels`: one kernel, reset between cells)."""
    import threading

    from peft_utils.grid.cell import write_spec
    from peft_utils.grid.executors import CellWorker

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = CellWorker(env, keep_kernels, threading.Lock(), threading.Event())
    parts = []
    try:
        for config in configs:
            spec = write_spec(config)
            start = time.time()
            outcome = worker.run(spec, spec.parent / "run.log")
            assert outcome and outcome["status"] == "complete", outcome
            parts.append(_parts(spec.parent / "record.json", start, time.time() - start))
    finally:
        worker.close()
    return parts


def _print(title: str, parts: dict[str, float]) -> None:
    wall, train = parts.pop("wall"), parts.pop("training loop")
    print(f"\n{title}: {wall:.1f} s in all")
    for name, seconds in parts.items():
        print(f"  {name:42s} {seconds:6.1f} s  {100 * seconds / wall:5.1f}%")
    outside = wall - train
    print(f"  outside the training loop: {outside:.1f} s = {100 * outside / wall:.1f}% "
          f"of the cell (training loop {train:.1f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pfeiffer"])
    parser.add_argument("--scenario", default="en")
    parser.add_argument("--warm", action="store_true",
                        help="also run the cells in one grid worker, its kernel kept across them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cell-overhead-") as tmp:
        fresh = [demo_cell(m, args.scenario, Path(tmp) / "fresh") for m in args.methods]
        for config, parts in zip(fresh, time_cells(fresh, keep_kernels=False)):
            _print(f"sib200 {config.method} {args.scenario}, own kernel", parts)
        if not args.warm:
            return 0
        warm = [c.replace(results_dir=str(Path(tmp) / "warm")) for c in fresh]
        warm_up = demo_cell("lora", args.scenario, Path(tmp) / "warm-up")
        warm_parts = time_cells([warm_up, *warm], keep_kernels=True)[1:]
        for before, config, parts in zip(fresh, warm, warm_parts):
            _print(f"sib200 {config.method} {args.scenario}, warm kernel", parts)
            print("  metrics identical to the own-kernel run:",
                  _metrics(config) == _metrics(before))
    return 0


def _metrics(config) -> dict:
    from peft_utils.core.runs import read_record, run_dir

    return read_record(run_dir(config.results_dir, config.run_id))["metrics"]


if __name__ == "__main__":
    sys.exit(main())
