"""Which delivery answers which request, from the messages' `cause` links.

Every message names the message whose handling sent it (`cause`). A message an actor
sends to X is a *reply* when it handles a message from X (an ack to an IPI, a quiescent
state to an RCU request), or when X has a request to it still unanswered (the grant the
rwsem sends a queued reader when the writer's up_write lets it in: caused by the
up_write, yet the answer to the reader's down_read); anything else is a *request*. A delivery to actor A *answers* A's request R when R is the nearest request
of A up the delivery's cause chain: the flush-done a CPU receives answers the flush it
asked for, through the IPIs and acks of other CPUs in between. Replies are skipped on
the way up, so a CPU that acked an IPI is not taken to wait for whatever the shootdown's
completion later set off.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

import attrs

from vmactors.inspect.labels import Event
from vmactors.log.schema import MsgRecv, MsgSend


@attrs.frozen
class Sent:
    src: str
    dst: str
    step: int
    cause: Any
    reply: bool


class Messages:
    """The messages seen so far, by id, and which request each reply answers."""

    def __init__(self) -> None:
        self.sent: dict[Any, Sent] = {}
        self.answers: dict[Any, Any] = {}  # reply id -> id of the request it answers
        # (receiver, sender) -> ids of requests the receiver got from the sender and
        # has not answered yet, oldest first
        self.unanswered: dict[tuple[str, str], deque[Any]] = {}

    def observe(self, ev: Event) -> None:
        """Record a `msg.send` or `msg.recv` (other events are ignored)."""
        name = ev.get("event")
        if "msg_id" not in ev:
            return
        msg_id = ev["msg_id"]
        if name == MsgRecv.NAME:
            sent = self.sent.get(msg_id)
            if sent is not None and not sent.reply:
                self.unanswered.setdefault((sent.dst, sent.src), deque()).append(msg_id)
            return
        if name != MsgSend.NAME:
            return
        # Interned: a log names a handful of actors, and a long one sends hundreds of
        # thousands of messages, each kept here (inspect's memory is mostly this).
        src = sys.intern(str(ev.get("src", ev.get("actor"))))
        dst = sys.intern(str(ev.get("dst")))
        cause = ev.get("cause")
        parent = self.sent.get(cause) if cause is not None else None
        owed = self.unanswered.get((src, dst))
        answered = None
        if parent is not None and parent.src == dst and parent.dst == src:
            answered = cause
            if owed and cause in owed:
                owed.remove(cause)
        elif owed:
            answered = owed.popleft()
        if answered is not None:
            self.answers[msg_id] = answered
        self.sent[msg_id] = Sent(src, dst, ev["step"], cause, answered is not None)

    def request_answered(self, msg_id: Any, actor: str, limit: int = 256) -> Sent | None:
        """The request of `actor` that the delivery of `msg_id` to it answers, or None:
        the request the message replies to, else the nearest request of `actor` up the
        cause chain."""
        direct = self.sent.get(self.answers.get(msg_id))
        if direct is not None and direct.src == actor and not direct.reply:
            return direct
        seen = {msg_id}
        cur = self.sent.get(msg_id)
        while cur is not None and cur.cause is not None and cur.cause not in seen and len(seen) < limit:
            seen.add(cur.cause)
            cur = self.sent.get(cur.cause)
            if cur is not None and cur.src == actor and not cur.reply:
                return cur
        return None
