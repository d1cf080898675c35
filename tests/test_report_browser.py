"""The rendered report in a real browser: the analysis notebook executed on fixture records and
exported as `make report` does it (peft_utils.classification.analysis.interactive), then loaded in
headless Chromium (Debian's `chromium`) with every host unresolvable, as on a machine without
network. The page must run without a script error or console message, draw the interactive
Pareto figure, honour a link's preselected axes, and show no raw Markdown (`**`) or mis-decoded
UTF-8.

Its own tier (`make test-browser`, marker `browser`): Chromium missing skips it, or fails it
where CI demands the services (PEFT_UTILS_REQUIRE_SERVICES=1, set by .ci/run, which installs
Chromium). The HTML of the tables and the explorer's data, which need no browser, are checked in
the fast suite.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from conftest import unavailable
from test_analysis import examples_table, inference_block, sib_examples, timing, write_run

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars",
         # Offline: a script or style sheet fetched from a CDN fails to load.
         "--host-resolver-rules=MAP * ~NOTFOUND",
         # Console messages (console.log/error, uncaught exceptions) on stderr.
         "--enable-logging=stderr", "--v=0",
         # Let the page's scripts run to the end before the DOM is dumped.
         "--virtual-time-budget=10000"]
CONSOLE = re.compile(r":CONSOLE(?::\d+)?\]\s*(.*)")


def chromium() -> str:
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    unavailable("no Chromium to load the report in (apt-get install chromium)")


def load(browser: str, page: Path, profile: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message it logged."""
    run = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                          page.resolve().as_uri() + fragment],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    console = [m.group(1) for line in run.stderr.splitlines() if (m := CONSOLE.search(line))]
    return run.stdout, console


class _Text(HTMLParser):
    """The text a reader sees: everything outside <script> and <style>."""

    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report of fixture records (SIB-200, two scenarios, FFT / LoRA / Pfeiffer, three seeds
    each, scored from their predictions): English has no test gold in one scenario (a dev score
    stands in, †), Spanish is zero-shot (*), Pfeiffer falls below the frozen probe (**no** in the
    findings), every run has inference figures."""
    import papermill as pm

    from peft_utils.classification.analysis.interactive import export_html

    base = tmp_path_factory.mktemp("browser-report")
    results = base / "results"
    rng = np.random.default_rng(0)
    gold, langs = sib_examples(rng, n_per_lang=12)
    serve = {"fft": 1000, "lora": 10, "pfeiffer": 20}
    merge = {"fft": "nothing to merge", "lora": "merges", "pfeiffer": "cannot merge"}
    for scenario in ("multilingual", "en"):
        for seed in (1, 2, 3):
            for method, noise in (("fft", 0.1), ("lora", 0.15), ("pfeiffer", 0.6)):
                pred = [g if rng.random() > noise else "science/technology" for g in gold]
                test_gold = ([None if lang == "en" else g for g, lang in zip(gold, langs)]
                             if scenario == "en" else gold)
                score = 1 - noise
                write_run(results, method, seed, scenario=scenario,
                          examples={"dev": examples_table(gold, pred, langs),
                                    "test": examples_table(test_gold, pred, langs)},
                          costs={"trainable": serve[method] * 1000,
                                 "train_wall_s": {"fft": 30.0, "lora": 20.0,
                                                  "pfeiffer": 15.0}[method] + seed},
                          inference=inference_block(merge[method], serve[method],
                                                    timing(100.0, 10.0 + seed)),
                          extra_metrics={
                              "selection_dev": {"macro_f1": score, "n": 36},
                              "frozen_probe": {"selection_dev": {"macro_f1": 0.6, "n": 36},
                                               "dev": {}, "test": {}, "pooling": "mean",
                                               "class_weights": "none"}})
    executed = base / "analysis.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(executed), kernel_name="python3",
                        cwd=str(NOTEBOOK.parent), progress_bar=False,
                        parameters={"results_dir": str(results),
                                    "tables_dir": str(base / "tables"),
                                    "figures_dir": str(base / "figures"), "bootstrap": 50})
    return export_html(executed)


@pytest.mark.browser
def test_the_report_is_one_self_contained_utf8_file(report):
    html = report.read_text(encoding="utf-8")
    assert re.search(r'<meta charset="utf-8"', html, re.I)
    # Nothing fetched: no external script, style sheet or image (Plotly's script is inline).
    assert not re.findall(r'<(?:script|img)[^>]+src="(?:https?:)?//', html)
    assert not re.findall(r'<link[^>]+href="(?:https?:)?//', html)
    assert "window.Plotly = Plotly" in html


@pytest.mark.browser
def test_the_report_renders_in_chromium(report, tmp_path):
    dom, console = load(chromium(), report, tmp_path / "profile")
    assert console == [], f"the page logged: {console}"
    # The interactive figure drew (Plotly's SVG in its div) and its script ran to the end.
    assert 'id="pareto-explorer"' in dom and "js-plotly-plot" in dom and "main-svg" in dom
    text = page_text(dom)
    assert re.search(r"3 of 3 cells drawn; circled and joined: the Pareto front", text)
    assert re.search(r'class="xtitle"[^>]*>trainable parameters<', dom)
    # Findings first, pictures first, then the tables.
    order = [text.index(s) for s in ("Findings", "Score against cost",
                                     "Scores per language at a glance", "Findings per cell",
                                     "1. Scores per language")]
    assert order == sorted(order)
    # No raw Markdown, marks rendered, mean ± sd intact (no mis-decoded UTF-8).
    assert "**" not in text
    assert "✗ no" in text and "✓ yes" in text
    assert re.search(r"\d\.\d{3}\s±\s\d\.\d{3}", text)
    assert not re.search(r"Â|â€|Ã", text)
    # Tables without pandas' index column; a dev score's † and a zero-shot * raised.
    assert "<th></th>" not in dom and 'class="dataframe"' not in dom
    assert re.search(r"<sup>\*</sup>", dom) and re.search(r"<sup>†</sup>", dom)


@pytest.mark.browser
def test_a_link_preselects_the_explorers_axes_and_subset(report, tmp_path):
    dom, console = load(chromium(), report, tmp_path / "profile",
                        "#x=train_wall_s&y=score&subset=cond:sib200-en")
    assert console == [], f"the page logged: {console}"
    assert re.search(r'class="xtitle"[^>]*>training time \(s\)<', dom)
    assert re.search(r'class="ytitle"[^>]*>macro_f1 \(overall', dom)
    assert re.search(r"3 of 3 cells drawn", page_text(dom))


# ---- without a browser (the fast suite) ------------------------------------------------
def test_tables_render_as_a_reader_expects():
    """No index column, bold and ticks rendered, marks raised, numbers right-aligned and kept
    on one line, long tables folded, the caption's Markdown rendered."""
    import pandas as pd

    from peft_utils.classification.analysis.tables import html_table

    table = pd.DataFrame({"method": ["fft", "lora", "pfeiffer"],
                          "en": ["0.466 ± 0.009†", "0.470 ± –*†", "absent*"],
                          "Δ vs FFT": ["reference", "+0.004 [-0.010, +0.020]", "-0.100"],
                          "beats probe": ["yes", "**no**", "–"], "seeds": [3, 3, 1]})
    html = html_table(table, "Scores, `mean ± sd`; **bold**", "scores")
    assert "<th></th>" not in html and "**" not in html and "`" not in html
    assert "<code>mean ± sd</code>" in html and "<details" in html and " open>" in html
    assert "0.466&nbsp;±&nbsp;0.009<sup>†</sup>" in html
    assert "0.470&nbsp;±&nbsp;–<sup>*†</sup>" in html and "absent<sup>*</sup>" in html
    assert "✓ yes" in html and '<strong class="mark bad" title="no">✗ no</strong>' in html
    heads = re.findall(r"<th( class=num)?>([^<]+)</th>", html)
    assert [name for num, name in heads if num] == ["en", "Δ vs FFT", "seeds"]
    assert "<td>fft</td>" in html   # text left-aligned
    long = html_table(pd.concat([table] * 10), "", "long")
    assert " open>" not in long and "(30 rows)" in long
    assert "(no rows)" in html_table(pd.DataFrame(), "", "empty")


