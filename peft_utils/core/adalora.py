"""AdaLoRA's part of the training loop: the registry entry's `callback` (core.methods). Apart
from core.trainer, which reads the entry, so that the registry's hook imports no cycle."""
from __future__ import annotations

import torch
from transformers import TrainerCallback


class AdaLoraBudget(TrainerCallback):
    """AdaLoRA reallocates its rank budget from the gradients after every optimiser step
    (peft: `update_and_allocate` between `optimizer.step()` and `zero_grad()`, which is where
    the Trainer calls `on_optimizer_step`), on a schedule over the run's total steps. Its
    importance estimates are training state: checkpoints keep them, so a resumed run
    allocates as the uninterrupted one."""

    def __init__(self, model):
        self.model = model

    @property
    def allocator(self):
        return self.model.base_model.rankallocator

    def on_train_begin(self, args, state, control, **kw):
        self.allocator.peft_config.total_step = state.max_steps

    def on_optimizer_step(self, args, state, control, **kw):
        self.model.base_model.update_and_allocate(state.global_step)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{kind}/{name}": value for kind in ("ipt", "exp_avg_ipt", "exp_avg_unc")
                for name, value in getattr(self.allocator, kind).items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        for key, value in tensors.items():
            kind, name = key.split("/", 1)
            getattr(self.allocator, kind)[name] = value
