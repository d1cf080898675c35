"""One backend per library that implements registry methods: what the rest of the package
does differently for peft, the adapters library and the project's own methods (fft, bitfit,
cross_attn), behind one interface, `Backend`.

A registry entry names its library (`Method.library`, a plain string that records keep);
`Method.backend` is that library's backend (`BACKENDS[library]`), and callers write
`entry.backend.apply(...)`, `entry.backend.save(...)` and so on. No module outside this one
compares a library's name (tests/test_architecture.py checks that).

What a backend answers:
- its config: the library's config class of an entry (`config_type`) and the config object
  built from the entry's resolved settings (`config`); `configured` False: the library takes
  no config (the project's methods: their `trains` hook decides);
- training: `apply` (the method on a base model, only what it trains requiring grad),
  `trains_head` (whether the task head trains as part of the method: peft's
  `modules_to_save`; otherwise the study unfreezes it), `adapter_trainer` (the run trains
  with the adapters library's trainers, which activate and save the adapter),
  `model_problem` (a model type the library cannot run on);
- several adapters on one base (classification.multitask): `has_adapter` (the method's
  weights live apart from the base's: an adapter to save, share or load), `trained_name`
  (the name fragment a run's adapter weights carry), `add_named`, `select`, `forward_every`;
- export and serving: `save` and `load` (the library's own adapter format), `load_code`
  (how exported code attaches that folder to a base model), `merge_status` and `merge`.

Another package adds a library through an entry point of the group `peft_utils.backends`
naming a `Backend` (or a function returning one), e.g. in its pyproject.toml:
`[project.entry-points."peft_utils.backends"] mylib = "my_package:BACKEND"`. The backend's
`name` is the library its registry entries name. Entry points are read once per process.
"""
from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Iterator

from peft_utils.core.config import ConfigError
from peft_utils.core.plugins import registered

# A registry entry, core.methods.Method (which imports this module, so not imported here).
Entry = Any

GROUP = "peft_utils.backends"
PEFT_TASK_TYPE = {"classification": "SEQ_CLS", "seq2seq": "SEQ_2_SEQ_LM"}
# The seq2seq model types the adapters library (1.3) supports: not m2m100 (NLLB) or marian.
ADAPTER_SEQ2SEQ_TYPES = ("bart", "mbart", "t5", "mt5", "plbart")
_ATTACH_ADAPTERS = ("adapters.init(base); base.load_adapter(OUT, set_active=True, "
                    "use_safetensors=True)")


class Backend:
    """What a library does with its registry entries. A subclass overrides what its library
    does; the defaults describe a library that adds an adapter with its own config."""
    name: str = ""
    configured: bool = True         # takes a config object (None for the project's methods)
    trains_head: bool = False       # the task head trains as part of the method
    adapter_trainer: bool = False   # trains with the adapters library's trainers
    has_adapter: bool = True        # the method's weights live apart from the base's

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ---- config ---------------------------------------------------------------------------
    def config_type(self, entry: Entry):
        """The library's config class of `entry` (None: the library takes none)."""
        return None

    def config(self, entry: Entry, values: dict[str, Any], task: str):
        """The library's config object of `entry` for resolved `values` (core.methods.
        resolved_settings) and `task` (`classification` or `seq2seq`)."""
        return entry.config_type()(**values)

    # ---- training -------------------------------------------------------------------------
    def apply(self, model, entry: Entry, library_config, adapter_name: str):
        """`model` with `entry` applied; only what it trains requires grad (a task head
        outside the method stays frozen unless `trains_head`: the caller decides)."""
        raise NotImplementedError(f"{self.name}: apply")

    def model_problem(self, entry: Entry, model_type: str, task: str) -> str | None:
        """Why `entry` cannot run on a `model_type` model for `task`; None: it can."""
        return None

    # ---- several adapters on one base ------------------------------------------------------
    def trained_name(self, adapter_name: str) -> str:
        """The name fragment a run's adapter weights carry when its study named the adapter
        `adapter_name` (peft keeps its default name)."""
        return adapter_name

    def add_named(self, model, entry: Entry, library_config, name: str):
        """`model` with one more adapter `name` beside those it holds, left inactive."""
        raise ValueError(f"method {entry.name} trains base weights: no adapter to share a "
                         "base with")

    def select(self, model, name: str) -> None:
        """Make adapter `name` the one the next forward passes use."""
        raise NotImplementedError(f"{self.name}: select")

    def forward_every(self, model, names: list[str], batch: dict[str, Any]):
        """One forward pass of `batch` through every adapter of `names`: the output holds
        the batch once per adapter, in the order of `names` (adapter-major, K x B rows)."""
        raise NotImplementedError(f"{self.name}: forward_every")

    # ---- export and serving ----------------------------------------------------------------
    def save(self, model, entry: Entry, adapter_name: str, folder: Path,
             with_head: bool = True) -> None:
        """The method's weights (and the task head, `with_head`) in the library's format."""
        raise NotImplementedError(f"{self.name}: save")

    def load(self, base, entry: Entry, folder: str | Path):
        """`save`'s folder loaded onto `base`: the model to predict with."""
        raise NotImplementedError(f"{self.name}: load")

    def load_code(self, bind: str | None = None) -> str:
        """The code that attaches an exported adapter folder `OUT` to the model `base`, for
        an export's metadata; `bind`: also bind the result to that name."""
        raise NotImplementedError(f"{self.name}: load_code")

    def merge_status(self, entry: Entry) -> str:
        """How `entry` serves: `merges`, `nothing to merge` or `cannot merge`."""
        return "merges" if entry.merges else "cannot merge"

    def merge(self, twin, adapter_name: str):
        """`twin` (a copy of the trained model, changed in place) with the method merged into
        the base weights: the model to serve."""
        raise NotImplementedError(f"{self.name}: merge")


