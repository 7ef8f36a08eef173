"""Errors a user can cause, and the exit codes every command shares.

One typed error for bad input means the CLI turns all of them into exit code 2 in one place, and
every message names the file, the line and the field so the user can go straight to the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INCONCLUSIVE = 3
EXIT_INTERRUPTED = 130


@dataclass
class TollgateInputError(Exception):
    """Bad input: a file, a flag or a name the user can correct. Exit code 2, nothing written."""

    message: str
    file: str | Path | None = None
    line: int | None = None
    field: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f", line {self.line}"
        parts = []
        if where:
            parts.append(where + ":")
        if self.field:
            parts.append(f"field '{self.field}':")
        parts.append(self.message)
        text = " ".join(parts)
        if self.hint:
            text += f" {self.hint}"
        return text


class StoreBusyError(RuntimeError):
    """The store stayed locked by another process for longer than we were willing to wait."""
