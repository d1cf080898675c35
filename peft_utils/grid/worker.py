"""A grid worker: runs the cells the runner hands it one after another, in one notebook kernel
kept alive across them, so that each cell after the first skips starting Python and importing
torch, transformers, peft and adapters (most of what a short cell spends outside training).

`executors.run_local` starts one per slot (`python -m peft_utils grid worker`), writes one
request per line on its stdin, `{"spec": grid-cell.json, "log": run.log}`, and reads one JSON
line back per cell on its stdout: `{"outcome": Outcome, "reusable": bool}`. Everything else the
worker and its kernel print goes to that cell's run.log, redirected at the file-descriptor
level so that C extensions and child processes follow. Closing stdin ends the worker.

A kernel is reused only if it would behave as a new one: after a cell the user namespace is
emptied, figures closed and memory handed back, and the peak-memory mark reset (each record's
peak is its own cell's). A cell that failed, a kernel that died or one that cannot be reset is
shut down; the next cell gets a new kernel. Tuning trials run in the worker process itself
(`train_and_evaluate`, no notebook), under the same reset.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from peft_utils.core.devices import reset_peak_memory
from peft_utils.core.runs import HEADLESS, record_status, run_dir
from peft_utils.grid.cell import exit_with_parent, run_cell

# Run in the kernel after a cell, not stored in its history: the namespace and figures of a
# new kernel, execution counts from 1 again, and the peak-memory mark reset.
RESET_CODE = """\
get_ipython().run_line_magic("reset", "-f")
get_ipython().execution_count = 1
import sys as _sys
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
from peft_utils.core.devices import reset_peak_memory as _reset_peak_memory
assert _reset_peak_memory(), "the peak-memory mark cannot be reset in this kernel"
del _sys, _reset_peak_memory
"""


class WarmKernel:
    """A notebook kernel that outlives one papermill execution (papermill leaves a kernel it
    did not start running, and nbclient does not stop a client of a manager it does not own:
    the clients are tracked here and stopped after each cell)."""

    def __init__(self) -> None:
        self.manager_: Any = None
        self.key: tuple[str, str] | None = None
        self.clients: list[Any] = []

    def manager(self, kernel_name: str, cwd: Path):
        """The running kernel's manager; a new kernel if none is running or it was started
        for another kernel name or folder."""
        key = (kernel_name, str(cwd))
        if self.manager_ is not None and (self.key != key or not self.manager_.is_alive()):
            self.discard()
        if self.manager_ is None:
            from jupyter_client import KernelManager

            clients = self.clients

            class TrackedKernelManager(KernelManager):
                def client(self, **kwargs):
                    client = super().client(**kwargs)
                    clients.append(client)
                    return client

            manager = TrackedKernelManager(kernel_name=kernel_name)
            manager.start_kernel(cwd=str(cwd))
            self.manager_, self.key = manager, key
        return self.manager_

    def after_cell(self, failed: bool) -> None:
        """Ready the kernel for the next cell, or shut it down if the cell failed or the
        kernel cannot be reset."""
        self._stop_clients()
        if self.manager_ is None:
            return
        if failed or not self._reset():
            self.discard()

    def _reset(self) -> bool:
        client = self.manager_.client()
        try:
            client.start_channels()
            client.wait_for_ready(timeout=60)
            reply = client.execute_interactive(RESET_CODE, store_history=False, timeout=120,
                                               output_hook=lambda msg: None)
            return reply["content"]["status"] == "ok"
        except Exception as err:   # a dead or hung kernel: the next cell starts a new one
            print(f"warning: the kernel could not be reset ({err}); starting a new one")
            return False
        finally:
            self._stop_clients()

    def _stop_clients(self) -> None:
        while self.clients:
            try:
                self.clients.pop().stop_channels()
            except Exception:
                pass

    def discard(self) -> None:
        self._stop_clients()
        if self.manager_ is not None:
            try:
                self.manager_.shutdown_kernel(now=True)
            except Exception:
                pass
            self.manager_, self.key = None, None


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
    in this process. SIGTERM (the runner stopping) ends the worker at once unless the running
    cell's record is complete: then its plots and notebook may finish first."""
    state: dict[str, Any] = {"cell": None, "stop": False}

    def stop(signum, frame):
        state["stop"] = True
        if state["cell"] is None or record_status(state["cell"]) != "complete":
            raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    kernel = WarmKernel()
    # Where the peak-memory mark cannot be reset, every cell needs a process of its own.
    reusable = reset_peak_memory()
    try:
        for line in requests:
            request = json.loads(line)
            _log_to(request["log"])
            reset_peak_memory()   # trials run in this process
            spec = json.loads(Path(request["spec"]).read_text(encoding="utf-8"))
            state["cell"] = run_dir(spec["config"]["results_dir"], spec["run_id"])
            outcome = run_cell(request["spec"], kernel)
            state["cell"] = None
            reusable = reusable and not state["stop"]
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
    exit_with_parent()
    os.environ[HEADLESS] = "1"   # as run_cell sets it; kernels started here inherit it
    # papermill logs each notebook cell and, with log_output, its output: the cell's run.log.
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return serve(sys.stdin, answers)
