"""The method registry: every fine-tuning method of both studies is one `Method` entry.

An entry names the library that implements the method (peft, adapters, or the project for
fft, bitfit and cross_attn), the library's config class, the project's defaults for it (the
encoder's target modules, which peft lacks for XLM-R for several methods), its size knob and
a learning-rate range from the literature. A run's `method_config: {...}` goes to that config
class on top of the defaults, and is checked by it before training. Adding a method is adding
an entry here and a line to the per-method tests' table (tests/test_methods.py).

Whatever a method does differently is a field or a hook of its entry (which parameters a
project method trains, its part of the training loop, the paper setting that sizes it, whether
it is the reference): the rest of the package reads the entry and never tests a method's name
(tests/test_architecture.py checks that). What its library does differently is that
library's backend (core.backends), `entry.backend`.

Entries that cannot run here carry the reason (`unavailable`): `python -m peft_utils methods`
lists them with it, so no method of either library is silently absent.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from peft_utils.core.backends import Backend, backend_of, unknown_library
from peft_utils.core.config import ConfigError, is_type

TASKS = ("classification", "seq2seq")
LORA_RANK = "lora_r"            # the study setting that sizes the LoRA family
BOTTLENECK_DIM = "adapter_dim"  # the size MT budgets give bottleneck adapters


class Targets(str):
    """A placeholder in an entry's defaults, resolved per architecture (see `target_modules`)."""


WEIGHTS = Targets("weights")    # the paper's LoRA targets: attention q, k, v and both FFN layers
IA3_KEYS = Targets("ia3")       # (IA)^3: keys, values and the FFN's output layer
IA3_FFN = Targets("ia3_ffn")    # ... of which the FFN layer, whose input is scaled

# Module names by architecture family. Encoders (XLM-R, BERT) name the FFN output
# `output.dense`, like the attention output: the regexes anchor it at the layer.
_ENCODER = {
    WEIGHTS: r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|intermediate\.dense|output\.dense)",
    IA3_KEYS: r".*\.layer\.\d+\.(attention\.self\.(key|value)|output\.dense)",
    IA3_FFN: r".*\.layer\.\d+\.output\.dense",
}
_T5 = {WEIGHTS: ["q", "k", "v", "o"], IA3_KEYS: ["k", "v", "wo"], IA3_FFN: ["wo"]}
_BART = {WEIGHTS: ["q_proj", "k_proj", "v_proj", "out_proj"], IA3_KEYS: ["k_proj", "v_proj", "fc2"],
         IA3_FFN: ["fc2"]}
FAMILIES = {"xlm-roberta": _ENCODER, "roberta": _ENCODER, "bert": _ENCODER, "t5": _T5, "mt5": _T5,
            "bart": _BART, "mbart": _BART, "m2m_100": _BART, "marian": _BART}


def family_modules(model_type: str, targets: "Targets") -> str | list[str]:
    """The modules `targets` names in a model of `model_type` (FAMILIES; bart-like names for
    a seq2seq type not in it, as most seq2seq models name their attention so)."""
    return FAMILIES.get(model_type, _BART)[targets]


