"""The one error type for bad input data."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data. The message names the file, the line (1-based) and what to do."""

    def __init__(self, path: str | Path, message: str, line: int | None = None, fix: str = ""):
        self.path = str(path)
        self.line = line
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else self.path
        text = f"{where}: {message}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)
