"""Decoding raw files: UTF-8 (with or without BOM), LF or CRLF, errors with line numbers."""
from __future__ import annotations

from pathlib import Path

from peft_utils.data.errors import DataError


def read_text(path: str | Path, *, allow_empty: bool = False) -> str:
    """The file's text with the BOM removed and CRLF/CR turned into LF.

    Invalid UTF-8 raises DataError on the line of the first bad byte, because a silent
    `errors="replace"` would feed mojibake to the model. An empty (or whitespace-only) file
    raises unless `allow_empty`, since every file the loaders open should carry data.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found", fix="check the data root and the split name")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(path, f"invalid UTF-8 (byte 0x{raw[err.start]:02x})", line=line,
                        fix="re-save the file as UTF-8") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not allow_empty and not text.strip():
        raise DataError(path, "file is empty", line=1,
                        fix="restore the file from the release or remove it")
    return text


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) for every non-blank line; blank lines carry no record."""
    return [(i, line) for i, line in enumerate(text.split("\n"), start=1) if line.strip()]


def delimiter_hint(line: str) -> str:
    """Why a line that should be tab-separated has too few fields, in words."""
    if "\t" in line:
        return ""
    if "," in line:
        return "; the line has no tab but has commas: the fields must be separated by tabs"
    if " " in line:
        return "; the line has no tab but has spaces: the fields must be separated by tabs"
    return "; the line has no tab"
