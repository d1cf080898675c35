"""What notebooks/mt_train.ipynb calls: an MTConfig from its papermill parameters (the path
rules of peft_utils.core.notebook), the offline smoke model built on first use, and the tables
it shows."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from peft_utils.core.config import load_raw
from peft_utils.core.notebook import load_from_notebook, notebook_inputs, resolve_paths
from peft_utils.mt.config import MTConfig, load_mt_config
from peft_utils.mt.study import STUDY

SMOKE_MODEL = "models/tiny-mt"


def build_mt_config(config_file: str | None, params: dict[str, Any],
                    overrides: dict[str, Any] | None = None,
                    results_dir: str | None = None) -> MTConfig:
    """Preset < `params` that are not None < `overrides` (peft_utils.core.notebook's rules);
    the smoke preset's tiny model is built on first use."""
    preset, explicit, root = notebook_inputs(config_file, params, overrides, results_dir)
    config = resolve_paths(load_from_notebook(load_mt_config, preset, explicit), STUDY.path_keys,
                           set(explicit), root,
                           lambda path, value: path.exists() or value == SMOKE_MODEL)
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
