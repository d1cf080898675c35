"""One configuration object per run; its stable hash names the run folder."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft_utils.classification.imbalance import REMEDIES
from peft_utils.core import methods
from peft_utils.core.config import (ConfigError, DataSetIdentity, RunSettings,
                                    load_with_method_overrides, model_max_length, model_problem,
                                    type_problems)
from peft_utils.data import registry

METHODS = methods.names("classification")   # every runnable registry entry
SCENARIOS = ("multilingual", "en", "en+translations")
LONG_TEXT = ("head", "head+tail", "chunks")
CLASS_WEIGHTS = REMEDIES
SELECTION = ("dev", "last")
HEAD_INIT = ("random", "probe")
# The head's learning rate when it starts from the probe and `head_learning_rate` is unset.
# Measured on the demo (docs/demo/head-init.md, SIB-200, seed 1): a head fitted by the probe
# lost its start within 10 steps at 1e-2 (FFT dev macro-F1 0.664 at step 0, 0.143 at step 10)
# and at the method's own rate (2.24e-4 to 5.48e-3: 0.476 / 0.298 / 0.090 at step 10); at 1e-4
# it kept it (0.628 at step 10) and ended higher.
PROBE_HEAD_LEARNING_RATE = 1e-4
# A head rate from which a probe head is warned about: the measured rates that undid its start.
PROBE_HEAD_WARNING_RATE = 1e-3
# Fields that say where or how a run executes, not what it computes: left out of the run id.
NON_IDENTITY = ("results_dir", "device", "notes", "report_to", "data_root", "translations_dir",
                "attention", "gradient_checkpointing", "torch_compile", "checkpoint_steps")


@dataclass
class RunConfig(DataSetIdentity, RunSettings):
    non_identity = NON_IDENTITY   # class attributes, not fields
    identity_if_set = ("class_weights", "selection", "method_config", "tuning", "head_init")
    # YAML reads 3e-4 as a string; scientific notation is accepted for these.
    float_keys = ("learning_rate", "head_learning_rate", "weight_decay", "lora_dropout")
    dataset: str = "sib200"             # a registry entry (`python -m peft_utils data list`)
    subtask: int | None = None          # which task of a data set with several (SemEval: 1-3)
    data_root: str = "data/sib200"
    method: str = "lora"               # a registry entry (`python -m peft_utils methods`)
    # Settings for the method's library config class, over the registry's defaults (and the
    # paper's fields below for its methods), e.g. {r: 16, use_dora: true}.
    method_config: dict[str, Any] | None = None
    scenario: str = "multilingual"
    train_langs: list[str] | None = None  # None: the data set's training languages
    eval_langs: list[str] | None = None   # None: training + zero-shot languages
    translations_dir: str | None = None   # SemEval en+translations: release-layout folder
    model: str = "xlm-roberta-large"
    seed: int = 42
    max_length: int = 512
    long_text: str = "head"
    chunk_stride: int = 128
    # What the classifier head reads: the first token's state (cls, XLM-R's head and the
    # paper's), or the masked mean of all token states (mean, how E5 models were trained).
    pooling: str = "cls"
    # The head's output bias at the start: the model's initialisation (default, the paper's) or
    # the training labels' log prior (prior: short runs need not learn the base rates).
    head_bias: str = "default"
    # How the head starts: drawn at random after seeding (random, the paper's), or from the
    # linear probe on the features it receives at step 0 (probe: LP-FT, classification.head_init;
    # the run starts at the probe's score and training measures what the method adds).
    head_init: str = "random"
    learning_rate: float = 3e-4
    # The classifier head's own learning rate (None: learning_rate under head_init: random;
    # under head_init: probe an unset rate becomes PROBE_HEAD_LEARNING_RATE when the config is
    # validated, so the run id says which rate trained). A freshly drawn head learns slowly at
    # FFT's small learning rate; short runs give it its own.
    head_learning_rate: float | None = None
    num_epochs: float = 3.0
    max_steps: int = -1
    eval_steps: int | None = None         # None: evaluate on dev after every epoch
    batch_size: int = 16
    eval_batch_size: int = 64
    grad_accum: int = 1
    warmup_steps: int = 100
    weight_decay: float = 0.01
    early_stopping_patience: int | None = None
    threshold: float | str = 0.5        # multilabel: a fixed value or "tune" (on dev)
    # Imbalanced labels, the same remedy for every method (classification.imbalance): none (the
    # paper's), balanced (recommended: the logit-adjusted loss, the log prior added to the
    # logits in the loss, not in predictions) or weighted (inverse-frequency class weights).
    class_weights: str = "none"
    # Which state is kept: the best on the training languages' labelled dev rows (dev; an error
    # when there are none), or the last one (last: for trees without such rows, documented).
    selection: str = "dev"
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.05
    # The paper's LoRA targets: q, k, v and both FFN projections (not attention.output).
    lora_targets: str = r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|intermediate\.dense|output\.dense)"
    reduction_factor: int = 16
    prefix_length: int = 30
    max_train_samples: int | None = None  # per language, for subsetting (documented in reports)
    max_eval_samples: int | None = None   # per language and split
    attention: str = "sdpa"               # sdpa (fused kernels) or eager
    padding: str = "dynamic"              # dynamic, or max_length (the paper's pipeline)
    group_by_length: bool = True          # length-grouped training batches
    gradient_checkpointing: bool = False  # trade compute for memory on long inputs
    torch_compile: bool = False

    # ---- derived -------------------------------------------------------
    @property
    def data_set(self) -> registry.DataSet:
        """The data set's registry entry (a table's is read from its card under data_root)."""
        return registry.get(self.dataset, self.data_root)

    @property
    def task(self) -> registry.Task:
        return self.data_set.task(self.subtask)

    @property
    def task_name(self) -> str:
        return self.data_set.task_name(self.subtask)

    @property
    def multilabel(self) -> bool:
        return self.task.multilabel

    def head_rate_warning(self) -> str | None:
        """A note for a head started from the probe at a rate of the size that undid its start
        on the demo (not an error: the rate may be meant); None otherwise."""
        rate = self.head_learning_rate   # set under head_init: probe (validate)
        if self.head_init != "probe" or rate < PROBE_HEAD_WARNING_RATE:
            return None
        return (f"warning: head_learning_rate {rate:g} with head_init: probe: a head started "
                f"from the probe lost its start within 10 steps at rates of this size "
                f"(docs/demo/head-init.md); the default for a probe head is "
                f"{PROBE_HEAD_LEARNING_RATE:g} (leave head_learning_rate unset)")

    @property
    def resolved_train_langs(self) -> list[str]:
        if self.scenario in ("en", "en+translations"):
            return ["en"]
        return list(self.train_langs or self.data_set.train_langs)

    @property
    def resolved_eval_langs(self) -> list[str]:
        if self.eval_langs:
            return list(self.eval_langs)
        base = list(self.train_langs or self.data_set.train_langs)
        return base + [lang for lang in self.data_set.zero_shot_langs if lang not in base]

    @property
    def zero_shot_langs(self) -> list[str]:
        trained = set(self.train_langs or self.data_set.train_langs)
        if self.scenario == "en":
            trained = {"en"}
        return [lang for lang in self.resolved_eval_langs if lang not in trained]

    @property
    def run_id(self) -> str:
        scen = self.scenario.replace("+", "_")
        return (f"{self.task_name}-{self.method}-{scen}-s{self.seed}{self.trial_suffix}-"
                f"{self.digest()}")

    def run_info(self) -> dict[str, Any]:
        return {**self.to_dict(), "run_id": self.run_id, "multilabel": self.multilabel,
                "task": self.task.info(self.task_name),
                "train_langs_resolved": self.resolved_train_langs,
                "eval_langs_resolved": self.resolved_eval_langs,
                "zero_shot_langs": self.zero_shot_langs}

    def validate(self, source: str = "config") -> None:
        def bad(msg: str) -> ConfigError:
            return ConfigError(f"{source}: {msg}")

        wrong_types = type_problems(self)
        if wrong_types:   # before the value checks, which assume the types
            raise bad(wrong_types[0])
        self._validate_data(bad)
        self._validate_budget(bad)
        self._validate_decisions(bad)
        self._validate_model(bad)

    def _validate_data(self, bad) -> None:
        """The data set, task, method, scenario and languages."""
        if self.dataset not in registry.names():
            raise bad(f"unknown dataset {self.dataset!r}; use one of "
                      f"{', '.join(registry.names())}")
        try:
            entry = self.data_set
            entry.task(self.subtask)
        except ValueError as err:   # DataError too: a table's card or files
            raise bad(str(err)) from None
        problem = methods.method_problem(self.method, self.method_config, "classification")
        if problem:
            raise bad(problem)
        if self.scenario not in SCENARIOS:
            raise bad(f"unknown scenario {self.scenario!r}; use one of {', '.join(SCENARIOS)}")
        if self.long_text not in LONG_TEXT:
            raise bad(f"unknown long_text {self.long_text!r}; use one of {', '.join(LONG_TEXT)}")
        for key in ("train_langs", "eval_langs"):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, str) or not value:
                raise bad(f"{key} must be a non-empty list of language codes")
            try:
                setattr(self, key, [entry.to_iso(str(code)) for code in value])
            except ValueError as err:
                raise bad(f"{key}: {err}") from None

    def _validate_budget(self, bad) -> None:
        """Rates, sizes, steps and lengths."""
        positive = ("learning_rate", "batch_size", "eval_batch_size", "grad_accum", "max_length",
                    "lora_r", "lora_alpha", "reduction_factor", "prefix_length")
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise bad(f"{key} must be a positive number, got {value!r}")
        for key in ("learning_rate", "head_learning_rate"):
            value = getattr(self, key)
            if value is not None and not (0 < value < 1 and math.isfinite(value)):
                raise bad(f"{key} must be a finite number in (0, 1), got {value!r}")
        if not math.isfinite(self.num_epochs) or self.num_epochs < 0:
            raise bad(f"num_epochs must be a finite number >= 0, got {self.num_epochs!r}")
        if self.max_steps < -1:
            raise bad(f"max_steps must be -1 (use num_epochs) or a step count, "
                      f"got {self.max_steps}")
        if self.num_epochs <= 0 and self.max_steps <= 0:
            raise bad("set num_epochs > 0 or max_steps > 0")
        if not 0 <= self.weight_decay < 1 or not 0 <= self.lora_dropout < 1:
            raise bad("weight_decay and lora_dropout must lie in [0, 1)")
        if self.warmup_steps < 0:
            raise bad("warmup_steps must be >= 0")
        if self.max_length < 8:
            raise bad("max_length must be at least 8 tokens")
        if self.chunk_stride < 0:
            raise bad("chunk_stride must be >= 0")
        if self.long_text == "chunks" and not 0 <= self.chunk_stride < self.max_length - 2:
            raise bad("chunk_stride must lie in [0, max_length - 2)")

    def _validate_decisions(self, bad) -> None:
        """Threshold, class weights, selection, device and precision."""
        if isinstance(self.threshold, str):
            if self.threshold != "tune":
                raise bad(f"threshold must be a number in (0, 1) or 'tune', got {self.threshold!r}")
        elif not 0 < float(self.threshold) < 1:
            raise bad(f"threshold must lie in (0, 1), got {self.threshold!r}")
        if self.class_weights not in CLASS_WEIGHTS:
            raise bad(f"class_weights must be one of {', '.join(CLASS_WEIGHTS)}, "
                      f"got {self.class_weights!r}")
        if self.selection not in SELECTION:
            raise bad(f"selection must be dev or last, got {self.selection!r}")
        if self.selection == "last" and self.threshold == "tune":
            raise bad("threshold: tune needs dev rows to tune on; with selection: last give a "
                      "fixed threshold (e.g. 0.5)")
        problem = self.settings_problem(("auto", "fp32", "bf16", "fp16"))
        if problem:
            raise bad(problem)

    def _validate_model(self, bad) -> None:
        """Pooling, head, padding, attention, optional limits and the model."""
        if self.pooling not in ("cls", "mean"):
            raise bad(f"pooling must be cls or mean, got {self.pooling!r}")
        if self.head_bias not in ("default", "prior"):
            raise bad(f"head_bias must be default or prior, got {self.head_bias!r}")
        if self.head_init not in HEAD_INIT:
            raise bad(f"head_init must be one of {', '.join(HEAD_INIT)}, got {self.head_init!r}")
        if self.head_init == "probe" and self.head_learning_rate is None:
            self.head_learning_rate = PROBE_HEAD_LEARNING_RATE
        if self.head_init == "probe" and self.head_bias == "prior":
            raise bad("head_bias: prior and head_init: probe both set the head's bias (the probe "
                      "fits it); remove head_bias")
        if self.padding not in ("dynamic", "max_length"):
            raise bad(f"padding must be dynamic or max_length, got {self.padding!r}")
        if self.attention not in ("sdpa", "eager"):
            raise bad(f"attention must be sdpa or eager, got {self.attention!r}")
        for key in ("max_train_samples", "max_eval_samples", "early_stopping_patience",
                    "eval_steps"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise bad(f"{key} must be a positive integer or null, got {value!r}")
        problem = model_problem(self.model)
        if problem:
            raise bad(problem)

    def path_problems(self) -> list[str]:
        """What is missing on disk for this run to start (data, translations); checked before
        training and by `grid run` before any cell, not at parse time, so that grids and
        presets can be listed on a machine without the data."""
        problems = []
        if not Path(self.data_root).is_dir():
            problems.append(f"data_root {self.data_root!r} does not exist; prepare the data "
                            "(`python -m peft_utils data prepare NAME`) or set data_root")
        if (self.scenario == "en+translations" and self.data_set.parallel == "folder"
                and not (self.translations_dir and Path(self.translations_dir).is_dir())):
            problems.append(f"translations_dir {self.translations_dir!r} does not exist; the "
                            f"en+translations scenario of {self.dataset} needs the translated "
                            "articles")
        limit = model_max_length(self.model)
        virtual = methods.virtual_token_count(methods.REGISTRY[self.method],
                                              self.method_config or {})
        if limit is not None and self.max_length + virtual > limit:
            prompt = f" plus the {virtual} virtual tokens of {self.method}" if virtual else ""
            problems.append(f"max_length {self.max_length}{prompt} exceeds the {limit} "
                            f"positions of model {self.model}; lower max_length (long texts: "
                            "long_text head+tail or chunks)")
        return problems


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """File values < the file's `method_overrides[<method>]` < explicit `overrides`."""
    raw = load_with_method_overrides(path, overrides, RunConfig.method)
    return RunConfig.from_dict(raw, source=str(path or "config"))
