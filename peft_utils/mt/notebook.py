"""What notebooks/mt_train.ipynb calls: an MTConfig from its papermill parameters (the
path rules of peft_utils.classification.notebook), the offline smoke model built on first use, and
the tables it shows."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from peft_utils.core.config import ConfigError, load_raw
from peft_utils.mt.config import MTConfig, load_mt_config

PATH_KEYS = ("data_root", "results_dir")
SMOKE_MODEL = "models/tiny-mt"


def _project_root(*starts: Path) -> Path:
    for start in starts:
        for folder in [start.resolve(), *start.resolve().parents]:
            if (folder / "pyproject.toml").is_file():
                return folder
    return Path.cwd()


def build_mt_config(config_file: str | None, params: dict[str, Any],
                    overrides: dict[str, Any] | None = None,
                    results_dir: str | None = None) -> MTConfig:
    """Preset < `params` that are not None < `overrides`. Relative paths given here resolve
    against the working directory (the notebook's folder); relative paths in a preset against
    the project root, as for `python -m peft_utils mt train --config`."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"notebook parameters: overrides must be a dict of MTConfig keys, "
                          f"got {type(overrides).__name__}")
    cwd = Path.cwd()
    preset = Path(config_file) if config_file else None
    if preset is not None and not preset.is_file():
        raise ConfigError(f"notebook parameters: config_file {config_file!r} not found "
                          f"(relative to {cwd}); set config_file=None to use the parameters")
    explicit = {**{k: v for k, v in params.items() if v is not None}, **overrides}
    if results_dir is not None:
        explicit["results_dir"] = results_dir
    root = _project_root(*([preset.parent] if preset else []), cwd)
    try:
        config = load_mt_config(preset, explicit)
    except ConfigError as err:
        raise ConfigError(f"notebook parameters: {err}") from None
    changes = {}
    for key in (*PATH_KEYS, "model"):
        value = getattr(config, key)
        if not value or Path(value).is_absolute():
            continue
        path = (cwd if key in explicit else root) / value
        if key != "model" or path.exists() or value == SMOKE_MODEL:
            changes[key] = os.path.abspath(path)
    config = config.replace(**changes) if changes else config
    if preset is not None and load_raw(preset).get("model") == SMOKE_MODEL \
            and "model" not in explicit:
        ensure_smoke_model(Path(config.model), Path(config.data_root))
    return config


def ensure_smoke_model(folder: Path, data_root: Path) -> Path:
    """The tiny offline model of the smoke preset, built from NTREX text if missing."""
    from peft_utils.mt.testing import make_tiny_mt_model, ntrex_texts

    if (folder / "config.json").is_file():
        return folder
    return make_tiny_mt_model(folder, ntrex_texts(data_root, ("de", "ka")))


def scores_table(record: dict[str, Any]):
    """dev and test BLEU/chrF of a finished record, one row per split."""
    import pandas as pd

    rows = {split: record["metrics"][split]["overall"] for split in ("dev", "test")}
    table = pd.DataFrame.from_dict(rows, orient="index")[["bleu", "chrf", "n"]]
    table.index.name = record["run_info"]["pair"]
    return table


def examples(run_dir: str | Path, split: str = "test", n: int = 5):
    """The first `n` translations of a split beside their source and reference."""
    import pandas as pd

    pair = next(Path(run_dir, "predictions").glob(f"{split}-*.tsv"))
    table = pd.read_csv(pair, sep="\t", keep_default_na=False)
    return table[["src", "reference", "hypothesis"]].head(n)
