"""What a loader read, kept, and left out: attached to every DataFrame as attrs["summary"].

Keys: rows, labelled (rows with at least one label), unlabelled (rows from files with no
gold labels at all, e.g. a test split without a label file), by_lang {lang: {rows, labelled,
unlabelled}}, excluded (count), excluded_reasons [{file, line, id, reason, ...}], source
(paths read). Nothing a loader drops goes unrecorded here.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd


def excluded(file: str, line: int | None, id: str, reason: str, **extra: Any) -> dict:
    return {"file": str(file), "line": line, "id": str(id), "reason": reason, **extra}


def build_summary(df: pd.DataFrame, *, excluded_reasons: Iterable[dict] = (),
                  source: Iterable[str] = (), gold_column: str = "gold") -> dict:
    """Count rows per language from `df` (columns lang, labels, and a bool gold column)."""
    reasons = list(excluded_reasons)
    by_lang: dict[str, dict[str, int]] = {}
    for lang, part in df.groupby("lang", sort=False):
        by_lang[str(lang)] = _counts(part, gold_column)
    total = _counts(df, gold_column)
    return {**total, "by_lang": by_lang, "excluded": len(reasons),
            "excluded_reasons": reasons, "source": [str(s) for s in source]}


def _counts(df: pd.DataFrame, gold_column: str) -> dict[str, int]:
    labelled = int(df["labels"].map(len).gt(0).sum()) if len(df) else 0
    unlabelled = int((~df[gold_column].astype(bool)).sum()) if len(df) else 0
    return {"rows": int(len(df)), "labelled": labelled, "unlabelled": unlabelled}


def attach(df: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Drop the internal gold column, keep its counts in the summary, return df."""
    summary = build_summary(df, **kwargs)
    out = df.drop(columns=["gold"]).reset_index(drop=True)
    out.attrs["summary"] = summary
    return out


def with_origin(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    """df with an `origin` column ("original", "translation"), its summary kept."""
    summary = df.attrs.get("summary")
    df = df.assign(origin=origin)
    if summary is not None:
        df.attrs["summary"] = summary
    return df


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate loaded frames, summing their summaries (pandas drops attrs on concat)."""
    summaries = [f.attrs.get("summary", {}) for f in frames]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["id", "lang", "text", "labels"])
    merged: dict[str, Any] = {"rows": 0, "labelled": 0, "unlabelled": 0, "by_lang": {},
                              "excluded": 0, "excluded_reasons": [], "source": []}
    for s in summaries:
        for key in ("rows", "labelled", "unlabelled", "excluded"):
            merged[key] += s.get(key, 0)
        for lang, counts in s.get("by_lang", {}).items():
            slot = merged["by_lang"].setdefault(lang, {"rows": 0, "labelled": 0, "unlabelled": 0})
            for key, value in counts.items():
                slot[key] = slot.get(key, 0) + value
        merged["excluded_reasons"] += s.get("excluded_reasons", [])
        merged["source"] += [p for p in s.get("source", []) if p not in merged["source"]]
    out.attrs["summary"] = merged
    return out


def format_table(summary: dict) -> str:
    """A plain-text table of a summary, for the CLI without --json."""
    header = f"{'lang':<8}{'rows':>8}{'labelled':>10}{'unlabelled':>12}"
    lines = [header, "-" * len(header)]
    for lang, c in summary["by_lang"].items():
        lines.append(f"{lang:<8}{c['rows']:>8}{c['labelled']:>10}{c.get('unlabelled', 0):>12}")
    lines.append("-" * len(header))
    lines.append(f"{'total':<8}{summary['rows']:>8}{summary['labelled']:>10}"
                 f"{summary.get('unlabelled', 0):>12}")
    lines.append(f"excluded: {summary['excluded']}")
    for r in summary["excluded_reasons"]:
        where = f"{r['file']}:{r['line']}" if r.get("line") is not None else r["file"]
        lines.append(f"  {where} id={r['id']}: {r['reason']}")
    return "\n".join(lines)
