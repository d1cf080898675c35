"""Train and evaluate one configuration; write its record, predictions and checkpoint.

Every method goes through the same steps: seed, build, tokenise, train with the HF Trainer
(the adapters trainer for adapter methods), keep the best dev state, evaluate per language.
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peft_utils import metrics as M
from peft_utils.checkpoints import (best_dev_state, checkpoint_callback, find_resumable, prune,
                                    save_tensors, trainer_class)
from peft_utils.config import ConfigError, RunConfig, load_config, parse_overrides
from peft_utils.head import head_parameters, set_head_bias_to_prior
from peft_utils.imbalance import remedy_loss, remedy_values
from peft_utils.inference import collator, sorted_batches
from peft_utils.models import (BuiltModel, build_model, load_tokenizer, load_trainable_state,
                               seed_everything, trainable_state)
from peft_utils.results import (atomic_write_text, ensure_writable, environment,
                                remove_stale_temp_files, run_dir, run_lock, write_record)
from peft_utils.probe import FEATURE_CACHE, frozen_probe
from peft_utils.run_data import RunData, load_run_data, selection_mask
from peft_utils.token_cache import DEFAULT_DIR as DEFAULT_CACHE

CHECKPOINT = "checkpoint/trainable.safetensors"
ADAPTER_METHODS = ("pfeiffer", "houlsby", "prefix")


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    record: dict[str, Any]
    model: Any = None      # the trained model in memory (best dev state), for notebooks/tests
    tokenizer: Any = None

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record["metrics"]


# ---- data -----------------------------------------------------------------
@dataclass
class Split:
    """Rows of one split, tokenised; `rows` may hold several chunks per example."""
    frame: Any                      # pandas.DataFrame of examples (id, lang, text, labels, ...)
    rows: list[dict[str, Any]]      # model inputs, one per chunk
    example_index: np.ndarray       # example of each row
    gold: np.ndarray                # [examples] class ids or [examples, C] multi-hot

    @property
    def has_gold(self) -> np.ndarray:
        if "has_gold" in self.frame:
            return self.frame["has_gold"].to_numpy(bool)
        return self.frame["labels"].map(len).gt(0).to_numpy(bool)

    @property
    def labelled(self) -> bool:
        return bool(self.has_gold.any())

    def subset(self, mask: np.ndarray) -> "Split":
        """The examples where `mask` holds, with their rows, renumbered from 0."""
        new_index = np.cumsum(mask) - 1
        keep = mask[self.example_index]
        return Split(self.frame[mask].reset_index(drop=True),
                     [row for row, k in zip(self.rows, keep) if k],
                     new_index[self.example_index[keep]], self.gold[mask])


def select_devices(config: RunConfig) -> tuple[str, str]:
    """(device, precision) for `config`: the GPU and bf16 where present, else CPU and fp32."""
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else (
            "mps" if torch.backends.mps.is_available() else "cpu")
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu" and precision != "fp32":
        raise ValueError(f"precision {precision} needs a GPU; use precision=fp32 on CPU")
    return device, precision


def set_cpu_threads() -> int:
    """Intra-op threads = the cores this process may use (a grid worker's share when the
    runner sets OMP_NUM_THREADS), not the machine's count that torch assumes."""
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = int(os.environ.get("OMP_NUM_THREADS") or cores or 1)
    torch.set_num_threads(max(1, threads))
    return threads


def encode(frame, tokenizer, config: RunConfig, labels: list[str], cache_dir=None) -> Split:
    from peft_utils.token_cache import cached_encode

    enc = cached_encode(list(frame["text"]), tokenizer, config.max_length, config.long_text,
                        config.chunk_stride, cache_dir)
    index = np.asarray(enc["example_index"], dtype=np.int64)
    if config.multilabel:
        gold = M.multihot(frame["labels"], labels)
        targets = gold.astype(np.float32)
    else:
        lookup = {label: i for i, label in enumerate(labels)}
        # -100: no label (unlabelled test rows), ignored by the loss and never scored.
        gold = np.asarray([lookup[x[0]] if len(x) else -100 for x in frame["labels"]], np.int64)
        targets = gold
    rows = [{"input_ids": ids, "attention_mask": mask, "labels": targets[i].tolist()}
            for ids, mask, i in zip(enc["input_ids"], enc["attention_mask"], index)]
    return Split(frame, rows, index, gold)


