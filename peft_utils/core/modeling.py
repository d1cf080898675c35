"""The Hugging Face wiring both studies share: seeding, applying a peft or adapters method
to a base model, counting parameters one way for every method, and the trainable state that
checkpoints hold."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

from peft_utils.core.backends import Backend
from peft_utils.core.methods import Method


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def load_pretrained(auto_class, name: str, **kwargs):
    """`from_pretrained` of `auto_class`, the one way this project loads weights: safetensors
    only (a pickled checkpoint is never unpickled) and no remote code. A model folder without
    safetensors weights is refused with the fix."""
    folder = Path(name)
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{name}: no *.safetensors weights in this folder; the project loads weights only "
            "as safetensors (convert the checkpoint, or prepare the offline model with "
            "`python -m peft_utils model prepare e5-small`)")
    return auto_class.from_pretrained(name, use_safetensors=True, trust_remote_code=False,
                                      **kwargs)


class _NewHeadFilter(logging.Filter):
    """Drops transformers' "newly initialized ... You should probably TRAIN this model" record
    when every weight it names starts with one of `prefixes`; a record it cannot read, or one
    that names any other weight, passes."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        import ast
        import re

        found = re.search(r"and are newly initialized: (\[.*?\])\n", record.getMessage(),
                          re.DOTALL)
        if not found:
            return True
        try:
            keys = ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            return True
        return not (keys and all(str(k).startswith(self.prefixes) for k in keys))


@contextlib.contextmanager
def own_head(prefixes: tuple[str, ...] = ("classifier",)) -> Iterator[None]:
    """Within the block, loading a model whose task head the caller sets itself (drawn after
    seeding, from the probe or from a checkpoint) does not print transformers' warning that
    the head is newly initialized; a warning that names any other weight is kept, and so is
    the warning outside the block (a model whose head is really untrained)."""
    logger = logging.getLogger("transformers.modeling_utils")
    quiet = _NewHeadFilter(prefixes)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


# transformers 4.57.3 up to 5.0 warn, for any local folder whose tokenizer has over 100k
# pieces, that it has "an incorrect regex pattern" (meant for some Mistral tokenizers), unless
# its config.json was written by 4.57.2 or earlier (huggingface/transformers#44031, fixed by
# #45444): every folder this project writes with the e5 or mBART-50 tokenizer would warn.
QUIET_WRITER = "4.57.2"
MISTRAL_TYPES = {"mistral", "mistral3", "voxtral", "ministral", "pixtral"}


def stamp_quiet_writer(config_json: str | Path) -> str | None:
    """Record transformers 4.57.2 as the writer of a model folder's `config_json` where the
    version that wrote it would make AutoTokenizer warn falsely (above); the config format
    is the same in those versions. Returns the version that really wrote it when stamped (for
    the folder's provenance), else None."""
    import json

    from packaging.version import Version

    from peft_utils.core.runs import atomic_write_text

    path = Path(config_json)
    config = json.loads(path.read_text(encoding="utf-8"))
    written = config.get("transformers_version")
    if (not written or config.get("model_type") in MISTRAL_TYPES
            or not Version(QUIET_WRITER) < Version(written) < Version("5.0.0")):
        return None
    config["transformers_version"] = QUIET_WRITER
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return written


def apply_method(model, entry: Method, library_config, adapter_name: str):
    """`model` with the registry method `entry` applied by its library's backend
    (core.backends); only what it trains requires grad (a task head outside peft's
    `modules_to_save` stays frozen: the caller decides, `entry.backend.trains_head`). A
    project method trains the parameters its entry's `trains` picks."""
    return entry.backend.apply(model, entry, library_config, adapter_name)


# ---- several adapters on one base (classification.multitask) ---------------------------
def add_named_adapter(model, entry: Method, library_config, name: str):
    """`model` with one more adapter `name` of `entry`'s library beside those it holds, left
    inactive (core.backends: peft's first wraps the model in a plain `PeftModel`, the adapters
    library's calls `adapters.init` once, then `add_adapter`)."""
    return entry.backend.add_named(model, entry, library_config, name)


def select_adapter(model, backend: Backend, name: str) -> None:
    """Make adapter `name` (of `backend`'s library) the one the next forward passes use."""
    backend.select(model, name)


def forward_every_adapter(model, backend: Backend, names: list[str], batch: dict[str, Any]):
    """One forward pass of `batch` through every adapter of `names`: the output holds the
    batch once per adapter, in the order of `names` (adapter-major, batch size K x B). The
    adapters library: `Parallel` composition (the batch is replicated in its first adapter
    layer); peft: a mixed batch (`adapter_names=`, one name per row; LoRA-like tuners)."""
    return backend.forward_every(model, names, batch)


def unique_parameters(model):
    """(name, parameter) of every parameter the model holds, once: tied weights counted once,
    peft's inactive frozen copy of a `modules_to_save` head left out."""
    seen: set[int] = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen or ".original_module." in name:
            continue
        seen.add(id(param))
        yield name, param


def count_parameters(model, base_ids: set[int], head_ids: set[int] = frozenset()) -> dict:
    """Counts by `requires_grad`, the same way for every method and study.

    base: the pretrained model's parameters; head: a task head (counted once, peft's copy in
    modules_to_save included); method_params: what the method trains, added or unfrozen, the
    head excluded (for FFT the whole base), so that trainable = method_params + head. Tied
    parameters count once.
    """
    counts = dict(trainable=0, total=0, base=0, head=0, method_params=0)
    for name, param in unique_parameters(model):
        n = param.numel()
        counts["total"] += n
        counts["trainable"] += n if param.requires_grad else 0
        if "modules_to_save" in name or id(param) in head_ids:
            counts["head"] += n
        elif id(param) in base_ids:
            counts["base"] += n
            counts["method_params"] += n if param.requires_grad else 0
        else:   # added by the method; frozen ones (DVoRA's shared random matrices) do not train
            counts["method_params"] += n if param.requires_grad else 0
    counts["percent_trainable"] = 100.0 * counts["trainable"] / counts["total"]
    return counts


def trainable_state(model) -> dict[str, Any]:
    """The parameters a run changes: what a checkpoint must hold to restore it."""
    return {name: param.detach().cpu().clone()
            for name, param in model.named_parameters() if param.requires_grad}


def load_trainable_state(model, state: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise KeyError(f"checkpoint has parameters the model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
