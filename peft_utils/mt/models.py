"""Sequence-to-sequence builders for every MT method (the registry's, core.methods),
counted one way.

Every method starts from the same `AutoModelForSeq2SeqLM` built after seeding. The study's
own methods keep their settings: pfeiffer / houlsby (size: the bottleneck dimension), lora
(the rank; attention projections or all linear layers), prefix (the prefix length; flat by
default), cross_attn (only the decoder's cross-attention blocks train) and fft. Which
settings those are is the registry entry's `paper_setting`. Every other registry method runs
at its registry defaults plus `method_config`, sized by its knob.

The adapters library supports bart, mbart, t5 and mt5 among seq2seq models, not m2m100
(NLLB) or marian: its methods stop with a clear error there.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from peft_utils.core import methods
from peft_utils.core.backends import ADAPTER_SEQ2SEQ_TYPES
from peft_utils.core.modeling import apply_method as apply_registry_method
from peft_utils.core.modeling import count_parameters, load_pretrained
from peft_utils.mt.config import FIXED_SIZE, STUDY_METHODS, MTConfig

ADAPTER_NAME = "mt"
ADAPTER_TYPES = ADAPTER_SEQ2SEQ_TYPES   # the adapters backend's (core.backends)
# Hub models of the study whose sizes ship with the package (peft_utils/model_configs/), so
# that parameter counts and budgets need neither weights nor a hub. Sizes only: training
# loads the hub's own config with the weights.
SHIPPED = ("mbart-large-50-many-to-many-mmt", "mt5-small", "mt5-base",
           "nllb-200-distilled-600M", "nllb-200-distilled-1.3B")


class BudgetError(ValueError):
    """A parameter budget the method cannot reach on this model; the message says which are."""


@dataclass
class BuiltSeq2Seq:
    model: Any
    report: dict[str, Any]
    size: dict[str, Any]          # the method's size: {knob: value} (empty for fixed sizes)
    method: dict[str, Any]        # core.methods.description: what the method's library received


# ---- configs and base models ----------------------------------------------
def resolve_config(name: str):
    """The transformers config of `name`: a local folder, a shipped config, or the hub."""
    from transformers import AutoConfig

    key = Path(name).name
    if not Path(name).is_dir() and key in SHIPPED:
        raw = json.loads(resources.files("peft_utils").joinpath(
            f"model_configs/{key}.json").read_text())
        return AutoConfig.for_model(raw.pop("model_type"), **raw)
    return AutoConfig.from_pretrained(name, trust_remote_code=False)


def _base_model(config: MTConfig, meta: bool, device: str = "meta"):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    if meta:   # sizes only: a shipped config stands in for the hub's
        with torch.device(device):
            return AutoModelForSeq2SeqLM.from_config(resolve_config(config.model))
    # Prefix tuning edits keys and values inside the eager attention code path; otherwise the
    # library's default (sdpa where the architecture has it: mT5 has not).
    attention = "eager" if methods.get(config.method, "seq2seq").needs_eager else None
    # The model's own config (activation, dropout, generation settings), never a shipped one.
    return load_pretrained(AutoModelForSeq2SeqLM, config.model, attn_implementation=attention)


def hidden_size(model) -> int:
    return int(model.config.d_model)


# ---- methods ----------------------------------------------------------------
def size_knob(method: str) -> str | None:
    """The setting a budget sizes `method` by (the registry's `budget_knob`, else its
    `size_knob`): the bottleneck dimension for bottleneck adapters, the study's lora_r for
    the LoRA family; None for fixed sizes."""
    entry = methods.REGISTRY[method]
    return entry.budget_knob or entry.size_knob


def default_size(config: MTConfig, hidden: int) -> dict[str, Any]:
    """The method's size from the explicit settings (no budget): the bottleneck from
    reduction_factor, else the study field its entry's `paper_setting` names (lora_r,
    prefix_length); empty: the registry's."""
    if size_knob(config.method) == methods.BOTTLENECK_DIM:
        return {methods.BOTTLENECK_DIM: max(1, hidden // config.reduction_factor)}
    setting = methods.REGISTRY[config.method].paper_setting
    return {setting: getattr(config, setting)} if setting else {}


def _lora_targets(config: MTConfig, model_type: str):
    if config.lora_targets == "all-linear":
        return "all-linear"
    return methods.family_modules(model_type, methods.WEIGHTS)


def method_settings(config: MTConfig, size: dict[str, Any], model) -> dict[str, Any]:
    """What the method's library config receives over the registry defaults: the size in
    the library's terms (and the study's LoRA settings; prefix_flat for the entry the study's
    prefix_length sizes), then `method_config`."""
    settings, lora = dict(size), None
    if methods.LORA_RANK in size:
        r = int(settings.pop(methods.LORA_RANK))
        lora = (r, config.lora_alpha or 2 * r, config.lora_dropout,
                _lora_targets(config, model.config.model_type))
    if methods.BOTTLENECK_DIM in size:
        # adapters sizes the bottleneck as int(hidden // reduction_factor): a factor of
        # hidden / (dim + 0.5) gives exactly `dim` without float floor surprises.
        dim = int(settings.pop(methods.BOTTLENECK_DIM))
        settings["reduction_factor"] = hidden_size(model) / (dim + 0.5)
    if methods.REGISTRY[config.method].paper_setting == "prefix_length":
        settings["flat"] = config.prefix_flat
    return methods.run_settings(settings, lora, config.method_config)


def apply_method(model, config: MTConfig, settings: dict[str, Any]):
    """`model` with `config.method` applied with `settings` (`method_settings`); only the
    method's parameters train."""
    entry = methods.get(config.method, "seq2seq")
    model_type = model.config.model_type
    problem = entry.backend.model_problem(entry, model_type, "seq2seq")
    if problem:
        raise ValueError(f"method {config.method}: {problem}")
    library_config = methods.library_config(entry, settings, model_type, "seq2seq")
    # adapters freezes every pretrained parameter; peft and the project's methods set theirs.
    return apply_registry_method(model, entry, library_config, ADAPTER_NAME)


def parameter_report(model, base_ids: set[int]) -> dict[str, Any]:
    """core.modeling.count_parameters (no head), with `fraction_of_base` = trainable / base:
    what a budget is measured in."""
    counts = count_parameters(model, base_ids)
    del counts["head"]
    return {**counts, "fraction_of_base": counts["trainable"] / counts["base"]}


def _unique_ids(model) -> set[int]:
    return {id(p) for p in model.parameters()}


def build_seq2seq(config: MTConfig, meta: bool = False,
                  size: dict[str, Any] | None = None) -> BuiltSeq2Seq:
    """The model of `config`'s method and its parameter report. The size comes from `size`,
    else from the budget (fitted on the meta device), else from the explicit settings.
    `meta=True` needs only the config (no weights, no memory). Seed before calling."""
    if size is None and config.budget is not None and config.method not in FIXED_SIZE:
        size = fit_budget(config).size
    model = _base_model(config, meta)
    size = size if size is not None else default_size(config, hidden_size(model))
    return _finish_without_weights(model, config, size) if meta else _finish(model, config, size)


def _finish(model, config: MTConfig, size: dict[str, Any]) -> BuiltSeq2Seq:
    base_ids = _unique_ids(model)
    settings = method_settings(config, size, model)
    method = methods.description(methods.REGISTRY[config.method], settings,
                                 model.config.model_type)
    model = apply_method(model, config, settings)
    return BuiltSeq2Seq(model, parameter_report(model, base_ids), dict(size), method)


def _finish_without_weights(model, config: MTConfig, size: dict[str, Any]) -> BuiltSeq2Seq:
    """_finish on a meta-device `model`; a method that initialises from the weights (an SVD,
    a sampled mask) cannot run there and is counted on randomly initialised weights."""
    import torch

    try:
        # adapters warns about inactive adapters while it sets up prefixes: noise here.
        with torch.device("meta"), _quiet("adapters"):
            return _finish(copy.deepcopy(model), config, size)
    except (NotImplementedError, RuntimeError):
        with _quiet("adapters"):
            return _finish(_base_model(config, meta=True, device="cpu"), config, size)


# ---- parameter budgets ------------------------------------------------------
@dataclass
class Budget:
    method: str
    target: float | None          # the asked fraction of the base model (None: fixed size)
    size: dict[str, Any]
    trainable: int
    base: int
    fraction: float               # reached: trainable / base
    relative_error: float | None  # |reached - target| / target

    def measured(self, report: dict[str, Any]) -> "Budget":
        """The same size, counted on the model actually built (its config, not a shipped one)."""
        fraction = report["trainable"] / report["base"]
        error = abs(fraction - self.target) / self.target if self.target else None
        return dataclasses.replace(self, trainable=report["trainable"], base=report["base"],
                                   fraction=fraction, relative_error=error)

    def as_dict(self) -> dict[str, Any]:
        knob, value = next(iter(self.size.items()), (None, None))
        return {"method": self.method, "target": self.target, "knob": knob, "value": value,
                "trainable": self.trainable, "base": self.base, "fraction": self.fraction,
                "relative_error": self.relative_error}


@contextlib.contextmanager
def _quiet(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _max_size(knob: str, hidden: int) -> int:
    # A LoRA rank beyond the hidden size adds nothing a full-rank update lacks; a bottleneck
    # beyond 4 x hidden is a second FFN, not an adapter; prefixes beyond a few thousand
    # positions add attention cost, not capacity.
    return {methods.LORA_RANK: hidden, methods.BOTTLENECK_DIM: 4 * hidden}.get(knob, 4096)


def fit_budget(config: MTConfig, budget: float | None = None,
               tolerance: float | None = None) -> Budget:
    """The size of `config.method` whose trainable parameters come closest to `budget`
    (default `config.budget`) × the base model's parameters, counted on the meta device.

    Trainable parameters grow linearly with each knob (bottleneck dim, rank, prefix length),
    so two counts give the line; the integer sizes around its solution are counted again and
    the closest is kept. A budget outside `tolerance` (relative error) raises BudgetError
    naming the reachable range. Fixed-size methods, and no budget, give the fraction that
    the explicit settings reach."""
    budget = config.budget if budget is None else budget
    tolerance = config.budget_tolerance if tolerance is None else tolerance
    base_model = _base_model(config, meta=True)
    hidden = hidden_size(base_model)

    def count(size: dict[str, Any]) -> tuple[int, int]:
        built = _finish_without_weights(base_model, config, size)
        return built.report["trainable"], built.report["base"]

    if config.method in FIXED_SIZE or budget is None:   # the size the settings give
        size = default_size(config, hidden)
        trainable, base = count(size)
        return Budget(config.method, None, size, trainable, base, trainable / base, None)
    knob = size_knob(config.method)
    (one, base), (two, _) = count({knob: 1}), count({knob: 2})
    target = budget * base
    slope, intercept = two - one, 2 * one - two
    top = _max_size(knob, hidden)
    guess = (target - intercept) / slope
    candidates = sorted({min(top, max(1, v)) for v in (int(guess), int(guess) + 1)})
    counted = [(abs(n - target), v, n) for v in candidates for n in [count({knob: v})[0]]]
    _, value, trainable = min(counted)
    error = abs(trainable - target) / target
    if error > tolerance:
        lowest, highest = one / base, (intercept + slope * top) / base
        if lowest <= budget <= highest:
            sizes = ", ".join(f"{knob}={v} trains {n / base:.4%}" for _, v, n in counted)
            why = (f"the sizes are too coarse here ({sizes}); raise budget_tolerance "
                   f"(now {tolerance:.0%}) or use a budget one of them reaches")
        else:
            why = (f"this model allows {lowest:.4%} ({knob}=1) to {highest:.3%} "
                   f"({knob}={top}); pick a budget in that range or another model")
        raise BudgetError(f"budget {budget:.2%} is not reachable with {config.method} on "
                          f"{config.model} within {tolerance:.0%}: {why}")
    return Budget(config.method, budget, {knob: value}, trainable, base, trainable / base,
                  error)


def budget_table(config: MTConfig, budgets: list[float],
                 methods: list[str] | None = None) -> list[dict[str, Any]]:
    """fit_budget for every method × budget (default: the study's methods); unreachable
    budgets are rows with `error`."""
    rows = []
    for method in methods or STUDY_METHODS:
        cfg = config.replace(method=method, budget=None)
        targets = [None] if method in FIXED_SIZE else budgets
        for target in targets:
            try:
                rows.append({**fit_budget(cfg, target).as_dict(), "error": None})
            except (BudgetError, ValueError) as err:
                rows.append({"method": method, "target": target, "error": str(err)})
    return rows
