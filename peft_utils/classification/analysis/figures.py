"""Figures of the study; each function returns a matplotlib Figure, `save_figure` writes it
as PNG (for the HTML report) and PDF (for the paper)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.load import CELL, CONDITION, Results, sort_cells
from peft_utils.classification.analysis.tables import DEV_MARK, ZERO_SHOT_MARK, cost_table, f1_table
from peft_utils.core.outputs import safe_name

_SINGLE_PANEL = (6.4, 4.0)


def _plt():
    import matplotlib.pyplot as plt  # lazily: importing the package must not pick a backend

    return plt


def cell_label(frame: pd.DataFrame) -> pd.Series:
    """`lora`, or `lora [lora_r=2]` where a method has several hyper-parameter variants."""
    variant = frame["variant"].fillna("") if "variant" in frame else ""
    return frame["method"] + np.where(variant != "", " [" + variant + "]", "")


def condition_label(frame: pd.DataFrame) -> pd.Series:
    """The scenario, plus model and setting where the results hold several."""
    label = frame["scenario"].astype(str)
    if frame["model"].nunique() > 1:
        label = label + " · " + frame["model"].map(lambda m: Path(str(m)).name)
    if frame["setting"].astype(bool).any():
        label = label + np.where(frame["setting"] != "", " · " + frame["setting"], "")
    return label


def _per_run_scores(results: Results) -> pd.DataFrame:
    """Per-run scores on the split the F1 table uses, with language tick labels."""
    chosen = f1_table(results)[[*CELL, "lang", "split"]]
    scores = results.scores.merge(chosen, on=[*CELL, "lang", "split"])
    scores["lang_label"] = (scores["lang"] + np.where(scores["zero_shot"], ZERO_SHOT_MARK, "")
                            + np.where(scores["split"] == "dev", DEV_MARK, ""))
    scores["cell"] = cell_label(scores)
    return sort_cells(scores)


def f1_by_language_figures(results: Results) -> dict[str, object]:
    """One grouped bar chart per task × condition: languages on x, methods as hue, bars the
    mean over seeds and whiskers one standard deviation."""
    import seaborn as sns

    plt = _plt()
    scores = _per_run_scores(results)
    figures = {}
    for key, part in scores.groupby(CONDITION, sort=False):
        task, scenario, model, setting = key
        langs = list(dict.fromkeys(part.loc[part["lang"] != "overall", "lang_label"]))
        langs += list(dict.fromkeys(part.loc[part["lang"] == "overall", "lang_label"]))
        fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(langs) + 2), 4.0))
        sns.barplot(data=part, x="lang_label", y="score", hue="cell", order=langs,
                    errorbar="sd", ax=ax, palette="colorblind")
        ax.set(xlabel=f"language ({ZERO_SHOT_MARK} zero-shot, {DEV_MARK} dev split)",
               ylabel=part["metric"].iloc[0], ylim=(0, 1),
               title=f"{task} · {condition_label(part).iloc[0]}")
        ax.legend(title="method", fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
        figures[safe_name("f1_by_language", task, scenario,
                          Path(str(model)).name if scores["model"].nunique() > 1 else "",
                          setting)] = fig
    return figures


def f1_vs_params_figure(results: Results):
    """Overall score against trainable parameters (log scale), one panel per task."""
    from matplotlib.ticker import NullFormatter

    plt = _plt()
    overall = f1_table(results).query("lang == 'overall'")
    costs = cost_table(results)[[*CELL, "trainable"]]
    data = sort_cells(overall.merge(costs, on=CELL))
    data["cell"], data["condition"] = cell_label(data), condition_label(data)
    tasks = list(dict.fromkeys(data["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.0), squeeze=False)
    cells = list(dict.fromkeys(data["cell"]))
    colours = dict(zip(cells, _palette(len(cells))))
    markers = dict(zip(dict.fromkeys(data["condition"]), "osD^vP*X"))
    for ax, task in zip(axes[0], tasks):
        for row in data[data["task"] == task].itertuples(index=False):
            ax.errorbar(row.trainable, row.mean, yerr=0 if pd.isna(row.std) else row.std,
                        fmt=markers.get(row.condition, "o"), color=colours[row.cell],
                        capsize=3, markersize=7)
        ax.set(xscale="log", xlabel="trainable parameters (log)",
               ylabel=data["metric"].iloc[0], title=task)
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on narrow ranges
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=l) for l, c in colours.items()]
    handles += [plt.Line2D([], [], color="grey", marker=m, ls="", label=l)
                for l, m in markers.items()]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1, 0.5), fontsize="small")
    fig.tight_layout()
    return fig


def _palette(n: int):
    import seaborn as sns

    return sns.color_palette("colorblind", max(n, 1))


def costs_figure(results: Results):
    """Training time and peak memory per method (bars: mean over seeds, whiskers: sd),
    one row per task, scenarios as hue."""
    import seaborn as sns

    runs = sort_cells(results.runs.copy())
    runs["cell"] = cell_label(runs)
    runs["condition"] = condition_label(runs)
    long = runs.melt(id_vars=["task", "cell", "condition"],
                     value_vars=["cost_train_wall_s", "cost_peak_memory_mb"],
                     var_name="measure", value_name="value")
    long["measure"] = long["measure"].map({"cost_train_wall_s": "training time (s)",
                                           "cost_peak_memory_mb": "peak memory (MB)"})
    grid = sns.catplot(data=long, kind="bar", x="cell", y="value", hue="condition",
                       col="measure", row="task", sharey=False, errorbar="sd",
                       palette="colorblind", height=3.2, aspect=1.4)
    grid.set_titles("{row_name} · {col_name}")
    grid.set_axis_labels("method", "")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    return grid.figure


def heatmap_figure(results: Results):
    """Overall score per condition × method, one panel per task."""
    import seaborn as sns

    plt = _plt()
    overall = sort_cells(f1_table(results).query("lang == 'overall'"))
    overall["cell"], overall["condition"] = cell_label(overall), condition_label(overall)
    tasks = list(dict.fromkeys(overall["task"]))
    fig, axes = plt.subplots(1, len(tasks), squeeze=False,
                             figsize=(max(4.5, 1.2 * overall["cell"].nunique() + 2) * len(tasks),
                                      1 + 0.6 * overall["condition"].nunique() + 1))
    for ax, task in zip(axes[0], tasks):
        part = overall[overall["task"] == task]
        grid = part.pivot_table(index="condition", columns="cell", values="mean", sort=False)
        sns.heatmap(grid, annot=True, fmt=".3f", cmap="viridis", ax=ax,
                    cbar_kws={"label": part["metric"].iloc[0]})
        ax.set(title=task, xlabel="method", ylabel="scenario")
        ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return fig


VERDICT_COLOURS = {"better": "#1b7837", "worse": "#b2182b", "comparable": "#4d4d4d",
                   "one seed": "#9e9e9e"}


def forest_rows(diffs: pd.DataFrame, seeds: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the forest plot draws, from the tables the report shows: the overall rows of
    `peft_vs_fft` (one bar each, top to bottom) and their per-seed differences
    (`peft_vs_fft_seeds`), with the label of the row each belongs to."""
    rows = diffs[diffs["lang"] == "overall"].reset_index(drop=True)
    rows = rows.assign(label=rows["task"] + " · " + condition_label(rows) + " · "
                       + cell_label(rows), y=-np.arange(len(rows)))
    dots = seeds[seeds["lang"] == "overall"].merge(rows[[*CELL, "label", "y"]], on=CELL)
    return rows, dots