@dataclass(frozen=True)
class Method:
    name: str
    library: str                         # peft | adapters | project | a registered backend's
    config_class: str | None = None      # the library's config class (None: project methods)
    about: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)   # the project's, over the library's
    size_knob: str | None = None         # the config key that sets its size
    lr_range: tuple[float, float] = (1e-4, 1e-2)   # log-uniform search range (tuning)
    merges: bool = False                 # can be merged into the base weights for serving
    tasks: tuple[str, ...] = TASKS
    # Keys that are the project's, not the config class's (LoRA+'s learning-rate ratio).
    project_keys: dict[str, Any] = field(default_factory=dict)
    virtual_tokens: str | None = None    # the key of the number of tokens it prepends
    changes_base: bool = False           # rewrites base weights by design (PiSSA, OLoRA)
    needs_eager: bool = False            # edits keys and values in the eager attention path
    # The study setting (a RunConfig / MTConfig field) that sizes it as in the paper, so the
    # paper's runs keep their settings and ids: lora_r (with LoRA's alpha, dropout and
    # targets), reduction_factor or prefix_length; None: method_config and the defaults only.
    paper_setting: str | None = None
    # The size an MT parameter budget searches over, where it is not `size_knob`: the LoRA
    # family's rank as the study's lora_r, a bottleneck's dimension (adapter_dim) rather than
    # its reduction factor, which shrinks it as it grows.
    budget_knob: str | None = None
    reference: bool = False              # the baseline other methods are compared with (fft)
    # Project methods: whether a parameter (by name) trains; None: the library decides.
    trains: Callable[[str], bool] | None = None
    full_copy: bool = False              # trains every base weight: serving keeps a whole copy
    # The training loop's part (core.trainer.method_hooks): a learning-rate factor per
    # trainable parameter, (its name, the run's settings over project_keys) -> factor; and a
    # TrainerCallback built from the model, whose state_dict() every checkpoint keeps.
    lr_scale: Callable[[str, dict[str, Any]], float] | None = None
    callback: Callable[[Any], Any] | None = None
    unavailable: str | None = None       # why it cannot run here; None: it can

    def status(self, task: str = "classification") -> str:
        if self.unavailable:
            return self.unavailable
        if unknown_library(self.library):
            return unknown_library(self.library)
        if task not in self.tasks:
            return f"not for {task} (runs for: {', '.join(self.tasks)})"
        return "ok"

    @property
    def lora_family(self) -> bool:
        """Sized by the study's LoRA settings: rank, alpha, dropout and target modules."""
        return self.paper_setting == LORA_RANK

    @property
    def backend(self) -> Backend:
        """What its library does with it (core.backends: `BACKENDS[library]`); a
        ConfigError naming the known libraries when no backend has this name."""
        return backend_of(self.library)

    def config_type(self):
        """The library's config class."""
        return self.backend.config_type(self)


def _lora(name: str, about: str, **defaults) -> Method:
    return Method(name, "peft", "LoraConfig", about, {"target_modules": WEIGHTS, **defaults},
                  "r", (1e-4, 3e-3), merges=True, paper_setting=LORA_RANK, budget_knob=LORA_RANK)


def _peft(name: str, cls: str, about: str, knob: str | None = "r", lr=(1e-4, 1e-2),
          merges: bool = True, **defaults) -> Method:
    return Method(name, "peft", cls, about, {"target_modules": WEIGHTS, **defaults}, knob,
                  lr, merges)


def _bottleneck(name: str, cls: str, about: str, paper_setting: str | None = None,
                **defaults) -> Method:
    return Method(name, "adapters", cls, about, defaults, "reduction_factor", (1e-4, 3e-3),
                  paper_setting=paper_setting, budget_knob=BOTTLENECK_DIM)


def _duplicate(name: str, library: str, cls: str, same_as: str) -> Method:
    return Method(name, library, cls, unavailable=f"same method as `{same_as}`; use that entry")


# ---- hooks ------------------------------------------------------------------------------
# Decoder cross-attention (and its layer norm) in bart-like | t5-like models.
_CROSS_ATTENTION = re.compile(r"(^|\.)(encoder_attn|encoder_attn_layer_norm)\.|"
                              r"(^|\.)decoder\.block\.\d+\.layer\.1\.")


def _loraplus_lr(param: str, settings: dict[str, Any]) -> float:
    """LoRA+: the B matrices learn loraplus_lr_ratio times faster. peft's
    `create_loraplus_optimizer` is not used: it builds its own optimiser, without the task
    head's learning rate or the Trainer's decay groups."""
    return float(settings["loraplus_lr_ratio"]) if "lora_B" in param else 1.0


def _adalora_budget(model):
    # Imported here: the callback needs transformers, the registry must not.
    from peft_utils.core.adalora import AdaLoraBudget

    return AdaLoraBudget(model)


