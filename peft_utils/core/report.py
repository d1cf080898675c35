"""What every study's report shares (classification: `classification.analysis`, MT:
`mt.analysis`): a results folder read into the runs a report compares and the ones it lists
instead, and the report itself, which keeps each table numeric (as in its CSV) and formatted
(as in its Markdown and LaTeX), saves each figure and lists every file it wrote
(core.outputs). A study's report keeps its own tables, figures and captions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from peft_utils.core import outputs
from peft_utils.core.runs import FoundRun, is_trial, scan_runs

FAILED_COLUMNS = ["run_id", "folder", "status", "reason"]


@dataclass
class Results:
    """The complete runs under a results folder and the runs that could not be used."""
    root: Path
    runs: Any        # pandas.DataFrame: one row per complete run
    failed: Any      # pandas.DataFrame: run_id, (folder,) status, reason


@dataclass
class RunFolders:
    """The run folders of a results folder, sorted by what a report does with them."""
    complete: list[FoundRun]        # compared
    trials: list[FoundRun]          # tuning trials, complete or not: never compared
    failed: list[dict[str, str]]    # FAILED_COLUMNS of the rest: listed, never raised


def read_run_folders(root: str | Path, kind: str | None, what: str, fix: str) -> RunFolders:
    """Every run folder under `root` holding a record of the study's `kind` (its config's
    `record_kind`; a record of another kind is another study's run in the same folder).
    Failed, unfinished, unreadable and incomplete runs are listed, not raised, so one broken
    cell never hides the rest. Without `root`: an error naming it as `what`, saying `fix`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} {root} does not exist; {fix}")
    folders = RunFolders([], [], [])
    for run in scan_runs(root):
        if run.record is not None and run.record.get("kind") != kind:
            continue
        if is_trial(run.record):
            folders.trials.append(run)
        elif run.status != "complete":
            folders.failed.append(_failure(run, run.status, run.reason))
        elif not run.record.get("metrics") or not run.record.get("costs"):
            folders.failed.append(_failure(run, "incomplete", "record without metrics/costs"))
        else:
            folders.complete.append(run)
    return folders


def _failure(run: FoundRun, status: str, reason: str) -> dict[str, str]:
    return {"run_id": run.run_id, "folder": str(run.folder), "status": status, "reason": reason}


@dataclass
class Report:
    """A report as written: the tables (numeric and formatted, by name), the figures' files
    (by name) and every file, in the order written; `tables_dir`, `figures_dir` and
    `captions` (by table name, else the name) say where and how they are written."""
    results: Results
    tables: dict[str, Any] = field(default_factory=dict)     # numeric, as in the CSVs
    display: dict[str, Any] = field(default_factory=dict)    # formatted, as in md/tex
    figures: dict[str, list[Path]] = field(default_factory=dict)   # name -> [png, pdf]
    files: list[Path] = field(default_factory=list)
    tables_dir: Path = Path("tables")
    figures_dir: Path = Path("figures")
    captions: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.tables_dir, self.figures_dir = Path(self.tables_dir), Path(self.figures_dir)

    def add(self, name: str, numeric, display) -> None:
        """Keep a table both ways and write `<tables_dir>/<name>.{csv,md,tex}`."""
        self.tables[name], self.display[name] = numeric, display
        self.files += outputs.write_table(name, numeric, display, self.tables_dir,
                                          self.captions.get(name, name))

    def add_tables(self, builders: dict[str, Callable[[Any], tuple[Any, Any]]]) -> None:
        """`add` each table of `builders` (name -> builder(results) -> (numeric, display)),
        in order: a study's tables computed from its results alone (its `TABLES`)."""
        for name, build in builders.items():
            self.add(name, *build(self.results))

    def add_failed(self, name: str, display, what: str, fix: str = "") -> None:
        """The runs left out of every table, first; without a complete run the report stops
        here, saying where they are listed (`what` the runs are, `fix` what to do)."""
        results = self.results
        self.add(name, results.failed, display)
        if results.runs.empty:
            raise ValueError(f"{results.root}: no complete {what} ({len(results.failed)} "
                             f"failed or unfinished, listed in {self.tables_dir / name}.csv)"
                             f"{fix}")

    def add_figures(self, made: dict[str, Any]) -> None:
        """Save each figure as `<figures_dir>/<name>.{png,pdf}` (and close it)."""
        for name, fig in made.items():
            self.figures[name] = outputs.save_figure(fig, self.figures_dir, name)
            self.files += self.figures[name]
