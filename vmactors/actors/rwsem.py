"""The `mmap_sem` rwsem as an actor (also the writers' serialisation in every policy).

Not fair, on purpose: a request compatible with the holders is granted at once, and
when the lock frees up, each compatible waiter is a separate step the scheduler may
pick, so a waiting reader may be overtaken by a later writer and vice versa.

Transitions (holders -> on message -> effect):

| message | when | effect |
|---|---|---|
| `down_read` | no writer | grant, reader added |
| `down_read` | a writer holds it | queued (`lock.wait`) |
| `down_write` | no holder | grant |
| `down_write` | any holder | queued |
| `up_read` / `up_write` | | holder removed (`lock.release`) |
| `downgrade` | writer | writer becomes a reader |
| (own step) | a queued waiter is compatible | grant it |
"""

from __future__ import annotations

import attrs

from .messages import Effects, Message

NAME = "mmap_sem"


@attrs.frozen(cache_hash=True)
class RwsemState:
    readers: frozenset[int] = frozenset()
    writer: int | None = None
    #: Queued (cpu, mode) requests; a set, because the order is the scheduler's.
    waiters: frozenset[tuple[int, str]] = frozenset()

    def compatible(self, mode: str) -> bool:
        if mode == "read":
            return self.writer is None
        return self.writer is None and not self.readers

    def grantable(self) -> tuple[tuple[int, str], ...]:
        """Waiters that could be granted now, in a fixed order."""
        return tuple(sorted(w for w in self.waiters if self.compatible(w[1])))


def _cpu(name: str) -> int:
    return int(name[3:])


def _grant(state: RwsemState, fx: Effects, cpu: int, mode: str) -> RwsemState:
    fx.emit("lock.acquire", cpu=cpu, lock=NAME, mode=mode)
    fx.send(f"cpu{cpu}", "grant", arg=mode)
    if mode == "read":
        return attrs.evolve(state, readers=state.readers | {cpu})
    return attrs.evolve(state, writer=cpu)


def handle(state: RwsemState, fx: Effects, msg: Message | None, choice: int = 0) -> RwsemState:
    """Deliver `msg`, or (msg None) grant the `choice`-th grantable waiter."""
    if msg is None:
        cpu, mode = state.grantable()[choice]
        state = attrs.evolve(state, waiters=state.waiters - {(cpu, mode)})
        return _grant(state, fx, cpu, mode)
    cpu = _cpu(msg.src)
    if msg.kind in ("down_read", "down_write"):
        mode = "read" if msg.kind == "down_read" else "write"
        if state.compatible(mode):
            return _grant(state, fx, cpu, mode)
        fx.emit("lock.wait", cpu=cpu, lock=NAME, mode=mode)
        return attrs.evolve(state, waiters=state.waiters | {(cpu, mode)})
    if msg.kind == "up_read":
        fx.emit("lock.release", cpu=cpu, lock=NAME, mode="read")
        return attrs.evolve(state, readers=state.readers - {cpu})
    if msg.kind == "up_write":
        fx.emit("lock.release", cpu=cpu, lock=NAME, mode="write")
        return attrs.evolve(state, writer=None)
    if msg.kind == "downgrade":
        fx.emit("lock.release", cpu=cpu, lock=NAME, mode="write")
        fx.emit("lock.acquire", cpu=cpu, lock=NAME, mode="read")
        return attrs.evolve(state, writer=None, readers=state.readers | {cpu})
    raise ValueError(f"mmap_sem cannot handle {msg.kind!r}")


def waiting_for(state: RwsemState) -> str | None:
    return None
