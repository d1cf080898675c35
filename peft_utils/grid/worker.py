"""A grid worker: runs the cells the runner hands it one after another, keeping one notebook
kernel across them when asked, so that each cell after the first skips starting Python and
importing torch, transformers, peft and adapters (most of what a short cell spends outside
training). The runner asks for that only with `grid run --keep-kernels`: metrics stay the
same, but a kept kernel's cells skip the warm-up its first cell paid inside its training time
and, on CPU, peak higher after a larger cell (the C allocator's state, which no reset
restores), so their costs do not compare with other cells'.

`executors.run_local` starts one per slot (`python -m peft_utils grid worker`) and writes one
request per line on its stdin, `{"spec": grid-cell.json, "log": run.log, "keep": bool}` (keep:
another cell may follow in this kernel). It reads one JSON line back per cell on the worker's
stdout, `{"outcome": Outcome, "reusable": bool}`. Everything else the worker and its kernel
print goes to that cell's run.log, redirected at the file-descriptor level so that C
extensions and child processes follow. Closing stdin ends the worker.

A kept kernel behaves as a new one where it matters: after a cell the user namespace is
emptied, figures closed, memory handed back and the peak-memory mark reset. A cell that
failed, a kernel that died or one that cannot be reset is shut down; the next cell gets a new
kernel. Tuning trials run in the worker process itself (`train_and_evaluate`, no notebook),
under the same reset.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from peft_utils.core.devices import reset_peak_memory
from peft_utils.core.runs import run_dir
from peft_utils.grid.cell import interrupt_unless_recorded, run_cell, start_worker_process
from peft_utils.grid.kernel import WarmKernel


def _log_to(path: str) -> None:
    """Send this process's stdout and stderr (and what children inherit) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve(requests, answers) -> int:
    """Run each requested cell; answer with its outcome and whether another cell may follow
    in this process. SIGTERM: see cell.interrupt_unless_recorded."""
    state: dict[str, Any] = {"cell": None, "stop": False}

    def stop(signum, frame):
        state["stop"] = True
        interrupt_unless_recorded(state["cell"], signum)

    start_worker_process(stop)
    kernel = WarmKernel()
    try:
        for line in requests:
            request = json.loads(line)
            _log_to(request["log"])
            kernel.keep = request.get("keep", True)
            # Trials run in this process; where the peak-memory mark cannot be reset, every
            # cell needs a process of its own.
            resettable = reset_peak_memory()
            spec = json.loads(Path(request["spec"]).read_text(encoding="utf-8"))
            state["cell"] = run_dir(spec["config"]["results_dir"], spec["run_id"])
            outcome = run_cell(request["spec"], kernel)
            state["cell"] = None
            reusable = resettable and not state["stop"]
            answers.write(json.dumps({"outcome": outcome, "reusable": reusable}) + "\n")
            answers.flush()
            if not reusable:
                break
    except KeyboardInterrupt:
        return 130
    finally:
        kernel.discard()
    return 0


def main() -> int:
    """Entry point of `grid worker`: requests on stdin, answers on a copy of stdout (stdout
    itself then follows each cell's run.log)."""
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return serve(sys.stdin, answers)
