"""The `mmap_sem` rwsem actor, driven by hand-made messages (no scheduler, no Trio)."""

from __future__ import annotations

from typing import Any

import pytest

from vmactors.actors.base import Stepped, step_actor
from vmactors.actors.messages import Downgrade, DownRead, DownWrite, Flush, Grant, Message, UpRead, UpWrite
from vmactors.actors.rwsem import Rwsem, RwLock, RwsemState
from vmactors.ids import MM0, cpu
from vmactors.log.schema import render_fields
from vmactors.mm.world import World

RWSEM = Rwsem()


def deliver(state: RwsemState, msg: Message, c: int) -> tuple[RwsemState, Stepped]:
    out = step_actor(RWSEM, state, World.empty(), msg, src=cpu(c))
    return out.state, out


def grant(state: RwsemState, choice: int) -> tuple[RwsemState, Stepped]:
    out = step_actor(RWSEM, state, World.empty(), choice=choice)
    return out.state, out


def grants(out: Stepped) -> list[tuple[str, str]]:
    return [(dst.name, m.mode) for dst, m in out.sent if isinstance(m, Grant)]


def events(out: Stepped) -> list[tuple[str, dict[str, Any]]]:
    return [(e.NAME, render_fields(e)) for e in out.events]


def test_readers_share_and_are_granted_at_once() -> None:
    s, fx = deliver(RWSEM.initial(), DownRead(), 0)
    assert grants(fx) == [("cpu0", "read")]
    assert events(fx) == [("lock.acquire", {"cpu": 0, "lock": "mmap_sem", "mode": "read"})]
    s, fx = deliver(s, DownRead(), 1)
    assert grants(fx) == [("cpu1", "read")]
    assert s.readers == {0, 1} and s.writer is None and not s.waiters


def test_a_writer_is_granted_only_when_nobody_holds_it() -> None:
    s, fx = deliver(RWSEM.initial(), DownWrite(), 2)
    assert grants(fx) == [("cpu2", "write")] and s.writer == 2
    s, fx = deliver(s, DownRead(), 0)
    assert grants(fx) == [] and events(fx) == [("lock.wait", {"cpu": 0, "lock": "mmap_sem", "mode": "read"})]
    s, fx = deliver(s, DownWrite(), 1)
    assert grants(fx) == [] and s.waiters == {(0, "read"), (1, "write")}
    # While the writer holds it, nothing can be granted.
    assert s.grantable() == ()


def test_a_writer_waits_for_readers() -> None:
    s, _ = deliver(RWSEM.initial(), DownRead(), 0)
    s, fx = deliver(s, DownWrite(), 1)
    assert grants(fx) == [] and s.waiters == {(1, "write")}
    assert s.grantable() == ()
    s, fx = deliver(s, UpRead(), 0)
    assert events(fx) == [("lock.release", {"cpu": 0, "lock": "mmap_sem", "mode": "read"})]
    assert grants(fx) == []  # the grant is a separate step the scheduler chooses
    assert s.grantable() == ((MM0, 1, "write"),)
    assert RWSEM.own_steps(s) == 1
    s, fx = grant(s, 0)
    assert grants(fx) == [("cpu1", "write")] and s.writer == 1 and not s.waiters


def test_unfair_either_waiter_may_go_first() -> None:
    """A waiting reader may be overtaken by a later writer and vice versa: after the
    writer releases, each compatible waiter is its own choice."""
    s, _ = deliver(RWSEM.initial(), DownWrite(), 2)
    s, _ = deliver(s, DownRead(), 0)
    s, _ = deliver(s, DownWrite(), 1)
    s, _ = deliver(s, UpWrite(), 2)
    assert s.writer is None
    assert s.grantable() == ((MM0, 0, "read"), (MM0, 1, "write"))

    reader_first, fx = grant(s, 0)
    assert grants(fx) == [("cpu0", "read")]
    assert reader_first.grantable() == ()  # the writer now waits for the reader

    writer_first, fx = grant(s, 1)
    assert grants(fx) == [("cpu1", "write")]
    assert writer_first.grantable() == ()  # the reader now waits for the writer


def test_several_readers_may_be_granted_one_by_one() -> None:
    s, _ = deliver(RWSEM.initial(), DownWrite(), 2)
    s, _ = deliver(s, DownRead(), 0)
    s, _ = deliver(s, DownRead(), 1)
    s, _ = deliver(s, UpWrite(), 2)
    s, _ = grant(s, 1)
    assert s.readers == {1}
    assert s.grantable() == ((MM0, 0, "read"),)
    s, fx = grant(s, 0)
    assert grants(fx) == [("cpu0", "read")] and s.readers == {0, 1}


def test_downgrade_turns_the_writer_into_a_reader() -> None:
    s, _ = deliver(RWSEM.initial(), DownWrite(), 1)
    s, _ = deliver(s, DownRead(), 0)
    s, _ = deliver(s, DownWrite(), 2)
    s, fx = deliver(s, Downgrade(), 1)
    assert events(fx) == [
        ("lock.release", {"cpu": 1, "lock": "mmap_sem", "mode": "write"}),
        ("lock.acquire", {"cpu": 1, "lock": "mmap_sem", "mode": "read"}),
    ]
    assert s.writer is None and s.readers == {1}
    # Readers may come in now; the writer still waits.
    assert s.grantable() == ((MM0, 0, "read"),)
    s, fx = deliver(s, DownRead(), 3)
    assert grants(fx) == [("cpu3", "read")]


def test_the_handler_is_pure() -> None:
    s0 = RWSEM.initial()
    assert s0 == RwsemState()
    s1, _ = deliver(s0, DownWrite(), 0)
    assert s0 == RwsemState() and s1 != s0
    assert hash(s1) == hash(RwsemState(locks=(RwLock(writer=0),)))


def test_an_unknown_message_is_refused() -> None:
    # The new core refuses a message of the wrong kind with TypeError (was ValueError).
    with pytest.raises(TypeError, match="flush"):
        deliver(RWSEM.initial(), Flush(addr=0x7EFFFFFFE000, pages=1), 0)
