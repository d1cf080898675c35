"""What the rendered report (`reports/analysis.html`) adds for a reader in a browser: the
interactive Pareto figure, the tables' style, and the export of the executed notebook to one
self-contained HTML file that works offline.

The interactive figure plots every final cell's score and costs with two selectable axes (the
main metric, trainable parameters, training time, peak memory, latency, storage: whichever the
results hold) and a task / scenario filter; the Pareto front of the selection is drawn where one
axis is the score. Plotly's script is embedded in the page (no CDN), so the report opens from a
file on a machine without network. A link can preselect the view: `analysis.html#x=train_wall_s
&y=score&subset=cond:sib200-en` (the keys of `pareto_spec`).

`python -m peft_utils.classification.analysis.interactive reports/analysis.ipynb` writes
`reports/analysis.html` (what `make report` runs after executing the notebook).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from peft_utils.classification.analysis.figures import cell_label, condition_label
from peft_utils.classification.analysis.load import CELL, sort_cells
from peft_utils.classification.analysis.tables import TABLE_CSS, html_table
from peft_utils.core.outputs import safe_name

# The selectable axes: column -> (label, log scale). The score is higher-is-better, every cost
# lower-is-better; an axis is offered only where some cell has a value.
AXES: dict[str, tuple[str, bool]] = {
    "score": ("main metric (overall, mean over seeds)", False),
    "trainable": ("trainable parameters", True),
    "train_wall_s": ("training time (s)", False),
    "peak_memory_mb": ("peak memory (MB)", False),
    "latency_ms": ("latency at batch 1 (ms; merged where it merges)", False),
    "serve_mb": ("storage per task beside the base model (MB)", True),
    "k_tasks_gb": ("storage of K tasks from one base (GB)", False),
}
PLOT_ID = "pareto-explorer"
# The page's style beyond the tables: figures fit the column, the explorer's controls.
PAGE_CSS = """
<style>
.jp-RenderedImage img, .jp-OutputArea-output img { max-width: 100%; height: auto; }
.pareto-controls { display: flex; flex-wrap: wrap; gap: 0.8em 1.6em; align-items: center;
  margin: 0.4em 0; font-size: 0.9em; }
.pareto-controls label { font-weight: 600; }
.pareto-controls select { margin-left: 0.4em; font-size: 0.95em; }
.pareto-note { color: #666; font-size: 0.85em; margin: 0.2em 0 1em 0; }
</style>
"""


# ---- the interactive Pareto figure -------------------------------------------------------
def pareto_points(f1: pd.DataFrame, costs: pd.DataFrame, serving: pd.DataFrame,
                  k_tasks: int | None = None) -> pd.DataFrame:
    """Per final cell: the overall main metric (mean, sd over seeds) beside its costs, from
    the report's `f1_by_language`, `costs` and `inference` tables (numeric)."""
    overall = f1[f1["lang"] == "overall"][[*CELL, "metric", "mean", "std", "n_seeds"]]
    data = overall.rename(columns={"mean": "score", "std": "score_sd"})
    keep = [c for c in ("trainable", "train_wall_s", "peak_memory_mb") if c in costs]
    data = data.merge(costs[[*CELL, *keep]], on=CELL, how="left")
    if serving is not None and not serving.empty:
        extra = serving[[*CELL, "best_latency_ms", "serve_bytes", "k_tasks_gb"]]
        data = data.merge(extra, on=CELL, how="left")
        data["latency_ms"] = data.pop("best_latency_ms")
        data["serve_mb"] = data.pop("serve_bytes") / 2**20
    for column in AXES:
        if column not in data:
            data[column] = np.nan
    data = sort_cells(data)
    data["condition"] = data["task"] + " · " + condition_label(data)
    data["cell"] = cell_label(data)
    data["k_tasks"] = k_tasks
    return data


def pareto_spec(points: pd.DataFrame, plot_id: str = PLOT_ID) -> dict[str, Any]:
    """What the page's script draws: the points, the axes they have values for and the
    subsets the filter offers (each task · scenario, each task's scenarios together, all)."""
    k = points["k_tasks"].dropna()
    axes = {}
    for key, (label, log) in AXES.items():
        if key in points and points[key].notna().any():
            if key == "k_tasks_gb" and len(k):
                label = f"storage of {int(k.iloc[0])} tasks from one base (GB)"
            if key == "score":
                label = f"{' / '.join(dict.fromkeys(points['metric']))} (overall, mean over seeds)"
            axes[key] = {"label": label, "log": log}
    conditions = list(dict.fromkeys(points["condition"]))
    tasks = list(dict.fromkeys(points["task"]))
    subsets = [{"key": "cond:" + safe_name(*c.split(" · ")), "label": c,
                "conditions": [c]} for c in conditions]
    if len(conditions) > len(tasks):
        subsets += [{"key": "task:" + safe_name(t), "label": f"{t} · every scenario",
                     "conditions": [c for c in conditions
                                    if points.loc[points["condition"] == c, "task"].iloc[0] == t]}
                    for t in tasks]
    if len(tasks) > 1:
        subsets.append({"key": "all", "label": "every task and scenario",
                        "conditions": conditions})
    columns = ["condition", "cell", "method", "n_seeds", "score_sd", *axes]
    records = [{c: _json_value(row[c]) for c in columns}
               for _, row in points.iterrows()]
    cells = list(dict.fromkeys(points["cell"]))
    return {"id": plot_id, "points": records, "axes": axes, "subsets": subsets,
            "cells": cells, "colours": dict(zip(cells, _colours(len(cells)))),
            "x": "trainable" if "trainable" in axes else next(iter(axes)), "y": "score"}


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def _colours(n: int) -> list[str]:
    """Seaborn's colour-blind palette (the static figures' colours), as hex."""
    base = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4",
            "#949494", "#ece133", "#56b4e9"]
    return [base[i % len(base)] for i in range(n)]


