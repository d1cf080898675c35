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
from peft_utils.classification.head import head_module, pool_by_mean, skip_virtual_tokens
from peft_utils.core import methods
from peft_utils.core.config import parse_overrides
from peft_utils.core.modeling import apply_method, count_parameters, load_pretrained, own_head

ADAPTER_NAME = "task"
# Configs of the paper's models, so parameter counts need neither weights nor a hub.
SHIPPED_CONFIGS = {"xlm-roberta-large", "xlm-roberta-base", "multilingual-e5-small"}


@dataclass
class BuiltModel:
    model: Any
    labels: list[str]
    report: dict[str, Any]
    method: dict[str, Any]    # core.methods.description: what the method's library received


def labels_for(config: RunConfig) -> list[str]:
    return list(config.task.labels)


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


def labelled_config(config: RunConfig, labels: list[str], shipped: bool = False):
    """The transformers config of `config`'s model with the task's labels (id2label,
    label2id) and problem type, as the run's model has it."""
    hf_config = resolve_model_config(config.model, len(labels), config.multilabel, shipped)
    hf_config.id2label = dict(enumerate(labels))
    hf_config.label2id = {label: i for i, label in enumerate(labels)}
    return hf_config


def pretrained_model(config: RunConfig, labels: list[str], meta: bool, device: str = "meta"):
    """The run's pretrained model with a fresh head for `labels`, no method applied."""
    import torch
    from transformers import AutoModelForSequenceClassification

    # Weights are loaded with their own config: a shipped one could name another architecture
    # (the hub's multilingual-e5-small is a BERT checkpoint, the shipped config XLM-R's).
    hf_config = labelled_config(config, labels, shipped=meta)
    if meta:
        with torch.device(device):
            return AutoModelForSequenceClassification.from_config(hf_config)
    # Prefix tuning edits keys/values inside the eager attention code path.
    attention = "eager" if methods.get(config.method).needs_eager else config.attention
    with own_head():   # the run sets the head itself: no "You should probably TRAIN" warning
        return load_pretrained(AutoModelForSequenceClassification, config.model,
                               config=hf_config, attn_implementation=attention)


def method_settings(config: RunConfig) -> dict[str, Any]:
    """What the method's config class receives over the registry defaults: the paper's
    fields for the methods whose entry names a `paper_setting` (so their settings and run ids
    keep their meaning; the LoRA variants share LoRA's), then the run's `method_config`."""
    entry = methods.get(config.method)
    lora = (config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets) \
        if entry.lora_family else None
    # reduction_factor, prefix_length: the study's field is the library's key too.
    setting = entry.paper_setting
    sized = {setting: getattr(config, setting)} if setting and not entry.lora_family else {}
    return methods.run_settings(sized, lora, config.method_config)


def build_model(config: RunConfig, meta: bool = False, device: str = "meta") -> BuiltModel:
    """The model of `config`'s method with its parameter report.

    `meta=True` builds from the config alone, no weights: on the meta device (no memory,
    enough for parameter counts), or randomly initialised on `device` (for methods that
    initialise from the weights). Call `seed_everything` first for reproducible heads.
    """
    entry, settings = methods.get(config.method), method_settings(config)
    labels = labels_for(config)
    model = pretrained_model(config, labels, meta, device)
    # The head reads the text's positions, not the virtual tokens a soft prompt prepends.
    skip_virtual_tokens(model, methods.virtual_token_count(entry, settings))
    if config.pooling == "mean":
        pool_by_mean(model)
    head_ids = {id(p) for p in head_module(model).parameters()}
    backbone_ids = {id(p) for p in model.parameters()} - head_ids
    model_type = model.config.model_type
    library_config = methods.library_config(entry, settings, model_type, "classification")
    model = apply_method(model, entry, library_config, ADAPTER_NAME)
    if not entry.backend.trains_head:
        # Every method trains the same head; peft does it through modules_to_save.
        for param in head_module(model).parameters():
            param.requires_grad = True
    return BuiltModel(model, labels, parameter_report(model, backbone_ids, head_ids),
                      methods.description(entry, settings, model_type))


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
