"""How every study's report writes its tables (CSV, Markdown, LaTeX) and figures (PNG, PDF),
and the formatting their cells share."""
from __future__ import annotations

import re
from pathlib import Path

from peft_utils.core.runs import atomic_write_text

DASH = "–"   # what a formatted table shows for a missing value


def fmt_number(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or value != value:   # None or NaN
        return DASH
    return f"{value:,.{digits}f}{suffix}"


def fmt_signed(value: float | None, digits: int = 1, suffix: str = "") -> str:
    if value is None or value != value:
        return DASH
    return f"{value:+,.{digits}f}{suffix}"


def fmt_mean_sd(mean: float | None, sd: float | None, digits: int) -> str:
    """`mean ± sd` over seeds; a single seed has no spread ("–"), no mean shows nothing."""
    import pandas as pd

    if mean is None or pd.isna(mean):
        return ""
    spread = DASH if sd is None or pd.isna(sd) else f"{sd:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread}"


def safe_name(*parts) -> str:
    """A file stem from `parts` (empty ones left out): anything but letters, digits, `_` and
    `.` becomes `_`, joined by `-`."""
    return "-".join(re.sub(r"[^A-Za-z0-9_.]+", "_", str(p)).strip("_") for p in parts if p)

# pdflatex-safe spellings of the symbols the formatted tables use.
_LATEX = {"±": r"$\pm$", "×": r"$\times$", "–": "--", "†": r"$^\dagger$", "Δ": r"$\Delta$",
          "−": "-"}


def to_latex(table, caption: str, label: str) -> str:
    text = table.to_latex(index=False, escape=True, caption=caption, label=label)
    for symbol, latex in _LATEX.items():
        text = text.replace(symbol, latex)
    return text


def write_table(name: str, numeric, display, directory: str | Path, caption: str) -> list[Path]:
    """`<directory>/<name>.csv` from the numeric table, `.md` and `.tex` from the display one
    (with `caption`)."""
    import pandas as pd

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.{ext}" for ext in ("csv", "md", "tex")]
    atomic_write_text(paths[0], numeric.to_csv(index=False))
    atomic_write_text(paths[1], f"{caption}\n\n" + (to_markdown(display)
                                                    if not display.empty else "(no rows)") + "\n")
    atomic_write_text(paths[2], to_latex(display if not display.empty else
                                         pd.DataFrame({"": ["(no rows)"]}), caption,
                                         f"tab:{name}"))
    return paths


def to_markdown(display) -> str:
    """`display` as a Markdown table, its text cells as formatted: tabulate would read a
    number into "0.500" or "+0.050" and print 0.5 and 0.05. Numeric columns stay numbers."""
    from pandas.api.types import is_numeric_dtype

    text = [i for i, dtype in enumerate(display.dtypes) if not is_numeric_dtype(dtype)]
    return display.to_markdown(index=False, disable_numparse=text or False)


def save_figure(fig, directory: str | Path, stem: str) -> list[Path]:
    """`<directory>/<stem>.png` and `.pdf`; the figure is closed."""
    import matplotlib.pyplot as plt  # lazily: importing the package must not pick a backend

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{stem}.png", directory / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths
