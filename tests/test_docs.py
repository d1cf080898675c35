"""README.md stays a short front door (the reference lives in docs/, built by `make docs`), and
every relative link in it points to a file of the repository."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 200

# Inline links and images, [text](target "title") / ![alt](target), and reference definitions,
# [label]: target. Code spans and fenced code blocks are removed first.
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.IGNORECASE)


def _prose(text: str) -> str:
    """The Markdown without fenced code blocks and code spans (their brackets are not links)."""
    text = re.sub(r"^(```|~~~).*?^\1\s*$", "", text, flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"(`+).+?\1", "", text, flags=re.DOTALL)


def relative_links(text: str) -> list[str]:
    prose = _prose(text)
    targets = INLINE.findall(prose) + REFERENCE.findall(prose)
    return [t for t in targets if not EXTERNAL.match(t)]


def test_readme_is_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_LINES}): move reference text to a page "
        "under docs/ and link it from README's 'Where to read next'")


def test_every_relative_link_in_the_readme_points_to_an_existing_file():
    links = relative_links(README.read_text(encoding="utf-8"))
    assert links, "README.md links no file; expected at least the docs pages"
    missing = []
    for link in links:
        path = unquote(link.split("#", 1)[0].split("?", 1)[0])
        if not path:
            continue
        target = (README.parent / path).resolve()
        if not target.exists():
            missing.append(link)
    assert not missing, f"README.md links to files that do not exist: {', '.join(missing)}"


def test_the_link_finder_sees_links_and_ignores_code():
    text = ("See [a](docs/a.md#x), ![b](img/b.png \"t\") and [c][ref].\n\n[ref]: docs/c.md\n"
            "`[not](a-link.md)` [web](https://example.org) [top](#top)\n"
            "```\n[nor](this.md)\n```\n")
    assert relative_links(text) == ["docs/a.md#x", "img/b.png", "docs/c.md"]


def test_the_readme_headline_table_is_the_demos_findings():
    """`make readme-table` writes it from the demo's tables/findings.csv (kept as
    docs/demo/findings.csv): the README cannot show what the demo's report does not say."""
    import pandas as pd

    from peft_utils.classification.analysis.headline import block_of, headline_markdown

    findings = pd.read_csv(ROOT / "docs" / "demo" / "findings.csv")
    assert block_of(README.read_text(encoding="utf-8")) == headline_markdown(findings), (
        "README.md's headline table differs from docs/demo/findings.csv; run "
        "`make readme-table` after `make demo`")
    assert set(findings["n_seeds"]) == {3}   # the demo's verdicts rest on three seeds


def test_the_headline_table_marks_one_seed_cells_and_keeps_the_verdict():
    import pandas as pd

    from peft_utils.classification.analysis.headline import (END, START, block_of,
                                                             headline_markdown, replace_block)

    findings = pd.DataFrame({
        "task": "sib200", "scenario": "en", "method": ["fft", "lora"], "n_seeds": [3, 3],
        "test": [0.70, 0.75], "test_std": [0.01, 0.02], "probe_test": [0.6, 0.6],
        "diff": [float("nan"), 0.05], "ci_low": [float("nan"), -0.01],
        "ci_high": [float("nan"), 0.11], "verdict": [float("nan"), "comparable"]})
    table = headline_markdown(findings)
    assert "| sib200 | en | 0.700 ± 0.010 | 0.750 ± 0.020 | 0.600 | lora +0.050 [-0.010, " \
           "+0.110] comparable |" in table
    text = replace_block(f"intro\n{START}\nold\n{END}\nrest", table)
    assert block_of(text) == table and text.startswith("intro\n") and text.endswith("\nrest")
    assert "[95% interval]" in table   # a findings file without ci_level: the report's default
    assert "[90% interval]" in headline_markdown(findings.assign(ci_level=0.9))


# ---- guides explain, the results log records (issue 35) -------------------------------------
DOCS = ROOT / "docs"
RESULTS_LOG = DOCS / "results.md"
# A date, a commit hash (7 to 40 hex digits with at least one digit and one letter, standing
# alone: not part of a path, an anchor, a file name or a longer word) and a temporary path.
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
COMMIT = re.compile(r"(?<![0-9A-Za-z_/.#-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}"
                    r"(?![0-9A-Za-z_])")
