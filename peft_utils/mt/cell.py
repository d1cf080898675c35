"""One MT grid cell: execute notebooks/mt_train.ipynb with papermill into the run folder, as
peft_utils.grid.cell does for classification (same runner, executors and resume rules), and
the checks `grid run` makes before it starts any MT cell."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from peft_utils.grid import cell as grid_cell
from peft_utils.grid.cell import KERNEL, Outcome
from peft_utils.mt.config import MTConfig
from peft_utils.mt.training import write_failure
from peft_utils.results import read_record, run_dir


def notebook_parameters(config: MTConfig) -> dict[str, Any]:
    """The full config as papermill parameters: no preset, every value explicit."""
    values = config.to_dict()
    results_dir = values.pop("results_dir")
    return {"config_file": None, "overrides": values, "results_dir": results_dir}


def _status(out: Path) -> str | None:
    try:
        return read_record(out).get("status")
    except (OSError, ValueError):
        return None


def run_cell(spec_path: str | Path) -> dict[str, Any]:
    """Execute the cell of `spec_path` (a grid-cell.json); its Outcome as a dict. A failing
    notebook is recorded, not raised."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    config = MTConfig.from_dict(spec["config"], source=str(spec_path))
    out = run_dir(config.results_dir, config.run_id)
    start = time.perf_counter()
    if _status(out) == "complete":
        return asdict(Outcome(config.run_id, "complete", None, 0.0))
    (out / "record.json").unlink(missing_ok=True)   # an earlier failed attempt's
    notebook = Path(spec["notebook"])
    executed = out / notebook.name
    error = grid_cell._execute(notebook, executed, notebook_parameters(config),
                               spec.get("kernel", KERNEL))
    grid_cell._render_html(executed, executed.with_suffix(".html"))
    status = _status(out)
    if status != "complete":
        error = error or f"the notebook finished without a complete record; see {executed}"
        if status is None:   # died before train_and_evaluate could record the failure
            write_failure(config, error)
    elif error:
        error = f"notebook error after the run completed (record kept): {error}"
    return asdict(Outcome(config.run_id, "complete" if status == "complete" and not error
                          else "failed", error, time.perf_counter() - start))


# ---- before a grid runs --------------------------------------------------------------
def cell_problems(grid, cells) -> list[str]:
    """Data, model and budget of every cell to run, one line per problem (empty: all can
    start). Each distinct data selection and budget is checked once."""
    from peft_utils.data.errors import DataError
    from peft_utils.mt.data import load_splits
    from peft_utils.mt.models import fit_budget

    problems, seen = [], {}

    def check(key: tuple, action) -> str | None:
        if key not in seen:
            try:
                action()
                seen[key] = None
            except (DataError, ValueError, OSError) as err:
                seen[key] = str(err)
        return seen[key]

    for cell in cells:
        c: MTConfig = cell.config
        found = []
        local = Path(c.model).is_absolute() or Path(c.model).parts[0] in ("models", ".", "..")
        if local and not Path(c.model).is_dir():
            hint = (f"; build it with `python -m peft_utils mt tiny-model {c.model}`"
                    if Path(c.model).name == "tiny-mt" else "")
            found.append(f"model folder {c.model} does not exist{hint}")
        data = (c.data_root, c.tgt_lang, c.src_lang, c.dev_fraction, c.test_fraction,
                c.split_seed, c.train_size)
        found.append(check(("data", *data), lambda: load_splits(*data)))
        if not any(found):   # a budget needs the model's config, which a bad path lacks
            found.append(check(("budget", c.model, c.method, c.budget, c.budget_tolerance,
                                c.lora_targets, c.prefix_flat, c.reduction_factor, c.lora_r,
                                c.prefix_length), lambda: fit_budget(c)))
        problems += [f"{cell.run_id} ({grid.describe(cell)}): {p}" for p in found if p]
    return problems
