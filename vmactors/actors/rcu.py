"""The RCU grace-period coordinator.

| message | effect |
|---|---|
| `call_rcu` (a VMA to free) | queued; if no grace period runs, one starts (`rcu.gp.start`): a `qs_request` to every CPU |
| `ma_free_rcu` (a replaced maple node) | the same; when it runs, the walks that still point to the node point to freed memory |
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
from ..log.schema import NodeFree, RcuGpEnd, RcuGpStart, RcuQs, VmaFree
from ..mm.world import Pin, World
from . import footprint as fp
from .base import Actor
from .effects import Effects
from .footprint import EMPTY, Footprint
from .messages import CallRcu, Envelope, MaFreeRcu, Message, Qs, QsRequest

NAME = "rcu"

#: A callback: free VMA `id` of address space `mm` (a string), or the maple node the
#: walks of the CPUs listed hold (a tuple of CPU numbers).
Callback = tuple[MmId, str | tuple[int, ...]]


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
            case CallRcu() | MaFreeRcu():
                what: str | tuple[int, ...] = msg.vma if isinstance(msg, CallRcu) else msg.cpus
                state = RcuState(state.waiting, state.current, state.next + ((msg.mm, what),), state.gp)
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
                for mm, what in state.current:
                    if isinstance(what, tuple):
                        self._free_node(fx, mm, what)
                        continue
                    vma = fx.vma(mm, what)
                    fx.set_vma(mm, attrs.evolve(vma, state="freed"))
                    fx.emit(VmaFree(addr=vma.start, pages=vma.pages, vma=what, mm=mm or None))
                state = RcuState(waiting=None, current=(), next=state.next, gp=state.gp)
                if state.next:
                    state = self._start_gp(state, fx)
                return state
        raise TypeError(f"rcu cannot handle {msg.KIND!r}")

    @staticmethod
    def _free_node(fx: Effects, mm: MmId, cpus: tuple[int, ...]) -> None:
        """mt_free_rcu: the node is freed; a walk that still points to it (its pin
        dead, not re-walked) now points to freed memory."""
        still = []
        for c in cpus:
            pin = fx.pin(mm, "node", c)
            if pin is not None and pin.state == "dead":
                fx.set_pin(mm, "node", c, Pin(pin.obj, "freed"))
                still.append(c)
        fx.emit(NodeFree(cpus=still, mm=mm or None))

    def footprint(self, state: RcuState, world: World, env: Envelope | None, choice: int) -> Footprint:
        # Only the end of a grace period touches the world: it frees the VMAs (and the
        # maple nodes) it covers.
        if env is not None and isinstance(env.msg, Qs) and state.waiting == frozenset({env.src.index}):
            return Footprint.of(writes=[fp.vma(mm, what) if isinstance(what, str) else fp.pin(mm, "node", c)
                                        for mm, what in state.current
                                        for c in ((0,) if isinstance(what, str) else what)])
        return EMPTY

    def commutes(self, state: RcuState, msg: Message, kind: str) -> bool:
        """Quiescent states from two CPUs cross off two CPUs, whichever comes first;
        a callback queued before or after the grace period's last quiescent state
        is covered by the next grace period either way."""
        return isinstance(msg, Qs) and kind in (Qs.KIND, CallRcu.KIND)

    def rename_cpus(self, state: RcuState, ren: Mapping[int, int]) -> RcuState:
        if state.waiting is None and not any(isinstance(what, tuple) for _, what in state.next):
            return state
        waiting = None if state.waiting is None else frozenset(ren[c] for c in state.waiting)
        return RcuState(waiting, _rename_callbacks(state.current, ren), _rename_callbacks(state.next, ren), state.gp)

    def waiting_for(self, state: RcuState) -> str | None:
        if state.waiting is None:
            return None
        return (f"quiescent states from {', '.join(f'cpu{c}' for c in sorted(state.waiting))} "
                f"(grace period {state.gp})")


def _rename_callbacks(callbacks: tuple[Callback, ...], ren: Mapping[int, int]) -> tuple[Callback, ...]:
    """A maple node's callback names the CPUs whose walks hold the node."""
    if not any(isinstance(what, tuple) for _, what in callbacks):
        return callbacks
    return tuple((mm, tuple(ren[c] for c in what) if isinstance(what, tuple) else what) for mm, what in callbacks)


__all__ = ["Rcu", "RcuState", "NAME"]
