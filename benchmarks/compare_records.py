"""Two results folders, record by record: the same run ids, and every score identical?

    python benchmarks/compare_records.py OLD_RESULTS NEW_RESULTS

Compares what a refactor must not change: each record's scores (dev and test, per language
and overall), the best step and dev score, and the starting scores of the head and of the
frozen probe. Timings are not compared (they are the machine's). Exit 1 on any difference.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def scores(record: dict) -> dict:
    metrics = record["metrics"]
    out = {"best_step": metrics.get("best_step"), "best_dev": metrics.get("best_dev"),
           "probe": (metrics.get("frozen_probe") or {}).get("selection_dev"),
           "head_init": (metrics.get("head_init") or {}).get("selection_dev")}
    for split in ("dev", "test"):
        for lang, values in (metrics.get(split) or {}).items():
            out.update({f"{split}/{lang}/{k}": v for k, v in (values or {}).items()
                        if isinstance(v, (int, float))})
    return out


def records(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/record.json")}


def main(old: str, new: str) -> int:
    a, b = records(Path(old)), records(Path(new))
    for name, only in ((old, set(a) - set(b)), (new, set(b) - set(a))):
        if only:
            print(f"only in {name}: {', '.join(sorted(only))}")
    differ = 0
    for run_id in sorted(set(a) & set(b)):
        x, y = scores(a[run_id]), scores(b[run_id])
        changed = {k: (x.get(k), y.get(k)) for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
        if changed:
            differ += 1
            print(run_id, dict(sorted(changed.items())[:4]))
    print(f"{len(set(a) & set(b))} run ids in both, {differ} with a different score")
    return int(bool(differ or set(a) ^ set(b)))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
