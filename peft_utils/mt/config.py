"""One MT run = one `MTConfig` (a language pair, a method at a parameter budget, a data size);
its stable hash names the run folder, as `RunConfig` does for classification."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft_utils.core import methods
from peft_utils.core.config import (ConfigError, DataSetIdentity, RunSettings,
                                    load_with_method_overrides)
from peft_utils.data import registry
from peft_utils.mt.langs import group_of, to_iso

METHODS = methods.names("seq2seq")   # every registry entry that runs on seq2seq models
# Methods whose size is fixed by the architecture (no size knob in the registry): a budget
# does not apply to them.
FIXED_SIZE = tuple(m for m in METHODS if methods.REGISTRY[m].size_knob is None)
# The study's own methods, in the order of the budget table (`mt budget`).
STUDY_METHODS = ("pfeiffer", "houlsby", "lora", "prefix", "cross_attn", "fft")
LORA_TARGETS = ("attention", "all-linear")
SELECT_ON = ("bleu", "chrf", "loss")
# Where or how a run executes, not what it computes: left out of the run id.
NON_IDENTITY = ("results_dir", "device", "notes", "report_to", "data_root",
                "save_checkpoint", "checkpoint_steps")
FLOATS = ("learning_rate", "weight_decay", "lora_dropout", "budget", "dev_fraction",
          "test_fraction", "max_grad_norm", "label_smoothing")


@dataclass
class MTConfig(DataSetIdentity, RunSettings):
    non_identity = NON_IDENTITY   # class attributes, not fields
    identity_if_set = ("method_config", "tuning")
    float_keys = FLOATS
    record_schema, record_kind = "mt_record", "mt"
    kind: str = "mt"                   # tells grid cells and records apart from classification
    dataset: str = "ntrex"
    data_root: str = "data/ntrex"
    src_lang: str = "en"
    tgt_lang: str = "de"
    model: str = "facebook/mbart-large-50-many-to-many-mmt"
    method: str = "lora"               # a registry entry (`python -m peft_utils methods`)
    # Settings for the method's library config class, over the registry's defaults and the
    # size below (e.g. {use_dora: true}); see RunConfig.method_config.
    method_config: dict[str, Any] | None = None
    # Fraction of the pretrained model's parameters the method may train (0.001 = 0.1%); it
    # sets the method's size (adapter bottleneck, LoRA rank, prefix length). None: use the
    # explicit sizes below. Fixed-size methods (fft, cross_attn) ignore it: stored as None.
    budget: float | None = None
    budget_tolerance: float = 0.1      # relative error allowed between budget and reached
    reduction_factor: int = 16         # adapters without a budget: bottleneck = hidden / rf
    lora_r: int = 8
    lora_alpha: float | None = None    # None: 2 * r (the same update scale at every rank)
    lora_dropout: float = 0.05
    lora_targets: str = "attention"    # q,k,v,o of every attention block, or all-linear
    prefix_length: int = 30
    prefix_flat: bool = True           # train the prefix itself, not an MLP reparameterisation
    # Document-level split (same for every pair: it depends on DOCUMENT_IDS.tsv and the seed).
    split_seed: int = 0
    dev_fraction: float = 0.05
    test_fraction: float = 0.15
    train_size: int | None = None      # training sentences (data-size sweep); None: all
    max_eval_samples: int | None = None
    max_source_length: int = 128
    max_target_length: int = 128
    num_beams: int = 1
    seed: int = 42
    learning_rate: float = 1e-4
    num_epochs: float = 3.0
    max_steps: int = -1
    eval_steps: int | None = None      # None: evaluate on dev after every epoch
    select_on: str = "bleu"            # dev metric that picks the kept state
    early_stopping_patience: int | None = None
    batch_size: int = 16
    eval_batch_size: int = 32
    grad_accum: int = 1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0
    save_checkpoint: bool = True       # keep the final trainable state (checkpoint/)
    results_dir: str = "results-mt"    # (a RunSettings field, with the MT default)

    # ---- derived -------------------------------------------------------
    @property
    def data_set(self) -> registry.ParallelDataSet:
        """The data set's registry entry (a parallel table's is read from its card under
        data_root)."""
        return registry.get_parallel(self.dataset, self.data_root)

    @property
    def pair(self) -> str:
        return f"{self.src_lang}-{self.tgt_lang}"

    @property
    def run_id(self) -> str:
        budget = "fixed" if self.method in FIXED_SIZE else (
            f"b{self.budget:g}" if self.budget is not None else "manual")
        size = f"n{self.train_size}" if self.train_size else "nall"
        return (f"{self.data_set.run_name}-{self.pair}-{self.method}-{budget}-{size}-"
                f"s{self.seed}{self.trial_suffix}-{self.digest()}")

    def run_info(self) -> dict[str, Any]:
        return {**self.to_dict(), "run_id": self.run_id, "pair": self.pair,
                "group": group_of(self.tgt_lang)}

    def path_problems(self) -> list[str]:
        problems = []
        if not Path(self.data_root).is_dir():
            entry = registry.parallel_entries().get(self.dataset)
            how = (f"prepare it with `python -m peft_utils data prepare {entry.prepare}` or "
                   if entry is not None and entry.prepare else "")
            problems.append(f"data_root {self.data_root!r} does not exist; {how}set data_root")
        local = Path(self.model).is_absolute() or Path(self.model).parts[0] in ("models", ".", "..")
        if local and not Path(self.model).is_dir():
            hint = (f"; build it with `python -m peft_utils mt tiny-model {self.model}`"
                    if Path(self.model).name == "tiny-mt" else "")
            problems.append(f"model folder {self.model} does not exist{hint}")
        return problems

    def validate(self, source: str = "config") -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"{source}: {msg}")

        if self.kind != "mt":
            raise bad(f"kind must be 'mt' for an MT config, got {self.kind!r}")
        self._validate_data(bad)
        problem = methods.method_problem(self.method, self.method_config, "seq2seq")
        if problem:
            raise bad(problem)
        if self.method in FIXED_SIZE:
            self.budget = None   # one cell per fixed-size method, whatever the budget axis says
        elif self.budget is not None and (isinstance(self.budget, bool) or
                                          not isinstance(self.budget, (int, float)) or
                                          not 0 < self.budget < 1):
            raise bad(f"budget is a fraction of the model's parameters in (0, 1), e.g. 0.01 "
                      f"for 1%; got {self.budget!r}")
        if not 0 < self.budget_tolerance < 1:
            raise bad("budget_tolerance must lie in (0, 1)")
        if self.lora_targets not in LORA_TARGETS:
            raise bad(f"lora_targets must be one of {', '.join(LORA_TARGETS)}")
        if self.select_on not in SELECT_ON:
            raise bad(f"select_on must be one of {', '.join(SELECT_ON)}")
        positive = ("learning_rate", "batch_size", "eval_batch_size", "grad_accum",
                    "max_source_length", "max_target_length", "num_beams", "lora_r",
                    "reduction_factor", "prefix_length", "max_grad_norm")
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise bad(f"{key} must be a positive number, got {value!r}")
        if self.lora_alpha is not None and not self.lora_alpha > 0:
            raise bad("lora_alpha must be positive or null (2 * r)")
        if self.num_epochs <= 0 and self.max_steps <= 0:
            raise bad("set num_epochs > 0 or max_steps > 0")
        fractions = (self.dev_fraction, self.test_fraction)
        if not all(0 < f < 1 for f in fractions) or sum(fractions) >= 0.9:
            raise bad("dev_fraction and test_fraction must lie in (0, 1) and leave at least "
                      "10% of the documents for training")
        if not 0 <= self.weight_decay < 1 or not 0 <= self.lora_dropout < 1 \
                or not 0 <= self.label_smoothing < 1:
            raise bad("weight_decay, lora_dropout and label_smoothing must lie in [0, 1)")
        if self.warmup_steps < 0:
            raise bad("warmup_steps must be >= 0")
        for key in ("train_size", "max_eval_samples", "early_stopping_patience", "eval_steps"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value <= 0):
                raise bad(f"{key} must be a positive integer or null, got {value!r}")
        problem = self.settings_problem()
        if problem:
            raise bad(problem)


    def _validate_data(self, bad) -> None:
        """The data set (a registered parallel one) and the language pair: languages of the
        study (peft_utils.mt.langs) that the data set holds as a pair."""
        if self.dataset not in registry.parallel_names():
            raise bad(f"unknown MT dataset {self.dataset!r}; use one of "
                      f"{', '.join(registry.parallel_names())}")
        try:
            entry = self.data_set
        except ValueError as err:   # DataError too: a parallel table's card or rows
            raise bad(str(err)) from None
        for key in ("src_lang", "tgt_lang"):
            code = getattr(self, key)   # the data set's own file code, or any study spelling
            try:
                setattr(self, key, to_iso(entry.languages.get(code, code)))
            except ValueError as err:
                raise bad(f"{key}: {err}") from None
        if self.src_lang == self.tgt_lang:
            raise bad(f"src_lang and tgt_lang are both {self.src_lang!r}")
        problem = entry.pair_problem(self.src_lang, self.tgt_lang)
        if problem:
            raise bad(problem)


def load_mt_config(path: str | Path | None = None,
                   overrides: dict[str, Any] | None = None) -> MTConfig:
    """File values (following `base:`) < the file's `method_overrides[<method>]` < overrides."""
    raw = load_with_method_overrides(path, overrides, MTConfig.method)
    return MTConfig.from_dict(raw, source=str(path or "config"))
