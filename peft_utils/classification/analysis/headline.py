"""The README's headline table, made from a report's `findings.csv` so that it cannot drift from
what the report says: per task × scenario, each method's test score (mean over seeds), the
frozen-feature probe's, and each PEFT method's difference to FFT with its interval and verdict.

    python -m peft_utils headline tables/findings.csv                  # print the table
    python -m peft_utils headline tables/findings.csv --readme README.md --keep docs/demo/findings.csv

`--readme` replaces what stands between the README's START and END markers; `--keep` copies the
findings file beside the docs, where a test checks that the README still shows it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from peft_utils.core.methods import REFERENCE
from peft_utils.core.outputs import fmt_mean_sd, fmt_number, fmt_signed

START = "<!-- headline table: made by `python -m peft_utils headline`; do not edit -->"
END = "<!-- end of headline table -->"


def headline_markdown(findings: pd.DataFrame) -> str:
    """The Markdown table: one row per task × scenario, in the findings' order."""
    findings = findings.assign(method=_method_label(findings))
    methods = list(dict.fromkeys(findings["method"]))
    peft = [m for m in methods if m != REFERENCE]
    seeds = sorted(set(findings["n_seeds"].astype(int)))
    header = ["task", "scenario", *[m.upper() if m == REFERENCE else m for m in methods],
              "probe", f"PEFT − FFT [{_level(findings)} interval], verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for (task, scenario), cell in findings.groupby(["task", "scenario"], sort=False):
        by_method = cell.drop_duplicates("method").set_index("method")
        scores = [fmt_mean_sd(by_method["test"].get(m), by_method["test_std"].get(m), 3)
                  for m in methods]
        probe = fmt_number(cell["probe_test"].mean(), 3)
        verdicts = "; ".join(_verdict(m, by_method.loc[m]) for m in peft if m in by_method.index)
        lines.append(f"| {task} | {scenario} | " + " | ".join(scores) + f" | {probe} | "
                     f"{verdicts} |")
    lines.append("")
    lines.append(f"*Test score (the task's main metric), mean ± sd over "
                 f"{'-'.join(map(str, seeds))} seeds per cell; the interval covers seeds and "
                 "examples; verdicts Holm-adjusted over the cells.*")
    return "\n".join(lines)


def _level(findings: pd.DataFrame) -> str:
    """The intervals' level, from the findings (written by the report since 0.2.0; 95%, the
    report's default, for a findings file from before)."""
    levels = findings["ci_level"].dropna() if "ci_level" in findings else pd.Series(dtype=float)
    return f"{levels.iloc[0]:.0%}" if len(levels) else "95%"


def _method_label(findings: pd.DataFrame) -> pd.Series:
    """The method, with its variant and the condition's model or setting where they vary."""
    label = findings["method"].astype(str)
    for column in ("variant", "model", "setting"):
        if column in findings and findings[column].fillna("").astype(str).nunique() > 1:
            label = label + findings[column].fillna("").astype(str).map(
                lambda v: f" [{v}]" if v else "")
    return label


def _verdict(method: str, row: pd.Series) -> str:
    if pd.isna(row["diff"]):
        return f"{method} –"
    return (f"{method} {fmt_signed(row['diff'], 3)} [{fmt_signed(row['ci_low'], 3)}, "
            f"{fmt_signed(row['ci_high'], 3)}] {row['verdict']}")


def replace_block(text: str, block: str, source: str = "README.md") -> str:
    """`text` with what stands between START and END replaced by `block`."""
    if START not in text or END not in text:
        raise ValueError(f"{source}: no headline markers; put the lines\n{START}\n{END}\n"
                         "where the table goes")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}\n{END}{tail}"


def block_of(text: str) -> str:
    """What stands between the markers (without them)."""
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def register(subparsers) -> None:
    parser = subparsers.add_parser("headline", help="the README's headline table from a "
                                   "report's findings.csv")
    parser.add_argument("findings", help="tables/findings.csv of a report")
    parser.add_argument("--readme", help="rewrite the table between this file's markers")
    parser.add_argument("--keep", help="copy the findings file here (the docs' copy)")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    block = headline_markdown(pd.read_csv(args.findings))
    if args.keep:
        Path(args.keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.findings, args.keep)
    if not args.readme:
        print(block)
        return 0
    path = Path(args.readme)
    path.write_text(replace_block(path.read_text(encoding="utf-8"), block, str(path)),
                    encoding="utf-8")
    print(f"{path}: headline table from {args.findings}")
    return 0
