"""The classification study as the grid sees it (peft_utils.core.study)."""
from __future__ import annotations

from typing import Any, Callable

from peft_utils.classification.config import RunConfig, load_config
from peft_utils.core.study import NOTEBOOKS, Study, imported_when_called

# The notebook's named parameters; every other RunConfig key goes through `overrides`.
NAMED = ("dataset", "subtask", "method", "scenario", "model", "seed")
# What selects a run's data: cells that agree on these load the same rows.
DATA_KEYS = ("dataset", "data_root", "subtask", "scenario", "train_langs", "eval_langs",
             "translations_dir", "max_train_samples", "max_eval_samples", "selection")


def notebook_parameters(config: RunConfig) -> dict[str, Any]:
    """The full config as papermill parameters of train.ipynb: no preset, every value
    explicit."""
    values = config.to_dict()
    named = {key: values.pop(key) for key in NAMED}
    results_dir = values.pop("results_dir")
    return {"config_file": None, **named, "overrides": values, "results_dir": results_dir}


def preflight(config: RunConfig) -> list[tuple[tuple, Callable[[], list[str]]]]:
    """The data a cell needs, loaded with the loaders' checks; its notes say what it uses
    (`data_note`) and which splits and languages it will run without."""
    key = ("data", *(str(getattr(config, k)) for k in DATA_KEYS))
    return [(key, lambda: _data_notes(config))]


DATA_NOTE = "data "   # how a note of what a cell's data hold begins (grid run prints it as is)


def _data_notes(config: RunConfig) -> list[str]:
    from peft_utils.classification.run_data import load_run_data

    data = load_run_data(config)
    where = f"{config.dataset}, {config.scenario}"
    return [f"{DATA_NOTE}({where}): " + "; ".join(data.summary(config)), *data.notes()]


train = imported_when_called("peft_utils.classification.training", "train_and_evaluate")


def serving_subject(directory) -> Any:
    """A finished run's model for `bench-inference` (classification.training), with the way
    to write and run it as ONNX (classification.export) for the ONNX Runtime timing."""
    import dataclasses
    import functools
    from pathlib import Path

    from peft_utils.classification.export import onnx_for_timing
    from peft_utils.classification.training import load_serving_subject

    return dataclasses.replace(load_serving_subject(directory),
                               onnx=functools.partial(onnx_for_timing, Path(directory)))


def export(directory, out, fmt: str, force: bool) -> dict[str, Any]:
    """`python -m peft_utils export` of a finished run, imported when it is exported."""
    from peft_utils.classification.export import export_run

    return export_run(directory, out, fmt, force)


predict = imported_when_called("peft_utils.classification.predict", "predict_command")


def selection_score(record: dict[str, Any]) -> float | None:
    """The main metric on the training languages' dev rows, where runs are selected."""
    metrics = record.get("metrics") or {}
    return (metrics.get("selection_dev") or {}).get(metrics.get("main_metric"))


STUDY = Study("classification", RunConfig, load_config, NOTEBOOKS / "train.ipynb",
              notebook_parameters, preflight, train, selection_score, serving_subject,
              leading_keys=("dataset", "subtask", "method", "scenario", "seed"),
              path_keys=("data_root", "translations_dir", "results_dir"), export=export,
              predict=predict)
