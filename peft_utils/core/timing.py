"""Wall time of a run's stages, for the record: where a cell's time goes."""
from __future__ import annotations

import contextlib
import time


class Stopwatch:
    """`with clock("train"): ...` adds the block's wall seconds to `clock.seconds["train"]`."""

    def __init__(self) -> None:
        self.started_at = time.time()   # epoch seconds: lines up with the grid's cell times
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        return {"started_at": self.started_at, **{f"{k}_s": v for k, v in self.seconds.items()}}


def run_seconds(phases: dict[str, float]) -> float:
    """A run's timed seconds: the sum of its record's phases (`Stopwatch.as_dict`)."""
    return sum(v for k, v in phases.items() if k.endswith("_s"))


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an fp32 size x size matmul on this process's CPU threads, best of `repeats`
    after a warm-up: the peak the benchmarks' MFU on CPU is measured against."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best
