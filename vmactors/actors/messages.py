"""Messages between actors, and the effects one actor step produces.

A message's identity for state hashing is (kind, src, dst, addr, pages, arg); its
`msg_id` and `cause` are history, kept for the log only.
"""

from __future__ import annotations

from typing import Any, Hashable

import attrs

from ..mm.world import World


@attrs.frozen(cache_hash=True)
class Message:
    """One message in flight. `arg` carries the kind-specific payload (hashable).

    >>> Message("flush", "cpu2", "shootdown", addr=0x7efffffff000, pages=1).kind
    'flush'
    """

    kind: str
    src: str
    dst: str
    addr: int | None = None
    pages: int | None = None
    arg: Hashable = None
    msg_id: int = attrs.field(default=0, eq=False)
    cause: int | None = attrs.field(default=None, eq=False)


#: An event before rendering: its name and its fields in schema order. `msg.send`
#: events carry the index of the message in the step's outbox instead of fields,
#: because message ids are given out when the step is committed.
Event = tuple[str, Any]


class Effects:
    """Collects what one actor step does: the world after it, messages, events.

    Handlers stay pure from the outside: a fresh `Effects` per step, nothing shared.
    """

    __slots__ = ("world", "actor", "out", "events", "notes")

    def __init__(self, world: World, actor: str) -> None:
        self.world = world
        self.actor = actor
        self.out: list[Message] = []
        self.events: list[Event] = []
        #: Facts for the invariant checkers that are not log events (e.g. a fault
        #: path that read a freed VMA).
        self.notes: list[tuple[str, Any]] = []

    def send(self, dst: str, kind: str, addr: int | None = None, pages: int | None = None, arg: Hashable = None) -> None:
        self.out.append(Message(kind, self.actor, dst, addr, pages, arg))
        self.events.append(("msg.send", len(self.out) - 1))

    def emit(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    def note(self, what: str, detail: Any) -> None:
        self.notes.append((what, detail))