def pareto_html(points: pd.DataFrame, plot_id: str = PLOT_ID, include_plotlyjs: bool = True
                ) -> str:
    """The interactive Pareto figure as an HTML fragment: the axis and subset selectors, the
    plot, and (with `include_plotlyjs`) Plotly's script inline, so the page needs no network."""
    if points.empty:
        return "<p><em>No final cell to plot.</em></p>"
    spec = pareto_spec(points, plot_id)
    options = {
        "x": [(k, a["label"]) for k, a in spec["axes"].items()],
        "y": [(k, a["label"]) for k, a in spec["axes"].items()],
        "subset": [(s["key"], s["label"]) for s in spec["subsets"]],
    }
    default = {"x": spec["x"], "y": spec["y"], "subset": spec["subsets"][0]["key"]}
    names = {"x": "x axis", "y": "y axis", "subset": "task · scenario"}
    controls = "".join(
        f'<span><label for="{plot_id}-{n}">{names[n]}</label><select id="{plot_id}-{n}">'
        + "".join(f'<option value="{_attr(k)}"{" selected" if k == default[n] else ""}>'
                  f"{_text(label)}</option>" for k, label in opts)
        + "</select></span>" for n, opts in options.items())
    script = ""
    if include_plotlyjs:
        from plotly.offline import get_plotlyjs

        script = ("<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: "
                  "'local'};</script>\n<script type=\"text/javascript\">" + get_plotlyjs()
                  + "</script>\n")
    data = json.dumps(spec, ensure_ascii=False).replace("</", "<\\/")
    return (f'{script}<div class="pareto-explorer">'
            f'<div class="pareto-controls">{controls}</div>'
            f'<div id="{plot_id}" class="pareto-plot" style="width:100%;height:480px;"></div>'
            f'<p id="{plot_id}-note" class="pareto-note"></p></div>\n'
            f'<script type="text/javascript">\n(function (spec) {{\n{_SCRIPT}\n}})({data});\n'
            "</script>")


def _attr(text: str) -> str:
    from html import escape

    return escape(str(text), quote=True)


def _text(text: str) -> str:
    from html import escape

    return escape(str(text), quote=False)


