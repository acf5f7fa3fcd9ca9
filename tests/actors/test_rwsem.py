"""The `mmap_sem` rwsem actor, driven by hand-made messages (no scheduler, no Trio)."""

from __future__ import annotations

import pytest

from vmactors.actors import rwsem
from vmactors.actors.messages import Effects, Message
from vmactors.actors.rwsem import RwsemState
from vmactors.mm.world import World


def deliver(state: RwsemState, kind: str, cpu: int) -> tuple[RwsemState, Effects]:
    fx = Effects(World(), "mmap_sem")
    return rwsem.handle(state, fx, Message(kind, f"cpu{cpu}", "mmap_sem")), fx


def grant(state: RwsemState, choice: int) -> tuple[RwsemState, Effects]:
    fx = Effects(World(), "mmap_sem")
    return rwsem.handle(state, fx, None, choice), fx


def grants(fx: Effects) -> list[tuple[str, object]]:
    return [(m.dst, m.arg) for m in fx.out if m.kind == "grant"]


def events(fx: Effects) -> list[tuple[str, dict]]:
    return [(n, f) for n, f in fx.events if n != "msg.send"]


def test_readers_share_and_are_granted_at_once() -> None:
    s, fx = deliver(RwsemState(), "down_read", 0)
    assert grants(fx) == [("cpu0", "read")]
    assert events(fx) == [("lock.acquire", {"cpu": 0, "lock": "mmap_sem", "mode": "read"})]
    s, fx = deliver(s, "down_read", 1)
    assert grants(fx) == [("cpu1", "read")]
    assert s.readers == {0, 1} and s.writer is None and not s.waiters


def test_a_writer_is_granted_only_when_nobody_holds_it() -> None:
    s, fx = deliver(RwsemState(), "down_write", 2)
    assert grants(fx) == [("cpu2", "write")] and s.writer == 2
    s, fx = deliver(s, "down_read", 0)
    assert grants(fx) == [] and events(fx) == [("lock.wait", {"cpu": 0, "lock": "mmap_sem", "mode": "read"})]
    s, fx = deliver(s, "down_write", 1)
    assert grants(fx) == [] and s.waiters == {(0, "read"), (1, "write")}
    # While the writer holds it, nothing can be granted.
    assert s.grantable() == ()


def test_a_writer_waits_for_readers() -> None:
    s, _ = deliver(RwsemState(), "down_read", 0)
    s, fx = deliver(s, "down_write", 1)
    assert grants(fx) == [] and s.waiters == {(1, "write")}
    assert s.grantable() == ()
    s, fx = deliver(s, "up_read", 0)
    assert events(fx) == [("lock.release", {"cpu": 0, "lock": "mmap_sem", "mode": "read"})]
    assert grants(fx) == []  # the grant is a separate step the scheduler chooses
    assert s.grantable() == ((1, "write"),)
    s, fx = grant(s, 0)
    assert grants(fx) == [("cpu1", "write")] and s.writer == 1 and not s.waiters


def test_unfair_either_waiter_may_go_first() -> None:
    """A waiting reader may be overtaken by a later writer and vice versa: after the
    writer releases, each compatible waiter is its own choice."""
    s, _ = deliver(RwsemState(), "down_write", 2)
    s, _ = deliver(s, "down_read", 0)
    s, _ = deliver(s, "down_write", 1)
    s, _ = deliver(s, "up_write", 2)
    assert s.writer is None
    assert s.grantable() == ((0, "read"), (1, "write"))

    reader_first, fx = grant(s, 0)
    assert grants(fx) == [("cpu0", "read")]
    assert reader_first.grantable() == ()  # the writer now waits for the reader

    writer_first, fx = grant(s, 1)
    assert grants(fx) == [("cpu1", "write")]
    assert writer_first.grantable() == ()  # the reader now waits for the writer


def test_several_readers_may_be_granted_one_by_one() -> None:
    s, _ = deliver(RwsemState(), "down_write", 2)
    s, _ = deliver(s, "down_read", 0)
    s, _ = deliver(s, "down_read", 1)
    s, _ = deliver(s, "up_write", 2)
    s, _ = grant(s, 1)
    assert s.readers == {1}
    assert s.grantable() == ((0, "read"),)
    s, fx = grant(s, 0)
    assert grants(fx) == [("cpu0", "read")] and s.readers == {0, 1}


def test_downgrade_turns_the_writer_into_a_reader() -> None:
    s, _ = deliver(RwsemState(), "down_write", 1)
    s, _ = deliver(s, "down_read", 0)
    s, _ = deliver(s, "down_write", 2)
    s, fx = deliver(s, "downgrade", 1)
    assert events(fx) == [
        ("lock.release", {"cpu": 1, "lock": "mmap_sem", "mode": "write"}),
        ("lock.acquire", {"cpu": 1, "lock": "mmap_sem", "mode": "read"}),
    ]
    assert s.writer is None and s.readers == {1}
    # Readers may come in now; the writer still waits.
    assert s.grantable() == ((0, "read"),)
    s, fx = deliver(s, "down_read", 3)
    assert grants(fx) == [("cpu3", "read")]


def test_the_handler_is_pure() -> None:
    s0 = RwsemState()
    s1, _ = deliver(s0, "down_write", 0)
    assert s0 == RwsemState() and s1 != s0
    assert hash(s1) == hash(RwsemState(writer=0))


def test_an_unknown_message_is_refused() -> None:
    with pytest.raises(ValueError):
        deliver(RwsemState(), "flush", 0)
