"""Train and evaluate one configuration; write its record, predictions and checkpoint.

Every method goes through the same steps: seed, build, tokenise, train with the HF Trainer
(the adapters trainer for adapter methods), keep the best dev state, evaluate per language.
The run itself is every study's (peft_utils.core.pipeline); this module plugs in the
classification steps (`STEPS`): the data and head, the dev metric, per-language scores and
predictions, the head from the probe before training and the frozen probe after evaluation.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from peft_utils.classification import metrics as M
from peft_utils.classification.config import RunConfig, load_config
from peft_utils.classification.head import (head_parameters, set_head_bias_to_prior,
                                            set_output_layer)
from peft_utils.classification.imbalance import remedy_loss, remedy_values
from peft_utils.classification.inference import collator, infer_logits
from peft_utils.classification.models import (ADAPTER_NAME, BuiltModel, build_model,
                                              load_tokenizer, method_settings)
from peft_utils.classification.probe import FEATURE_CACHE, frozen_probe
from peft_utils.classification.run_data import (RunData, load_frames, load_run_data,
                                                selection_mask)
from peft_utils.classification.token_cache import DEFAULT_DIR as DEFAULT_CACHE
from peft_utils.core import methods, pipeline
from peft_utils.core.config import parse_overrides
from peft_utils.core.devices import prepare_device
from peft_utils.core.modeling import seed_everything
from peft_utils.core.pipeline import Outcome, Pass, RecordParts, Steps
from peft_utils.core.runs import RunResult, atomic_write_text
from peft_utils.core.serving import Subject

if TYPE_CHECKING:   # imported where training starts: it loads transformers
    from peft_utils.core.trainer import Fitted


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


def encode(frame, tokenizer, config: RunConfig, labels: list[str], cache_dir=None) -> Split:
    from peft_utils.classification.token_cache import cached_encode

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
    if not split.rows:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    return infer_logits(model, split.rows, batch_size, collator(tokenizer, config), precision)


# ---- the run ------------------------------------------------------------
def train_and_evaluate(config: RunConfig, results_root: str | Path | None = None) -> RunResult:
    """Run `config` end to end and write `results/<run_id>/` (record, predictions, checkpoint),
    with the guarantees of `peft_utils.core.runs.execute_run`: checked first, one writer, a
    failure record. An interrupted run of the same id resumes from its last checkpoint."""
    return pipeline.train_and_evaluate(config, results_root, STEPS)


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
    start_dev: float | None = None  # the model's selection-dev score at step 0, where known
    # The kept state's logits on the selection-dev rows, where its evaluation during training
    # predicted them (BestDevState.best_outputs): the final dev pass predicts only the others.
    kept_selection_logits: np.ndarray | None = None

    @property
    def selects_on_dev(self) -> bool:
        return bool(self.selection.any())


def _prepare(config: RunConfig) -> Prepared:
    warning = config.head_rate_warning()
    if warning:
        print(f"{config.run_id}: {warning}", file=sys.stderr)
    device, precision = prepare_device(config)
    data = load_run_data(config)
    for line in data.summary(config):   # what the run uses, and what a limit left out
        print(f"{config.run_id}: data {line}", file=sys.stderr)
    for note in data.notes():
        print(f"{config.run_id}: {note}", file=sys.stderr)
    seed_everything(config.seed)  # before the model: LoRA init and the head draw from it
    built = build_model(config)
    tokenizer = load_tokenizer(config.model)
    cache = None if config.extra.get("no_token_cache") else DEFAULT_CACHE
    splits = {name: encode(frame, tokenizer, config, built.labels, cache)
              for name, frame in data.frames.items()}
    if config.head_bias == "prior":
        _start_bias_at_prior(config, built, splits["train"].gold)
    selection = selection_mask(config, data.frames["dev"]) if config.selection == "dev" else \
        np.zeros(len(data.frames["dev"]), dtype=bool)
    return Prepared(device, precision, data, built, tokenizer, splits, selection)


def _start_bias_at_prior(config: RunConfig, built: BuiltModel, gold: np.ndarray) -> None:
    """`head_bias: prior`: the model starts predicting the label prior. Under class_weights:
    balanced the loss already adds the log prior to the logits, so that start is a zero bias
    (a prior bias as well would count the prior twice: the adjusted logits would start at the
    prior squared and predictions at the majority class, which a short run never leaves)."""
    if config.class_weights == "balanced":
        set_output_layer(built.model, None, np.zeros(len(built.labels)))
    else:
        set_head_bias_to_prior(built.model, gold, config.multilabel)


def _init_head(config: RunConfig, prep: Prepared) -> dict[str, Any]:
    """`head_init`: the head as drawn, or from the probe (LP-FT: classification.head_init)."""
    if config.head_init != "probe":
        return {"setting": config.head_init}
    from peft_utils.classification.head_init import init_head_from_probe

    prep.built.model.to(prep.device)   # the step-0 features are the model's, on its device
    init = init_head_from_probe(
        config, prep.built.model, prep.splits, prep.selection if prep.selects_on_dev else None,
        len(prep.built.labels), prep.tokenizer, prep.device, prep.precision,
        None if config.extra.get("no_feature_cache") else FEATURE_CACHE)
    if init["selection_dev"] is not None:
        # The model now predicts as the probe, so the probe's score is its step-0 dev score
        # (tests/test_head_init.py checks both against a pass): training need not recompute it.
        prep.start_dev = init["selection_dev"][config.task.metric]
    return {**init, "learning_rate": config.head_learning_rate}


def _threshold(config: RunConfig, gold: np.ndarray, probs: np.ndarray) -> float:
    return M.run_threshold(config.threshold, config.task, gold, probs)


def _dev_metric(config: RunConfig, selection: Split, n_labels: int):
    """compute_metrics for the Trainer: the main metric on the selection rows, which reach the
    Trainer sorted by length (less padding) and are put back in order here, chunks pooled; and
    a function returning the last evaluation's logits in row order."""
    multilabel = config.multilabel
    zero_div = config.task.zero_division
    main = config.task.metric
    order = np.argsort([len(r["input_ids"]) for r in selection.rows], kind="stable")
    last: dict[str, np.ndarray] = {}

    def compute_metrics(prediction) -> dict[str, float]:
        logits = np.empty_like(prediction.predictions)
        logits[order] = prediction.predictions
        last["logits"] = logits
        scores = example_scores(selection, logits, multilabel)
        pred = M.decide(scores, multilabel,
                        _threshold(config, selection.gold, scores) if multilabel else 0.5)
        return {"main": M.scores(selection.gold, pred, multilabel, n_labels, zero_div)[main]}

    return [selection.rows[i] for i in order], compute_metrics, lambda: last.get("logits")