# The page's drawing: reads the selectors, keeps the points of the chosen subset with a value on
# both axes, one trace per method (a marker per scenario), the front of each task · scenario
# where one axis is the score (higher better) and the other a cost (lower better).
_SCRIPT = r"""
var div = document.getElementById(spec.id);
var select = function (name) { return document.getElementById(spec.id + "-" + name); };
var symbols = ["circle", "square", "diamond", "triangle-up", "triangle-down", "cross", "x",
               "star", "pentagon", "hexagon"];
var hash = new URLSearchParams(window.location.hash.replace(/^#/, ""));
["x", "y", "subset"].forEach(function (name) {
  var wanted = hash.get(name), box = select(name);
  if (wanted && Array.prototype.some.call(box.options, function (o) { return o.value === wanted; }))
    box.value = wanted;
});
function fmt(key, v) {
  if (v === null || v === undefined) return "–";
  if (key === "score") return v.toFixed(3);
  if (key === "trainable") return Math.round(v).toLocaleString("en-US");
  return v.toLocaleString("en-US", {maximumFractionDigits: v < 10 ? 2 : 1});
}
function front(points, x, y) {
  // Score higher is better, costs lower; a point is on the front when no other point is at
  // least as good on both axes and better on one.
  var sx = x === "score" ? -1 : 1, sy = y === "score" ? -1 : 1;
  return points.filter(function (p) {
    return !points.some(function (q) {
      var bx = sx * q[x] <= sx * p[x], by = sy * q[y] <= sy * p[y];
      return bx && by && (sx * q[x] < sx * p[x] || sy * q[y] < sy * p[y]);
    });
  }).sort(function (a, b) { return a[x] - b[x]; });
}
function draw() {
  var x = select("x").value, y = select("y").value, key = select("subset").value;
  var subset = spec.subsets.filter(function (s) { return s.key === key; })[0];
  var shown = spec.points.filter(function (p) { return subset.conditions.indexOf(p.condition) >= 0; });
  var drawn = shown.filter(function (p) { return p[x] !== null && p[y] !== null; });
  var conditions = subset.conditions;
  var traces = [];
  spec.cells.forEach(function (cell) {
    var mine = drawn.filter(function (p) { return p.cell === cell; });
    if (!mine.length) return;
    var trace = {
      type: "scatter", mode: "markers+text", name: cell, x: mine.map(function (p) { return p[x]; }),
      text: mine.map(function () { return cell; }), textposition: "top right",
      textfont: {size: 10, color: "#444"},
      y: mine.map(function (p) { return p[y]; }),
      marker: {size: 11, color: spec.colours[cell], line: {width: 1, color: "#333"},
               symbol: mine.map(function (p) { return symbols[conditions.indexOf(p.condition) % symbols.length]; })},
      customdata: mine.map(function (p) {
        return "<b>" + p.condition + " · " + p.cell + "</b><br>" + Object.keys(spec.axes).map(function (k) {
          return spec.axes[k].label + ": " + fmt(k, p[k]) + (k === "score" && p.score_sd !== null ? " ± " + p.score_sd.toFixed(3) : "");
        }).join("<br>") + "<br>seeds: " + p.n_seeds;
      }),
      hovertemplate: "%{customdata}<extra></extra>"
    };
    ["x", "y"].forEach(function (axis) {
      var k = axis === "x" ? x : y;
      if (k === "score") trace["error_" + axis] = {type: "data", visible: true, color: spec.colours[cell],
        array: mine.map(function (p) { return p.score_sd === null ? 0 : p.score_sd; })};
    });
    traces.push(trace);
  });
  var pareto = (x === "score") !== (y === "score");
  if (pareto) {
    conditions.forEach(function (c, i) {
      var line = front(drawn.filter(function (p) { return p.condition === c; }), x, y);
      if (!line.length) return;
      traces.push({type: "scatter", mode: "lines+markers", name: "Pareto front",
        legendgroup: "front", showlegend: i === 0, hoverinfo: "skip",
        x: line.map(function (p) { return p[x]; }), y: line.map(function (p) { return p[y]; }),
        line: {dash: "dash", color: "#777", width: 1},
        marker: {size: 20, color: "rgba(0,0,0,0)", line: {width: 1.5, color: "#000"}}});
    });
  }
  if (conditions.length > 1) {
    conditions.forEach(function (c, i) {
      traces.push({type: "scatter", mode: "markers", name: c, x: [null], y: [null],
        legendgroup: "conditions", legendgrouptitle: i === 0 ? {text: "marker: task · scenario"} : undefined,
        marker: {size: 10, color: "#999", symbol: symbols[i % symbols.length]}, hoverinfo: "skip"});
    });
  }
  var axis = function (k) {
    var values = drawn.map(function (p) { return p[k]; }).filter(function (v) { return v > 0; });
    var log = spec.axes[k].log && values.length > 0;
    var decades = log ? Math.log10(Math.max.apply(null, values) / Math.min.apply(null, values)) : 0;
    // A log axis over decades labels its powers of ten only (not 2 3 4 ... between them).
    return {title: {text: spec.axes[k].label}, type: log ? "log" : "linear", zeroline: false,
            gridcolor: "#e5e5e5", exponentformat: "SI", dtick: decades >= 1 ? 1 : undefined};
  };
  var layout = {xaxis: axis(x), yaxis: axis(y), hovermode: "closest", plot_bgcolor: "#fff",
                margin: {l: 70, r: 20, t: 30, b: 60}, legend: {title: {text: "method"}},
                font: {size: 12}};
  Plotly.react(div, traces, layout, {displaylogo: false, responsive: true});
  var missing = shown.length - drawn.length;
  document.getElementById(spec.id + "-note").textContent =
    drawn.length + " of " + shown.length + " cells drawn" +
    (missing ? " (" + missing + " without a value on an axis: not measured)" : "") +
    (pareto ? "; circled and joined: the Pareto front (no other cell scores at least as well for less)" : "") + ".";
}
["x", "y", "subset"].forEach(function (name) { select(name).addEventListener("change", draw); });
draw();
"""


