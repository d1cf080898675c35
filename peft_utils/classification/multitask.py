"""Several tasks from one base: finished runs of different tasks that share a base model,
served by one process holding ONE copy of the base weights.

Each run's adapter is added to the shared model under the task's name (its run id unless
named) and given the run's trained weights; each run's classifier head stays its own module
(tasks differ in their labels, so peft's `modules_to_save` copy of one head cannot hold
another's) and reads the shared encoder's output: the model's own head is replaced by the
identity, so the shared model's `logits` are what a head reads (the first token's state,
or the mean of the token states where the runs pool by mean: the run's pooling hook stays).

Two ways to run it:
  - `logits(task, rows)`: one task per request, its adapter selected (peft `set_adapter`,
    adapters `set_active_adapters`);
  - `every_task_logits(rows)`: every task on the same rows in one forward pass (the adapters
    library's `Parallel` composition; peft's mixed batch, `adapter_names=`, for LoRA-like
    tuners), each task's head on its part of the output.

The runs must share the base (model, pooling) and use an adapter method of one library: a
method that trains or rewrites base weights (FFT, BitFit, PiSSA) or prepends virtual tokens
has nothing to share (refused with the reason).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from peft_utils.classification.config import RunConfig
from peft_utils.classification.export import Settings
from peft_utils.classification.head import head_module, pool_by_mean
from peft_utils.classification.inference import collator, infer_logits
from peft_utils.classification.models import (ADAPTER_NAME, labels_for, load_tokenizer,
                                              method_settings, pretrained_model)
from peft_utils.classification.predict import (Predictor, encode_table, output_kind, predict,
                                               read_input, with_predictions, write_table_out)
from peft_utils.core import methods
from peft_utils.core.backends import Backend
from peft_utils.core.config import ConfigError
from peft_utils.core.devices import prepare_device
from peft_utils.core.export import finished_run
from peft_utils.core.modeling import (add_named_adapter, forward_every_adapter,
                                      load_trainable_state, select_adapter)
from peft_utils.core.pipeline import read_config, trained_state

# The head's parameters in a run's state: `classifier.X`, peft's `...classifier.
# modules_to_save.<adapter>.X`. (The name a library gave a run's adapter when it trained:
# its backend's `trained_name(ADAPTER_NAME)`, peft's default name.)
HEAD_KEY = re.compile(r"(^|\.)classifier\.(modules_to_save\.[^.]+\.)?(?P<key>.+)$")
SHARED_SETTINGS = ("model", "pooling")


@dataclass
class Task:
    """One run served from the shared model."""
    name: str
    folder: Path
    config: RunConfig
    settings: Settings      # how its texts become predictions (threshold, max_length, ...)
    head: Any               # its trained classifier head, a module of its own


@dataclass
class Output:
    logits: Any


def task_model(shared: "SharedTasks", names: Sequence[str]):
    """The shared model as the classifier of tasks `names` (for `infer_logits`): its logits
    are the tasks' logits side by side, in the order of `names`."""
    import torch

    class TaskModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = shared.model
            self.heads = torch.nn.ModuleList(shared.tasks[n].head for n in names)

        def forward(self, input_ids, attention_mask):
            batch = {"input_ids": input_ids, "attention_mask": attention_mask}
            if len(names) == 1:
                select_adapter(self.shared, shared.backend, names[0])
                features = [self.shared(**batch).logits]
            else:
                out = forward_every_adapter(self.shared, shared.backend, list(names), batch)
                features = out.logits.chunk(len(names))
            return Output(torch.cat([head(f) for head, f in zip(self.heads, features)], 1))

    return TaskModel()


@dataclass
class SharedTasks:
    """K runs' adapters on one base model, with their heads and the shared tokenizer."""
    model: Any
    backend: Backend      # the library of every task's adapter (core.backends)
    tasks: dict[str, Task]
    tokenizer: Any
    precision: str

    def logits(self, task: str, rows: Sequence[dict], batch_size: int | None = None):
        """Task `task`'s logits of tokenised `rows`, its adapter selected."""
        return self._infer([task], rows, batch_size)

    def every_task_logits(self, rows: Sequence[dict], batch_size: int | None = None,
                          names: Sequence[str] | None = None):
        """{task: its logits of `rows`} of every task (or of `names`), all in one forward
        pass per batch."""
        names = list(names or self.tasks)
        joined = self._infer(names, rows, batch_size)
        edges = np.cumsum([len(self.tasks[n].settings.labels) for n in names])[:-1]
        return dict(zip(names, np.split(joined, edges, axis=1)))

    def predictor(self, task: str) -> Predictor:
        """Task `task` as `predict` takes a run (its settings: threshold, long texts, ...)."""
        return Predictor(self.tasks[task].settings, self.tokenizer,
                         lambda rows: self.logits(task, rows))

    def _infer(self, names: list[str], rows: Sequence[dict], batch_size: int | None):
        first = self.tasks[names[0]]
        size = batch_size or first.settings.eval_batch_size
        return infer_logits(task_model(self, names), rows, size,
                            collator(self.tokenizer, first.settings), self.precision)


