"""benchmarks/gpu_check.py in its CPU mode: the tiny test model for the training and inference
bench, XLM-R-large's config cut to 2 layers for the paper-shaped step, few steps."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["fft", "lora", "pfeiffer", "houlsby"]


def test_cpu_mode_measures_every_method_and_projects_the_paper_grid(tiny_model, tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
         "--model", str(tiny_model), "--methods", *METHODS, "--steps", "2",
         "--shape", "4x16", "--paper-shape", "2x32", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["precision"] == "fp32"
    assert result["skipped"] == []
    for part in ("train", "paper_step", "inference"):
        assert set(result[part]) == set(METHODS), part
    for part in ("train", "paper_step"):
        assert result[part]["fft"]["ratio_to_fft"] == 1.0
        for row in result[part].values():
            assert row["step_s"] > 0 and row["ratio_to_fft"] > 0
    for row in result["train"].values():
        assert 0 < row["mfu"] < 1     # on CPU against the matmul rate measured in the run
    assert result["paper_step"]["fft"]["layers"] == 2   # the tiny cut, not the real model
    # Only FFT trains every weight: a PEFT method trains a small fraction of it.
    assert all(result["paper_step"][m]["trainable"] < result["paper_step"]["fft"]["trainable"] / 5
               for m in METHODS if m != "fft")
    for row in result["inference"].values():
        assert row["examples_per_s"] > 0 and row["latency_ms_median"] > 0
    assert result["inference"]["lora"]["merge"] == "merges"
    assert result["inference"]["lora"]["merged"]["examples_per_s"] > 0
    assert result["inference"]["pfeiffer"]["merged"] is None
    untuned, tuned = result["projection"]["untuned"], result["projection"]["tuned"]
    assert sum(untuned["runs"].values()) == 81      # 3 subtasks × 3 methods × 3 scenarios × 3 seeds
    assert set(untuned["gpu_hours"]) == {"fft", "pfeiffer", "lora"}
    assert all(math.isfinite(h) and h > 0 for h in untuned["gpu_hours"].values())
    assert math.isfinite(tuned["total_gpu_hours"])
    assert tuned["total_gpu_hours"] > untuned["total_gpu_hours"]
    assert "| fft |" in done.stdout and "| tuned |" in done.stdout


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_budget_skips_a_measurement_that_would_overrun_and_lists_it():
    gpu_check = load_script()
    budget, skipped = gpu_check.Budget(0.3), []
    # Each takes 0.12 s: the second ends at 0.24 s, a third would end past 0.95 × 0.3 s.
    out = gpu_check.run_phase("train", lambda method, ctx: time.sleep(0.12) or {"m": method},
                              ["fft", "lora", "pfeiffer"], None, budget, skipped)
    assert list(out) == ["fft", "lora"] and skipped == ["train pfeiffer: budget"]


def test_a_method_out_of_memory_is_listed_and_the_next_one_runs():
    gpu_check = load_script()
    skipped = []

    def measure(method, ctx):
        if method == "fft":
            raise gpu_check.out_of_memory()("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"m": method}

    out = gpu_check.run_phase("paper", measure, ["fft", "lora"], None, gpu_check.Budget(60),
                              skipped)
    assert list(out) == ["lora"]
    assert skipped == ["paper fft: out of memory (CUDA out of memory. Tried to allocate 2.00 GiB)"]