# ---- prediction -----------------------------------------------------------
def example_scores(split: Split, logits: np.ndarray, multilabel: bool) -> np.ndarray:
    """Row logits -> one score vector per example (chunks pooled): probabilities for
    multilabel, logits for multiclass."""
    from peft_utils.data import pool_chunks

    scores = 1.0 / (1.0 + np.exp(-logits)) if multilabel else logits
    if len(split.example_index) == len(split.frame) and (
            split.example_index == np.arange(len(split.frame))).all():
        return scores
    return pool_chunks(scores, split.example_index, len(split.frame), how="mean")


def predict_logits(model, split: Split, tokenizer, batch_size: int, config: RunConfig,
                   precision: str = "fp32") -> np.ndarray:
    """Logits of every row, in row order, without gradients, batches sorted by length."""
    out = np.zeros((len(split.rows), model.config.num_labels), dtype=np.float32)
    for idx, _, output in sorted_batches(model, split.rows, batch_size,
                                         collator(tokenizer, config), precision):
        out[idx] = output.logits.float().cpu().numpy()
    return out


# ---- training -------------------------------------------------------------
def _training_args(config: RunConfig, out: Path, device: str, precision: str, has_dev: bool,
                   train_rows: int):
    import math

    from transformers import TrainingArguments

    per_epoch = math.ceil(train_rows / (config.batch_size * config.grad_accum))
    total_steps = config.max_steps if config.max_steps > 0 else math.ceil(
        config.num_epochs * per_epoch)
    eval_strategy = "no" if not has_dev else ("steps" if config.eval_steps else "epoch")
    return TrainingArguments(
        output_dir=str(out / "trainer"), overwrite_output_dir=True,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        gradient_accumulation_steps=config.grad_accum, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, warmup_steps=config.warmup_steps,
        num_train_epochs=config.num_epochs, max_steps=config.max_steps,
        eval_strategy=eval_strategy, eval_steps=config.eval_steps,
        **_save_settings(config, eval_strategy),
        # About 25 points on the learning curve, whatever the run's length.
        logging_strategy="steps", logging_steps=max(1, total_steps // 25),
        report_to=[], seed=config.seed, data_seed=config.seed,
        bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu",
        tf32=True if device == "cuda" and precision != "fp32" else None,
        group_by_length=config.group_by_length, remove_unused_columns=False, disable_tqdm=True,
        optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
        # Tokenised rows live in memory: worker processes would only add start-up cost.
        dataloader_num_workers=0, label_names=["labels"],
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        torch_compile=config.torch_compile)


def _save_settings(config: RunConfig, eval_strategy: str) -> dict[str, Any]:
    """Checkpoints at every dev evaluation (every epoch without dev data), every
    `checkpoint_steps` steps, or never (0); rotation is ours (checkpoints.prune), after the
    new checkpoint is complete."""
    if config.checkpoint_steps == 0:
        return {"save_strategy": "no"}
    if config.checkpoint_steps:
        return {"save_strategy": "steps", "save_steps": config.checkpoint_steps}
    if eval_strategy == "steps":
        return {"save_strategy": "steps", "save_steps": config.eval_steps}
    return {"save_strategy": "epoch"}


def _is_main_process() -> bool:
    # `accelerate launch` / torchrun set RANK; rank 0 owns the run folder.
    return int(os.environ.get("RANK", "0") or 0) == 0


def train_and_evaluate(config: RunConfig, results_root: str | Path | None = None) -> RunResult:
    """Run `config` end to end and write `results/<run_id>/` (record, predictions, checkpoint).

    Nothing trains before the config, the data paths and the data themselves are checked and
    the results folder has proved writable. A failure still writes a record with status
    "failed" and the traceback, then re-raises. An interrupted run of the same id resumes from
    its last checkpoint; one process at a time writes a run folder (a lock).
    """
    invalid = None
    try:
        config.validate()   # first: it normalises language codes, which the run id covers
    except ConfigError as err:
        invalid = err
    try:
        run_id = config.run_id
    except Exception:   # a config too broken to name its folder: no record
        raise invalid or ConfigError("config: cannot compute the run id") from None
    out = ensure_writable(run_dir(results_root or config.results_dir, run_id))
    main = _is_main_process()
    with run_lock(out) if main else contextlib.nullcontext():
        if main:
            remove_stale_temp_files(out)
        try:
            if main:
                atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2))
            if invalid is not None:
                raise invalid
            problems = config.path_problems()
            if problems:
                raise ConfigError(f"config: {'; '.join(problems)}")
            return _run(config, out)
        except BaseException as err:
            if main:
                _write_failure(config, out, err)
            raise


