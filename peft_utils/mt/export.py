"""Exporting a finished MT run (`python -m peft_utils export`; the formats' rules are
core.export's).

A `merged` folder is what `AutoModelForSeq2SeqLM.from_pretrained(OUT)` and
`pipeline("translation", model=OUT)` load with no code of this project: the weights with the
method folded in; the tokenizer (its model_max_length the run's max_source_length, so
`truncation=True` cuts where the run did); `generation_config.json` with the run's decoding
(num_beams, max_new_tokens, greedy, the forced target-language code or the suppressed tags);
and in config.json the source prefix the family needs (`prefix`: mT5's "translate English to
German: ", the test models' `<2de> ` tag) and the same decoding as the pipeline's
`task_specific_params["translation"]`: without it the translation pipeline decodes with its
own defaults (4 beams, 256 new tokens) wherever the run's value is the library's default.

An `adapter` folder holds the method's weights in its library's format, the tokenizer and the
generation config, loaded onto the base model (the metadata's `load`). There is no `onnx`
export: a translation is a generation loop, not one graph (see ONNX_REFUSAL).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from peft_utils.core import methods
from peft_utils.core.config import ConfigError
from peft_utils.core.export import (copy_weights, finish_export, finished_run, format_problem,
                                    save_adapter, staged)
from peft_utils.core.serving import merge_status, merged_copy
from peft_utils.mt.config import MTConfig

ONNX_REFUSAL = ("an MT model translates by a generation loop (the decoder run once per token, "
                "beams and caches between the steps), which is not one ONNX graph; export "
                "--format merged and convert that folder with optimum (`optimum-cli export "
                "onnx --model OUT --task text2text-generation-with-past ONNX_DIR`)")
CHECK_SENTENCES = 32   # of the run's recorded test translations, translated again on export


@dataclass
class Run:
    """A finished MT run loaded back, its generation settings configured as it translated."""
    folder: Path
    config: MTConfig
    model: Any
    tokenizer: Any
    scheme: Any                   # mt.tokenize.Scheme
    entry: methods.Method
    record: dict[str, Any]


def load(folder: Path, record: dict[str, Any]) -> Run:
    from peft_utils.mt.tokenize import configure_generation, scheme_for
    from peft_utils.mt.training import load_mt_run

    config, model, tokenizer = load_mt_run(folder)
    scheme = scheme_for(tokenizer, model.config.model_type)
    configure_generation(model, tokenizer, scheme, config.tgt_lang, config.num_beams,
                         config.max_target_length)
    return Run(folder, config, model.eval(), tokenizer, scheme,
               methods.get(config.method, "seq2seq"), record)


# ---- what a loader needs --------------------------------------------------------------
def decoding(run: Run) -> dict[str, Any]:
    """The generation settings the run translated with (mt.tokenize.translate_texts)."""
    return {"num_beams": run.config.num_beams, "max_new_tokens": run.config.max_target_length,
            "do_sample": False, **run.scheme.generate_kwargs(run.tokenizer, run.config.tgt_lang)}


def language_codes(run: Run) -> dict[str, str] | None:
    """The pair as the family's tokenizer and the translation pipeline take it (`src_lang`,
    `tgt_lang`: mBART-50, NLLB, M2M100); None for the families told by a source prefix."""
    if not run.scheme.takes_codes:
        return None
    return {"src_lang": run.scheme.code(run.config.src_lang),
            "tgt_lang": run.scheme.code(run.config.tgt_lang)}


def pipeline_call(run: Run, model: str) -> str:
    """How to translate with the translation pipeline: the language codes where the family's
    tokenizer takes them; the prefix and decoding come from the folder's config."""
    codes = "".join(f", {k}={v!r}" for k, v in (language_codes(run) or {}).items())
    return (f"pipeline('translation', model={model}, truncation=True)(texts{codes}); each "
            "result's 'translation_text'")


