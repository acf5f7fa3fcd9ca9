"""The structured log: JSON Lines through structlog, keys in the schema's fixed order
(`vmactors.log.schema`, docs/log-schema.md).

Events stay frozen objects until a log is actually written; `render_events` turns one
step's events into dicts only then.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import IO, Any, Protocol

import attrs
import orjson
import structlog

from .schema import FORMAT, HEAD, LINE_HEAD, Event, render_fields

_ORDER = LINE_HEAD + HEAD


def order_keys(event_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The line head and the schema's head keys first, the rest as given."""
    out = {k: event_dict[k] for k in _ORDER if k in event_dict}
    out.update(event_dict)  # keys already placed keep their place
    return out


def _default(obj: Any) -> Any:
    if attrs.has(type(obj)):
        return attrs.asdict(obj)
    if isinstance(obj, (frozenset, set)):
        return sorted(obj)
    return repr(obj)


def render_line(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> bytes:
    """structlog's last processor: one JSON line, keys in schema order."""
    return orjson.dumps(order_keys(event_dict), default=_default) + b"\n"


class _LineWriter:
    """The wrapped logger: appends rendered lines to the stream without flushing each
    one (structlog's BytesLogger flushes every line, which dominates a run's cost);
    `EventLog.close` flushes."""

    __slots__ = ("_write",)

    def __init__(self, stream: IO[bytes]) -> None:
        self._write = stream.write

    def msg(self, message: bytes) -> None:
        self._write(message)

    # structlog's bound logger proxies `msg` to the level method `info`.
    info = msg


class EventLog:
    """A JSONL sink for one run, through a structlog bound logger."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._logger = structlog.wrap_logger(
            _LineWriter(stream),
            processors=[render_line],
            wrapper_class=structlog.make_filtering_bound_logger(0),
            cache_logger_on_first_use=True,
        )
        self._stream = stream

    def write(self, event: dict[str, Any]) -> None:
        fields = dict(event)
        self._logger.info(fields.pop("event"), **fields)

    def close(self) -> None:
        self._stream.flush()


class _End(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def index(self) -> int: ...

    @property
    def is_cpu(self) -> bool: ...


class _Payload(Protocol):
    @property
    def range(self) -> tuple[int, int] | None: ...

    def log_arg(self) -> Any: ...


class LoggedMessage(Protocol):
    """What the log shows of a message in flight (`vmactors.actors.messages.Envelope`)."""

    @property
    def src(self) -> _End: ...

    @property
    def dst(self) -> _End: ...

    @property
    def msg(self) -> _Payload: ...

    @property
    def msg_id(self) -> int: ...

    @property
    def cause(self) -> int | None: ...

    @property
    def kind(self) -> str: ...


def message_fields(env: LoggedMessage) -> dict[str, Any]:
    """The keys of a `msg.send` / `msg.recv` line for one message."""
    out: dict[str, Any] = {}
    end = env.src if env.src.is_cpu else env.dst if env.dst.is_cpu else None
    if end is not None:
        out["cpu"] = end.index
    rng = env.msg.range
    if rng is not None:
        out["addr"], out["pages"] = rng
    out.update(msg_id=env.msg_id, src=env.src.name, dst=env.dst.name, kind=env.kind, cause=env.cause)
    arg = env.msg.log_arg()
    if arg is not None:
        out["arg"] = arg
    return out


def line(step: int, vtime: int, actor: str, event: Event) -> dict[str, Any]:
    """One log line for `event`."""
    return {"step": step, "vtime_ns": vtime, "actor": actor, "event": event.NAME, **render_fields(event)}


def render_events(step: int, vtime: int, actor: str, events: Iterable[Event | int],
                  sent: tuple[LoggedMessage, ...], received: LoggedMessage | None) -> Iterator[dict[str, Any]]:
    """The log lines of one step: `msg.recv` first, then the step's events in order
    (an int stands for the `msg.send` of that message of `sent`)."""
    if received is not None:
        yield {"step": step, "vtime_ns": vtime, "actor": actor, "event": "msg.recv", **message_fields(received)}
    for ev in events:
        if isinstance(ev, int):
            yield {"step": step, "vtime_ns": vtime, "actor": actor, "event": "msg.send", **message_fields(sent[ev])}
        else:
            yield line(step, vtime, actor, ev)


__all__ = ["FORMAT", "EventLog", "render_events", "message_fields", "line", "order_keys"]