def _write_failure(config: RunConfig, out: Path, err: BaseException) -> None:
    try:
        record = {"status": "failed", "error": "".join(traceback.format_exception(err))[-8000:],
                  "run_info": _run_info(config),
                  "meta": {**environment(config.device), "seed": config.seed}}
        write_record(out, record)
    except Exception:
        pass  # a full disk or a config too broken for the schema: the original error matters


def _run_info(config: RunConfig) -> dict[str, Any]:
    try:
        derived = {"multilabel": config.multilabel,
                   "train_langs_resolved": config.resolved_train_langs,
                   "eval_langs_resolved": config.resolved_eval_langs,
                   "zero_shot_langs": config.zero_shot_langs}
    except Exception:   # an invalid config (unknown dataset) still gets its failure recorded
        derived = {}
    return {**config.to_dict(), "run_id": config.run_id, **derived}


@dataclass
class Prepared:
    """What training and evaluation start from: device, data, the model and the encoded splits."""
    device: str
    precision: str
    data: RunData
    built: BuiltModel
    tokenizer: Any
    splits: dict[str, Split]
    selection: np.ndarray           # dev examples the run is selected on (may be all False)

    @property
    def selects_on_dev(self) -> bool:
        return bool(self.selection.any())


@dataclass
class Fitted:
    trainer: Any
    best: Any                       # the BestDevState callback
    training_loss: float
    wall_s: float
    resumed_from: int | None


def _prepare(config: RunConfig) -> Prepared:
    device, precision = select_devices(config)
    if device == "cpu":
        set_cpu_threads()
    data = load_run_data(config)
    for note in data.notes():
        print(f"{config.run_id}: {note}", file=sys.stderr)
    seed_everything(config.seed)  # before the model: LoRA init and the head draw from it
    built = build_model(config)
    tokenizer = load_tokenizer(config.model)
    cache = None if config.extra.get("no_token_cache") else DEFAULT_CACHE
    splits = {name: encode(frame, tokenizer, config, built.labels, cache)
              for name, frame in data.frames.items()}
    if config.head_bias == "prior":
        set_head_bias_to_prior(built.model, splits["train"].gold, config.multilabel)
    selection = selection_mask(config, data.frames["dev"]) if config.selection == "dev" else \
        np.zeros(len(data.frames["dev"]), dtype=bool)
    return Prepared(device, precision, data, built, tokenizer, splits, selection)


def _threshold(config: RunConfig, gold: np.ndarray, probs: np.ndarray) -> float:
    return M.run_threshold(config.threshold, config.dataset, config.subtask, gold, probs)