TMP = re.compile(r"(?<![\w.])/tmp/")
# Link targets may name the results log's dated entries (results.md#2026-12-07-...): a guide
# links to a measurement without stating it.
LINK_TARGET = re.compile(r"\]\([^)\s]*\)|^\s{0,3}\[[^\]]+\]:\s*\S+", re.MULTILINE)


def guides() -> list[Path]:
    """Every page that explains (docs/*.md and docs/demo/*.md), the results log excepted."""
    pages = sorted(DOCS.glob("*.md")) + sorted((DOCS / "demo").glob("*.md"))
    return [page for page in pages if page != RESULTS_LOG]


def log_entries_in(text: str) -> list[str]:
    """What in a guide belongs in the results log: dates, commit hashes, /tmp/ paths."""
    found = []
    for number, line in enumerate(LINK_TARGET.sub("]()", text).splitlines(), start=1):
        for pattern in (DATE, COMMIT, TMP):
            found += [f"line {number}: {m.group(0)!r}" for m in pattern.finditer(line)]
    return found


def test_the_log_entry_finder_sees_dates_hashes_and_tmp_paths_and_nothing_else():
    hits = log_entries_in(
        "took 30.5 min on 2026-12-02 from a fresh clone of fc4c5bf (`d6d67db`)\n"
        "written to /tmp/demo3/results; full hash 0123456789abcdef0123456789abcdef01234567\n")
    assert [h.split(": ", 1)[1] for h in hits] == [
        "'2026-12-02'", "'fc4c5bf'", "'d6d67db'", "'0123456789abcdef0123456789abcdef01234567'",
        "'/tmp/'"]
    assert log_entries_in(
        "[Results log](results.md#2026-12-07-the-demo-on-three-seeds-per-final)\n"
        "0.6417207705641557\n"
        "`--set seed=1234567` lr 1e-4, `storage: journal:///shared/tuning.log`, e5-small, "
        "pareto_brighter-multilingual.png, #4c72b0, sha256 deadbeef, dtype bf16, `abc/1234567x`\n"
        "[ref]: results.md#2026-11-30-the-tuned-demo\n") == []


def test_no_guide_holds_dates_commit_hashes_or_tmp_paths():
    """Dated measurements, the commits they ran at and their scratch folders live in
    docs/results.md; a guide links to its entry instead."""
    offenders = {page.relative_to(ROOT).as_posix(): hits for page in guides()
                 if (hits := log_entries_in(page.read_text(encoding="utf-8")))}
    assert not offenders, (
        "move these into docs/results.md (a dated entry) and link to it: "
        + "; ".join(f"{page}: {', '.join(hits[:5])}" for page, hits in offenders.items()))


SUITE_FIGURES = re.compile(r"\b\d+ (?:tests|passed)\b|\b\d+ min \d+ s\b")


def test_suite_sizes_and_times_stand_in_the_results_log_only():
    """The test count and the suite's time are measurements: README, getting started and the CI
    script point to the results log instead of copying a figure that goes stale."""
    places = [README, DOCS / "getting-started.md", ROOT / ".ci" / "run"]
    stale = {p.relative_to(ROOT).as_posix(): SUITE_FIGURES.findall(p.read_text(encoding="utf-8"))
             for p in places}
    assert not {p: f for p, f in stale.items() if f}, stale
    assert SUITE_FIGURES.search(RESULTS_LOG.read_text(encoding="utf-8"))