def _fit(config: RunConfig, out: Path, prep: Prepared) -> Fitted:
    """Train with the head at its effective rate. A head started from the probe makes step 0
    a candidate for the kept state (scored as the probe, which it predicts as), so a run
    selected on dev never keeps less than its start."""
    from peft_utils.core.trainer import training_arguments

    model, labels = prep.built.model, prep.built.labels
    train = prep.splits["train"]
    eval_rows, compute_metrics, last_logits = _dev_metric(
        config, prep.splits["dev"].subset(prep.selection), len(labels))
    fitted = pipeline.fit(
        config, out, model, "classification", method_settings(config),
        args=training_arguments(config, out, prep.device, prep.precision,
                                prep.selects_on_dev, len(train.rows)),
        train_dataset=train.rows, eval_dataset=eval_rows if prep.selects_on_dev else None,
        compute_metrics=compute_metrics, data_collator=collator(prep.tokenizer, config),
        compute_loss_func=remedy_loss(config.class_weights, train.gold, config.multilabel,
                                      len(labels)),
        head_lr=config.head_learning_rate, head_params=head_parameters(model),
        start_score=prep.start_dev, dev_outputs=last_logits)
    prep.kept_selection_logits = fitted.best.best_outputs
    return fitted


def _predict(config: RunConfig, prep: Prepared, model, split: str) -> np.ndarray:
    """The kept state's logits on `split`, every row. On dev, the selection rows' logits come
    from the kept state's evaluation during training where it had one (the same rows in the
    same batches through the same model: the same numbers) and only the other rows are
    predicted, batched among themselves (other padding: logits equal to about 1e-6)."""
    rows = prep.splits[split]
    kept = prep.kept_selection_logits if split == "dev" else None
    if kept is None:
        return predict_logits(model, rows, prep.tokenizer, config.eval_batch_size, config,
                              prep.precision)
    known = prep.selection[rows.example_index]      # per row: its example is a selection one
    logits = np.empty((len(rows.rows), kept.shape[1]), dtype=kept.dtype)
    logits[known] = kept
    logits[~known] = predict_logits(model, rows.subset(~prep.selection), prep.tokenizer,
                                    config.eval_batch_size, config, prep.precision)
    return logits


