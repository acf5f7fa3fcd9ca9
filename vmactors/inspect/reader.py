"""Read a vmactors JSON Lines log one line at a time.

The reader never holds more than the current line, so a million-event log filters in
constant memory. Each record keeps the line's exact bytes: the default `inspect` output
is those bytes, unchanged, so `| jq` sees what the simulator wrote.

Problems surface as `UsageError` with one line naming the file and, where it has one,
the line number (`run.jsonl:17: not JSON ...`). Lines are validated as they are read: a
log cut short by a crash yields its good lines first and fails only on reaching the bad
one, so the caller decides what to print before the error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import IO, Any

import attrs
import orjson

from vmactors.errors import UsageError
from vmactors.log.schema import RunStart

#: The log format this reader understands (`run.start`'s `format`).
FORMAT = 1


@attrs.frozen
class Record:
    """One log line: its number (from 1), its exact bytes and the parsed event."""

    lineno: int
    raw: bytes
    event: dict[str, Any]


class LogReader:
    """An open log. Opening checks the file and its `run.start` line; iterating yields
    every line (the `run.start` one first) as a `Record`.

    Use as a context manager, or call `close()`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file = _open(self.path)
        try:
            first = self._file.readline()
            if not first.strip():
                raise UsageError(f"{self.path}: empty log" if not first else f"{self.path}:1: empty line (not a vmactors log)")
            self.header = self._check_header(first)
        except BaseException:
            self._file.close()
            raise
        self._first = first
        self._started = False

    def __enter__(self) -> LogReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __iter__(self) -> Iterator[Record]:
        if self._started:
            raise RuntimeError("a LogReader can be iterated only once")
        self._started = True
        yield Record(1, self._first, self.header)
        for lineno, raw in enumerate(self._file, start=2):
            yield Record(lineno, raw, self._parse(lineno, raw))

    def _check_header(self, raw: bytes) -> dict[str, Any]:
        try:
            ev = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UsageError(f"{self.path}:1: not JSON (not a vmactors log)") from None
        if not isinstance(ev, dict) or ev.get("event") != RunStart.NAME:
            raise UsageError(f"{self.path}: not a vmactors log (line 1 is not a run.start event)")
        fmt = ev.get("format")
        if fmt != FORMAT or isinstance(fmt, bool):
            raise UsageError(
                f"{self.path}: log format {orjson.dumps(fmt).decode()} is not supported "
                f"(this vmactors reads format {FORMAT})"
            )
        self._check_fields(1, ev)
        return ev

    def _parse(self, lineno: int, raw: bytes) -> dict[str, Any]:
        try:
            ev = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if not raw.strip():
                raise UsageError(f"{self.path}:{lineno}: empty line") from None
            if not raw.endswith(b"\n"):
                raise UsageError(
                    f"{self.path}:{lineno}: not JSON: the line is cut short (truncated log?)"
                ) from None
            raise UsageError(f"{self.path}:{lineno}: not JSON") from None
        if not isinstance(ev, dict):
            raise UsageError(f"{self.path}:{lineno}: not a JSON object")
        self._check_fields(lineno, ev)
        return ev

    def _check_fields(self, lineno: int, ev: dict[str, Any]) -> None:
        step = ev.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise UsageError(f"{self.path}:{lineno}: event has no integer 'step'")
        for key in ("actor", "event"):
            if not isinstance(ev.get(key), str):
                raise UsageError(f"{self.path}:{lineno}: event has no string '{key}'")


def _open(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by LogReader.close
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a log") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def open_log(path: str | os.PathLike[str]) -> LogReader:
    """Open a vmactors log for streaming; raises `UsageError` if it is not one."""
    return LogReader(path)
