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