def _evaluate(config: RunConfig, out: Path, prep: Prepared,
              passes: dict[str, Pass]) -> dict[str, Any]:
    """Scores of the restored best state on every split that has rows, per language; the
    selection-dev score beside the trivial baselines, scored on the same rows; predictions
    written for every row, labelled or not."""
    splits, labels, multilabel = prep.splits, prep.built.labels, config.multilabel
    n_labels, sel = len(labels), prep.selection
    zero_div = config.task.zero_division
    eval_scores = {name: example_scores(splits[name], p.outputs, multilabel)
                   for name, p in passes.items()}
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
    return {"threshold": threshold, **results, "selection_dev": selection_dev,
            "baselines": baselines}


def _probe(config: RunConfig, prep: Prepared) -> dict[str, Any] | None:
    """The frozen-feature probe (not for a trial: nobody compares against it)."""
    if config.is_trial:
        return None
    return frozen_probe(config, prep.splits, prep.selection if prep.selects_on_dev else None,
                        len(prep.built.labels), prep.tokenizer, prep.device, prep.precision,
                        None if config.extra.get("no_feature_cache") else FEATURE_CACHE)


def serving_subject(config: RunConfig, model, tokenizer, rows: list[dict],
                    precision: str) -> Subject:
    """The run's model for core.serving, on `rows` (its test rows, else dev)."""
    collate = collator(tokenizer, config)
    return Subject(model, methods.get(config.method), ADAPTER_NAME,
                   lambda m, part, size: infer_logits(m, part, size, collate, precision),
                   lambda a, b: float(np.abs(a - b).max()), rows, config.eval_batch_size)


def _run_serving_subject(config: RunConfig, prep: Prepared, model, split: str) -> Subject:
    return serving_subject(config, model, prep.tokenizer, prep.splits[split].rows,
                           prep.precision)


def _costs(prep: Prepared, fitted: Fitted, checkpoint_mb: float) -> dict:
    rows = prep.splits["train"].rows
    report = prep.built.report
    return {**{k: report[k] for k in ("trainable", "total", "backbone", "head",
                                      "method_params", "percent_trainable")},
            **fitted.costs(len(rows), sum(len(r["input_ids"]) for r in rows), prep.device),
            "train_rows": len(rows), "train_examples": len(prep.data.frames["train"]),
            "checkpoint_mb": checkpoint_mb}


def _record(run: Outcome) -> RecordParts:
    """The classification entries of the record: scores per language beside the baselines
    and the frozen probe (whose cost goes with the costs), what the data held, the
    class-weight remedy and the head's start."""
    config, prep = run.config, run.prep
    probe = run.phases["probe"]
    probe_cost = probe.pop("cost") if probe else None
    return RecordParts(
        scoring={"main_metric": config.task.metric,
                 "threshold_mode": ("tune" if config.threshold == "tune" else "fixed")
                 if config.multilabel else None},
        metrics={"head_init": run.phases["head_init"], **run.evaluation,
                 "frozen_probe": probe, "coverage": prep.data.coverage,
                 "class_weights": _remedy_record(config, prep)},
        costs={**_costs(prep, run.fitted, run.checkpoint_mb), "frozen_probe": probe_cost},
        meta={"data_summary": {name: _summary(frame)
                               for name, frame in prep.data.frames.items()}})


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


