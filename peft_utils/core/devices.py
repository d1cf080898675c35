"""Where a run computes and in what precision, how many CPU threads it may use, and the peak
memory it reached: the same rules for every study."""
from __future__ import annotations

import os
import resource


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
    (RunTrainerMixin.fit resets it), else this process's peak resident memory (one cell per
    process in a grid)."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"


def is_main_process() -> bool:
    # `accelerate launch` / torchrun set RANK; rank 0 owns the run folder.
    return int(os.environ.get("RANK", "0") or 0) == 0