class PeftBackend(Backend):
    """peft: `get_peft_model`, `save_pretrained`, `PeftModel.from_pretrained`; the task head
    trains in `modules_to_save`."""
    name = "peft"
    trains_head = True

    def config_type(self, entry: Entry):
        import peft

        return getattr(peft, entry.config_class)

    def config(self, entry: Entry, values: dict[str, Any], task: str):
        values["task_type"] = PEFT_TASK_TYPE[task]
        return entry.config_type()(**values)

    def apply(self, model, entry: Entry, library_config, adapter_name: str):
        """`model` wrapped by peft; only the method's parameters (and `modules_to_save`)
        train."""
        from peft import get_peft_model

        return get_peft_model(model, library_config)

    def trained_name(self, adapter_name: str) -> str:
        return "default"

    def add_named(self, model, entry: Entry, library_config, name: str):
        """The first wraps the model in a plain `PeftModel` (task type dropped, so no task
        head is wrapped: several tasks' heads differ in size), the next ones go beside it."""
        from peft import PeftModel, get_peft_model

        if isinstance(model, PeftModel):
            model.add_adapter(name, library_config)
            return model
        library_config.task_type = None
        return get_peft_model(model, library_config, adapter_name=name)

    def select(self, model, name: str) -> None:
        model.set_adapter(name)

    def forward_every(self, model, names: list[str], batch: dict[str, Any]):
        """A mixed batch (`adapter_names=`, one name per row; LoRA-like tuners)."""
        rows = len(next(iter(batch.values())))
        repeated = {key: value.repeat(len(names), *([1] * (value.dim() - 1)))
                    for key, value in batch.items()}
        return model(**repeated, adapter_names=[n for n in names for _ in range(rows)])

    def save(self, model, entry: Entry, adapter_name: str, folder: Path,
             with_head: bool = True) -> None:
        """`save_pretrained` (the head in `modules_to_save`)."""
        model.save_pretrained(folder, safe_serialization=True)

    def load(self, base, entry: Entry, folder: str | Path):
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(folder))

    def load_code(self, bind: str | None = None) -> str:
        return f"{bind + ' = ' if bind else ''}PeftModel.from_pretrained(base, OUT)"

    def merge(self, twin, adapter_name: str):
        """`merge_adapter` on the copy, then every tuner layer replaced by its base layer and
        the head wrapper by its trained head, which leaves the plain transformers model, as
        `merge_and_unload` would (that fails for every non-LoRA tuner when the head is in
        `modules_to_save`, peft 0.21)."""
        twin.base_model.merge_adapter()
        return _unwrap_peft(twin.base_model.model)


