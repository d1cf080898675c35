"""Do two reports on different seeds reach the same verdicts? (`make demo-stability`)

    python benchmarks/verdict_stability.py tables/findings.csv tables-stability/findings.csv

Pairs the PEFT cells of two `findings.csv` files (task, scenario, method), prints each cell's
difference, interval and verdict in both, and counts the cells whose verdicts agree and those
that are "better" in one and "worse" in the other. The issue's bar: at least 13 of the 15 demo
cells agree and none flips. Exit status 1 when a verdict flips.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

KEYS = ["task", "scenario", "method"]


def paired_verdicts(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """One row per PEFT cell in both files: each side's difference, interval and verdict."""
    columns = [*KEYS, "n_seeds", "diff", "ci_low", "ci_high", "verdict"]
    a, b = (frame[frame["verdict"].notna()][columns] for frame in (first, second))
    table = a.merge(b, on=KEYS, suffixes=("_a", "_b"))
    table["agree"] = table["verdict_a"] == table["verdict_b"]
    table["flip"] = (table[["verdict_a", "verdict_b"]].apply(set, axis=1)
                     == {"better", "worse"})
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args(argv)
    table = paired_verdicts(pd.read_csv(args.first), pd.read_csv(args.second))
    shown = table.assign(**{
        side: [f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] {v}" for d, lo, hi, v in zip(
            table[f"diff_{s}"], table[f"ci_low_{s}"], table[f"ci_high_{s}"],
            table[f"verdict_{s}"])] for side, s in (("first", "a"), ("second", "b"))})
    print(shown[[*KEYS, "first", "second", "agree"]].to_markdown(index=False))
    print(f"\n{int(table['agree'].sum())} of {len(table)} verdicts agree; "
          f"{int(table['flip'].sum())} better in one and worse in the other.")
    return 1 if table["flip"].any() else 0


if __name__ == "__main__":
    sys.exit(main())