REGISTRY: dict[str, Method] = {m.name: m for m in [
    # ---- the project's --------------------------------------------------------------
    Method("fft", "project", about="full fine-tuning: every parameter trains",
           lr_range=(5e-6, 1e-4), reference=True, trains=lambda param: True, full_copy=True),
    Method("bitfit", "project", about="only the bias terms train (BitFit)",
           lr_range=(1e-4, 1e-2), trains=lambda param: param.endswith(".bias")),
    Method("cross_attn", "project", about="only the decoder's cross-attention blocks train",
           lr_range=(1e-5, 1e-3), tasks=("seq2seq",),
           trains=lambda param: bool(_CROSS_ATTENTION.search(param))),
    # ---- peft: LoRA and its variants ----------------------------------------------------
    _lora("lora", "LoRA: a low-rank update of the target weights (the paper's)"),
    _lora("dora", "DoRA: LoRA on the direction, a trained magnitude per output", use_dora=True),
    _lora("rslora", "rsLoRA: LoRA scaled by alpha / sqrt(r)", use_rslora=True),
    dataclasses.replace(
        _lora("pissa", "PiSSA: LoRA started from the weights' principal singular vectors "
                       "(the base keeps the residual)", init_lora_weights="pissa_niter_4"),
        changes_base=True),
    dataclasses.replace(
        _lora("olora", "OLoRA: LoRA started from a QR decomposition of the weights",
              init_lora_weights="olora"), changes_base=True),
    dataclasses.replace(
        _lora("loraplus", "LoRA+: LoRA whose B matrices learn loraplus_lr_ratio times faster"),
        project_keys={"loraplus_lr_ratio": 16.0}, lr_scale=_loraplus_lr),
    Method("adalora", "peft", "AdaLoraConfig",
           "AdaLoRA: SVD-shaped LoRA whose rank budget is reallocated during training",
           {"target_modules": WEIGHTS, "total_step": 1000}, "init_r", (1e-4, 3e-3), True,
           callback=_adalora_budget),
    _peft("vera", "VeraConfig", "VeRA: frozen shared random matrices, trained scaling vectors",
          lr=(1e-3, 3e-2), r=256),
    _peft("loha", "LoHaConfig", "LoHa: a low-rank Hadamard-product update"),
    _peft("lokr", "LoKrConfig", "LoKr: a low-rank Kronecker-product update"),
    _peft("oft", "OFTConfig", "OFT: an orthogonal rotation of the target weights",
          knob="oft_block_size", r=0, oft_block_size=32),
    _peft("boft", "BOFTConfig", "BOFT: a butterfly-factorised orthogonal rotation",
          knob="boft_block_size", boft_block_size=4),
    _peft("hra", "HRAConfig", "HRA: a chain of Householder reflections"),
    _peft("fourierft", "FourierFTConfig", "FourierFT: a sparse spectral update",
          knob="n_frequency", lr=(1e-3, 1e-1)),
    _peft("vblora", "VBLoRAConfig", "VB-LoRA: LoRA assembled from a shared vector bank",
          merges=True, vector_length=64),
    _peft("c3a", "C3AConfig", "C3A: a block-circular convolution update",
          knob="block_size", lr=(1e-3, 1e-1), block_size=64),
    _peft("shira", "ShiraConfig", "SHiRA: a sparse high-rank update of a few weights",
          random_seed=0),
    _peft("randlora", "RandLoraConfig", "RandLoRA: full-rank updates from shared random bases"),
    _peft("miss", "MissConfig", "MiSS: a shared-shard update (formerly Bone)"),
    _peft("road", "RoadConfig", "RoAd: a 2D rotation of the activations",
          knob="group_size", lr=(1e-3, 1e-2)),
    _peft("delora", "DeloraConfig", "DeLoRA: LoRA with a bounded, decoupled norm"),
    _peft("gralora", "GraloraConfig", "GraLoRA: LoRA on a grid of weight blocks"),
    _peft("waveft", "WaveFTConfig", "WaveFT: a sparse update in the wavelet domain",
          knob="n_frequency", lr=(1e-3, 1e-1)),
    _peft("adamss", "AdamssConfig", "AdaMSS: low-rank updates in SVD subspaces of the weights"),
    _peft("beft", "BeftConfig", "BEFT: trained biases of the value projections", knob=None,
          lr=(1e-3, 3e-2)),
    _peft("deft", "DeftConfig", "DEFT: a learnt projection out of and injection into W"),
    _peft("frod", "FrodConfig", "FRoD: a rotation-based low-rank update", knob=None),
    _peft("glora", "GloraConfig", "GLoRA: generalised low-rank scaling and shift of W and b"),
    _peft("hira", "HiraConfig", "HiRA: a Hadamard product of W with a low-rank update"),
    _peft("lily", "LilyConfig", "Lily: low-rank adapters interconnected across layers",
          merges=False),
    _peft("osf", "OSFConfig", "OSF: trains W's low singular subspace, the top one frozen",
          knob="effective_rank", lr=(1e-5, 1e-3)),
    _peft("peanut", "PeanutConfig", "PEANuT: a weight-aware nonlinear update"),
    _peft("psoft", "PsoftConfig", "PSOFT: an orthogonal rotation between frozen SVD bases"),
    _peft("pvera", "PveraConfig", "PVeRA: VeRA with probabilistic scaling vectors",
          lr=(1e-3, 3e-2)),
    _peft("supertuning", "SupertuningConfig",
          "Super-Tuning: a sparse support of weight entries chosen by magnitude"),
    _peft("tinylora", "TinyLoraConfig",
          "TinyLoRA: a tiny vector projected through fixed random tensors", lr=(1e-3, 3e-2)),
    _peft("unilora", "UniLoraConfig", "UniLoRA: LoRA from one shared parameter vector",
          lr=(1e-3, 3e-2)),
    _peft("ia3", "IA3Config", "(IA)^3: learnt scaling of keys, values and the FFN activation",
          knob=None, lr=(1e-3, 3e-2), target_modules=IA3_KEYS, feedforward_modules=IA3_FFN),
    Method("ln_tuning", "peft", "LNTuningConfig", "LN tuning: only the layer norms train",
           {"target_modules": ["LayerNorm", "layer_norm"]}, None, (1e-4, 1e-2), merges=True),
    Method("prompt", "peft", "PromptTuningConfig",
           "prompt tuning: trained virtual tokens prepended to the input",
           {"num_virtual_tokens": 20}, "num_virtual_tokens", (1e-3, 3e-1),
           virtual_tokens="num_virtual_tokens"),
    Method("p_tuning", "peft", "PromptEncoderConfig",
           "p-tuning: virtual tokens produced by a trained prompt encoder",
           {"num_virtual_tokens": 20, "encoder_hidden_size": 128}, "num_virtual_tokens",
           (1e-4, 1e-2), virtual_tokens="num_virtual_tokens"),
    # ---- adapters -------------------------------------------------------------------
    _bottleneck("pfeiffer", "SeqBnConfig",
                "Pfeiffer: a bottleneck adapter after each layer's FFN (adapters seq_bn)",
                paper_setting="reduction_factor"),
    _bottleneck("houlsby", "DoubleSeqBnConfig",
                "Houlsby: bottleneck adapters after attention and FFN (adapters double_seq_bn)",
                paper_setting="reduction_factor"),
    _bottleneck("par_bn", "ParBnConfig", "a parallel bottleneck adapter (He et al.)"),
    _bottleneck("scaled_par_bn", "ParBnConfig", "a parallel bottleneck adapter, scaled by 4",
                scaling=4.0),
    _bottleneck("seq_bn_inv", "SeqBnInvConfig",
                "Pfeiffer with invertible adapters on the embeddings (MAD-X)"),
    _bottleneck("double_seq_bn_inv", "DoubleSeqBnInvConfig",
                "Houlsby with invertible adapters on the embeddings"),
    _bottleneck("compacter", "CompacterConfig", "Compacter: PHM bottleneck adapters"),
    _bottleneck("compacter++", "CompacterPlusPlusConfig",
                "Compacter++: one PHM adapter per layer"),
    Method("prefix", "adapters", "PrefixTuningConfig",
           "prefix tuning: trained keys and values in every attention layer (adapters)",
           {}, "prefix_length", (1e-4, 1e-2), needs_eager=True, paper_setting="prefix_length"),
    Method("prefix_flat", "adapters", "PrefixTuningConfig",
           "prefix tuning without the MLP reparameterisation", {"flat": True},
           "prefix_length", (1e-3, 3e-2), needs_eager=True),
    Method("loreft", "adapters", "LoReftConfig", "LoReFT: a low-rank intervention on states",
           {}, "r", (1e-4, 1e-2), tasks=("classification",)),
    Method("noreft", "adapters", "NoReftConfig", "NoReFT: LoReFT without orthogonality",
           {}, "r", (1e-4, 1e-2), tasks=("classification",)),
    Method("direft", "adapters", "DiReftConfig", "DiReFT: a direct low-rank intervention",
           {}, "r", (1e-4, 1e-2), tasks=("classification",)),
    Method("mam", "adapters", "MAMConfig",
           "Mix-and-Match: prefix tuning plus a parallel bottleneck adapter", {}, None,
           (1e-4, 3e-3), needs_eager=True),
    Method("unipelt", "adapters", "UniPELTConfig",
           "UniPELT: gated LoRA, prefix tuning and a bottleneck adapter", {}, None,
           (1e-4, 3e-3), needs_eager=True),
    Method("dvora", "adapters", "DvoRAConfig", "DVoRA: DoRA with VeRA's shared matrices",
           {}, "r", (1e-3, 3e-2), merges=True),
    # ---- listed, not runnable here (the reason says why) --------------------------------
    _duplicate("lora_adapters", "adapters", "LoRAConfig", "lora"),
    _duplicate("ia3_adapters", "adapters", "IA3Config", "ia3"),
    _duplicate("vera_adapters", "adapters", "VeraConfig", "vera"),
    _duplicate("dora_adapters", "adapters", "DoRAConfig", "dora"),
    _duplicate("prompt_adapters", "adapters", "PromptTuningConfig", "prompt"),
    Method("prefix_peft", "peft", "PrefixTuningConfig", unavailable=(
        "same method as `prefix`; peft's passes a legacy tuple cache that XLM-R in "
        "transformers 4.57 rejects")),
    Method("mtl_lora", "adapters", "MTLLoRAConfig", unavailable=(
        "multi-task LoRA shares one base across tasks in one model; a run trains one task")),
    Method("adaption_prompt", "peft", "AdaptionPromptConfig",
           unavailable="LLaMA-Adapter: decoder-only (Llama, Mistral, GPT-2) models"),
    Method("cpt", "peft", "CPTConfig", unavailable="context-aware prompt tuning: causal LM only"),
    Method("cartridge", "peft", "CartridgeConfig",
           unavailable="a KV-cache prefix for causal LMs"),
    Method("xlora", "peft", "XLoraConfig",
           unavailable="a mixture of LoRA experts gated by a causal LM's hidden states"),
    Method("multitask_prompt", "peft", "MultitaskPromptTuningConfig",
           unavailable="needs a task id per example (multi-task prompt tuning)"),
    Method("poly", "peft", "PolyConfig",
           unavailable="Polytropon: needs a task id per example (multi-task routing)"),
    Method("shadow", "peft", "ShadowConfig",
           unavailable="ShadowPEFT: a shadow network riding a decoder-only model's layers"),
    Method("trainable_tokens", "peft", "TrainableTokensConfig",
           unavailable="trains chosen token embeddings (new tokens), not a fine-tuning method"),
]}