def forest_figure(diffs: pd.DataFrame, seeds: pd.DataFrame):
    """Method − FFT per task × scenario × method: each seed's difference as a dot, the
    interval over seeds and examples as a bar, the mean difference as a tick, coloured by the
    (Holm-adjusted) verdict; zero marked."""
    plt = _plt()
    rows, dots = forest_rows(diffs, seeds)
    fig, ax = plt.subplots(figsize=(7.2, 0.9 + 0.32 * max(len(rows), 1)))
    for row in rows.itertuples(index=False):
        colour = VERDICT_COLOURS.get(row.verdict, "#4d4d4d")
        ax.hlines(row.y, row.ci_low, row.ci_high, colors=colour, linewidth=3, alpha=0.6,
                  gid="interval")
        ax.plot([row.diff], [row.y], marker="|", markersize=14, color=colour, gid="mean")
    ax.scatter(dots["diff"], dots["y"], s=16, color="black", zorder=3, gid="seeds")
    ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(rows["y"], rows["label"], fontsize=8)
    metric = " / ".join(dict.fromkeys(rows["metric"])) if len(rows) else "score"
    level = f"{rows['ci_level'].iloc[0]:.0%} " if len(rows) else ""
    ax.set_xlabel(f"method − FFT ({metric}); dots: seeds, bar: {level}interval over seeds "
                  "and examples", fontsize=8)
    handles = [plt.Line2D([], [], color=c, linewidth=3, label=v)
               for v, c in VERDICT_COLOURS.items() if v in set(rows["verdict"])]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def language_heatmap_figure(f1: pd.DataFrame):
    """The main metric per language × method at a glance: one panel per task, a row per
    scenario · method, a column per evaluation language (`overall` last), each cell the mean
    over seeds (`*` zero-shot, `†` dev split where test has no gold); the colour scale is the
    task's."""
    plt = _plt()
    data = sort_cells(f1.dropna(subset=["mean"]).copy())
    if data.empty:
        fig, ax = plt.subplots(figsize=_SINGLE_PANEL)
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    data["row"] = condition_label(data) + " · " + cell_label(data)
    data["mark"] = (np.where(data["zero_shot"], ZERO_SHOT_MARK, "")
                    + np.where(data["split"] == "dev", DEV_MARK, ""))
    tasks = list(dict.fromkeys(data["task"]))
    shapes = []
    for task in tasks:
        part = data[data["task"] == task]
        shapes.append((part["row"].nunique(), part["lang"].nunique()))
    width = max(6.4, 0.62 * max(c for _, c in shapes) + 3.6)
    heights = [0.36 * rows + 1.3 for rows, _ in shapes]
    fig, axes = plt.subplots(len(tasks), 1, figsize=(width, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, task in zip(axes[:, 0], tasks):
        part = data[data["task"] == task]
        langs = list(dict.fromkeys(part.loc[part["lang"] != "overall", "lang"]))
        langs += ["overall"] if (part["lang"] == "overall").any() else []
        rows = list(dict.fromkeys(part["row"]))
        grid = part.pivot_table(index="row", columns="lang", values="mean", sort=False)
        grid = grid.reindex(index=rows, columns=langs)
        marks = part.pivot_table(index="row", columns="lang", values="mark", aggfunc="first",
                                 sort=False).reindex(index=rows, columns=langs)
        image = ax.imshow(grid.to_numpy(float), cmap="viridis", aspect="auto")
        low, high = np.nanmin(grid.to_numpy(float)), np.nanmax(grid.to_numpy(float))
        for i, row in enumerate(rows):
            for j, lang in enumerate(langs):
                value = grid.iat[i, j]
                if pd.isna(value):
                    continue
                dark = high > low and (value - low) / (high - low) < 0.6
                ax.text(j, i, f"{value:.2f}{marks.iat[i, j] or ''}", ha="center", va="center",
                        fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(len(langs)), langs, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.tick_params(top=True, labeltop=True, bottom=False, labelbottom=False)
        if "overall" in langs:
            ax.axvline(len(langs) - 1.5, color="white", linewidth=2)
        ax.set_title(f"{task} · {part['metric'].iloc[0]} per language "
                     f"({ZERO_SHOT_MARK} zero-shot, {DEV_MARK} dev split)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    fig.tight_layout()
    return fig
