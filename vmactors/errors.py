"""Errors a user can cause. Each renders as one line; the CLI exits 2 on them."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input of any kind: the message is already the one line to print."""


class ScenarioError(UsageError):
    """A scenario file is malformed: `FILE:LINE:COL: message` or `FILE: message`.

    >>> str(ScenarioError("s.toml", "unknown op 'lod A'", line=7, col=10))
    "s.toml:7:10: unknown op 'lod A'"
    """

    def __init__(self, path: str, message: str, line: int | None = None, col: int | None = None) -> None:
        self.path = path
        self.message = message
        self.line = line
        self.col = col
        if line is None:
            text = f"{path}: {message}"
        else:
            text = f"{path}:{line}:{col if col is not None else 1}: {message}"
        super().__init__(text)