def _unwrap_peft(model):
    """`model` (a merged peft model's inner model) with peft's wrappers taken out."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import ModulesToSaveWrapper

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            plain = module.get_base_layer()
        elif isinstance(module, ModulesToSaveWrapper):
            plain = module.modules_to_save[module.active_adapters[0]]
        else:
            continue
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attribute, plain)
    return model


class AdaptersBackend(Backend):
    """The adapters library: `adapters.init`, `add_adapter`, `train_adapter`, its own
    trainers, `save_adapter` / `load_adapter` with the head, `Parallel` composition."""
    name = "adapters"
    adapter_trainer = True

    def config_type(self, entry: Entry):
        import adapters

        return getattr(adapters, entry.config_class)

    def apply(self, model, entry: Entry, library_config, adapter_name: str):
        """`model` with an adapters-library adapter `adapter_name` added and activated for
        training; every other parameter is frozen (a classifier head too: the caller
        unfreezes it)."""
        import inspect

        import adapters

        # The library wraps forward(*args, **kwargs), which makes the Trainer believe that
        # every model takes its loss kwargs (num_items_in_batch): it would pass them to models
        # that reject them (mT5) and skip dividing the loss by the gradient-accumulation
        # steps. Say what the model's own forward takes.
        own = inspect.signature(type(model).forward).parameters.values()
        model.accepts_loss_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in own)
        adapters.init(model)
        model.add_adapter(adapter_name, config=library_config)
        model.train_adapter(adapter_name)
        return model

    def model_problem(self, entry: Entry, model_type: str, task: str) -> str | None:
        if task == "seq2seq" and model_type not in ADAPTER_SEQ2SEQ_TYPES:
            return (f"the adapters library (1.3) has no {model_type} support; use it with "
                    f"{', '.join(ADAPTER_SEQ2SEQ_TYPES)} models (mBART-50, mT5), or a peft "
                    "method / cross_attn / fft on this model")
        return None

    def add_named(self, model, entry: Entry, library_config, name: str):
        """`adapters.init` once, then `add_adapter`."""
        import adapters

        if getattr(model, "adapters_config", None) is None:
            adapters.init(model)
        model.add_adapter(name, config=library_config)
        return model

    def select(self, model, name: str) -> None:
        model.set_active_adapters(name)

    def forward_every(self, model, names: list[str], batch: dict[str, Any]):
        """`Parallel` composition (the batch is replicated in its first adapter layer)."""
        from adapters.composition import Parallel

        model.set_active_adapters(Parallel(*names))
        return model(**batch)

    def save(self, model, entry: Entry, adapter_name: str, folder: Path,
             with_head: bool = True) -> None:
        """`save_adapter` with the head (a static transformers head is saved beside it)."""
        try:
            model.save_adapter(str(folder), adapter_name, with_head=with_head,
                               use_safetensors=True)
        except RuntimeError as err:
            # The adapters library's prefix tuning keeps one pool of prefixes that every
            # layer references: safetensors refuses tensors shared under several names, and
            # this project writes no pickles (nor loads any).
            if "share memory" not in str(err):
                raise
            raise ConfigError(f"{entry.name}'s weights are shared by every layer, which the "
                              "adapters library cannot save as safetensors (and this project "
                              "writes no pickles); it has no export: use the run folder itself "
                              "(`python -m peft_utils predict RUN_DIR`)") from None

    def load(self, base, entry: Entry, folder: str | Path):
        """`load_adapter` (safetensors, the head with it, set active)."""
        import adapters

        adapters.init(base)
        base.load_adapter(str(folder), set_active=True, use_safetensors=True)
        return base

    def load_code(self, bind: str | None = None) -> str:
        return _ATTACH_ADAPTERS + (f"; {bind} = base" if bind else "")

    def merge(self, twin, adapter_name: str):
        """`merge_adapter(name)` (the library keeps its modules after merging)."""
        twin.merge_adapter(adapter_name)
        return twin


class ProjectBackend(Backend):
    """The project's methods: no library; the entry's `trains` hook picks the parameters
    that train, and those are the base model's own (nothing to save apart or merge)."""
    name = "project"
    configured = False
    has_adapter = False

    def config(self, entry: Entry, values: dict[str, Any], task: str):
        return None

    def apply(self, model, entry: Entry, library_config, adapter_name: str):
        matched = 0
        for name, param in model.named_parameters():
            param.requires_grad = entry.trains(name)
            matched += param.requires_grad
        if not matched:
            raise ValueError(f"method {entry.name}: {type(model).__name__} has no parameters "
                             "it trains (bitfit: biases; cross_attn: encoder_attn.* or "
                             "decoder.block.N.layer.1.*)")
        return model

    def merge_status(self, entry: Entry) -> str:
        return "nothing to merge"

    def merge(self, twin, adapter_name: str):
        return twin


# ---- the registry -----------------------------------------------------------------------
BUILTIN: dict[str, Backend] = {b.name: b for b in (PeftBackend(), AdaptersBackend(),
                                                   ProjectBackend())}


@cache
def plugins() -> dict[str, Backend]:
    """Backends registered by installed packages: an entry point in the group
    `peft_utils.backends` names a `Backend` (or a function returning one). Read once per
    process."""
    return registered(GROUP, Backend, "peft_utils.core.backends.Backend", "backend", BUILTIN)


class _Registry(Mapping):
    """The built-in backends and those other packages register, by library name."""

    def _all(self) -> dict[str, Backend]:
        return {**BUILTIN, **plugins()}

    def __getitem__(self, library: str) -> Backend:
        return self._all()[library]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


BACKENDS: Mapping[str, Backend] = _Registry()


def unknown_library(library: str) -> str | None:
    """Why `library` has no backend, naming the known ones; None: it has one."""
    if library in BACKENDS:
        return None
    return (f"no backend for library {library!r}; known libraries: {', '.join(BACKENDS)} "
            f"(another package registers one through the {GROUP!r} entry points)")


def backend_of(library: str) -> Backend:
    """The backend of `library`; a ConfigError naming the known ones otherwise."""
    problem = unknown_library(library)
    if problem:
        raise ConfigError(problem)
    return BACKENDS[library]