# ---- loading ---------------------------------------------------------------------------------
def load_tasks(folders: Sequence[str | Path], names: Sequence[str] | None = None,
               device: str | None = None) -> SharedTasks:
    """The finished runs in `folders` on one shared base, task i named `names[i]` (default:
    its run id; the same run may be loaded under several names)."""
    folders = [Path(f) for f in folders]
    names = list(names or [f.name for f in folders])
    configs = [read_config(folder, RunConfig) for folder in folders]
    backend = shareable(configs, names)
    picked, precision = prepare_device(configs[0])
    model = shared_base(configs[0])
    tasks = {}
    for name, folder, config in zip(names, folders, configs):
        model, head_state = add_run(model, config, name, trained_state(folder))
        tasks[name] = Task(name, folder, config, Settings.of_run(config, finished_run(folder)),
                           task_head(config, head_state))
    device = device or picked
    for task in tasks.values():
        task.head.to(device).eval()
    return SharedTasks(model.to(device).eval(), backend, tasks, load_tokenizer(configs[0].model),
                       precision)


def shareable(configs: Sequence[RunConfig], names: Sequence[str]) -> Backend:
    """The backend of the runs' adapters' library; a ConfigError when they cannot share a
    base."""
    check_names(names, len(configs))
    for key in SHARED_SETTINGS:
        values = {getattr(c, key) for c in configs}
        if len(values) > 1:
            raise ConfigError(f"the runs do not share a base: {key} differs ({sorted(values)})")
    entries = [methods.get(c.method) for c in configs]
    for entry, config in zip(entries, configs):
        if not entry.backend.has_adapter or entry.full_copy or entry.changes_base:
            raise ConfigError(f"method {entry.name} trains or rewrites the base weights: "
                              "its runs cannot share a base")
        if methods.virtual_token_count(entry, method_settings(config)):
            raise ConfigError(f"method {entry.name} prepends virtual tokens: not served "
                              "from a shared base here")
    if len({entry.needs_eager for entry in entries}) > 1:
        raise ConfigError("some runs need eager attention (prefix tuning), some do not: "
                          "load each kind on its own base")
    libraries = {entry.library for entry in entries}
    if len(libraries) > 1:
        raise ConfigError(f"the runs mix adapter libraries ({sorted(libraries)}); load "
                          "each library's runs on their own base")
    return entries[0].backend


def check_names(names: Sequence[str], runs: int) -> None:
    """One distinct name per run, each usable as an adapter's name (a module key)."""
    if len(set(names)) != len(names) or len(names) != runs or not names:
        raise ConfigError(f"one distinct task name per run, got {list(names)}")
    if any("." in name or name.isdigit() for name in names):
        raise ConfigError(f"task names cannot hold a dot or be a number: {list(names)}")


def shared_base(config: RunConfig):
    """The pretrained model once, its head replaced by the identity, with the run's pooling
    hook (every task's head then reads what its run's head read)."""
    import torch

    model = pretrained_model(config, labels_for(config), meta=False)
    if config.pooling == "mean":
        pool_by_mean(model)
    model.classifier = torch.nn.Identity()
    return model


def add_run(model, config: RunConfig, name: str, state: dict[str, Any]):
    """(`model` with the run's adapter added as `name` and given its trained weights, the
    run's head parameters)."""
    entry = methods.get(config.method)
    library_config = methods.library_config(entry, method_settings(config),
                                            model.config.model_type, "classification")
    model = add_named_adapter(model, entry, library_config, name)
    head, adapter = split_state(state)
    old = f".{entry.backend.trained_name(ADAPTER_NAME)}."
    renamed = {key.replace(old, f".{name}."): value for key, value in adapter.items()}
    own = {key for key, _ in model.named_parameters() if name in key.split(".")}
    if own != set(renamed):
        raise ConfigError(f"{name}: the run's adapter does not match the rebuilt one "
                          f"({sorted(own ^ set(renamed))[:3]})")
    load_trainable_state(model, renamed)
    return model, head


def split_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the head's parameters, by their name inside the head; the rest) of a run's state."""
    head, rest = {}, {}
    for key, value in state.items():
        match = HEAD_KEY.search(key)
        if match:
            head[match["key"]] = value
        else:
            rest[key] = value
    return head, rest


def task_head(config: RunConfig, state: dict[str, Any]):
    """The run's classifier head as a module of its own, with its trained weights."""
    head = head_module(pretrained_model(config, labels_for(config), meta=True))
    head = head.to_empty(device="cpu")
    head.load_state_dict(state, strict=True)
    return head


# ---- CLI ------------------------------------------------------------------------------------
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict-tasks", help="several finished runs of different tasks served from one base "
                              "model: every task's predictions on new texts")
    parser.add_argument("runs", nargs="+", help="finished run folders sharing a base model")
    parser.add_argument("--names", nargs="+", default=None,
                        help="the tasks' names, one per run (default: the run ids)")
    parser.add_argument("--input", required=True,
                        help="a CSV, TSV, JSONL or Parquet table, or - (lines on stdin)")
    parser.add_argument("--out", default=None, help="the table to write (default: stdout)")
    parser.add_argument("--text-column", default="text")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    """The input's columns, then per task `<task>_pred` and `<task>_score_<label>`."""
    kind = output_kind(args.out)
    frame, texts = read_input(args.input, args.text_column)
    shared = load_tasks(args.runs, args.names)
    for name, task in shared.tasks.items():
        preds, probs = predict(shared.predictor(name), texts)
        columns = with_predictions(frame.iloc[:, :0], task.settings, preds, probs)
        frame = frame.join(columns.add_prefix(f"{name}_"))
    write_table_out(encode_table(frame, kind), args.out,
                    f"{len(texts)} texts, {len(shared.tasks)} tasks")
    return 0
