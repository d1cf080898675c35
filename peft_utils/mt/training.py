"""Train and evaluate one MT configuration; write its record, translations and checkpoint.

The library's loop, the same one classification uses (peft_utils.core.trainer):
Seq2SeqTrainer, or the adapters library's Seq2SeqAdapterTrainer for adapter methods, with
DataCollatorForSeq2Seq, label smoothing, gradient clipping, warm-up and decay from the
TrainingArguments. The dev set is translated at every evaluation (`eval_steps`, else every
epoch) and scored with sacrebleu; the state with the best dev score (`select_on`) is kept
and restored, checkpoints allow resuming a killed run to the same metrics, and the run folder
has the guarantees of peft_utils.core.runs.execute_run. Dev and test are then translated
with the kept state and scored (BLEU and chrF).

The run itself is every study's (peft_utils.core.pipeline); this module plugs in the MT steps
(`STEPS`): the pair's splits, the budgeted model and its tokenisation scheme, the dev score,
translation and scoring, and the record's budget.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from peft_utils.core import pipeline
from peft_utils.core.config import parse_overrides
from peft_utils.core.devices import prepare_device
from peft_utils.core.modeling import seed_everything
from peft_utils.core.pipeline import Outcome, Pass, RecordParts, Steps
from peft_utils.core.runs import RECORD, RunResult, atomic_write_text, read_record
from peft_utils.core.serving import Subject
from peft_utils.mt.config import MTConfig, load_mt_config
from peft_utils.mt.langs import sacrebleu_tokenizer

if TYPE_CHECKING:   # imported where training starts: it loads transformers
    from peft_utils.core.trainer import Fitted


# ---- scoring --------------------------------------------------------------------
def score(hypotheses: list[str], references: list[str], tgt: str) -> tuple[dict, dict]:
    """Corpus BLEU and chrF (sacrebleu), and their signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(tokenize=sacrebleu_tokenizer(tgt)), CHRF()
    values = {"bleu": bleu.corpus_score(hypotheses, [references]).score,
              "chrf": chrf.corpus_score(hypotheses, [references]).score,
              "n": len(references)}
    return values, {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}


# ---- the run --------------------------------------------------------------------------
def train_and_evaluate(config: MTConfig, results_root: str | Path | None = None) -> RunResult:
    """Run `config` end to end into `results/<run_id>/`, with the guarantees of
    peft_utils.core.runs.execute_run: checked first, one writer, a failure record. An
    interrupted run of the same id resumes from its last checkpoint."""
    if results_root is not None:
        config = config.replace(results_dir=str(results_root))
    return pipeline.train_and_evaluate(config, None, STEPS)


@dataclass
class Prepared:
    device: str
    precision: str
    splits: dict[str, Any]          # train / dev / test frames (src, tgt, doc, line)
    budget: Any                     # mt.models.Budget, measured on the built model
    built: Any                      # mt.models.BuiltSeq2Seq
    tokenizer: Any
    scheme: Any                     # mt.tokenize.Scheme
    train_rows: list[dict[str, list[int]]]
    dev_rows: list[dict[str, list[int]]]   # longest source first (less padding in generation)
    dev_refs: list[str]                    # their references, in the same order


def _splits(config: MTConfig) -> dict[str, Any]:
    """The run's train / dev / test frames, as every reader of the run must cut them."""
    from peft_utils.mt.data import load_splits

    return load_splits(config.data_root, config.tgt_lang, config.src_lang, config.dev_fraction,
                       config.test_fraction, config.split_seed, config.train_size,
                       config.max_eval_samples, dataset=config.dataset)


def _prepare(config: MTConfig) -> Prepared:
    from peft_utils.mt.models import build_seq2seq, fit_budget
    from peft_utils.mt.tokenize import (configure_generation, encode_pairs, load_tokenizer,
                                        scheme_for)

    device, precision = prepare_device(config)
    splits = _splits(config)
    budget = fit_budget(config)   # on the meta device: the size, and the budget reached
    seed_everything(config.seed)  # before the model: adapter and LoRA init draw from it
    built = build_seq2seq(config, size=budget.size)
    tokenizer = load_tokenizer(config.model)
    scheme = scheme_for(tokenizer, built.model.config.model_type)
    configure_generation(built.model, tokenizer, scheme, config.tgt_lang, config.num_beams,
                         config.max_target_length)

    def encode(frame) -> list[dict[str, list[int]]]:
        return encode_pairs(tokenizer, scheme, list(frame["src"]), list(frame["tgt"]),
                            config.src_lang, config.tgt_lang, config.max_source_length,
                            config.max_target_length)

    dev_rows, dev_refs = encode(splits["dev"]), list(splits["dev"]["tgt"])
    order = np.argsort([-len(r["input_ids"]) for r in dev_rows], kind="stable")
    return Prepared(device, precision, splits, budget.measured(built.report), built, tokenizer,
                    scheme, encode(splits["train"]), [dev_rows[i] for i in order],
                    [dev_refs[i] for i in order])