PAPER_METHODS = ("fft", "lora", "pfeiffer", "houlsby", "ia3", "bitfit", "prefix")
# The method the analyses compare every other with (the entry marked `reference`).
REFERENCE = next(m.name for m in REGISTRY.values() if m.reference)


def get(name: str, task: str = "classification") -> Method:
    """The entry `name`, runnable for `task`; a ConfigError saying why not otherwise."""
    entry = REGISTRY.get(name)
    if entry is None:
        usable = [m for m in REGISTRY.values() if m.status(task) == "ok"]
        raise ConfigError(f"unknown method {name!r}; use one of "
                          f"{', '.join(m.name for m in usable)} (`python -m peft_utils "
                          "methods` lists them)")
    if entry.status(task) != "ok":
        raise ConfigError(f"method {name!r} cannot run here: {entry.status(task)}")
    return entry


def names(task: str = "classification") -> tuple[str, ...]:
    return tuple(m.name for m in REGISTRY.values() if m.status(task) == "ok")


# ---- method settings -----------------------------------------------------------------
def method_problem(name: str, settings: dict[str, Any] | None, task: str) -> str | None:
    """What is wrong with a run's method and its `method_config` for `task`; None: nothing."""
    try:
        get(name, task)
    except ConfigError as err:
        return str(err)
    return method_config_problem(name, settings)