TEXT_CHARS = 300   # of each text in <split>-examples.csv


def write_predictions(folder: Path, split: str, frame, pred: np.ndarray, labels: list[str],
                      config: RunConfig) -> None:
    """The official files (`write_official`) and `<split>-examples.csv` (id, line, lang,
    pred, gold, has_gold, text) for paired bootstrap tests and error analysis; the text is
    cut to TEXT_CHARS, enough to read beside a prediction without copying whole articles."""
    names = label_names(pred, labels, config.multilabel)
    table = prediction_table(frame, names).assign(
        gold=[",".join(x) for x in frame["labels"]],
        # An empty gold is "no label" only where the row has gold at all.
        has_gold=frame["has_gold"].astype(bool).to_numpy(),
        text=frame["text"].astype(str).str.slice(0, TEXT_CHARS).to_numpy()
        if "text" in frame else "")
    atomic_write_text(folder / f"{split}-examples.csv", table.to_csv(index=False))
    write_official(folder, split, table, config.task.unit)


def label_names(pred: np.ndarray, labels: list[str], multilabel: bool) -> list[str]:
    """Decisions (class ids, or multi-hot rows) as label names (multilabel: comma-separated)."""
    if multilabel:
        return [",".join(labels[j] for j in np.flatnonzero(row)) for row in pred]
    return [labels[int(row)] for row in pred]


def prediction_table(frame, names: list[str]):
    """id, line ("" unless the rows are paragraphs), lang and pred of every row of `frame`."""
    import pandas as pd

    return pd.DataFrame({"id": frame["id"].astype(str).to_numpy(),
                         "line": frame["line"].to_numpy() if "line" in frame else "",
                         "lang": frame["lang"].to_numpy(), "pred": names})


def write_official(folder: Path, split: str, table, unit: str) -> list[Path]:
    """`<split>-<lang>.txt` per language of `table` (prediction_table) in the official
    submission format: id<TAB>labels, or id<TAB>line<TAB>labels where a row is a paragraph
    (SemEval subtask 3); each file written atomically. The paths written."""
    columns = ["id", "line", "pred"] if unit == "paragraph" else ["id", "pred"]
    written = []
    for lang, part in table.groupby("lang", sort=False):
        path = Path(folder) / f"{split}-{lang}.txt"
        atomic_write_text(path, part[columns].to_csv(sep="\t", header=False, index=False))
        written.append(path)
    return written


# ---- reload ---------------------------------------------------------------
def load_run(directory: str | Path) -> tuple[RunConfig, BuiltModel, Any]:
    """A finished run's model rebuilt from its config and checkpoint, with its tokenizer."""
    config, built = pipeline.load_trained(directory, RunConfig, build_model)
    return config, built, load_tokenizer(config.model)


def load_serving_subject(directory: str | Path) -> Subject:
    """A finished run's model for core.serving (`bench-inference`), on its test rows (else
    dev)."""
    config, built, tokenizer = load_run(directory)
    device, precision = prepare_device(config)
    built.model.to(device)
    frames = load_frames(config)
    frame = frames["test"] if len(frames["test"]) else frames["dev"]
    rows = encode(frame, tokenizer, config, built.labels).rows
    return serving_subject(config, built.model, tokenizer, rows, precision)


STEPS = Steps(prepare=_prepare, fit=_fit, predict=_predict, score=_evaluate,
              serving_subject=_run_serving_subject, record=_record,
              before_training=(("head_init", _init_head),), after_evaluation=(("probe", _probe),),
              has_rows=lambda prep, split: len(prep.splits[split].frame) > 0)


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
