"""One run of any study, end to end, written once: prepare, train, evaluate, keep the weights,
measure serving, write the record, prune the checkpoints; and a finished run reloaded.

What is the same in every study lives here: the order of the steps and their timed phases
(the record's `costs.phases`), what a tuning trial skips (test, the weights, serving), that
only rank 0 evaluates and writes under `accelerate launch`, the trainer set up to resume from
the run's last checkpoint and keep its best dev state, the record's common entries, and the
guarantees of `core.runs.execute_run` around it all.

A study plugs in what differs as `Steps`: how it prepares its data and model, trains, predicts
a split and scores the predictions, the model it serves, what its record adds, and phases of
its own (classification: the head from the probe before training, the frozen probe after
evaluation).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from peft_utils.core.checkpoints import FINAL, prune, resumable, save_tensors
from peft_utils.core.modeling import load_trainable_state, seed_everything, trainable_state
from peft_utils.core.runs import RunResult, environment, execute_run, write_run_record
from peft_utils.core.serving import Subject, measure_serving
from peft_utils.core.timing import Stopwatch

if TYPE_CHECKING:   # imported where training starts: it loads transformers
    from peft_utils.core.trainer import Fitted


@dataclass
class Pass:
    """One evaluation pass over a split: what the model predicted, and how long it took."""
    outputs: Any
    seconds: float


@dataclass
class Outcome:
    """A run once trained and evaluated: what its study's record entries are made from."""
    config: Any
    out: Path
    prep: Any                       # the study's prepared run (see Steps)
    fitted: Fitted
    passes: dict[str, Pass]         # by split, the splits the run was scored on
    evaluation: dict[str, Any]      # the study's `score`
    phases: dict[str, Any]          # what the study's own phases returned, by phase name
    checkpoint_mb: float            # 0.0: no weights kept


@dataclass
class RecordParts:
    """What a study adds to the record, each part where it goes among the common entries."""
    scoring: dict[str, Any]     # metrics, first: what the run is scored and selected on
    metrics: dict[str, Any]     # metrics, after the best dev step and score
    costs: dict[str, Any]       # costs, before the phases' times
    meta: dict[str, Any]        # meta, after environment, seed, precision, method, resume
    sections: dict[str, Any] = field(default_factory=dict)   # top level, after run_info


# (name in the record's phases, step(config, prep) -> what the study's record reads)
Phase = tuple[str, Callable[[Any, Any], Any]]


@dataclass(frozen=True)
class Steps:
    """A study's part of the run. `prepare` returns the study's prepared run, which has at
    least `device`, `precision`, `tokenizer` and `built` (its `method` goes in the record);
    every other step receives it back."""
    prepare: Callable[[Any], Any]                            # config -> prepared run
    fit: Callable[[Any, Path, Any], Fitted]                  # (config, out, prep); see `fit`
    predict: Callable[[Any, Any, Any, str], Any]             # (config, prep, model, split)
    # (config, out, prep, passes) -> the metrics of every pass, predictions written to `out`
    score: Callable[[Any, Path, Any, dict[str, Pass]], dict[str, Any]]
    # (config, prep, model, split) -> the model for core.serving, on that split's rows
    serving_subject: Callable[[Any, Any, Any, str], Subject]
    record: Callable[[Outcome], RecordParts]
    before_training: tuple[Phase, ...] = ()
    after_evaluation: tuple[Phase, ...] = ()
    has_rows: Callable[[Any, str], bool] = lambda prep, split: True   # (prep, split)
    keeps_weights: Callable[[Any], bool] = lambda config: True        # a trial never does


def train_and_evaluate(config, results_root: str | Path | None, steps: Steps) -> RunResult:
    """Run `config` end to end into `<results>/<run_id>/` with the guarantees of
    core.runs.execute_run: checked first, one writer, a failure record. An interrupted run of
    the same id resumes from its last checkpoint."""
    return execute_run(config, results_root, lambda out: run(config, out, steps))


def run(config, out: Path, steps: Steps) -> RunResult:
    """The run's steps in order, each phase timed; the record written last, then the
    intermediate checkpoints it no longer needs removed."""
    clock = Stopwatch()
    with clock("prepare"):
        prep = steps.prepare(config)
    phases = _own_phases(clock, steps.before_training, config, prep)
    with clock("train"):
        fitted = steps.fit(config, out, prep)
    model = fitted.trainer.model
    if not fitted.trainer.is_world_process_zero():
        return RunResult(config.run_id, out, {}, model, prep.tokenizer)   # rank 0 writes
    with clock("evaluate"):
        passes = _predict(config, steps, prep, model)
        evaluation = steps.score(config, out, prep, passes)
    phases.update(_own_phases(clock, steps.after_evaluation, config, prep))
    with clock("save"):
        # A trial's weights are not kept: its final run trains them again.
        keep = not config.is_trial and steps.keeps_weights(config)
        checkpoint_mb = _keep_weights(out, model) if keep else 0.0
    with clock("inference"):
        inference = _serving(config, steps, prep, model, passes)
    outcome = Outcome(config, out, prep, fitted, passes, evaluation, phases, checkpoint_mb)
    record = _record(outcome, steps.record(outcome), inference, clock)
    write_run_record(out, config, record)
    prune(out)   # the record is complete: intermediate checkpoints are no longer needed
    return RunResult(config.run_id, out, record, model, prep.tokenizer)


