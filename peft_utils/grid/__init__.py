"""Grids of runs: a grid file expands into cells (one config each, of the grid's study:
`kind: classification` by default, or `mt`); every cell executes the study's notebook
(notebooks/train.ipynb, notebooks/mt_train.ipynb) with papermill into its run folder,
`results/<run_id>/`. The grid knows the core and the study interface
(peft_utils.core.study), nothing else of a study.

Usage
-----
    python -m peft_utils grid run configs/grids/X.yaml --dry-run     # list the cells
    python -m peft_utils grid run configs/grids/X.yaml --workers 2   # run them, 2 at a time
    python -m peft_utils grid run configs/grids/X.yaml --executor slurm
    python -m peft_utils grid status configs/grids/X.yaml            # which are done

A run folder gets `grid-cell.json` (what was asked), `run.log` (papermill and kernel output),
`train.ipynb` and `train.html` (the executed notebook; `mt_train.*` for MT), and from the
notebook itself
`config.json`, `record.json`, `predictions/` and `checkpoint/`.

- Checking: before any cell runs, every cell to run is checked (configuration, data and
  model paths, a writable results folder, and the data themselves); all problems are listed
  at once and nothing runs (exit 2).
- Resuming: a cell whose record says `complete` is skipped, so re-running an interrupted or
  partly failed grid runs only what is missing (failed and interrupted cells run again, their
  training from its last checkpoint). A killed runner's workers and kernels end with it; a
  lock per run folder keeps two processes from running one cell.
- Failures stay in their cell: the record says `failed` with the error (the runner writes it
  when the notebook died before `train_and_evaluate` could), the executed notebook is kept,
  the other cells go on, and the command exits 1 listing the failed cells.
- Local executor: `--workers N` cells at once, each in its own process with its own GPU
  (CUDA_VISIBLE_DEVICES, round robin over the visible GPUs) or, on CPU, an equal share of the
  cores (OMP_NUM_THREADS, unless already set).
- Slurm executor: one array task per cell through submitit; parameters come from the grid
  file's `slurm:` mapping (partition, gpus_per_node, cpus_per_task, mem_gb, timeout_min, ...;
  `cluster: local` runs the jobs as local processes). The command waits and reports; Ctrl-C
  stops waiting, not the jobs. Which job runs which cell is kept in
  `_submitit/<grid>/jobs.json`: a later runner waits for a cell's queued or running job
  instead of submitting another; a job at its time limit or preempted is requeued and
  resumes its cell from the checkpoint; `--detach` submits and returns (a tuned grid's
  stages then run in a coordinator job). See `grid.slurm` and docs/cluster.md.

One run on several GPUs
-----------------------
Data-parallel training of one configuration goes through accelerate and the `train` command
(only rank 0 writes the record, predictions and checkpoint):

    accelerate launch --num_processes 2 -m peft_utils train --config configs/semeval/st1.yaml \\
        --set method=fft --set seed=1

`batch_size` is per process, so the effective batch is num_processes × batch_size × grad_accum;
scale `batch_size` or `grad_accum` to keep the paper's batch. With two or more GPUs visible,
accelerate picks its multi-GPU (torchrun) launcher by itself. A two-process smoke test on a
machine without GPUs needs the launcher named, and then runs both processes on the CPU (gloo):

    accelerate launch --multi_gpu --num_processes 2 -m peft_utils train --config tiny.yaml

(`accelerate launch --cpu --num_processes 2` does not: `--cpu` uses the single-process launcher
unless MPI is set up.) A grid cell always runs in one process; run multi-GPU configurations
with the command above.
"""
from __future__ import annotations

from peft_utils.grid.cli import register
from peft_utils.grid.spec import Cell, Grid, expand_grid, load_grid

__all__ = ["Cell", "Grid", "expand_grid", "load_grid", "register"]
