"""Train and evaluate one MT configuration; write its record, translations and checkpoint.

A plain loop (AdamW, linear warm-up and decay, gradient clipping, bf16 autocast on GPUs):
the same steps for every method. The dev set is translated every `eval_steps` (or epoch);
the state with the best dev score (`select_on`) is kept in memory and restored at the end,
then dev and test are translated and scored with sacrebleu (BLEU and chrF).
"""
from __future__ import annotations

import json
import math
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft_utils.mt.config import MTConfig, load_mt_config
from peft_utils.mt.langs import group_of, sacrebleu_tokenizer
from peft_utils.results import json_default, atomic_write_text, environment, run_dir
from peft_utils.training import select_devices

CHECKPOINT = "checkpoint/trainable.safetensors"
RECORD = "record.json"


@dataclass
class MTResult:
    run_id: str
    run_dir: Path
    record: dict[str, Any]
    model: Any = None
    tokenizer: Any = None


# ---- records ------------------------------------------------------------------
def schema() -> dict[str, Any]:
    from importlib import resources

    return json.loads(resources.files("peft_utils").joinpath("schemas/mt_record.json").read_text())


def write_mt_record(directory: str | Path, record: dict[str, Any]) -> Path:
    import jsonschema

    record = {"schema_version": 1, "kind": "mt", **record}
    jsonschema.validate(record, schema())
    path = Path(directory) / RECORD
    atomic_write_text(path, json.dumps(record, indent=2, default=json_default))
    return path


def run_info(config: MTConfig) -> dict[str, Any]:
    return {**config.to_dict(), "run_id": config.run_id, "pair": config.pair,
            "group": group_of(config.tgt_lang)}


def write_failure(config: MTConfig, error: str) -> Path:
    out = run_dir(config.results_dir, config.run_id)
    record = {"status": "failed", "error": error[-8000:], "run_info": run_info(config),
              "meta": {**environment(config.device), "seed": config.seed}}
    return write_mt_record(out, record)