# ---- the notebook and the page -----------------------------------------------------------
def setup_notebook() -> None:
    """In the analysis notebook, before any table: the report's style sheet, and any displayed
    DataFrame rendered as the report's tables are (tables.html_table: no index, marks
    rendered), so a plain `display(report.display[name])` reads like the rest."""
    from IPython import get_ipython
    from IPython.display import HTML, display

    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(
            pd.DataFrame, lambda frame: html_table(frame, fold_after=LONG_FRAME))
    display(HTML(TABLE_CSS + PAGE_CSS))


LONG_FRAME = 25   # a plain displayed DataFrame folds beyond this many rows


def figure(report, name: str):
    """A saved figure of the report (its PNG) for display."""
    from IPython.display import Image

    return Image(filename=str(report.figures[name][0]))


# The rendered page: JupyterLab's look, without the scripts it would fetch from a CDN
# (require.js, MathJax, mermaid): the report needs none and must open offline.
TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def export_html(notebook: str | Path, output: str | Path | None = None,
                title: str | None = None) -> Path:
    """The executed analysis notebook as one self-contained HTML file (figures, tables and the
    interactive figure's script embedded; code cells hidden; UTF-8): `output`, or the
    notebook's path with `.html`."""
    import nbformat
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    output = Path(output) if output else notebook.with_suffix(".html")
    nb = nbformat.read(notebook, as_version=4)
    nb.metadata["title"] = title or "PEFT vs full fine-tuning: analysis"
    exporter = HTMLExporter(template_name="lab", exclude_input=True,
                            extra_loaders=[DictLoader({"peft_report.html.j2": TEMPLATE})],
                            template_file="peft_report.html.j2")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(body, encoding="utf-8")
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render an executed analysis notebook to one "
                                     "self-contained HTML file (works offline).")
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--output", type=Path, default=None,
                        help="the HTML file (default: the notebook's path with .html)")
    args = parser.parse_args(argv)
    path = export_html(args.notebook, args.output)
    print(f"Report: {path} ({path.stat().st_size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
