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
import shutil
import tempfile
import types
import typing
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Any, Literal

import attrs
import orjson

from vmactors.errors import UsageError
from vmactors.log import schema
from vmactors.log.schema import RunStart

#: The log format this reader understands (`run.start`'s `format`).
FORMAT = 1
#: The longest line read (a run.end with every register of a big scenario fits).
MAX_LINE = 16 << 20


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

    def __init__(self, path: str | os.PathLike[str], file: IO[bytes] | None = None) -> None:
        self.path = os.fspath(path)
        self._file = file if file is not None else _open(self.path)
        self._last_step = 0
        try:
            first = self._readline(1)
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

    def rewind(self) -> Iterator[Record]:
        """The same log's records again from its start, for a second pass (views that
        must know the whole log before writing their first line). Lazy: the file is
        rewound when the iteration starts, which must be after this reader's own."""
        self._file.seek(0)
        yield from LogReader(self.path, self._file)

    def __iter__(self) -> Iterator[Record]:
        if self._started:
            raise RuntimeError("a LogReader can be iterated only once")
        self._started = True
        yield Record(1, self._first, self.header)
        lineno = 2
        while raw := self._readline(lineno):
            yield Record(lineno, raw, self._parse(lineno, raw))
            lineno += 1

    def _readline(self, lineno: int) -> bytes:
        """One line, at most `MAX_LINE` bytes (a file without newlines, `/dev/zero`,
        is not read whole into memory)."""
        raw = self._file.readline(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise UsageError(f"{self.path}:{lineno}: a line longer than {MAX_LINE >> 20} MiB (not a vmactors log)")
        return raw

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
        if step < self._last_step:
            # The views read a log in one pass, step by step.
            raise UsageError(f"{self.path}:{lineno}: step {step} after step {self._last_step} "
                             f"(steps never go back in a vmactors log)")
        self._last_step = step
        for key in ("actor", "event"):
            if not isinstance(ev.get(key), str):
                raise UsageError(f"{self.path}:{lineno}: event has no string '{key}'")
        # Every key the schema types has that type, so that no view meets a list
        # where it expects an address (docs/log-schema.md).
        checks = _CHECKS.get(ev["event"], _HEAD_CHECKS)
        for key, value in ev.items():
            check = checks.get(key)
            if check is not None and not check[0](value):
                if isinstance(value, float) and value.is_integer() and check[0](int(value)):
                    ev[key] = int(value)  # JSON's 1.0 is 1 (the line itself is printed as it is)
                    continue
                raise UsageError(f"{self.path}:{lineno}: '{key}' of {ev['event']} must be {check[1]}, "
                                 f"not {_json_type(value)}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


Check = tuple[Callable[[Any], bool], str]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _checker(tp: Any) -> Check | None:
    """A check for values of the annotation `tp` (None: anything goes)."""
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return None
    if origin in (typing.Union, types.UnionType):
        parts = [_checker(a) for a in typing.get_args(tp)]
        if any(p is None for p in parts):
            return None
        known = [p for p in parts if p is not None]
        return (lambda v: any(c[0](v) for c in known)), " or ".join(c[1] for c in known)
    if tp is type(None):
        return (lambda v: v is None), "null"
    if origin is Literal:
        values = typing.get_args(tp)
        return (lambda v: any(v == x and type(v) is type(x) for x in values)), " or ".join(map(repr, values))
    if tp is int:
        return _is_int, "an integer"
    if tp is str:
        return (lambda v: isinstance(v, str)), "a string"
    if tp is bool:
        return (lambda v: isinstance(v, bool)), "a boolean"
    if tp is dict or origin is dict:
        return (lambda v: isinstance(v, dict)), "an object"
    if tp in (list, tuple) or origin in (list, tuple):
        return (lambda v: isinstance(v, list)), "an array"
    return None


def _checks_of(cls: type[schema.Event]) -> dict[str, Check]:
    hints = typing.get_type_hints(cls)
    out = {}
    for field in attrs.fields(cls):
        check = _checker(hints[field.name])
        if check is not None:
            out[field.name] = check
    return out


_CHECKS: dict[str, dict[str, Check]] = {name: _checks_of(cls) for name, cls in schema.EVENTS.items()}
for _checks in _CHECKS.values():
    _checks["vtime_ns"] = (_is_int, "an integer")
#: An event this vmactors does not know: its head keys, typed as in the messages.
_HEAD_CHECKS: dict[str, Check] = {k: v for k, v in _CHECKS[schema.MsgSend.NAME].items() if k in schema.HEAD}
_HEAD_CHECKS.update({k: v for k, v in _CHECKS[schema.PteInstall.NAME].items() if k in schema.HEAD})


def _open(path: str) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by LogReader.close
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a log") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None


def open_log(path: str | os.PathLike[str], rewindable: bool = False) -> LogReader:
    """Open a vmactors log for streaming; raises `UsageError` if it is not one.

    `rewindable`: the reader can `rewind()`. A log that cannot seek (a pipe,
    `/dev/stdin`) is then copied first to an anonymous temporary file (on disk, never
    in memory, and gone with the process however it ends)."""
    if not rewindable:
        return LogReader(path)
    file = _open(os.fspath(path))
    try:
        seekable = file.seekable()
    except OSError:
        seekable = False
    if not seekable:
        spool = tempfile.TemporaryFile()
        try:
            shutil.copyfileobj(file, spool, 1 << 20)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        finally:
            file.close()
        file = spool  # type: ignore[assignment]
    return LogReader(path, file)
