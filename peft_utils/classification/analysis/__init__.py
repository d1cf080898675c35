"""Analysis of a results folder: score, cost, baseline and PEFT-vs-FFT tables, figures, and
the report the analysis notebook renders. Reads only `results/<run_id>/` folders."""
from peft_utils.classification.analysis.bootstrap import (bootstrap_differences, bootstrap_display,
                                                          paired_bootstrap, verdict_counts,
                                                          weighted_scores)
from peft_utils.classification.analysis.figures import (costs_figure, f1_by_language_figures,
                                                        f1_vs_params_figure, heatmap_figure)
from peft_utils.classification.analysis.load import Results, load_results
from peft_utils.classification.analysis.report import Report, write_report, write_table
from peft_utils.classification.analysis.tables import (baseline_display, baseline_table,
                                                       cost_display, cost_ranges,
                                                       cost_ranges_display, cost_table,
                                                       coverage_display, coverage_table, f1_table,
                                                       f1_wide, fmt_mean_std, provenance)
from peft_utils.core.outputs import save_figure

__all__ = [
    "Results", "load_results", "f1_table", "f1_wide", "fmt_mean_std", "cost_table",
    "cost_display", "cost_ranges", "cost_ranges_display", "baseline_table", "baseline_display",
    "provenance", "coverage_table", "coverage_display", "bootstrap_differences",
    "bootstrap_display", "verdict_counts",
    "paired_bootstrap", "weighted_scores", "f1_by_language_figures", "f1_vs_params_figure",
    "costs_figure", "heatmap_figure", "save_figure", "Report", "write_report", "write_table",
]