def _dev_metric(config: RunConfig, selection: Split, n_labels: int):
    """compute_metrics for the Trainer: the main metric on the selection rows, which reach the
    Trainer sorted by length (less padding) and are put back in order here, chunks pooled."""
    multilabel = config.multilabel
    zero_div = M.zero_division(config.dataset, config.subtask)
    main = M.main_metric(config.dataset, config.subtask)
    order = np.argsort([len(r["input_ids"]) for r in selection.rows], kind="stable")

    def compute_metrics(prediction) -> dict[str, float]:
        logits = np.empty_like(prediction.predictions)
        logits[order] = prediction.predictions
        scores = example_scores(selection, logits, multilabel)
        pred = M.decide(scores, multilabel,
                        _threshold(config, selection.gold, scores) if multilabel else 0.5)
        return {"main": M.scores(selection.gold, pred, multilabel, n_labels, zero_div)[main]}

    return [selection.rows[i] for i in order], compute_metrics


def _fit(config: RunConfig, out: Path, prep: Prepared) -> Fitted:
    import torch
    from transformers import Trainer

    model, labels = prep.built.model, prep.built.labels
    train = prep.splits["train"]
    eval_rows, compute_metrics = _dev_metric(
        config, prep.splits["dev"].subset(prep.selection), len(labels))
    callback = best_dev_state(config.early_stopping_patience)
    resume = find_resumable(out, config.run_id) if config.checkpoint_steps != 0 else None
    if resume is not None:
        callback.load(resume.progress, resume.folder)
    args = _training_args(config, out, prep.device, prep.precision, prep.selects_on_dev,
                          len(train.rows))
    trainer_cls = Trainer
    if config.method in ADAPTER_METHODS:
        from adapters import AdapterTrainer as trainer_cls
    loss = remedy_loss(config.class_weights, train.gold, config.multilabel, len(labels))
    trainer = trainer_class(trainer_cls)(
        model=model, args=args, train_dataset=train.rows,
        eval_dataset=eval_rows if prep.selects_on_dev else None,
        compute_metrics=compute_metrics, data_collator=collator(prep.tokenizer, config),
        callbacks=[callback], compute_loss_func=loss)
    trainer.add_callback(checkpoint_callback(trainer, resume))
    trainer.run_id, trainer.best = config.run_id, callback
    trainer.head_lr = config.head_learning_rate
    trainer.head_params = frozenset(id(p) for p in head_parameters(model))
    if resume is not None:
        trainer.prior_wall_s = resume.progress["train_wall_s"]
        trainer.prior_checkpoint_s = resume.progress["checkpoint_wall_s"]
        print(f"resuming {config.run_id} from {resume.folder} (step {resume.step})",
              file=sys.stderr)
    if prep.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.started = time.perf_counter()
    if resume is not None and resume.finished:
        training_loss = trainer.restore_finished(resume)
    else:
        training_loss = trainer.train(
            resume_from_checkpoint=str(resume.folder) if resume else None).training_loss
    return Fitted(trainer, callback, float(training_loss), trainer.train_wall_s(),
                  resume.step if resume else None)


