"""The RCU grace-period coordinator.

| message | effect |
|---|---|
| `call_rcu` (a VMA to free) | queued; if no grace period runs, one starts (`rcu.gp.start`): a `qs_request` to every CPU |
| `qs` from cpuI | I crossed off (`rcu.qs`); after the last, the grace period ends (`rcu.gp.end`), its callbacks run (`vma.free`) and a new one starts if callbacks queued meanwhile |

A CPU answers `qs_request` at once unless it is inside a read-side critical section
(mid fault), in which case it answers when it leaves it.

Every CPU is asked at once, as in Linux each CPU reports its own quiescent states:
no CPU is asked before another, so the coordinator treats CPUs alike, which is what
lets an exhaustive search merge states that differ only by swapping two CPUs running
the same thread (`vmactors.explore.symmetry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

from ..ids import RCU, ActorId, MmId, cpu
from ..log.schema import RcuGpEnd, RcuGpStart, RcuQs, VmaFree
from ..mm.world import World
from . import footprint as fp
from .base import Actor
from .effects import Effects
from .footprint import EMPTY, Footprint
from .messages import CallRcu, Envelope, Message, Qs, QsRequest

NAME = "rcu"

#: A callback: free VMA `id` of address space `mm`.
Callback = tuple[MmId, str]


@attrs.frozen(cache_hash=True)
class RcuState:
    #: CPUs yet to report a quiescent state in the current grace period (None: idle).
    waiting: frozenset[int] | None = None
    #: Callbacks that the current grace period covers.
    current: tuple[Callback, ...] = ()
    #: Callbacks queued during the current grace period.
    next: tuple[Callback, ...] = ()
    #: Grace-period number; history, for the log only.
    gp: int = attrs.field(default=0, eq=False)


@final
class Rcu(Actor[RcuState]):
    id: ActorId = RCU

    def __init__(self, ncpus: int) -> None:
        self.ncpus = ncpus

    def initial(self) -> RcuState:
        return RcuState()

    def _start_gp(self, state: RcuState, fx: Effects) -> RcuState:
        gp = state.gp + 1
        fx.emit(RcuGpStart(gp=gp))
        for c in range(self.ncpus):
            fx.send(cpu(c), QsRequest())
        return RcuState(waiting=frozenset(range(self.ncpus)), current=state.next, next=(), gp=gp)

    def handle(self, state: RcuState, fx: Effects, env: Envelope | None, choice: int) -> RcuState:
        assert env is not None
        msg = env.msg
        match msg:
            case CallRcu():
                state = RcuState(state.waiting, state.current, state.next + ((msg.mm, msg.vma),), state.gp)
                if state.waiting is None:
                    state = self._start_gp(state, fx)
                return state
            case Qs():
                who = env.src.index
                assert state.waiting is not None
                fx.emit(RcuQs(cpu=who, gp=state.gp))
                waiting = state.waiting - {who}
                if waiting:
                    return RcuState(waiting, state.current, state.next, state.gp)
                fx.emit(RcuGpEnd(gp=state.gp))
                for mm, vma_id in state.current:
                    vma = fx.vma(mm, vma_id)
                    fx.set_vma(mm, attrs.evolve(vma, state="freed"))
                    fx.emit(VmaFree(addr=vma.start, pages=vma.pages, vma=vma_id))
                state = RcuState(waiting=None, current=(), next=state.next, gp=state.gp)
                if state.next:
                    state = self._start_gp(state, fx)
                return state
        raise TypeError(f"rcu cannot handle {msg.KIND!r}")

    def footprint(self, state: RcuState, world: World, env: Envelope | None, choice: int) -> Footprint:
        # Only the end of a grace period touches the world: it frees the VMAs it covers.
        if env is not None and isinstance(env.msg, Qs) and state.waiting == frozenset({env.src.index}):
            return Footprint.of(writes=[fp.vma(mm, vid) for mm, vid in state.current])
        return EMPTY

    def commutes(self, state: RcuState, msg: Message, kind: str) -> bool:
        """Quiescent states from two CPUs cross off two CPUs, whichever comes first;
        a callback queued before or after the grace period's last quiescent state
        is covered by the next grace period either way."""
        return isinstance(msg, Qs) and kind in (Qs.KIND, CallRcu.KIND)

    def rename_cpus(self, state: RcuState, ren: Mapping[int, int]) -> RcuState:
        if state.waiting is None:
            return state
        return RcuState(frozenset(ren[c] for c in state.waiting), state.current, state.next, state.gp)

    def waiting_for(self, state: RcuState) -> str | None:
        if state.waiting is None:
            return None
        return (f"quiescent states from {', '.join(f'cpu{c}' for c in sorted(state.waiting))} "
                f"(grace period {state.gp})")


__all__ = ["Rcu", "RcuState", "NAME"]
