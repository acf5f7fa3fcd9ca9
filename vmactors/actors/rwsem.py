"""The `mmap_sem` rwsem as an actor (also the writers' serialisation in every policy).

One lock per address space. Not fair, on purpose: a request compatible with the
holders is granted at once, and when the lock frees up, each compatible waiter is a
separate own step the scheduler may pick, so a waiting reader may be overtaken by a
later writer and vice versa.

| message | when | effect |
|---|---|---|
| `down_read` | no writer | grant, reader added |
| `down_read` | a writer holds it | queued (`lock.wait`) |
| `down_write` | no holder | grant |
| `down_write` | any holder | queued |
| `up_read` / `up_write` | | holder removed (`lock.release`) |
| `downgrade` | writer | writer becomes a reader |
| `down_read_trylock` | no writer, nobody queued | grant, reader added; `trylock_done` ok |
| `down_read_trylock` | otherwise | `trylock_done` not ok (nothing queued) |
| (own step) | a queued waiter is compatible | grant it |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, final

import attrs

from ..ids import MM0, MMAP_SEM, ActorId, MmId, cpu
from ..log.schema import LockAcquire, LockRelease, LockWait
from ..mm.world import World
from .base import Actor
from .effects import Effects
from .footprint import EMPTY, Footprint
from .messages import (
    Downgrade, DownRead, DownReadTrylock, DownWrite, Envelope, Grant, Message, TrylockDone, UpRead, UpWrite,
)

NAME = "mmap_sem"
Mode = Literal["read", "write"]


@attrs.frozen(cache_hash=True)
class RwLock:
    """One address space's rwsem."""

    readers: frozenset[int] = frozenset()
    writer: int | None = None
    #: Queued (cpu, mode) requests; a set, because the order is the scheduler's.
    waiters: frozenset[tuple[int, Mode]] = frozenset()

    def compatible(self, mode: Mode) -> bool:
        if mode == "read":
            return self.writer is None
        return self.writer is None and not self.readers

    def grantable(self) -> tuple[tuple[int, Mode], ...]:
        """Waiters that could be granted now, in a fixed order."""
        if not self.waiters:
            return ()
        return tuple(sorted(w for w in self.waiters if self.compatible(w[1])))

    def rename_cpus(self, ren: Mapping[int, int]) -> "RwLock":
        if not self.readers and self.writer is None and not self.waiters:
            return self
        return RwLock(frozenset(ren[c] for c in self.readers), None if self.writer is None else ren[self.writer],
                      frozenset((ren[c], m) for c, m in self.waiters))


@attrs.frozen(cache_hash=True)
class RwsemState:
    #: One lock per address space, by `MmId`.
    locks: tuple[RwLock, ...] = (RwLock(),)

    def grantable(self) -> tuple[tuple[MmId, int, Mode], ...]:
        """Every waiter that could be granted now: (mm, cpu, mode), in a fixed order."""
        return tuple((MmId(mm), c, m) for mm, lock in enumerate(self.locks) for c, m in lock.grantable())

    def lock(self, mm: MmId) -> RwLock:
        return self.locks[mm]

    def with_lock(self, mm: MmId, lock: RwLock) -> "RwsemState":
        return RwsemState(self.locks[:mm] + (lock,) + self.locks[mm + 1:])

    # The single address space's view (what every scenario without `fork` has).

    @property
    def readers(self) -> frozenset[int]:
        return self.locks[0].readers

    @property
    def writer(self) -> int | None:
        return self.locks[0].writer

    @property
    def waiters(self) -> frozenset[tuple[int, Mode]]:
        return self.locks[0].waiters


def _grant(lock: RwLock, fx: Effects, who: int, mode: Mode) -> RwLock:
    fx.emit(LockAcquire(cpu=who, lock=NAME, mode=mode))
    fx.send(cpu(who), Grant(mode=mode))
    if mode == "read":
        return RwLock(lock.readers | {who}, lock.writer, lock.waiters)
    return RwLock(lock.readers, who, lock.waiters)


