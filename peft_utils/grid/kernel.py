"""A notebook kernel kept from one papermill execution to the next (grid.worker runs cell
after cell in it), reset in between to what a new kernel holds that matters."""
from __future__ import annotations

from pathlib import Path
from typing import Any

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
        self.km: Any = None
        self.key: tuple[str, str] | None = None
        self.clients: list[Any] = []
        self.keep = True   # False: the kernel serves one cell (no reset after it)

    def manager(self, kernel_name: str, cwd: Path):
        """The running kernel's manager; a new kernel if none is running or it was started
        for another kernel name or folder."""
        key = (kernel_name, str(cwd))
        if self.km is not None and (self.key != key or not self.km.is_alive()):
            self.discard()
        if self.km is None:
            from jupyter_client import KernelManager

            clients = self.clients

            class TrackedKernelManager(KernelManager):
                def client(self, **kwargs):
                    client = super().client(**kwargs)
                    clients.append(client)
                    return client

            manager = TrackedKernelManager(kernel_name=kernel_name)
            manager.start_kernel(cwd=str(cwd))
            self.km, self.key = manager, key
        return self.km

    def after_cell(self, failed: bool) -> None:
        """Ready the kernel for the next cell, or shut it down if the cell failed or the
        kernel cannot be reset."""
        self._stop_clients()
        if self.km is None:
            return
        if failed or not self.keep or not self._reset():
            self.discard()

    def _reset(self) -> bool:
        client = self.km.client()
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
        if self.km is not None:
            try:
                self.km.shutdown_kernel(now=True)
            except Exception:
                pass
            self.km, self.key = None, None