def test_no_page_promises_the_demo_a_duration():
    """The demo's time is measured (the results log), not promised: the 3-seed demo took far
    longer than the 30 minutes the pages once claimed."""
    for path in (DOCS / "demo.md", ROOT / "configs" / "demo" / "base.yaml"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\b30 min", text), f"{path.name} states the demo's duration"
        assert "results" in text   # points to the results log instead


# ---- reference pages generated from the code ------------------------------------------------
def test_the_committed_reference_pages_are_the_generated_ones(tmp_path):
    from peft_utils.cli import write_reference

    for generated in write_reference(tmp_path):
        committed = (DOCS / "reference" / generated.name).read_text(encoding="utf-8")
        assert committed == generated.read_text(encoding="utf-8"), (
            f"docs/reference/{generated.name} differs from the code; run `make reference`")


def test_the_config_reference_lists_every_key_of_both_studies_with_its_default():
    import dataclasses

    from peft_utils.classification.config import RunConfig
    from peft_utils.mt.config import MTConfig
    from peft_utils.core.reference import config_fields, config_reference_markdown

    page = config_reference_markdown()
    cls_part, mt_part = page.split("## Machine translation", 1)
    for cls, part, study in ((RunConfig, cls_part, "classification"), (MTConfig, mt_part, "mt")):
        names = [f.name for f in dataclasses.fields(cls)]
        assert len(names) > 20
        for name in names:
            assert f"- **`{name}`** (" in part, f"{study}: {name} missing from the reference"
        rows = config_fields(study)
        assert [row[0] for row in rows] == names
        undescribed = [key for key, _, _, text in rows if not text]
        assert not undescribed, (f"{study} keys without a description: {undescribed}; add a "
                                 "comment beside the field or a line in reference.DESCRIPTIONS")
    # defaults as YAML writes them, the MT override of a shared field included
    assert "- **`results_dir`** (str, default `results`)" in cls_part
    assert "- **`results_dir`** (str, default `results-mt`)" in mt_part
    assert "- **`head_learning_rate`** (float | None, default `null`)" in cls_part


def test_the_cli_reference_lists_every_command_and_option():
    import argparse

    from peft_utils.cli import build_parser
    from peft_utils.core.reference import cli_reference_markdown

    page = cli_reference_markdown(build_parser())

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                hidden = {a.dest for a in action._choices_actions if a.help == argparse.SUPPRESS}
                for name, sub in action.choices.items():
                    if name not in hidden:
                        yield from walk(sub, path + [name])
            elif action.help != argparse.SUPPRESS and path:
                for option in action.option_strings:
                    if option not in ("-h", "--help"):
                        yield path, option
        if path:
            yield path, None

    seen = 0
    for path, option in walk(build_parser(), []):
        heading = f"# `{' '.join(path)}`"
        assert heading in page, f"command {' '.join(path)} missing"
        if option:
            section = page.split(heading + "\n", 1)[1].split("\n#", 1)[0]
            assert f"- `{option}" in section, f"{' '.join(path)} {option} missing"
            seen += 1
    assert seen > 50


# ---- release files --------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import tomllib

    import yaml

    import peft_utils

    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    top = re.search(r"^## \[?(\d+\.\d+\.\d+)\]? - (\d{4}-\d\d-\d\d)", changelog, re.MULTILINE)
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {"pyproject.toml": pyproject["project"]["version"],
            "peft_utils.__version__": peft_utils.__version__,
            "CITATION.cff": str(citation["version"]),
            "CHANGELOG.md (top entry)": top.group(1) if top else "none",
            "CHANGELOG date": top.group(2) if top else "none",
            "CITATION date": str(citation["date-released"])}


def test_the_versions_agree():
    versions = _versions()
    numbers = {k: v for k, v in versions.items() if "date" not in k}
    assert len(set(numbers.values())) == 1, numbers
    assert versions["CHANGELOG date"] == versions["CITATION date"], versions


def test_the_citation_file_is_cff_1_2_0_with_both_studies():
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors", "version", "date-released", "license"):
        assert citation.get(key), key
    assert citation["license"] == "Apache-2.0"
    references = citation["references"]
    titles = " | ".join(ref["title"] for ref in references)
    assert "multilingual news article classification" in titles
    assert "Machine Translation" in titles
    for ref in references:
        assert ref["type"] and ref["authors"] and ref["year"]
        assert all(a.get("family-names") or a.get("name") for a in ref["authors"])


def test_the_license_is_the_apache_2_0_text():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 150
