"""Write every table (CSV numeric; Markdown and LaTeX formatted) and figure (PNG, PDF)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from peft_utils.classification.analysis import figures as F
from peft_utils.classification.analysis import serving as S
from peft_utils.classification.analysis import tuning as T
from peft_utils.classification.analysis.findings import (findings_display, findings_table,
                                                         findings_text)
from peft_utils.classification.analysis.bootstrap import (bootstrap_differences, bootstrap_display,
                                                          numeric_table, seed_differences,
                                                          verdict_counts)
from peft_utils.classification.analysis.errors import add_label_outputs
from peft_utils.classification.analysis.exports import export_table
from peft_utils.classification.analysis.load import CELL, Results, load_results
from peft_utils.classification.analysis.tables import (DEV_MARK, LONG_TABLE, ZERO_SHOT_MARK,
                                                       baseline_display,
                                                       baseline_table, cost_display, cost_ranges,
                                                       cost_ranges_display, cost_table,
                                                       coverage_display, coverage_table, f1_table,
                                                       f1_wide, failed_display, html_table,
                                                       provenance)
from peft_utils.core import outputs
from peft_utils.core import report as core_report

CAPTIONS = {
    "f1_by_language": f"Main metric per language, mean ± sd over seeds; {ZERO_SHOT_MARK} "
                      f"zero-shot language, {DEV_MARK} dev split (no test gold); absent / no "
                      "gold / empty: a language with no score, and why.",
    "coverage": "What each split held per evaluation language: scored, unlabelled (predicted "
                "only), empty after filtering, or absent from the data tree.",
    "cost_ranges": "Range over tasks and scenarios of the headline cost claims, per method.",
    "verdicts": "Task × scenario cells per method that are better than, comparable to or "
                "worse than FFT (overall score, Holm-adjusted), or ran one seed (no verdict).",
    "provenance": "Code, packages and devices that produced the runs.",
    "costs": "Training costs, mean over seeds; ratio and reductions relative to full "
             "fine-tuning (FFT) under the same task and scenario.",
    "peft_vs_fft": "Method − FFT on the main metric with a paired bootstrap interval over "
                   "examples and seeds, the probability that a run of the method beats a run "
                   "of FFT, and the p-value before and after Holm's correction over the family "
                   "(overall rows; per-language rows); the verdict follows the adjusted one.",
    "peft_vs_fft_seeds": "Each seed's difference to FFT (to FFT's run of the same seed where "
                         "both ran the same seeds): the dots of the forest plot.",
    "baselines": "Dev score on the training languages beside the trivial predictors and the "
                 "frozen-feature probe (logistic regression on the base model's features) "
                 "scored on the same rows; test scores beside.",
    "failed_runs": "Runs left out of every table: failed, unreadable or unfinished.",
    "runs": "The runs the tables are computed from.",
    "inference": "Inference cost per cell, mean over seeds: examples/s at the evaluation batch "
                 "size and latency at batch 1 (median, p95), as trained and merged into the "
                 "base weights where the method merges, with ratios to FFT; serve: what a "
                 "task keeps beside a shared base model; K tasks: base + K × serve against "
                 "K full models. timing: side by side (`bench-inference`, one process) or "
                 "per run (each run's own figures, not comparable across runs).",
    "tuning_trials": "Every tuning trial (seeds averaged): the values tried and the dev score "
                     "on the training languages; `chosen` marks each group's best.",
    "tuning_chosen": "Per method: the values tuning chose on dev, whether the choice is interior "
                     "to what the method tried, whether the dev spread across the values "
                     "exceeds the finals' spread across seeds, and what tuning cost (trial "
                     "runs, optimiser "
                     "steps and training time summed over the trials; trials run in kept "
                     "kernels, so their times are the tuning budget's, not a method's cost).",
    "findings": "What the study found, per final cell: test score, method − FFT with its CI, "
                "dev score from where the run started to where it ended, against the frozen "
                "probe, and whether the tuned choice is interior.",
    "exports": "Each compared run's export command, in the format that fits its method "
               "(merged where it merges into the base weights or is full fine-tuning, else "
               "adapter); `python -m peft_utils predict` reads either.",
}

# Tables computed from the results alone, written after the built-in ones: name ->
# builder(results) -> (numeric, display); captions in CAPTIONS (docs/contributing.md).
TABLES: dict[str, Callable[[Results], tuple[pd.DataFrame, pd.DataFrame]]] = {
    "exports": export_table,
}


@dataclass
class Report(core_report.Report):
    """The classification report (core.report.Report), with what the findings say."""
    tuning_budget: str = ""         # the tuning budget in one sentence ('' for untuned runs)
    findings: list[str] = field(default_factory=list)   # the first section, Markdown bullets
    label_findings: list[str] = field(default_factory=list)   # per label (errors.py)

    def table_html(self, name: str, fold_after: int | None = None) -> str:
        """The formatted table `name` as the rendered report shows it (tables.html_table): no
        index, marks rendered, numbers aligned, captioned, folded when long."""
        return html_table(self.display[name], self.captions.get(name, ""), name,
                          LONG_TABLE if fold_after is None else fold_after)


def write_table(name: str, numeric: pd.DataFrame, display: pd.DataFrame,
                directory: str | Path, caption: str | None = None) -> list[Path]:
    return outputs.write_table(name, numeric, display, directory,
                               caption or CAPTIONS.get(name, name))


def write_report(results_dir: str | Path, tables_dir: str | Path = "tables",
                 figures_dir: str | Path = "figures", n_boot: int = 10_000, ci: float = 0.95,
                 seed: int = 0, by_language: bool = False,
                 k_tasks: int = S.K_TASKS) -> Report:
    """Analyse `results_dir` and write `tables_dir/<table>.{csv,md,tex}` and
    `figures_dir/<figure>.{png,pdf}`. Failed records are skipped and listed in `failed_runs`.
    `by_language` adds per-language rows to the bootstrap table (the verdicts stay overall);
    `k_tasks`: the tasks served from one base model in the inference table's storage."""
    results = load_results(results_dir)
    report = Report(results, tables_dir=tables_dir, figures_dir=figures_dir, captions=CAPTIONS)
    add = report.add
    report.add_failed("failed_runs", failed_display(results), "run records", "; train runs first")
    runs = results.runs[["run_id", *CELL, "seed", "main_metric"]]
    add("runs", runs, runs)
    f1 = f1_table(results)
    coverage = coverage_table(results)
    add("f1_by_language", f1, f1_wide(f1, coverage=coverage))
    add("coverage", coverage, coverage_display(coverage))
    costs = cost_table(results)
    add("costs", costs, cost_display(costs))
    serving = S.inference_table(results, k_tasks)
    add("inference", serving, S.inference_display(serving))
    ranges = cost_ranges(costs)
    add("cost_ranges", ranges, cost_ranges_display(ranges))
    diffs = bootstrap_differences(results, n_boot=n_boot, ci=ci, seed=seed,
                                  by_language=by_language)
    add("peft_vs_fft", numeric_table(diffs), bootstrap_display(diffs))
    seeds = seed_differences(diffs) if not diffs.empty else pd.DataFrame()
    add("peft_vs_fft_seeds", seeds, seeds.round(4))
    verdicts = verdict_counts(diffs)
    add("verdicts", verdicts, verdicts)
    baselines = baseline_table(results)
    add("baselines", baselines, baseline_display(baselines))
    sources = provenance(results)
    add("provenance", sources, sources)
    trials = T.trial_table(results)
    chosen = pd.DataFrame()
    if not trials.empty:
        report.tuning_budget = T.budget_statement(results, trials)
        chosen = T.separability(T.chosen_table(results, trials), trials, baselines)
        add("tuning_trials", trials, trials.round(4))
        add("tuning_chosen", chosen, T.chosen_display(chosen, T.tuned_keys(results.trials)))
    found = findings_table(diffs, baselines, chosen)
    add("findings", found, findings_display(found))
    report.findings = findings_text(found, report.display["cost_ranges"], len(results.failed),
                                    report.tuning_budget, ci)
    report.add_tables(TABLES)

    report.add_figures({
        **({"verdicts_forest": F.forest_figure(diffs, seeds)} if not diffs.empty else {}),
        **F.f1_by_language_figures(results), "f1_vs_params": F.f1_vs_params_figure(results),
        "costs": F.costs_figure(results), "overall_heatmap": F.heatmap_figure(results),
        "language_heatmap": F.language_heatmap_figure(f1),
        **T.sensitivity_figures(results, trials), **S.pareto_figures(f1, costs, serving)})
    # Texts for the disagreement sample: the prediction files' own, else the data folder the
    # records name, where it is on this machine (the one read outside the results folder).
    report.label_findings = add_label_outputs(report, n_boot=None, ci=ci, seed=seed,
                                              texts_from_data=True)
    return report
