"""Where a demo grid cell's wall time goes: worker and kernel start-up with the imports,
data and model loading, training, evaluation, the probe, saving, the inference measurement,
and what follows the record (plots, the executed notebook, its HTML).

Runs the demo's SIB-200 final cell of each method given (default: pfeiffer, the issue's "PEFT
demo cell") through `python -m peft_utils grid run-cell`, exactly as `grid run` does, one
after the other in a fresh results folder, with one torch thread (as each of the demo's two
workers has). The record's stage times (costs.phases) and its start time place the stages
inside the cell's wall time.

With --warm it also runs the same cells in one kernel kept alive across them (papermill with
a running kernel manager), after a LoRA warm-up cell, as a grid worker that reused its kernel
would: what a warm kernel would save, and whether the records' metrics stay the same. The grid
does not do this yet (every cell starts its own kernel).

    python benchmarks/cell_overhead.py [--methods pfeiffer lora fft] [--scenario en] [--warm]
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
    return _parts(spec.parent / "record.json", start, time.time() - start)


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


def time_warm(configs, warm_up) -> list[dict[str, float]]:
    """Each config's notebook in one kernel that stays up, after the warm-up cell; the
    parts as in time_cell (no HTML: the cell's own rendering is the same either way)."""
    import papermill as pm
    from jupyter_client import KernelManager

    from peft_utils.core.runs import HEADLESS, run_dir
    from peft_utils.core.study import study_of_config
    from peft_utils.grid.cell import KERNEL, executed_notebook

    os.environ.update({"OMP_NUM_THREADS": "1", HEADLESS: "1"})   # as run_cell's kernel
    kernel = KernelManager(kernel_name=KERNEL)
    kernel.start_kernel(cwd=str(REPO / "notebooks"))
    parts = []
    try:
        for config in [warm_up, *configs]:
            kind = study_of_config(config.to_dict())
            out = run_dir(config.results_dir, config.run_id)
            out.mkdir(parents=True, exist_ok=True)
            start = time.time()
            pm.execute_notebook(str(kind.notebook), str(executed_notebook(out, kind)),
                                parameters=kind.notebook_parameters(config), km=kernel,
                                kernel_name=KERNEL, cwd=str(kind.notebook.parent),
                                progress_bar=False)
            parts.append(_parts(out / "record.json", start, time.time() - start))
    finally:
        kernel.shutdown_kernel(now=True)
    return parts[1:]


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
                        help="also run the cells in one kernel kept alive across them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cell-overhead-") as tmp:
        fresh = [demo_cell(m, args.scenario, Path(tmp) / "fresh") for m in args.methods]
        for config in fresh:
            _print(f"sib200 {config.method} {args.scenario}, own kernel", time_cell(config))
        if not args.warm:
            return 0
        warm = [c.replace(results_dir=str(Path(tmp) / "warm")) for c in fresh]
        warm_up = demo_cell("lora", args.scenario, Path(tmp) / "warm-up")
        for before, config, parts in zip(fresh, warm, time_warm(warm, warm_up)):
            _print(f"sib200 {config.method} {args.scenario}, warm kernel", parts)
            print("  metrics identical to the own-kernel run:",
                  _metrics(config) == _metrics(before))
    return 0


def _metrics(config) -> dict:
    from peft_utils.core.runs import read_record, run_dir

    return read_record(run_dir(config.results_dir, config.run_id))["metrics"]


if __name__ == "__main__":
    sys.exit(main())
