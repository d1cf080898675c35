"""The `exports` table: each run the report compares (the final runs of a tuned grid) with the
command that exports its model for use outside this project, in the format that fits its
method best (core.export.best_format: `merged` where the method merges or changes the base
weights itself, else `adapter`). `python -m peft_utils predict` reads every format
(docs/using.md)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from peft_utils.classification.analysis.load import Results
from peft_utils.core.export import best_format
from peft_utils.core.methods import REGISTRY

EXPORTS_DIR = "exports"
COLUMNS = ["task", "scenario", "method", "variant", "seed", "run_id", "format", "command"]


def export_command(results_root: str | Path, run_id: str, fmt: str) -> str:
    return (f"python -m peft_utils export {Path(results_root) / run_id} "
            f"{Path(EXPORTS_DIR) / run_id} --format {fmt}")


def export_table(results: Results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per compared run: its cell, seed, run id, export format and command (both
    empty for a method this installation does not know). Numeric and display alike."""
    rows = []
    for run in results.runs.itertuples(index=False):
        entry = REGISTRY.get(run.method)
        fmt = best_format(entry) if entry is not None else None
        rows.append({"task": run.task, "scenario": run.scenario, "method": run.method,
                     "variant": run.variant, "seed": run.seed, "run_id": run.run_id,
                     "format": fmt or "",
                     "command": export_command(results.root, run.run_id, fmt) if fmt else ""})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table, table