def test_the_explorer_offers_the_measured_axes_and_each_task_and_scenario(tmp_path):
    """The interactive figure's data: an axis only where some cell has a value, a subset per
    task · scenario (and per task, and all, where there are several), Plotly's script inline."""
    from peft_utils.classification import analysis as A
    from peft_utils.classification.analysis import interactive as I
    from peft_utils.classification.analysis.serving import inference_table

    for scenario in ("multilingual", "en"):
        for method in ("fft", "lora"):
            write_run(tmp_path, method, 1, scenario=scenario,
                      inference=inference_block("merges", 10, timing(100.0, 10.0))
                      if scenario == "en" else None)
    results = A.load_results(tmp_path)
    points = I.pareto_points(A.f1_table(results), A.cost_table(results),
                             inference_table(results, 4), 4)
    spec = I.pareto_spec(points)
    assert list(spec["axes"]) == ["score", "trainable", "train_wall_s", "peak_memory_mb",
                                  "latency_ms", "serve_mb", "k_tasks_gb"]
    assert spec["axes"]["k_tasks_gb"]["label"] == "storage of 4 tasks from one base (GB)"
    assert [s["key"] for s in spec["subsets"]] == ["cond:sib200-multilingual", "cond:sib200-en",
                                                   "task:sib200"]
    latency = {(p["condition"], p["cell"]): p["latency_ms"] for p in spec["points"]}
    assert latency[("sib200 · en", "lora")] == 10.0
    assert latency[("sib200 · multilingual", "lora")] is None   # not measured: JSON null
    html = I.pareto_html(points)
    assert "window.Plotly = Plotly" in html and "cdn" not in html.split("<div")[0][:2000].lower()
    assert I.pareto_html(points, include_plotlyjs=False).count("<script") == 1