def _dev_metric(config: MTConfig, prep: Prepared):
    """(compute_metrics for the trainer, the BestDevState score): BLEU or chrF of the
    generated dev translations, or the negated dev loss (select_on: loss; higher is better
    everywhere)."""
    if config.select_on == "loss":
        return None, lambda metrics: -metrics["eval_loss"]
    pad = prep.tokenizer.pad_token_id

    def compute_metrics(prediction) -> dict[str, float]:
        ids = np.where(prediction.predictions != -100, prediction.predictions, pad)
        hyps = [t.strip() for t in prep.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        values, _ = score(hyps, prep.dev_refs, config.tgt_lang)
        return {"main": values[config.select_on]}

    return compute_metrics, None


def _fit(config: MTConfig, out: Path, prep: Prepared) -> Fitted:
    from transformers import DataCollatorForSeq2Seq

    from peft_utils.core.trainer import training_arguments

    model = prep.built.model
    compute_metrics, dev_score = _dev_metric(config, prep)
    args = training_arguments(
        config, out, prep.device, prep.precision, True, len(prep.train_rows), seq2seq=True,
        predict_with_generate=config.select_on != "loss",
        prediction_loss_only=config.select_on == "loss",
        label_smoothing_factor=config.label_smoothing, max_grad_norm=config.max_grad_norm)
    # model: the collator builds decoder inputs from the labels, which the label smoother
    # takes out of the batch before the forward pass.
    collator = DataCollatorForSeq2Seq(prep.tokenizer, model=model, label_pad_token_id=-100)
    return pipeline.fit(config, out, model, "seq2seq", config.method_config or {}, dev_score,
                        args=args, train_dataset=prep.train_rows, eval_dataset=prep.dev_rows,
                        data_collator=collator, compute_metrics=compute_metrics)


def _translate(config: MTConfig, prep: Prepared, model, split: str) -> list[str]:
    """The kept state's translations of `split`'s sources."""
    from peft_utils.mt.tokenize import translate_texts

    return translate_texts(model, prep.tokenizer, prep.scheme, list(prep.splits[split]["src"]),
                           config.src_lang, config.tgt_lang, config.eval_batch_size,
                           config.num_beams, config.max_source_length,
                           config.max_target_length, prep.precision)


def _evaluate(config: MTConfig, out: Path, prep: Prepared,
              passes: dict[str, Pass]) -> dict[str, Any]:
    """The translations of each split scored (BLEU, chrF, their signatures) and written
    beside their sources and references; `test` stays empty for a trial (dev alone)."""
    metrics: dict[str, Any] = {"test": {}}
    for name, translated in passes.items():
        frame = prep.splits[name]
        values, signatures = score(translated.outputs, list(frame["tgt"]), config.tgt_lang)
        metrics[name] = {config.tgt_lang: values, "overall": values}
        metrics["signatures"] = signatures
        _write_translations(out / "predictions" / f"{name}-{config.pair}.tsv", frame,
                            translated.outputs)
    return metrics


def _costs(prep: Prepared, fitted: Fitted, checkpoint_mb: float,
           translate_s: dict[str, float]) -> dict[str, Any]:
    rows = prep.train_rows
    report = prep.built.report
    return {**{k: report[k] for k in ("trainable", "total", "base", "method_params",
                                      "percent_trainable", "fraction_of_base")},
            **fitted.costs(len(rows), sum(len(r["input_ids"]) + len(r["labels"]) for r in rows),
                           prep.device),
            "train_sentences": len(rows), "checkpoint_mb": checkpoint_mb,
            "translate_s": translate_s}


def serving_subject(config: MTConfig, model, tokenizer, scheme, sources: list[str],
                    precision: str) -> Subject:
    """The run's model for core.serving, translating `sources` (its test sources); the
    merged model's disagreement is the share of sentences it translates differently."""
    from peft_utils.core import methods
    from peft_utils.mt.models import ADAPTER_NAME
    from peft_utils.mt.tokenize import translate_texts

    rows = [{"input_ids": ids, "src": src}   # input_ids: the length the timings spread over
            for ids, src in zip(tokenizer(sources)["input_ids"], sources)]

    def infer(model_, part, size):
        return translate_texts(model_, tokenizer, scheme, [r["src"] for r in part],
                               config.src_lang, config.tgt_lang, size, config.num_beams,
                               config.max_source_length, config.max_target_length, precision)

    return Subject(model, methods.get(config.method, "seq2seq"), ADAPTER_NAME, infer,
                   lambda a, b: float(np.mean([x != y for x, y in zip(a, b)])), rows,
                   config.eval_batch_size)


def _run_serving_subject(config: MTConfig, prep: Prepared, model, split: str) -> Subject:
    return serving_subject(config, model, prep.tokenizer, prep.scheme,
                           list(prep.splits[split]["src"]), prep.precision)


def _record(run: Outcome) -> RecordParts:
    """The MT entries of the record: the parameter budget, BLEU and chrF, the translation
    times, the tokenisation scheme and the data's documents and source."""
    from peft_utils.mt.data import split_summary

    config, prep = run.config, run.prep
    translate_s = {name: translated.seconds for name, translated in run.passes.items()}
    return RecordParts(
        sections={"budget": prep.budget.as_dict()},
        scoring={"main_metric": "bleu", "select_on": config.select_on},
        metrics=run.evaluation,
        costs=_costs(prep, run.fitted, run.checkpoint_mb, translate_s),
        meta={"scheme": prep.scheme.name, "data": split_summary(prep.splits),
              "data_source": prep.splits["train"].attrs.get("source", [])})


STEPS = Steps(prepare=_prepare, fit=_fit, predict=_translate, score=_evaluate,
              serving_subject=_run_serving_subject, record=_record,
              keeps_weights=lambda config: config.save_checkpoint)


def _write_translations(path: Path, frame, hypotheses: list[str]) -> None:
    table = frame[["line", "doc", "src", "tgt"]].rename(columns={"tgt": "reference"})
    table = table.assign(hypothesis=hypotheses)
    atomic_write_text(path, table.to_csv(sep="\t", index=False))


# ---- reload -----------------------------------------------------------------------------
def load_mt_run(directory: str | Path):
    """(config, model, tokenizer) of a finished MT run, rebuilt from its checkpoint at the
    size its budget reached."""
    from peft_utils.mt.models import build_seq2seq
    from peft_utils.mt.tokenize import load_tokenizer

    def build(config: MTConfig):
        budget = read_record(directory)["budget"]
        return build_seq2seq(config, size={budget["knob"]: budget["value"]}
                             if budget["knob"] else {})

    config, built = pipeline.load_trained(directory, MTConfig, build)
    return config, built.model, load_tokenizer(config.model)


def load_serving_subject(directory: str | Path) -> Subject:
    """A finished MT run's model for core.serving (`bench-inference`), on its test sources."""
    from peft_utils.core.devices import prepare_device
    from peft_utils.mt.tokenize import configure_generation, scheme_for

    config, model, tokenizer = load_mt_run(directory)
    device, precision = prepare_device(config)
    model.to(device)
    scheme = scheme_for(tokenizer, model.config.model_type)
    configure_generation(model, tokenizer, scheme, config.tgt_lang, config.num_beams,
                         config.max_target_length)
    return serving_subject(config, model, tokenizer, scheme, list(_splits(config)["test"]["src"]),
                           precision)


def train_command(args) -> int:
    config = load_mt_config(args.config, parse_overrides(args.set))
    result = train_and_evaluate(config, args.results)
    if not result.record:
        return 0  # not rank 0 under `accelerate launch`: rank 0 reports
    for split in ("dev", "test"):
        values = result.record["metrics"][split]["overall"]
        print(f"{split:>4} {config.pair}: BLEU {values['bleu']:.2f}  chrF {values['chrf']:.2f} "
              f"(n={values['n']})")
    print(f"record: {result.run_dir / RECORD}", file=sys.stderr)
    return 0