def _evaluate(config: RunConfig, out: Path, prep: Prepared, model) -> dict[str, Any]:
    """Scores of the restored best state on every split that has rows, per language; the
    selection-dev score beside the trivial baselines and the frozen-feature probe, scored on
    the same rows; predictions written for every row, labelled or not."""
    splits, labels, multilabel = prep.splits, prep.built.labels, config.multilabel
    n_labels, sel = len(labels), prep.selection
    zero_div = M.zero_division(config.dataset, config.subtask)
    eval_scores = {name: example_scores(s, predict_logits(model, s, prep.tokenizer,
                                                          config.eval_batch_size, config,
                                                          prep.precision), multilabel)
                   for name, s in splits.items() if name != "train" and len(s.frame)}
    threshold = None
    if multilabel:
        dev = splits["dev"]
        threshold = _threshold(config, dev.gold[sel], eval_scores["dev"][sel]) \
            if prep.selects_on_dev else float(config.threshold)
    results: dict[str, Any] = {"dev": {}, "test": {}}
    selection_dev, baselines = None, {}
    for name, scores in eval_scores.items():
        split = splits[name]
        pred = M.decide(scores, multilabel, threshold if multilabel else 0.5)
        if name == "dev" and prep.selects_on_dev:
            # Whether the run learnt is judged where it was trained and selected: the dev rows
            # of its training languages, beside predictors scored on the same rows.
            selection_dev = {**M.scores(split.gold[sel], pred[sel], multilabel, n_labels,
                                        zero_div),
                             "langs": sorted(set(split.frame["lang"][sel]))}
            baselines = M.baseline_scores(splits["train"].gold, split.gold[sel], multilabel,
                                          n_labels, zero_div)
        write_predictions(out / "predictions", name, split.frame, pred, labels, config)
        results[name] = M.scored_rows(split.frame["lang"], split.gold, pred, split.has_gold,
                                      multilabel, n_labels, zero_div)
    probe = frozen_probe(config, splits, sel if prep.selects_on_dev else None, n_labels,
                         prep.tokenizer, prep.device, prep.precision,
                         None if config.extra.get("no_feature_cache") else FEATURE_CACHE)
    return {"threshold": threshold, **results, "selection_dev": selection_dev,
            "baselines": baselines, "frozen_probe": probe}


def _costs(config: RunConfig, prep: Prepared, fitted: Fitted, checkpoint: Path) -> dict:
    import torch

    train_rows = prep.splits["train"].rows
    train_tokens = sum(len(r["input_ids"]) for r in train_rows)
    state, wall = fitted.trainer.state, fitted.wall_s
    epochs_done = float(state.epoch or 0.0)
    if prep.device == "cuda":
        peak_mb, peak_kind = torch.cuda.max_memory_allocated() / 2**20, "cuda_max_allocated"
    else:  # Linux reports kilobytes; the peak of this process (one cell per process in a grid)
        peak_mb, peak_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"
    report = prep.built.report
    return {**{k: report[k] for k in ("trainable", "total", "backbone", "head",
                                      "method_params", "percent_trainable")},
            "train_wall_s": wall,
            "train_samples_per_s": len(train_rows) * epochs_done / wall,
            "train_tokens_per_s": train_tokens * epochs_done / wall,
            "train_steps": int(state.global_step), "epochs": epochs_done,
            "train_rows": len(train_rows), "train_examples": len(prep.data.frames["train"]),
            "peak_memory_mb": peak_mb, "peak_memory_kind": peak_kind,
            "checkpoint_mb": checkpoint.stat().st_size / 2**20,
            "checkpoint_wall_s": fitted.trainer.prior_checkpoint_s + fitted.trainer.checkpoint_s,
            "final_train_loss": fitted.training_loss}


def _run(config: RunConfig, out: Path) -> RunResult:
    prep = _prepare(config)
    fitted = _fit(config, out, prep)
    model = fitted.trainer.model
    if not fitted.trainer.is_world_process_zero():
        return RunResult(config.run_id, out, {}, model, prep.tokenizer)  # rank 0 writes
    evaluation = _evaluate(config, out, prep, model)
    probe_cost = evaluation["frozen_probe"].pop("cost")
    checkpoint = out / CHECKPOINT   # the trainable parameters, enough to restore the run
    save_tensors(checkpoint, trainable_state(model))
    curve = [e for e in fitted.trainer.state.log_history if "loss" in e]
    record = {
        "status": "complete", "error": None, "run_info": _run_info(config),
        "metrics": {"main_metric": M.main_metric(config.dataset, config.subtask),
                    "threshold_mode": ("tune" if config.threshold == "tune" else "fixed")
                    if config.multilabel else None,
                    "best_step": fitted.best.best_step, "best_dev": fitted.best.best,
                    **evaluation, "coverage": prep.data.coverage,
                    "class_weights": _remedy_record(config, prep),
                    "learning_curve": [{"step": e["step"], "epoch": e.get("epoch"),
                                        "loss": e["loss"]} for e in curve],
                    "dev_curve": fitted.best.curve},
        "costs": {**_costs(config, prep, fitted, checkpoint), "frozen_probe": probe_cost},
        "meta": {**environment(prep.device), "seed": config.seed, "precision": prep.precision,
                 "resumed_from_step": fitted.resumed_from,
                 "data_summary": {name: _summary(frame)
                                  for name, frame in prep.data.frames.items()}},
    }
    write_record(out, record)
    prune(out)   # the record is complete: intermediate checkpoints are no longer needed
    return RunResult(config.run_id, out, record, model, prep.tokenizer)