def handle_request(lock: RwLock, fx: Effects, who: int,
                   msg: DownRead | DownWrite | UpRead | UpWrite | Downgrade | DownReadTrylock) -> RwLock:
    """One request of CPU `who` to its address space's lock."""
    match msg:
        case DownReadTrylock():
            # As the kernel's: it fails while a writer holds the lock or anyone waits.
            if lock.writer is None and not lock.waiters:
                fx.emit(LockAcquire(cpu=who, lock=NAME, mode="read"))
                fx.send(cpu(who), TrylockDone(ok=True))
                return RwLock(lock.readers | {who}, lock.writer, lock.waiters)
            fx.send(cpu(who), TrylockDone(ok=False))
            return lock
        case DownRead() | DownWrite():
            mode: Mode = "read" if isinstance(msg, DownRead) else "write"
            if lock.compatible(mode):
                return _grant(lock, fx, who, mode)
            fx.emit(LockWait(cpu=who, lock=NAME, mode=mode))
            return RwLock(lock.readers, lock.writer, lock.waiters | {(who, mode)})
        case UpRead():
            fx.emit(LockRelease(cpu=who, lock=NAME, mode="read"))
            return RwLock(lock.readers - {who}, lock.writer, lock.waiters)
        case UpWrite():
            fx.emit(LockRelease(cpu=who, lock=NAME, mode="write"))
            return RwLock(lock.readers, None, lock.waiters)
        case Downgrade():
            fx.emit(LockRelease(cpu=who, lock=NAME, mode="write"))
            fx.emit(LockAcquire(cpu=who, lock=NAME, mode="read"))
            return RwLock(lock.readers | {who}, None, lock.waiters)
    raise TypeError(f"mmap_sem cannot handle {msg!r}")  # pragma: no cover


@final
class Rwsem(Actor[RwsemState]):
    """The rwsem actor of a system with `mms` address spaces."""

    id: ActorId = MMAP_SEM

    def __init__(self, mms: int = 1) -> None:
        self.mms = mms

    def initial(self) -> RwsemState:
        return RwsemState(tuple(RwLock() for _ in range(self.mms)))

    def own_steps(self, state: RwsemState) -> int:
        return len(state.grantable())

    def handle(self, state: RwsemState, fx: Effects, env: Envelope | None, choice: int) -> RwsemState:
        if env is None:
            mm, who, mode = state.grantable()[choice]
            lock = state.lock(mm)
            lock = RwLock(lock.readers, lock.writer, lock.waiters - {(who, mode)})
            return state.with_lock(mm, _grant(lock, fx, who, mode))
        msg = env.msg
        if not isinstance(msg, (DownRead, DownWrite, UpRead, UpWrite, Downgrade, DownReadTrylock)):
            raise TypeError(f"mmap_sem cannot handle {msg.KIND!r}")
        assert env.src.is_cpu
        return state.with_lock(msg.mm, handle_request(state.lock(msg.mm), fx, env.src.index, msg))

    def commutes(self, state: RwsemState, msg: Message, kind: str) -> bool:
        """Readers' requests commute with each other: `down_read`, `up_read` and
        `down_read_trylock` of two CPUs give the same holders and waiters in either
        order (a waiting writer does not hold new readers back in this model, and a
        trylock fails only on a writer or waiters, which readers do not change)."""
        readers = (DownRead.KIND, UpRead.KIND, DownReadTrylock.KIND)
        return msg.KIND in readers and kind in readers and not (
            DownReadTrylock.KIND in (msg.KIND, kind) and state.lock(getattr(msg, "mm", MM0)).waiters)

    def rename_cpus(self, state: RwsemState, ren: Mapping[int, int]) -> RwsemState:
        locks = tuple(lock.rename_cpus(ren) for lock in state.locks)
        return state if all(a is b for a, b in zip(locks, state.locks)) else RwsemState(locks)

    def footprint(self, state: RwsemState, world: World, env: Envelope | None, choice: int) -> Footprint:
        return EMPTY  # the rwsem's state is its own

    def describe(self, state: RwsemState, choice: int) -> str:
        return f"mmap_sem grants waiter {choice}"

    def waiting_for(self, state: RwsemState) -> str | None:
        """Who holds each contended lock and who queues, for a deadlock report."""
        parts = []
        for lock in state.locks:
            if not lock.waiters:
                continue
            holders = [f"cpu{c} (read)" for c in sorted(lock.readers)]
            if lock.writer is not None:
                holders.append(f"cpu{lock.writer} (write)")
            parts.append(f"held by {', '.join(holders) or 'nobody'}; queued: "
                         + ", ".join(f"cpu{c} ({m})" for c, m in sorted(lock.waiters)))
        return "; ".join(parts) or None


__all__ = ["Rwsem", "RwsemState", "RwLock", "NAME", "handle_request"]
