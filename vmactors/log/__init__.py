"""The structured log: JSON Lines through structlog, keys in a fixed order (docs/log-schema.md).

Events stay tuples until a log is actually written; `render_step` turns one step's
events into dicts only then.
"""

from __future__ import annotations

from typing import IO, Any, Iterable, Iterator, Mapping, MutableMapping

import attrs
import orjson
import structlog

from ..actors.messages import Message

FORMAT = 1
HEAD = ("step", "vtime_ns", "actor", "event", "cpu", "addr", "pages", "frame", "vma",
        "msg_id", "src", "dst", "kind", "cause")


def order_keys(event_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The schema's head keys first, the rest as given."""
    out = {k: event_dict[k] for k in HEAD if k in event_dict}
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


def message_fields(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cpu = m.src if m.src.startswith("cpu") else m.dst if m.dst.startswith("cpu") else None
    if cpu is not None:
        out["cpu"] = int(cpu[3:])
    if m.addr is not None:
        out["addr"] = m.addr
        out["pages"] = m.pages
    out.update(msg_id=m.msg_id, src=m.src, dst=m.dst, kind=m.kind, cause=m.cause)
    if m.arg is not None and m.arg != ():
        out["arg"] = m.arg
    return out


def render_events(step: int, vtime: int, actor: str, events: Iterable[tuple[str, Any]],
                  sent: tuple[Message, ...], received: Message | None) -> Iterator[dict[str, Any]]:
    """The log lines of one step: `msg.recv` first, then the step's events in order."""
    if received is not None:
        yield {"step": step, "vtime_ns": vtime, "actor": actor, "event": "msg.recv", **message_fields(received)}
    for name, fields in events:
        if name == "msg.send":
            yield {"step": step, "vtime_ns": vtime, "actor": actor, "event": name, **message_fields(sent[fields])}
        else:
            yield {"step": step, "vtime_ns": vtime, "actor": actor, "event": name,
                   **{k: v for k, v in fields.items() if v is not None or k == "result"}}
