"""Where a run computes and in what precision, how many CPU threads it may use, and the peak
memory it reached: the same rules for every study."""
from __future__ import annotations

import os
import resource
import sys


def select_devices(config) -> tuple[str, str]:
    """(device, precision) of a config with `device` and `precision` fields: the GPU and bf16
    where present, else CPU and fp32."""
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else (
            "mps" if torch.backends.mps.is_available() else "cpu")
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu" and precision != "fp32":
        raise ValueError(f"precision {precision} needs a GPU; use precision=fp32 on CPU")
    return device, precision


def set_cpu_threads() -> int:
    """Intra-op threads = the cores this process may use (a grid worker's share when the
    runner sets OMP_NUM_THREADS), not the machine's count that torch assumes."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(os.environ.get("OMP_NUM_THREADS") or cores or 1)
    torch.set_num_threads(max(1, threads))
    return threads


def prepare_device(config) -> tuple[str, str]:
    """select_devices, and on CPU the thread count."""
    device, precision = select_devices(config)
    if device == "cpu":
        set_cpu_threads()
    return device, precision


def peak_memory(device: str) -> tuple[float, str]:
    """(MiB, what was measured): the CUDA allocator's peak since training began on a GPU
    (RunTrainerMixin.fit resets it), else this process's peak resident memory since it
    started or since reset_peak_memory (a grid worker runs one cell after another)."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    return _resident_high_water_kb() / 1024, "cpu_peak_rss"


def _resident_high_water_kb() -> float:
    """VmHWM, which reset_peak_memory can reset; ru_maxrss (the same figure in a process that
    never reset it, in kilobytes on Linux) where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_memory() -> bool:
    """Make the next run in this process measure its own CPU peak, as if it had the process
    to itself: garbage collected, freed heap handed back to the system, the resident
    high-water mark reset to what is resident now. False where the mark cannot be reset
    (no Linux /proc): then the process must not run another measured run."""
    import ctypes
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)   # glibc keeps freed arenas resident otherwise
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")   # 5: reset the peak resident set size (Linux >= 4.0)
    except OSError:
        return False
    return True


def is_main_process() -> bool:
    # `accelerate launch` / torchrun set RANK; rank 0 owns the run folder.
    return int(os.environ.get("RANK", "0") or 0) == 0
