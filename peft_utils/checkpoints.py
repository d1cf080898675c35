"""Resumable training: periodic checkpoints in `results/<run_id>/trainer/` and resuming from
the last complete one, so a killed run loses at most the steps since its last checkpoint.

`checkpoint-<step>/` holds the trainable parameters (`trainable.safetensors`: the same file
for every method, so the adapters' and peft's heads are included, unlike the adapters
trainer's own checkpoints), the optimizer, scheduler and RNG states and the trainer state
(the HF Trainer's files, read back with `torch.load(weights_only=True)`), the best dev state so
far (`best.safetensors`) and, written last and atomically, `progress.json`. A folder without
`progress.json` was being written when its process died: it is never resumed from.

Resuming reproduces the uninterrupted run exactly on the same machine: the batch order is a
function of (data seed, epoch) alone (`EpochSeededLengthGroupedSampler`), the RNG states are
restored, and the training loss is logged at every checkpoint so the running totals restart
from a logged point.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft_utils.models import load_trainable_state, trainable_state
from peft_utils.results import WriteError, atomic_write_bytes, atomic_write_text, write_error

FOLDER = "trainer"
PREFIX = "checkpoint-"
PROGRESS = "progress.json"
TRAINABLE = "trainable.safetensors"
BEST = "best.safetensors"
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


# ---- data order -------------------------------------------------------------
def epoch_seeded_sampler(batch_size: int, lengths: list[int], seed: int):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
        """Length-grouped batches in an order fixed by (seed, epoch). The stock sampler draws
        from the global RNG, which dropout has moved on by the time a resumed run reaches the
        same epoch, so a run resumed mid-epoch would see other batches."""

        def __init__(self):
            super().__init__(batch_size, lengths=lengths)
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __iter__(self):
            import torch
            from transformers.trainer_pt_utils import get_length_grouped_indices

            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            return iter(get_length_grouped_indices(self.lengths, self.batch_size,
                                                   generator=generator))

    return EpochSeededLengthGroupedSampler()


# ---- callbacks ----------------------------------------------------------------
def best_dev_state(patience: int | None):
    from transformers import TrainerCallback

    class BestDevState(TrainerCallback):
        """Keep the trainable state of the best dev evaluation, stop after `patience` worse
        evaluations, restore the best state at the end. Model-agnostic, so adapter methods
        keep their head too (the adapters trainer saves adapters only)."""

        def __init__(self):
            self.best, self.best_state, self.best_step, self.bad = None, None, None, 0
            self.curve: list[dict[str, Any]] = []

        def on_evaluate(self, args, state, control, model=None, metrics=None, **kw):
            value = metrics["eval_main"]
            self.curve.append({"step": state.global_step, "epoch": state.epoch, "dev": value,
                               "loss": metrics.get("eval_loss")})
            if self.best is None or value > self.best:
                self.best, self.best_step, self.bad = value, state.global_step, 0
                self.best_state = trainable_state(model)
            else:
                self.bad += 1
                if patience and self.bad >= patience:
                    control.should_training_stop = True

        def on_train_end(self, args, state, control, model=None, **kw):
            self.restore(model)

        def restore(self, model) -> None:
            if self.best_state is not None:
                load_trainable_state(model, self.best_state)

        def export(self) -> dict[str, Any]:
            return {"best": self.best, "best_step": self.best_step, "bad": self.bad,
                    "curve": self.curve, "has_best": self.best_state is not None}

        def load(self, progress: dict[str, Any], folder: Path) -> None:
            self.best, self.best_step = progress["best"], progress["best_step"]
            self.bad, self.curve = progress["bad"], list(progress["curve"])
            self.best_state = load_tensors(folder / BEST) if progress["has_best"] else None

    return BestDevState()


def checkpoint_callback(trainer, resume: Resume | None):
    from transformers import TrainerCallback

    class LogAtCheckpoints(TrainerCallback):
        """Log the training loss at every checkpoint step, so that the loss accumulated since
        the last log is never lost with the process; on resume, restart the running total of
        the loss where the checkpoint left it."""

        def on_train_begin(self, args, state, control, **kw):
            if resume is not None:
                trainer._total_loss_scalar = float(resume.progress["total_loss"])

        def on_step_end(self, args, state, control, **kw):
            if control.should_save:
                control.should_log = True

        on_epoch_end = on_step_end

    return LogAtCheckpoints()


# ---- trainer ------------------------------------------------------------------
def trainer_class(base):
    """`base` (Trainer or AdapterTrainer) evaluating in dataset order and checkpointing the
    trainable state of every method the same way."""
    import torch

    class RunTrainer(base):
        run_id: str = ""
        best = None              # the BestDevState callback
        prior_wall_s = 0.0       # training time before the checkpoint this run resumed from
        prior_checkpoint_s = 0.0
        checkpoint_s = 0.0       # time spent writing checkpoints in this process
        started: float | None = None
        head_lr: float | None = None     # the head's own learning rate (head_learning_rate)
        head_params: frozenset = frozenset()   # ids of the head's trainable parameters

        def create_optimizer(self):
            optimizer = super().create_optimizer()
            if self.head_lr is None or any("head" in g for g in optimizer.param_groups):
                return optimizer
            groups = []
            for group in optimizer.param_groups:   # decay / no-decay, each split head / rest
                for head in (False, True):
                    params = [p for p in group["params"] if (id(p) in self.head_params) == head]
                    if params:
                        groups.append({**group, "params": params, "head": head,
                                       "lr": self.head_lr if head else group["lr"]})
            optimizer.param_groups[:] = groups   # still stateless: nothing else to move
            return optimizer

        def train_wall_s(self, now: float | None = None) -> float:
            now = time.perf_counter() if now is None else now
            return self.prior_wall_s + (now - self.started) - self.checkpoint_s

        # `group_by_length` also shuffles Trainer's eval batches; compute_metrics needs the
        # dataset's own order (already sorted by length) to map logits back to examples.
        def _get_eval_sampler(self, eval_dataset):
            return torch.utils.data.SequentialSampler(eval_dataset)

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if not self.args.group_by_length or dataset is None:
                return super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return epoch_seeded_sampler(
                self.args.train_batch_size * self.args.gradient_accumulation_steps,
                [len(row["input_ids"]) for row in dataset], seed)

        def _save(self, output_dir=None, state_dict=None):
            folder = Path(output_dir or self.args.output_dir)
            save_tensors(folder / TRAINABLE, trainable_state(self.model))

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            load_trainable_state(model or self.model,
                                 load_tensors(Path(resume_from_checkpoint) / TRAINABLE))

        def _load_rng_state(self, checkpoint):
            # The stock method relies on torch's default for weights_only, which older torch
            # versions set to False (unpickling anything).
            if checkpoint is None or self.args.world_size > 1:
                return super()._load_rng_state(checkpoint)
            import random

            import numpy as np
            from transformers.trainer import safe_globals

            path = Path(checkpoint) / "rng_state.pth"
            if not path.is_file():
                return None
            with safe_globals():
                state = torch.load(path, weights_only=True)
            random.setstate(state["python"])
            np.random.set_state(state["numpy"])
            torch.random.set_rng_state(state["cpu"])
            if torch.cuda.is_available() and "cuda" in state:
                torch.cuda.random.set_rng_state(state["cuda"])
            return None

        def _save_checkpoint(self, model, trial):
            begin = time.perf_counter()
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX}{self.state.global_step}"
            try:
                super()._save_checkpoint(model, trial)
                if self.args.should_save:
                    self._save_progress(folder, self.train_wall_s(begin))
            except Exception as err:   # a full disk, typically: keep the space for the record
                shutil.rmtree(folder, ignore_errors=True)
                if isinstance(err, WriteError):
                    raise
                raise write_error(folder, err) from err
            finally:
                self.checkpoint_s += time.perf_counter() - begin
            if self.args.should_save:
                prune(folder.parent.parent, keep=folder)

        def _save_progress(self, folder: Path, wall_s: float) -> None:
            exported = self.best.export() if self.best is not None else {
                "best": None, "best_step": None, "bad": 0, "curve": [], "has_best": False}
            if exported["has_best"]:
                save_tensors(folder / BEST, self.best.best_state)
            finished = (self.control.should_training_stop
                        or self.state.global_step >= self.state.max_steps)
            progress = {"run_id": self.run_id, "step": self.state.global_step,
                        "finished": bool(finished), "total_loss": self._total_loss_scalar,
                        "train_wall_s": wall_s,
                        "checkpoint_wall_s": self.prior_checkpoint_s + self.checkpoint_s,
                        **exported}
            atomic_write_text(folder / PROGRESS, json.dumps(progress, indent=1))

        def restore_finished(self, resume: Resume) -> float:
            """Load a checkpoint written after the last training step (nothing left to
            train) instead of calling train(), which would take one step too many; returns
            the training loss that train() would have reported."""
            from transformers import TrainerState

            self.state = TrainerState.load_from_json(str(resume.folder / "trainer_state.json"))
            self._load_from_checkpoint(str(resume.folder))
            if self.best is not None:
                self.best.restore(self.model)
            return resume.progress["total_loss"] / max(self.state.global_step, 0.001)

    return RunTrainer
