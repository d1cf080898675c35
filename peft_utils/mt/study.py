"""The machine-translation study as the grid sees it (peft_utils.core.study)."""
from __future__ import annotations

from typing import Any, Callable

from peft_utils.core.study import NOTEBOOKS, Study, imported_when_called
from peft_utils.mt.config import MTConfig, load_mt_config


def notebook_parameters(config: MTConfig) -> dict[str, Any]:
    """The full config as papermill parameters of mt_train.ipynb: no preset, every value
    explicit."""
    values = config.to_dict()
    results_dir = values.pop("results_dir")
    return {"config_file": None, "overrides": values, "results_dir": results_dir}


def preflight(c: MTConfig) -> list[tuple[tuple, Callable[[], list[str]]]]:
    """The document-level split of the pair, then the parameter budget (which needs the
    model's config): each distinct selection and budget is checked once per grid."""
    from peft_utils.mt.data import load_splits
    from peft_utils.mt.models import fit_budget

    data = (c.data_root, c.tgt_lang, c.src_lang, c.dev_fraction, c.test_fraction,
            c.split_seed, c.train_size)
    budget = (c.model, c.method, c.budget, c.budget_tolerance, c.lora_targets, c.prefix_flat,
              c.reduction_factor, c.lora_r, c.prefix_length)

    def split() -> list[str]:
        load_splits(*data, dataset=c.dataset)
        return []

    def fit() -> list[str]:
        fit_budget(c)
        return []

    return [(("data", c.dataset, *data), split), (("budget", *budget), fit)]


train = imported_when_called("peft_utils.mt.training", "train_and_evaluate")
serving_subject = imported_when_called("peft_utils.mt.training", "load_serving_subject")
export = imported_when_called("peft_utils.mt.export", "export_run")
predict = imported_when_called("peft_utils.mt.predict", "predict_command")


def selection_score(record: dict[str, Any]) -> float | None:
    """The dev score the run selected its state on (BLEU or chrF, `select_on`)."""
    metrics = record.get("metrics") or {}
    return ((metrics.get("dev") or {}).get("overall") or {}).get(metrics.get("select_on"))


STUDY = Study("mt", MTConfig, load_mt_config, NOTEBOOKS / "mt_train.ipynb",
              notebook_parameters, preflight, train, selection_score, serving_subject,
              leading_keys=("src_lang", "tgt_lang", "method", "budget", "train_size", "seed"),
              task="seq2seq", export=export, predict=predict)
