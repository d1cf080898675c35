"""Figures of the MT study; each returns a matplotlib Figure (peft_utils.core.outputs.save_figure
writes PNG and PDF)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from peft_utils.core.methods import REFERENCE
from peft_utils.mt.config import FIXED_SIZE

METHOD_ORDER = ("fft", "cross_attn", "pfeiffer", "houlsby", "lora", "prefix")
NAMES = {"bleu": "BLEU", "chrf": "chrF"}


def setting_label(method: str, budget: float | None) -> str:
    return method if budget is None or pd.isna(budget) else f"{method} @ {budget:.2%}".replace(
        ".00%", "%")


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _percent_log_axis(ax, values) -> None:
    """Log x axis labelled in percent at whole decades that span `values` (minor ticks
    unlabelled, so a narrow range does not pile labels on top of each other)."""
    from matplotlib.ticker import LogLocator, NullFormatter, PercentFormatter

    values = [v for v in values if v and v > 0]
    ax.set_xscale("log")
    if values:
        ax.set_xlim(10 ** np.floor(np.log10(min(values)) - 0.05),
                    10 ** np.ceil(np.log10(max(values)) + 0.05))
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _panels(n: int, width: float = 3.6, height: float = 3.0):
    plt = _plt()
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def budget_figure(scores: pd.DataFrame, metric: str = "bleu"):
    """Score vs trainable fraction (log x) per pair; one line per method, the reference
    (FFT) a dashed level, a fixed-size method (cross_attn) points only (it has one size)."""
    pairs = list(dict.fromkeys(scores["pair"]))
    fig, axes = _panels(len(pairs))
    col = f"test_{metric}_mean"
    for ax, pair in zip(axes, pairs):
        part = scores[scores["pair"] == pair]
        for method in [m for m in METHOD_ORDER if m in set(part["method"])]:
            rows = part[part["method"] == method].sort_values("fraction")
            if method == REFERENCE:
                ax.axhline(rows[col].mean(), color="black", linestyle="--", label=method)
            else:
                ax.plot(rows["fraction"], rows[col], "s" if method in FIXED_SIZE else "o-",
                        label=method)
        _percent_log_axis(ax, part.loc[part["method"] != REFERENCE, "fraction"])
        ax.set_title(f"{pair} ({part['group'].iloc[0]})", fontsize=9)
        ax.set_xlabel("trainable fraction of the model")
        ax.set_ylabel(f"test {NAMES[metric]}")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def close_distant_figure(table: pd.DataFrame, metric: str = "bleu"):
    """Mean difference to FFT against the budget, close vs distant pairs, one panel per method."""
    part = table[table["budget"].notna()]
    methods = [m for m in METHOD_ORDER if m in set(part["method"])] or ["(none)"]
    fig, axes = _panels(len(methods))
    for ax, method in zip(axes, methods):
        for group, style in (("close", "o-"), ("distant", "s--")):
            rows = part[(part["method"] == method) & (part["group"] == group)]
            rows = rows.sort_values("budget")
            ax.plot(rows["budget"], rows[f"delta_{metric}"], style, label=group)
        ax.axhline(0, color="grey", linewidth=0.8)
        _percent_log_axis(ax, part["budget"])
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("parameter budget")
        ax.set_ylabel(f"{NAMES[metric]} − FFT")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def data_size_figure(table: pd.DataFrame, metric: str = "bleu"):
    """Score against training sentences (log x) per pair; one line per setting, the
    reference (FFT) dashed."""
    pairs = list(dict.fromkeys(table["pair"]))
    fig, axes = _panels(len(pairs))
    for ax, pair in zip(axes, pairs):
        part = table[table["pair"] == pair]
        for (method, budget), rows in part.groupby(["method", "budget"], dropna=False,
                                                    sort=False):
            rows = rows.sort_values("train_sentences")
            ax.plot(rows["train_sentences"], rows[f"test_{metric}_mean"],
                    "--" if method == REFERENCE else "o-",
                    label=setting_label(method, budget))
        ax.set_xscale("log")
        ax.set_title(pair, fontsize=9)
        ax.set_xlabel("training sentences")
        ax.set_ylabel(f"test {NAMES[metric]}")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def model_size_figure(table: pd.DataFrame, metric: str = "bleu"):
    plt = _plt()
    labels = [f"{r.pair} n={r.train_sentences}\n{r.large_setting}" for r in table.itertuples()]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(labels)), 3.5))
    x = np.arange(len(labels))
    small = ", ".join(dict.fromkeys(table["small_model"]))
    large = ", ".join(dict.fromkeys(table["large_model"]))
    ax.bar(x - 0.2, table[f"fft_small_{metric}"], 0.4, label=f"FFT, smaller model ({small})")
    ax.bar(x + 0.2, table[f"peft_large_{metric}"], 0.4, label=f"PEFT, larger model ({large})")
    ax.set_xticks(x, labels, fontsize=6, rotation=60, ha="right")
    ax.set_ylabel(f"test {NAMES[metric]}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


