"""Model builders for every method, and one way of counting their parameters.

All methods start from the same `AutoModelForSequenceClassification` built after seeding, so
the classifier head is drawn identically and only the method differs.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from peft_utils.classification.config import RunConfig, load_config
from peft_utils.classification.head import head_module, pool_by_mean
from peft_utils.core.config import parse_overrides
from peft_utils.core.modeling import add_adapter, add_peft, count_parameters, load_pretrained

ADAPTER_NAME = "task"
ADAPTER_METHODS = ("pfeiffer", "houlsby", "prefix")   # from the adapters library
# Configs of the paper's models, so parameter counts need neither weights nor a hub.
SHIPPED_CONFIGS = {"xlm-roberta-large", "xlm-roberta-base", "multilingual-e5-small"}


@dataclass
class BuiltModel:
    model: Any
    labels: list[str]
    report: dict[str, Any]


def labels_for(config: RunConfig) -> list[str]:
    from peft_utils.data import label_names

    return list(label_names(config.dataset, config.subtask))


def resolve_model_config(name: str, num_labels: int, multilabel: bool, shipped: bool = False):
    """A transformers config for `name`: a local folder, the hub, or (`shipped`, for parameter
    counts without a hub) a config shipped with the package."""
    from transformers import AutoConfig

    extra = dict(num_labels=num_labels,
                 problem_type="multi_label_classification" if multilabel
                 else "single_label_classification")
    key = Path(name).name
    if shipped and not Path(name).is_dir() and key in SHIPPED_CONFIGS:
        text = resources.files("peft_utils").joinpath(f"model_configs/{key}.json").read_text()
        raw = json.loads(text)
        model_type = raw.pop("model_type")
        return AutoConfig.for_model(model_type, **raw, **extra)
    return AutoConfig.from_pretrained(name, trust_remote_code=False, **extra)


def _base_model(config: RunConfig, labels: list[str], meta: bool):
    import torch
    from transformers import AutoModelForSequenceClassification

    # Weights are loaded with their own config: a shipped one could name another architecture
    # (the hub's multilingual-e5-small is a BERT checkpoint, the shipped config XLM-R's).
    hf_config = resolve_model_config(config.model, len(labels), config.multilabel, shipped=meta)
    hf_config.id2label = dict(enumerate(labels))
    hf_config.label2id = {label: i for i, label in enumerate(labels)}
    if meta:
        with torch.device("meta"):
            return AutoModelForSequenceClassification.from_config(hf_config)
    # Prefix tuning edits keys/values inside the eager attention code path.
    attention = "eager" if config.method == "prefix" else config.attention
    return load_pretrained(AutoModelForSequenceClassification, config.model, config=hf_config,
                           attn_implementation=attention)


def _apply_method(model, config: RunConfig):
    method = config.method
    if method == "fft":
        return model
    if method == "bitfit":
        for name, param in model.named_parameters():
            param.requires_grad = name.endswith(".bias")
        return model
    if method in ("lora", "ia3"):
        from peft import IA3Config, LoraConfig

        if method == "lora":
            # task_type SEQ_CLS puts the classifier into modules_to_save: trained and saved.
            peft_config = LoraConfig(task_type="SEQ_CLS", r=config.lora_r,
                                     lora_alpha=config.lora_alpha,
                                     lora_dropout=config.lora_dropout,
                                     target_modules=config.lora_targets)
        else:
            # (IA)^3 as in its paper: scale keys, values and the FFN's inner activation.
            peft_config = IA3Config(
                task_type="SEQ_CLS",
                target_modules=r".*\.layer\.\d+\.(attention\.self\.(key|value)|output\.dense)",
                feedforward_modules=r".*\.layer\.\d+\.output\.dense")
        return add_peft(model, peft_config)
    from adapters import DoubleSeqBnConfig, PrefixTuningConfig, SeqBnConfig

    adapter_config = {
        "pfeiffer": lambda: SeqBnConfig(reduction_factor=config.reduction_factor),
        "houlsby": lambda: DoubleSeqBnConfig(reduction_factor=config.reduction_factor),
        "prefix": lambda: PrefixTuningConfig(prefix_length=config.prefix_length),
    }[method]()
    return add_adapter(model, adapter_config, ADAPTER_NAME)   # the head is unfrozen by the caller


def build_model(config: RunConfig, meta: bool = False) -> BuiltModel:
    """The model of `config`'s method with its parameter report.

    `meta=True` builds on the meta device from the config alone (no weights, no memory):
    enough for parameter counts. Call `seed_everything` before this for reproducible heads.
    """
    labels = labels_for(config)
    model = _base_model(config, labels, meta)
    if config.pooling == "mean":
        pool_by_mean(model)
    head_ids = {id(p) for p in head_module(model).parameters()}
    backbone_ids = {id(p) for p in model.parameters()} - head_ids
    model = _apply_method(model, config)
    if config.method not in ("lora", "ia3"):
        # Every method trains the same head; peft does it through modules_to_save.
        for param in head_module(model).parameters():
            param.requires_grad = True
    return BuiltModel(model, labels, parameter_report(model, backbone_ids, head_ids))


def parameter_report(model, backbone_ids: set[int], head_ids: set[int]) -> dict[str, Any]:
    """core.modeling.count_parameters, its `base` named `backbone` (the pretrained encoder)
    as in the classification record."""
    counts = count_parameters(model, backbone_ids, head_ids)
    return {"trainable": counts["trainable"], "total": counts["total"],
            "backbone": counts["base"], "head": counts["head"],
            "method_params": counts["method_params"],
            "percent_trainable": counts["percent_trainable"]}


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    if Path(name).name in SHIPPED_CONFIGS and not Path(name).is_dir() \
            and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise FileNotFoundError(
            f"{name}: no tokenizer offline; use a local folder (e.g. the offline default "
            "from `python -m peft_utils model prepare e5-small`)")
    return AutoTokenizer.from_pretrained(name, trust_remote_code=False)


# ---- CLI ----------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "params", help="parameter report of a config's model, without weights or training")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=_params_command)


def _params_command(args) -> int:
    config = load_config(args.config, parse_overrides(args.set))
    report = build_model(config, meta=True).report
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>18}: {value:,.4f}" if isinstance(value, float) else f"{key:>18}: {value:,}")
    return 0