# ---- scoring --------------------------------------------------------------------
def score(hypotheses: list[str], references: list[str], tgt: str) -> tuple[dict, dict]:
    """Corpus BLEU and chrF (sacrebleu), and their signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(tokenize=sacrebleu_tokenizer(tgt)), CHRF()
    values = {"bleu": bleu.corpus_score(hypotheses, [references]).score,
              "chrf": chrf.corpus_score(hypotheses, [references]).score,
              "n": len(references)}
    return values, {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}




def _optimizer(model, config: MTConfig, total_steps: int):
    import torch
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            # Biases and norms are not weights to shrink (as in the HF Trainer).
            (no_decay if param.ndim < 2 else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=config.learning_rate)
    return optimizer, get_linear_schedule_with_warmup(optimizer, config.warmup_steps, total_steps)


# ---- the run --------------------------------------------------------------------------
def train_and_evaluate(config: MTConfig, results_root: str | Path | None = None) -> MTResult:
    """Run `config` end to end into `results/<run_id>/`. A failure still writes a record
    with status "failed" and the traceback, then re-raises."""
    if results_root is not None:
        config = config.replace(results_dir=str(results_root))
    out = run_dir(config.results_dir, config.run_id)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
    try:
        return _run(config, out)
    except BaseException as err:
        try:
            write_failure(config, "".join(traceback.format_exception(err)))
        except OSError:
            pass
        raise


def _run(config: MTConfig, out: Path) -> MTResult:
    import numpy as np
    import torch

    from peft_utils.models import load_trainable_state, seed_everything, trainable_state
    from peft_utils.mt.data import load_splits, split_summary
    from peft_utils.mt.models import build_seq2seq, fit_budget
    from peft_utils.mt.tokenize import (autocast, collate, encode_pairs, load_tokenizer,
                                        scheme_for, translate_texts)
    from peft_utils.training import set_cpu_threads

    device, precision = select_devices(config)
    if device == "cpu":
        set_cpu_threads()
    splits = load_splits(config.data_root, config.tgt_lang, config.src_lang,
                         config.dev_fraction, config.test_fraction, config.split_seed,
                         config.train_size, config.max_eval_samples)
    budget = fit_budget(config)   # on the meta device: the size, and the budget reached
    seed_everything(config.seed)  # before the model: adapter and LoRA init draw from it
    built = build_seq2seq(config, size=budget.size)
    budget = budget.measured(built.report)
    model = built.model.to(device)
    tokenizer = load_tokenizer(config.model)
    scheme = scheme_for(tokenizer, model.config.model_type)
    src, tgt = config.src_lang, config.tgt_lang
    train_rows = encode_pairs(tokenizer, scheme, list(splits["train"]["src"]),
                              list(splits["train"]["tgt"]), src, tgt, config.max_source_length,
                              config.max_target_length)
    pad_id = tokenizer.pad_token_id

    def translate(frame) -> list[str]:
        return translate_texts(model, tokenizer, scheme, list(frame["src"]), src, tgt,
                               config.eval_batch_size, config.num_beams,
                               config.max_source_length, config.max_target_length, precision)

    dev = splits["dev"]
    dev_rows = encode_pairs(tokenizer, scheme, list(dev["src"]), list(dev["tgt"]), src, tgt,
                            config.max_source_length, config.max_target_length)

    def dev_score() -> float:
        if config.select_on == "loss":   # higher is better everywhere: the negated loss
            return -_mean_loss(model, dev_rows, pad_id, config.eval_batch_size, device, precision)
        values, _ = score(translate(dev), list(dev["tgt"]), tgt)
        return values[config.select_on]

    per_epoch = math.ceil(len(train_rows) / (config.batch_size * config.grad_accum))
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(
        config.num_epochs * per_epoch)
    eval_every = config.eval_steps or per_epoch
    optimizer, scheduler = _optimizer(model, config, total_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    generator = np.random.default_rng(config.seed)
    curve, dev_curve = [], []
    best, best_state, best_step, bad = None, None, None, 0
    log_every = max(1, total_steps // 25)
    step, tokens_seen, examples_seen, running = 0, 0, 0, []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model.train()
    stop = False
    while not stop:
        order = generator.permutation(len(train_rows))
        batches = [order[i:i + config.batch_size]
                   for i in range(0, len(order), config.batch_size)]
        for first in range(0, len(batches), config.grad_accum):
            group = batches[first:first + config.grad_accum]
            n_rows = sum(len(b) for b in group)
            loss_sum = 0.0
            for idx in group:
                batch = {k: v.to(device) for k, v in
                         collate([train_rows[i] for i in idx], pad_id).items()}
                with autocast(torch.device(device), precision):
                    # labels: each model builds its own decoder inputs from them (mBART and
                    # T5 shift differently); its loss is the mean token cross-entropy.
                    output = model(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"],
                                   labels=batch["labels"])
                loss = output.loss.float() if not config.label_smoothing else \
                    torch.nn.functional.cross_entropy(
                        output.logits.float().flatten(0, 1), batch["labels"].flatten(),
                        ignore_index=-100, label_smoothing=config.label_smoothing)
                (loss * len(idx) / n_rows).backward()
                loss_sum += loss.item() * len(idx) / n_rows
                tokens_seen += int(batch["attention_mask"].sum() + (batch["labels"] >= 0).sum())
                examples_seen += len(idx)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running.append(loss_sum)
            if step % log_every == 0 or step == total_steps:
                curve.append({"step": step, "epoch": examples_seen / len(train_rows),
                              "loss": float(np.mean(running))})
                running = []
            if step % eval_every == 0 or step == total_steps:
                value = dev_score()
                model.train()
                dev_curve.append({"step": step, "epoch": examples_seen / len(train_rows),
                                  "dev": value})
                if best is None or value > best:
                    best, best_step, bad = value, step, 0
                    best_state = trainable_state(model)
                else:
                    bad += 1
                    if config.early_stopping_patience and bad >= config.early_stopping_patience:
                        stop = True
            if step >= total_steps or stop:
                stop = True
                break
    wall = time.perf_counter() - start
    if best_state is not None:
        load_trainable_state(model, best_state)

    # ---- evaluation of the kept state -----------------------------------------------
    metrics: dict[str, Any] = {"main_metric": "bleu", "select_on": config.select_on,
                               "best_step": best_step, "best_dev": best, "dev": {}, "test": {},
                               "learning_curve": curve, "dev_curve": dev_curve}
    for name in ("dev", "test"):
        frame = splits[name]
        start_eval = time.perf_counter()
        hyps = translate(frame)
        values, signatures = score(hyps, list(frame["tgt"]), tgt)
        values["translate_s"] = time.perf_counter() - start_eval
        metrics[name] = {tgt: values, "overall": values}
        metrics["signatures"] = signatures
        _write_translations(out / "predictions" / f"{name}-{config.pair}.tsv", frame, hyps)

    ckpt_mb = 0.0
    if config.save_checkpoint:
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in trainable_state(model).items()}
        ckpt = out / CHECKPOINT
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        save_file(state, str(tmp))
        tmp.replace(ckpt)
        ckpt_mb = ckpt.stat().st_size / 2**20
    if device == "cuda":
        peak_mb, peak_kind = torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    else:
        peak_mb, peak_kind = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                              "cpu_peak_rss")
    report = built.report
    costs = {"trainable": report["trainable"], "total": report["total"], "base": report["base"],
             "method_params": report["method_params"],
             "percent_trainable": report["percent_trainable"],
             "fraction_of_base": report["fraction_of_base"], "train_wall_s": wall,
             "train_samples_per_s": examples_seen / wall, "train_tokens_per_s": tokens_seen / wall,
             "train_steps": step, "epochs": examples_seen / len(train_rows),
             "train_sentences": len(train_rows), "peak_memory_mb": peak_mb,
             "peak_memory_kind": peak_kind, "checkpoint_mb": ckpt_mb}
    record = {"status": "complete", "error": None, "run_info": run_info(config),
              "budget": budget.as_dict(), "metrics": metrics, "costs": costs,
              "meta": {**environment(device), "seed": config.seed, "precision": precision,
                       "scheme": scheme.name, "data": split_summary(splits),
                       "data_source": splits["train"].attrs.get("source", [])}}
    write_mt_record(out, record)
    return MTResult(config.run_id, out, record, model, tokenizer)


def _mean_loss(model, rows, pad_id: int, batch_size: int, device: str, precision: str) -> float:
    import torch

    from peft_utils.mt.tokenize import autocast, collate

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), autocast(torch.device(device), precision):
        for i in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[i:i + batch_size], pad_id).items()}
            logits = model(**batch).logits.float()
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                     batch["labels"].flatten(),
                                                     ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((batch["labels"] >= 0).sum())
    return total / max(1, count)


def _write_translations(path: Path, frame, hypotheses: list[str]) -> None:
    table = frame[["line", "doc", "src", "tgt"]].rename(columns={"tgt": "reference"})
    table = table.assign(hypothesis=hypotheses)
    atomic_write_text(path, table.to_csv(sep="\t", index=False))


# ---- reload -----------------------------------------------------------------------------
def load_mt_run(directory: str | Path):
    """(config, model, tokenizer) of a finished MT run, rebuilt from its checkpoint."""
    from safetensors.torch import load_file

    from peft_utils.models import load_trainable_state, seed_everything
    from peft_utils.mt.models import build_seq2seq
    from peft_utils.mt.tokenize import load_tokenizer

    directory = Path(directory)
    config = MTConfig.from_dict(json.loads((directory / "config.json").read_text("utf-8")),
                                source=str(directory / "config.json"))
    record = json.loads((directory / RECORD).read_text("utf-8"))
    seed_everything(config.seed)
    knob, value = record["budget"]["knob"], record["budget"]["value"]
    built = build_seq2seq(config, size={knob: value} if knob else {})
    load_trainable_state(built.model, load_file(str(directory / CHECKPOINT)))
    return config, built.model, load_tokenizer(config.model)


def train_command(args) -> int:
    config = load_mt_config(args.config, _overrides(args.set))
    result = train_and_evaluate(config, args.results)
    for split in ("dev", "test"):
        values = result.record["metrics"][split]["overall"]
        print(f"{split:>4} {config.pair}: BLEU {values['bleu']:.2f}  chrF {values['chrf']:.2f} "
              f"(n={values['n']})")
    print(f"record: {result.run_dir / RECORD}", file=sys.stderr)
    return 0


def _overrides(pairs):
    from peft_utils.config import parse_overrides

    return parse_overrides(pairs)