def method_config_problem(name: str, settings: dict[str, Any] | None) -> str | None:
    """What is wrong with a run's `method_config` for method `name` (None: nothing): an
    unknown key or a value of the wrong type for the library's config class. The class's
    own value checks run when the model is built (`library_config`), still before training."""
    entry = REGISTRY[name]
    if settings is not None and not isinstance(settings, dict):
        return f"method_config must be a mapping of {name}'s settings, got {settings!r}"
    if not settings:
        return None   # before config_type(): no library import to load a plain config
    cls = entry.config_type()
    if cls is None or not dataclasses.is_dataclass(cls):   # fft; a union of adapters configs
        return (f"method_config: method {name} takes no settings, got "
                f"{', '.join(sorted(settings))}")
    known = _config_fields(cls)
    for key, value in settings.items():
        if key in entry.project_keys:
            wanted = type(entry.project_keys[key])
            if not isinstance(value, (wanted, int)) or isinstance(value, bool):
                return f"method_config: {key} of {name} must be {wanted.__name__}, got {value!r}"
            continue
        if key not in known:
            return (f"method_config: unknown key {key!r} for method {name} "
                    f"({entry.library} {entry.config_class}); valid keys: "
                    f"{', '.join(sorted(known) + sorted(entry.project_keys))}")
        if not _fits(value, known[key]):
            return (f"method_config: {key}={value!r} for method {name} must be "
                    f"{_type_name(known[key])} ({entry.library} {entry.config_class})")
    return None


