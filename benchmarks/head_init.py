"""The demo's finals with the head from the probe (`make demo`, results/) beside the same grid
with the paper's random head (`make demo-random-head`, results-random-head/): per task,
scenario and method, the test score on the training languages and on the zero-shot ones,
the difference, and whether the run beat the frozen-feature probe on dev and on test.
Prints a Markdown table (docs/demo/head-init.md).

    python benchmarks/head_init.py [--probe results] [--random results-random-head]
"""
from __future__ import annotations

import argparse

import pandas as pd

from peft_utils.classification.analysis import baseline_table, f1_table, load_results
from peft_utils.core.outputs import fmt_number, fmt_signed

KEYS = ["task", "scenario", "method"]


def scores(folder: str) -> pd.DataFrame:
    """Per final cell: test score over the training languages, over the zero-shot ones (mean
    of their languages), overall, and the probe check (dev and test)."""
    results = load_results(folder)
    f1 = f1_table(results)
    langs = f1[f1["lang"] != "overall"]
    parts = {"trained": langs[~langs["zero_shot"]], "zero_shot": langs[langs["zero_shot"]]}
    out = f1[f1["lang"] == "overall"][KEYS + ["mean"]].rename(columns={"mean": "overall"})
    for name, part in parts.items():
        out = out.merge(part.groupby(KEYS, sort=False)["mean"].mean().rename(name).reset_index(),
                        on=KEYS, how="left")
    probe = baseline_table(results)[KEYS + ["beats_probe", "test", "probe_test", "dev_mean",
                                            "probe"]]
    probe = probe.assign(beats_probe_test=probe["test"] > probe["probe_test"])
    return out.merge(probe[KEYS + ["beats_probe", "beats_probe_test", "probe_test"]], on=KEYS)


def side_by_side(probe_dir: str, random_dir: str) -> pd.DataFrame:
    both = scores(random_dir).merge(scores(probe_dir), on=KEYS, suffixes=("_random", "_probe"))
    for part in ("overall", "trained", "zero_shot"):
        both[f"{part}_gain"] = both[f"{part}_probe"] - both[f"{part}_random"]
    return both


def markdown(table: pd.DataFrame) -> str:
    def pair(row, part):
        return (f"{fmt_number(row[part + '_random'], 3)} → {fmt_number(row[part + '_probe'], 3)}"
                f" ({fmt_signed(row[part + '_gain'], 3)})")

    def mark(value):
        return "yes" if value else "**no**"

    lines = ["| task | scenario | method | test, overall: random → probe (Δ) | training "
             "languages | zero-shot languages | beats the probe on dev / test (random; probe) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for _, row in table.iterrows():
        lines.append(
            f"| {row['task']} | {row['scenario']} | {row['method']} | {pair(row, 'overall')} | "
            f"{pair(row, 'trained')} | {pair(row, 'zero_shot')} | "
            f"{mark(row['beats_probe_random'])} / {mark(row['beats_probe_test_random'])}; "
            f"{mark(row['beats_probe_probe'])} / {mark(row['beats_probe_test_probe'])} |")
    means = table.groupby("method", sort=False)[["overall_gain", "trained_gain",
                                                 "zero_shot_gain"]].mean()
    lines += ["", "Mean gain of the probe head per method (overall / training languages / "
              "zero-shot languages): " + "; ".join(
                  f"{m} {fmt_signed(r['overall_gain'], 3)} / {fmt_signed(r['trained_gain'], 3)}"
                  f" / {fmt_signed(r['zero_shot_gain'], 3)}" for m, r in means.iterrows()) + "."]
    for arm in ("random", "probe"):
        dev, test = table[f"beats_probe_{arm}"].sum(), table[f"beats_probe_test_{arm}"].sum()
        lines.append(f"{arm} head: {int(dev)} of {len(table)} finals beat the probe on dev, "
                     f"{int(test)} on test.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", default="results")
    parser.add_argument("--random", default="results-random-head")
    args = parser.parse_args()
    print(markdown(side_by_side(args.probe, args.random)))


if __name__ == "__main__":
    main()
