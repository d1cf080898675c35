"""Checkpoints on disk, for resumable training: periodic checkpoints in
`results/<run_id>/trainer/` and resuming from the last complete one, so a killed run loses at
most the steps since its last checkpoint. The trainer that writes them: peft_utils.core.trainer.

`checkpoint-<step>/` holds the trainable parameters (`trainable.safetensors`: the same file
for every method, so the adapters' and peft's heads are included, unlike the adapters
trainer's own checkpoints), the optimizer, scheduler and RNG states and the trainer state
(the HF Trainer's files, read back with `torch.load(weights_only=True)`), the best dev state so
far (`best.safetensors`) and, written last and atomically, `progress.json`. A folder without
`progress.json` was being written when its process died: it is never resumed from.

Resuming reproduces the uninterrupted run exactly on the same machine: the batch order is a
function of (data seed, epoch) alone (`core.trainer.epoch_seeded_sampler`), the RNG states are
restored, and the training loss is logged at every checkpoint so the running totals restart
from a logged point.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft_utils.core.runs import atomic_write_bytes

FINAL = "checkpoint/trainable.safetensors"   # a finished run's kept state, under its folder
FOLDER = "trainer"
PREFIX = "checkpoint-"
PROGRESS = "progress.json"
TRAINABLE = "trainable.safetensors"
BEST = "best.safetensors"
METHOD_STATE = "method_state.safetensors"   # training state of the method itself (AdaLoRA)
PROGRESS_KEYS = {"run_id", "step", "finished", "total_loss", "train_wall_s", "checkpoint_wall_s",
                 "best", "best_step", "bad", "curve", "has_best"}


# ---- on disk ----------------------------------------------------------------
@dataclass
class Resume:
    folder: Path
    progress: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.progress["step"])

    @property
    def finished(self) -> bool:
        """Training had ended (last step or early stop): only evaluation was left."""
        return bool(self.progress.get("finished"))


def _step(folder: Path) -> int:
    try:
        return int(folder.name[len(PREFIX):])
    except ValueError:
        return -1


def find_resumable(out: Path, run_id: str) -> Resume | None:
    """The newest complete checkpoint of `run_id` under `out`, or None."""
    from safetensors import safe_open

    for folder in sorted((out / FOLDER).glob(f"{PREFIX}*"), key=_step, reverse=True):
        try:
            progress = json.loads((folder / PROGRESS).read_text(encoding="utf-8"))
            if (progress.get("run_id") != run_id or progress.get("step") != _step(folder)
                    or not PROGRESS_KEYS <= set(progress)):
                continue
            for name in (TRAINABLE, *([BEST] if progress.get("has_best") else [])):
                with safe_open(str(folder / name), framework="pt"):
                    pass   # the header parses: the file is whole
        except Exception:   # unreadable or half-written: not a checkpoint to trust
            continue
        return Resume(folder, progress)
    return None


def resumable(out: Path, config) -> Resume | None:
    """The checkpoint a run of `config` continues from: the newest complete one, unless the
    config keeps none (`checkpoint_steps: 0`)."""
    return find_resumable(out, config.run_id) if config.checkpoint_steps != 0 else None


def prune(out: Path, keep: Path | None = None) -> None:
    """Remove every checkpoint folder but `keep` (all of `trainer/` when keep is None)."""
    root = out / FOLDER
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
        return
    for folder in root.glob(f"{PREFIX}*"):
        if folder.resolve() != keep.resolve():
            shutil.rmtree(folder, ignore_errors=True)


def save_tensors(path: Path, state: dict[str, Any]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.contiguous() for k, v in state.items()}))


def load_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