def scored_splits(config) -> tuple[str, ...]:
    """A tuning trial is scored on dev alone: test is never read for selection, by
    construction, and a trial costs no test predictions."""
    return ("dev",) if config.is_trial else ("dev", "test")


def _own_phases(clock: Stopwatch, phases: tuple[Phase, ...], config, prep) -> dict[str, Any]:
    done = {}
    for name, step in phases:
        with clock(name):
            done[name] = step(config, prep)
    return done


def _predict(config, steps: Steps, prep, model) -> dict[str, Pass]:
    """The kept state's outputs on every scored split that has rows, each pass timed (the
    run's inference throughput as trained: core.serving)."""
    passes = {}
    for split in scored_splits(config):
        if steps.has_rows(prep, split):
            start = time.perf_counter()
            outputs = steps.predict(config, prep, model, split)
            passes[split] = Pass(outputs, time.perf_counter() - start)
    return passes


def _keep_weights(out: Path, model) -> float:
    """The trainable parameters, enough to restore the run; their size in MB."""
    save_tensors(out / FINAL, trainable_state(model))
    return (out / FINAL).stat().st_size / 2**20


def _serving(config, steps: Steps, prep, model, passes: dict[str, Pass]) -> dict | None:
    """What using the model costs, from the evaluation pass over test (else dev); none for a
    trial, whose model is thrown away."""
    split = next((s for s in ("test", "dev") if s in passes), None)
    if config.is_trial or split is None:
        return None
    subject = steps.serving_subject(config, prep, model, split)
    return measure_serving(subject, passes[split].outputs,
                           len(subject.rows) / passes[split].seconds)


def _record(outcome: Outcome, parts: RecordParts, inference: dict | None,
            clock: Stopwatch) -> dict[str, Any]:
    config, prep, fitted = outcome.config, outcome.prep, outcome.fitted
    return {
        "status": "complete", "error": None, "run_info": config.run_info(), **parts.sections,
        "metrics": {**parts.scoring, "best_step": fitted.best.best_step,
                    "best_dev": fitted.best.best, **parts.metrics,
                    "learning_curve": fitted.learning_curve, "dev_curve": fitted.best.curve},
        "costs": {**parts.costs, "phases": clock.as_dict()},
        "inference": inference,
        "meta": {**environment(prep.device), "seed": config.seed, "precision": prep.precision,
                 "method": prep.built.method, "resumed_from_step": fitted.resumed_from,
                 **parts.meta},
    }


# ---- training -------------------------------------------------------------------------
def fit(config, out: Path, model, task: str, method_settings: dict[str, Any],
        dev_score: Callable[[dict], float] | None = None, start_score: float | None = None,
        dev_outputs: Callable[[], Any] | None = None, **trainer_args) -> Fitted:
    """Train `model` with the run's trainer (core.trainer: the adapters library's for its
    methods, seq2seq for `task` "seq2seq"), continuing from the run's newest complete
    checkpoint, keeping the best dev state (`dev_score`: see BestDevState) and the method's
    part of the loop (`method_settings`). `start_score`: the model's dev score at step 0, where
    known beforehand; step 0 then competes for the kept state (RunTrainerMixin.fit).
    `dev_outputs`: what the last evaluation predicted, kept for the best state (BestDevState).
    `trainer_args`: the study's arguments, datasets, collator and metrics."""
    from peft_utils.core import methods
    from peft_utils.core.trainer import BestDevState, method_hooks, trainer_for

    best = BestDevState(config.early_stopping_patience, dev_score, dev_outputs)
    adapters = methods.get(config.method, task).backend.adapter_trainer
    trainer = trainer_for(adapters, seq2seq=task == "seq2seq")(
        model=model, run_id=config.run_id, best=best, resume=resumable(out, config),
        hooks=method_hooks(config.method, method_settings, model), **trainer_args)
    return trainer.fit(start_score=start_score)


# ---- reload ---------------------------------------------------------------------------
def read_config(directory: str | Path, config_class: type):
    """A finished run's config, read back from its folder."""
    source = Path(directory) / "config.json"
    return config_class.from_dict(json.loads(source.read_text(encoding="utf-8")),
                                  source=str(source))


def load_trained(directory: str | Path, config_class: type, build: Callable[[Any], Any]):
    """(config, built model) of a finished run: its config read back, the model built by
    `build(config)` under the run's seed, then given the run's kept trainable state."""
    config = read_config(directory, config_class)
    seed_everything(config.seed)
    built = build(config)
    load_trainable_state(built.model, trained_state(directory))
    return config, built


def trained_state(directory: str | Path) -> dict[str, Any]:
    """The trainable parameters a finished run kept, by their name in its model."""
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / FINAL))
