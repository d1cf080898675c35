"""Where a demo grid cell's wall time goes: worker and kernel start-up with the imports,
data and model loading, training, evaluation, the probe, saving, the inference measurement,
and what follows the record (plots, the executed notebook, its HTML).

Runs the demo's SIB-200 final cell of each method given (default: pfeiffer, the issue's "PEFT
demo cell") through `python -m peft_utils grid run-cell`, exactly as `grid run` does, one
after the other in a fresh results folder, with one torch thread (as each of the demo's two
workers has). The record's stage times (costs.phases) and its start time place the stages
inside the cell's wall time.

    python benchmarks/cell_overhead.py [--methods pfeiffer lora fft] [--scenario en]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def time_cell(config) -> dict[str, float]:
    from peft_utils.grid.cell import write_spec

    spec = write_spec(config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.time()
    subprocess.run([sys.executable, "-m", "peft_utils", "grid", "run-cell", str(spec)],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - start
    record = json.loads((spec.parent / "record.json").read_text())
    phases = record["costs"]["phases"]
    inside = sum(phases.get(f"{s}_s", 0.0) for s in STAGES)
    return {"wall": wall, "start-up (worker, kernel, imports, config)":
            phases["started_at"] - start,
            **{s: phases.get(f"{s}_s", 0.0) for s in STAGES},
            "after the record (plots, notebook, HTML)":
                wall - (phases["started_at"] - start) - inside,
            "training loop": record["costs"]["train_wall_s"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pfeiffer"])
    parser.add_argument("--scenario", default="en")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cell-overhead-") as tmp:
        for method in args.methods:
            parts = time_cell(demo_cell(method, args.scenario, Path(tmp)))
            wall = parts.pop("wall")
            train = parts.pop("training loop")
            print(f"\nsib200 {method} {args.scenario}: {wall:.1f} s in all")
            for name, seconds in parts.items():
                print(f"  {name:42s} {seconds:6.1f} s  {100 * seconds / wall:5.1f}%")
            outside = wall - train
            print(f"  outside the training loop: {outside:.1f} s = {100 * outside / wall:.1f}% "
                  f"of the cell (training loop {train:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
