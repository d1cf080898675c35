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
