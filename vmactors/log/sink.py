"""Where a run's log goes: the path the user named, written by `vmactors.output`'s
rules, and ended properly whatever happens to the run.

- The run finishes: the log is published (a file: fsync'ed and renamed into place).
- The run fails on bad input (a choice list that does not fit, ...): nothing is
  published (a stream keeps what already went out).
- SIGINT or SIGTERM (`vmactors.signals.Interrupted`): the log is a valid JSON Lines
  prefix of the run, ended by a `run.end` whose `outcome` is `interrupted` (`regs`
  empty: the run has no final registers; `violations`: those logged before the
  interruption), and is published; if nothing was written yet, there is no log.
- The log cannot be written (disk full, a reader gone): `OutputError`, nothing
  published.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
>>> with log_output(path) as stream:
...     _ = stream.write(b'{"step":0,"vtime_ns":0,"actor":"sim","event":"run.start"}\\n')
>>> len(open(path).readlines())
1
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, cast

import orjson

from ..output import Output, OutputError, as_output_error
from ..signals import deferred, find_interrupt
from . import line, order_keys
from .schema import InvariantViolated, RunEnd

#: `outcome` of the `run.end` that ends an interrupted run's log.
INTERRUPTED = "interrupted"
_VIOLATED = b'"event":"' + InvariantViolated.NAME.encode() + b'"'
_END = b'"event":"' + RunEnd.NAME.encode() + b'"'


class _TrackedStream:
    """A stream output (pipe, device) that remembers its last line and the invariants
    violated so far, since it cannot be read back."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.last = b""
        self.violations: set[str] = set()

    def write(self, data: bytes) -> int:
        n = self._stream.write(data)
        self.last = data
        if _VIOLATED in data:
            self.violations.update(_violations(data))
        return n

    def flush(self) -> None:
        self._stream.flush()


def _violations(chunk: bytes) -> Iterator[str]:
    for raw in chunk.splitlines():
        if _VIOLATED in raw:
            try:
                ev = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(ev, dict) and isinstance(ev.get("invariant"), str):
                yield ev["invariant"]


def end_line(last: dict[str, Any], violations: set[str]) -> bytes:
    """The `run.end` line of a run interrupted after the event `last`."""
    step = last.get("step") if isinstance(last.get("step"), int) else 0
    vtime = last.get("vtime_ns") if isinstance(last.get("vtime_ns"), int) else 0
    ev = line(int(step or 0), int(vtime or 0), "sim",
              RunEnd(outcome=INTERRUPTED, regs={}, violations=sorted(violations)))
    return orjson.dumps(order_keys(ev)) + b"\n"


def _last_line(path: str) -> tuple[bytes, int]:
    """The last complete line of the file at `path` and the offset just after it (0,
    0 for a file without one)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        block = 1 << 16
        pos = end
        tail = b""
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            tail = f.read(pos - start) + tail
            pos = start
            cut = tail.rfind(b"\n")
            if cut >= 0:
                prev = tail.rfind(b"\n", 0, cut)
                if prev >= 0 or pos == 0:
                    return tail[prev + 1:cut + 1], end - len(tail) + cut + 1
        return b"", 0


def _scan_violations(path: str, size: int) -> set[str]:
    found: set[str] = set()
    with open(path, "rb") as f:
        remaining = size
        for raw in f:
            remaining -= len(raw)
            if _VIOLATED in raw:
                found.update(_violations(raw))
            if remaining <= 0:
                break
    return found


def _end_interrupted(out: Output, stream: BinaryIO | _TrackedStream) -> bool:
    """End an interrupted run's log; False if there is nothing to publish."""
    stream.flush()
    if isinstance(stream, _TrackedStream):
        last, violations = stream.last, stream.violations
        if not last:
            return False
        if _END not in last:
            stream.write(end_line(_parse(last), violations))
        return True
    assert out.tmp is not None
    last, size = _last_line(out.tmp)
    if not last:
        return False
    if os.path.getsize(out.tmp) != size:
        out.stream.truncate(size)  # a line cut short (cannot happen with whole-line writes; kept safe)
        out.stream.seek(size)
    if _END not in last:
        out.stream.write(end_line(_parse(last), _scan_violations(out.tmp, size)))
    return True


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        ev = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return ev if isinstance(ev, dict) else {}


@contextmanager
def log_output(path: str | os.PathLike[str] | None) -> Iterator[IO[bytes] | None]:
    """The stream a run writes its log to (None: no log), ended as the module
    docstring says."""
    if path is None:
        yield None
        return
    out = Output(path, "log")
    stream: BinaryIO | _TrackedStream = out.stream if out.regular else _TrackedStream(out.stream)
    try:
        yield cast(IO[bytes], stream)
    except BaseException as exc:
        broken = as_output_error(out, exc)
        if broken is not None:
            out.abort()
            if broken is exc:
                raise
            raise broken from None
        if find_interrupt(exc) is not None:
            with deferred():
                try:
                    publish = _end_interrupted(out, stream)
                except OSError:
                    publish = False
                if publish:
                    try:
                        out.commit()
                    except OutputError:
                        pass  # the interruption is what the user is told about
                else:
                    out.abort()
        else:
            out.abort()
        raise
    out.commit()


__all__ = ["INTERRUPTED", "end_line", "log_output"]