def metadata(run: Run, fmt: str) -> dict[str, Any]:
    config, metrics = run.config, run.record["metrics"]
    return {"format": fmt, "study": "mt", "run_id": config.run_id, "method": run.entry.name,
            "library": run.entry.library, "merge": merge_status(run.entry),
            "src_lang": config.src_lang, "tgt_lang": config.tgt_lang,
            "settings": {"base_model": config.model, "scheme": run.scheme.name,
                         "source_prefix": run.scheme.prefix(config.src_lang, config.tgt_lang),
                         "language_codes": language_codes(run),
                         "max_source_length": config.max_source_length,
                         "eval_batch_size": config.eval_batch_size, **decoding(run)},
            "scores": {split: {k: (metrics.get(split) or {}).get("overall", {}).get(k)
                               for k in ("bleu", "chrf")} for split in ("dev", "test")},
            "signatures": metrics.get("signatures"), "notes": [],
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def generation_config(run: Run):
    """The base model's generation config (token ids) with the run's decoding."""
    import copy

    base = run.model.get_base_model() if hasattr(run.model, "get_base_model") else run.model
    config = copy.deepcopy(base.generation_config)
    config.update(**decoding(run))
    # Not "from the model config": transformers rebuilds such a generation config from
    # config.json at the first generate() after loading, which drops the run's decoding.
    config._from_model_config = False
    return config


def save_tokenizer(run: Run, folder: Path) -> None:
    # A loader that truncates (truncation=True) cuts the source where the run did, and a
    # tokenizer that takes language codes starts with the run's pair set.
    run.tokenizer.model_max_length = run.config.max_source_length
    run.scheme.prepare(run.tokenizer, run.config.src_lang, run.config.tgt_lang)
    run.tokenizer.save_pretrained(folder)


# ---- the check: the export translates what the run recorded ----------------------------
def recorded(run: Run) -> tuple[list[str], list[str]]:
    """Up to CHECK_SENTENCES test sources and the run's recorded translations of them."""
    import pandas as pd

    path = run.folder / "predictions" / f"test-{run.config.pair}.tsv"
    if not path.is_file():
        return [], []
    # As training wrote it (pandas, quoted where a text holds a quote or a tab).
    table = pd.read_csv(path, sep="\t", keep_default_na=False).head(CHECK_SENTENCES)
    return list(table["src"]), list(table["hypothesis"])


def disagreement(run: Run, model, sources: list[str], hypotheses: list[str]) -> float | None:
    """The share of `sources` that `model` translates otherwise than the run recorded (None:
    the run recorded no test translations)."""
    from peft_utils.mt.tokenize import translate_texts

    if not sources:
        return None
    c = run.config
    again = translate_texts(model, run.tokenizer, run.scheme, sources, c.src_lang, c.tgt_lang,
                            c.eval_batch_size, c.num_beams, c.max_source_length,
                            c.max_target_length)
    return sum(a != b for a, b in zip(again, hypotheses)) / len(sources)


# ---- the formats --------------------------------------------------------------------------
def plain_model(run: Run):
    """The run's model as a plain transformers seq2seq model, the method merged in, with the
    run's decoding as its generation config and the family's source prefix in its config."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from peft_utils.mt.models import ADAPTER_NAME

    twin = run.model if merge_status(run.entry) == "nothing to merge" else \
        merged_copy(run.model, run.entry, ADAPTER_NAME)
    plain = AutoModelForSeq2SeqLM.from_config(
        AutoConfig.from_pretrained(run.config.model, trust_remote_code=False))
    copy_weights(twin, plain)
    plain.generation_config = generation_config(run)
    prefix = run.scheme.prefix(run.config.src_lang, run.config.tgt_lang)
    plain.config.prefix = prefix or None
    # dict(prefix=...): the "prefix" key of a dict literal reads as a branch on the method of
    # that name to tests/test_architecture.py.
    plain.config.task_specific_params = {"translation": {
        **{k: v for k, v in decoding(run).items() if k in ("num_beams", "max_new_tokens")},
        **(dict(prefix=prefix) if prefix else {})}}
    return plain.eval()


def _merged(run: Run, folder: Path) -> dict[str, Any]:
    plain = plain_model(run)
    sources, hypotheses = recorded(run)
    plain.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(run, folder)
    return {"checked_on": {"sentences": len(sources), "texts": "recorded test translations"},
            "translations_differing": disagreement(run, plain, sources, hypotheses),
            "load": "AutoModelForSeq2SeqLM.from_pretrained(OUT) (its generation_config holds "
                    "the run's decoding; put settings.source_prefix before each source) or "
                    + pipeline_call(run, "OUT")}


def _adapter(run: Run, folder: Path) -> dict[str, Any]:
    from peft_utils.mt.models import ADAPTER_NAME

    # No head to save with it: a translation model's head is its base model's.
    save_adapter(run.model, run.entry, ADAPTER_NAME, folder, with_head=False)
    generation_config(run).save_pretrained(folder)
    save_tokenizer(run, folder)
    # Prefixes edit keys and values in the eager attention code, as the run did.
    eager = ", attn_implementation='eager'" if run.entry.needs_eager else ""
    loader = f"base = AutoModelForSeq2SeqLM.from_pretrained(settings.base_model{eager})"
    attach = run.entry.backend.load_code(bind="model")
    return {"adapter_name": ADAPTER_NAME,
            "load": f"{loader}; {attach}; model.generate(**tokenizer(settings.source_prefix "
                    "+ text, return_tensors='pt', return_token_type_ids=False, truncation=True), "
                    "generation_config=GenerationConfig.from_pretrained(OUT)) with "
                    "tokenizer = AutoTokenizer.from_pretrained(OUT)"}


WRITERS = {"merged": _merged, "adapter": _adapter}


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "merged",
               force: bool = False) -> dict[str, Any]:
    """Write the `fmt` export of the finished MT run in `run_dir` to `out`; its metadata."""
    folder = Path(run_dir)
    record = finished_run(folder)
    if fmt == "onnx":
        raise ConfigError(f"{folder}: {ONNX_REFUSAL}")
    problem = format_problem(methods.get(record["run_info"]["method"], "seq2seq"), fmt)
    if problem:
        raise ConfigError(f"{folder}: {problem}")
    run = load(folder, record)
    meta = metadata(run, fmt)
    with staged(out, force) as tmp:
        meta.update(WRITERS[fmt](run, tmp))
        finish_export(tmp, meta)
    return meta