def _remedy_record(config: RunConfig, prep: Prepared) -> dict[str, Any]:
    """The `class_weights` setting and what its loss used: the log prior added to the logits
    (balanced) or the class weights (weighted), per label in head order."""
    values = remedy_values(config.class_weights, prep.splits["train"].gold, config.multilabel,
                           len(prep.built.labels))
    name = {"balanced": "log_prior", "weighted": "weights"}.get(config.class_weights)
    return {"setting": config.class_weights,
            **({name: values.tolist()} if values is not None else {})}


def _summary(frame) -> dict[str, Any]:
    summary = frame.attrs.get("summary") if hasattr(frame, "attrs") else None
    out = {"rows": int(len(frame)),
           "by_lang": {k: int(v) for k, v in frame["lang"].value_counts().items()}
           if len(frame) else {}}
    if summary:
        out["excluded"] = summary.get("excluded", 0)
    return out


def write_predictions(folder: Path, split: str, frame, pred: np.ndarray, labels: list[str],
                      config: RunConfig) -> None:
    """One file per language in the official submission format (SemEval) or id<TAB>labels,
    and `<split>-examples.csv` (id, line, lang, pred, gold, has_gold) for paired bootstrap
    tests."""
    import pandas as pd

    names = [",".join(labels[j] for j in np.flatnonzero(row)) if config.multilabel
             else labels[int(row)] for row in pred]
    table = pd.DataFrame({"id": frame["id"].astype(str),
                          "line": frame["line"] if "line" in frame else "",
                          "lang": frame["lang"], "pred": names,
                          "gold": [",".join(x) for x in frame["labels"]],
                          # An empty gold is "no label" only where the row has gold at all.
                          "has_gold": frame["has_gold"].astype(bool)})
    atomic_write_text(folder / f"{split}-examples.csv", table.to_csv(index=False))
    with_line = config.dataset == "semeval2023" and config.subtask == 3
    columns = ["id", "line", "pred"] if with_line else ["id", "pred"]
    for lang, part in table.groupby("lang", sort=False):
        atomic_write_text(folder / f"{split}-{lang}.txt",
                          part[columns].to_csv(sep="\t", header=False, index=False))


# ---- reload ---------------------------------------------------------------
def load_run(directory: str | Path) -> tuple[RunConfig, BuiltModel, Any]:
    """A finished run's model rebuilt from its config and checkpoint, with its tokenizer."""
    from safetensors.torch import load_file

    directory = Path(directory)
    raw = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    config = RunConfig.from_dict(raw, source=str(directory / "config.json"))
    seed_everything(config.seed)
    built = build_model(config)
    load_trainable_state(built.model, load_file(str(directory / CHECKPOINT)))
    return config, built, load_tokenizer(config.model)


# ---- CLI ------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train and evaluate one configuration")
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--results", default=None, help="results folder (default: config's)")
    parser.set_defaults(func=_train_command)


def _train_command(args) -> int:
    config = load_config(args.config, parse_overrides(args.set))
    result = train_and_evaluate(config, args.results)
    if not result.record:
        return 0  # not rank 0 under `accelerate launch`: rank 0 reports
    main = result.metrics["main_metric"]
    for split in ("dev", "test"):
        for lang, values in result.metrics[split].items():
            print(f"{split:>4} {lang:>8}: {main}={values[main]:.4f} (n={values['n']})")
    print(f"record: {result.run_dir / 'record.json'}", file=sys.stderr)
    return 0
