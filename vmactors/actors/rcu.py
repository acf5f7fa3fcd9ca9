"""The RCU grace-period coordinator.

| message | effect |
|---|---|
| `call_rcu` (callback: free a VMA) | queued; if no grace period runs, one starts (`rcu.gp.start`): `qs_request` to cpu0 |
| `qs` from cpuI | I crossed off (`rcu.qs`); `qs_request` to the next CPU; after the last, the grace period ends (`rcu.gp.end`), its callbacks run (`vma.free`) and a new one starts if callbacks queued meanwhile |

A CPU answers `qs_request` at once unless it is inside a read-side critical section
(mid fault), in which case it answers when it leaves it.

The coordinator asks the CPUs one after another rather than all at once. A grace
period only needs every CPU to pass through a quiescent state after it started, so
both orders end it under the same condition; asking in turn keeps the requests and
answers of different CPUs from interleaving with each other, which would multiply the
states an exhaustive search visits without showing anything new.
"""

from __future__ import annotations

import attrs

from .messages import Effects, Message

NAME = "rcu"


@attrs.frozen(cache_hash=True)
class RcuState:
    #: CPUs yet to report a quiescent state in the current grace period (None: idle).
    waiting: frozenset[int] | None = None
    #: Callbacks (VMA ids to free) that the current grace period covers.
    current: tuple[str, ...] = ()
    #: Callbacks queued during the current grace period.
    next: tuple[str, ...] = ()
    #: Grace-period number; history, for the log only.
    gp: int = attrs.field(default=0, eq=False)


def _start_gp(state: RcuState, fx: Effects, ncpus: int) -> RcuState:
    gp = state.gp + 1
    fx.emit("rcu.gp.start", gp=gp)
    fx.send("cpu0", "qs_request")
    return RcuState(waiting=frozenset(range(ncpus)), current=state.next, next=(), gp=gp)


def handle(state: RcuState, fx: Effects, msg: Message, ncpus: int) -> RcuState:
    if msg.kind == "call_rcu":
        assert isinstance(msg.arg, str)
        state = attrs.evolve(state, next=state.next + (msg.arg,))
        if state.waiting is None:
            state = _start_gp(state, fx, ncpus)
        return state
    if msg.kind == "qs":
        cpu = int(msg.src[3:])
        assert state.waiting is not None
        fx.emit("rcu.qs", cpu=cpu, gp=state.gp)
        waiting = state.waiting - {cpu}
        if waiting:
            fx.send(f"cpu{min(waiting)}", "qs_request")
            return attrs.evolve(state, waiting=waiting)
        fx.emit("rcu.gp.end", gp=state.gp)
        for vma_id in state.current:
            vma = fx.world.vma(vma_id)
            fx.world = fx.world.set_vma(attrs.evolve(vma, state="freed"))
            fx.emit("vma.free", addr=vma.start, pages=vma.pages, vma=vma_id)
        state = RcuState(waiting=None, current=(), next=state.next, gp=state.gp)
        if state.next:
            state = _start_gp(state, fx, ncpus)
        return state
    raise ValueError(f"rcu cannot handle {msg.kind!r}")


def waiting_for(state: RcuState) -> str | None:
    if state.waiting is None:
        return None
    return f"quiescent states from {', '.join(f'cpu{c}' for c in sorted(state.waiting))} (grace period {state.gp})"