_RESERVED = {"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode",
             "architecture"}


def _config_fields(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)
            if f.name not in _RESERVED and not f.name.startswith("_")}


def _fits(value, annotation) -> bool:
    """Whether `value` (as YAML gives it) fits a config class's annotation; unknown forms pass
    (the class's own checks still run when the config is built)."""
    origin = typing.get_origin(annotation)
    if annotation is Any or annotation is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation in (type(None), bool, int, float, str):   # the run config's own check
        return is_type(value, "None" if annotation is type(None) else annotation.__name__)
    if origin in (list, tuple) or annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type) and issubclass(annotation, str):   # enums of strings
        return isinstance(value, str)
    return True


def _type_name(annotation) -> str:
    return str(annotation).replace("typing.", "")


def target_modules(value, model_type: str):
    """A `Targets` placeholder resolved for the architecture; anything else unchanged."""
    if not isinstance(value, Targets):
        return value
    family = FAMILIES.get(model_type)
    if family is None:
        raise ConfigError(f"no default target modules for {model_type} models; give "
                          "method_config: {target_modules: [...]}")
    return family[value]


def run_settings(sized: dict[str, Any], lora: tuple | None,
                 method_config: dict[str, Any] | None) -> dict[str, Any]:
    """What a method's config class receives over the registry defaults, in both studies:
    the study's sizing of it (`sized`, in the library's keys), LoRA's study settings when the
    entry is sized by `lora_r` (`lora`: rank, alpha, dropout, target modules), then the
    run's `method_config`, which wins."""
    if lora is not None:
        r, alpha, dropout, targets = lora
        sized = {**sized, "r": r, "lora_alpha": alpha, "lora_dropout": dropout,
                 "target_modules": targets}
    return {**sized, **(method_config or {})}


def resolved_settings(entry: Method, settings: dict[str, Any], model_type: str) -> dict[str, Any]:
    """The entry's defaults, then `settings`, with placeholders resolved: what the library's
    config class receives (project keys left out)."""
    merged = {**entry.defaults, **settings}
    return {k: target_modules(v, model_type) for k, v in merged.items()
            if k not in entry.project_keys}


def library_config(entry: Method, settings: dict[str, Any], model_type: str, task: str):
    """The library's config object of `entry` for these settings (None: its library takes
    none, as the project's methods)."""
    backend = entry.backend
    if not backend.configured:
        return None   # the project's methods: their `trains` hook decides
    values = resolved_settings(entry, settings, model_type)
    try:
        return backend.config(entry, values, task)
    except (TypeError, ValueError, AssertionError) as err:
        raise ConfigError(f"method {entry.name} ({entry.library} {entry.config_class}): "
                          f"{err}") from None


def description(entry: Method, settings: dict[str, Any], model_type: str) -> dict[str, Any]:
    """What a record says about its method: the library, its config class and every setting
    it received (registry defaults and placeholders resolved), so a record shows what ran."""
    resolved = resolved_settings(entry, settings, model_type) if entry.backend.configured else {}
    project = {k: v for k, v in {**entry.project_keys, **settings}.items()
               if k in entry.project_keys}
    return {"name": entry.name, "library": entry.library, "config_class": entry.config_class,
            "settings": {**resolved, **project}}


def virtual_token_count(entry: Method, settings: dict[str, Any]) -> int:
    """How many tokens the method prepends to every input (soft prompts), else 0."""
    if entry.virtual_tokens is None:
        return 0
    return int({**entry.defaults, **settings}[entry.virtual_tokens])

