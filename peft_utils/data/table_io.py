"""Tables of texts in and out of a trained model (`predict`, `predict-tasks`), the same for
every study: the input is a CSV, TSV, JSONL or Parquet table with a text column or, with `-`,
one text per line on stdin; the output is the input's rows with the model's columns added,
in the format its suffix names, written atomically (or printed as CSV)."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from peft_utils.core.config import ConfigError
from peft_utils.core.runs import atomic_write_bytes, json_default
from peft_utils.data.errors import DataError
from peft_utils.data.table import FORMATS, read_rows

STDIN = "-"


def read_input(source: str, text_column: str):
    """The input rows as a DataFrame (every column kept) and their texts."""
    import pandas as pd

    if source == STDIN:
        texts = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not texts:
            raise DataError("<stdin>", "no text lines", fix="write one text per line")
        return pd.DataFrame({text_column: texts}), texts
    path = Path(source)
    rows = read_rows(path)
    if not rows:
        raise DataError(path, "no rows", fix="write a header line and one row per text")
    for line, row in rows:
        if text_column not in row:
            raise DataError(path, f"no column {text_column!r} (columns: {', '.join(row)})",
                            line=line, fix="name the text column with --text-column")
        if row[text_column] is None or not isinstance(row[text_column], str):
            raise DataError(path, f"column {text_column!r} holds {row[text_column]!r}, not a "
                            "text", line=line, fix="give every row a text")
    frame = pd.DataFrame([row for _, row in rows])
    return frame, list(frame[text_column])


def encode_table(frame, kind: str) -> bytes:
    """`frame` in the file format `kind` (csv, tsv, jsonl, parquet)."""
    if kind == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if kind == "jsonl":
        text = "".join(json.dumps(record, ensure_ascii=False, default=json_default) + "\n"
                       for record in frame.to_dict("records"))
    else:
        text = frame.to_csv(index=False, sep="\t" if kind == "tsv" else ",")
    return text.encode("utf-8")


def output_kind(out: str | None) -> str:
    if out is None:
        return "csv"
    kind = FORMATS.get(Path(out).suffix.lower())
    if kind is None:
        raise ConfigError(f"--out {out}: unknown file type; end it in "
                          f"{', '.join(FORMATS)}")
    return kind


def write_table_out(data: bytes, out, summary: str) -> None:
    """The encoded table to `out`, written atomically, or to standard output (None)."""
    if out is None:
        sys.stdout.write(data.decode("utf-8"))
    else:
        atomic_write_bytes(out, data)
        print(f"{summary}: {out}", file=sys.stderr)
