"""The TLB-shootdown coordinator: IPIs to every other CPU, acks, completion.

| message | effect |
|---|---|
| `flush` from cpuI (range, mm) | an `ipi` to every CPU of that address space but I (its mm_cpumask; `ipi.send` each); with no other CPU, `flush_done` at once |
| `ack` from cpuJ | J crossed off; after the last ack, `flush_done` to cpuI |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

from ..ids import MM0, SHOOTDOWN, ActorId, MmId, cpu
from ..log.schema import IpiSend
from ..mm.world import World
from .base import Actor
from .effects import Effects
from .footprint import EMPTY, Footprint
from .messages import Ack, Envelope, Flush, FlushDone, Ipi, Message, ShootdownToken

NAME = "shootdown"


@attrs.frozen(cache_hash=True)
class ShootdownState:
    #: In-flight flushes: (token, CPUs yet to ack).
    pending: tuple[tuple[ShootdownToken, frozenset[int]], ...] = ()


@final
class Shootdown(Actor[ShootdownState]):
    """The coordinator of a system with `ncpus` CPUs; `mms[i]` is the address space CPU
    i runs (all the scenario's own without a fork)."""

    id: ActorId = SHOOTDOWN

    def __init__(self, ncpus: int, mms: tuple[MmId, ...] | None = None) -> None:
        self.ncpus = ncpus
        self.mms: tuple[MmId, ...] = mms if mms is not None else (MM0,) * ncpus

    def initial(self) -> ShootdownState:
        return ShootdownState()

    def handle(self, state: ShootdownState, fx: Effects, env: Envelope | None, choice: int) -> ShootdownState:
        assert env is not None
        msg = env.msg
        match msg:
            case Flush():
                initiator = env.src.index
                token = ShootdownToken(initiator, msg.addr, msg.pages, msg.op)
                others = frozenset(c for c in range(self.ncpus) if c != initiator and self.mms[c] == msg.mm)
                if not others:
                    fx.send(env.src, FlushDone(addr=msg.addr, pages=msg.pages, op=msg.op))
                    return state
                for c in sorted(others):
                    fx.send(cpu(c), Ipi(addr=msg.addr, pages=msg.pages, token=token))
                    fx.emit(IpiSend(cpu=c, addr=msg.addr, pages=msg.pages))
                return ShootdownState(state.pending + ((token, others),))
            case Ack():
                acker = env.src.index
                pending = []
                for tok, waiting in state.pending:
                    if tok == msg.token:
                        waiting = waiting - {acker}
                        if not waiting:
                            fx.send(cpu(tok.initiator), FlushDone(addr=tok.addr, pages=tok.pages, op=tok.op))
                            continue
                    pending.append((tok, waiting))
                return ShootdownState(tuple(pending))
        raise TypeError(f"shootdown cannot handle {msg.KIND!r}")

    def footprint(self, state: ShootdownState, world: World, env: Envelope | None, choice: int) -> Footprint:
        return EMPTY

    def commutes(self, state: ShootdownState, msg: Message, kind: str) -> bool:
        """Acks cross CPUs off; after the last one of a flush, `flush_done` goes to
        its initiator. Two acks give the same state in either order unless they
        complete two flushes of the same initiator (whose `flush_done`s would swap)."""
        if not isinstance(msg, Ack) or kind != Ack.KIND:
            return False
        initiators = [tok.initiator for tok, _ in state.pending]
        return len(initiators) == len(set(initiators))

    def rename_cpus(self, state: ShootdownState, ren: Mapping[int, int]) -> ShootdownState:
        if not state.pending:
            return state
        return ShootdownState(tuple((tok.rename_cpus(ren), frozenset(ren[c] for c in waiting))
                                    for tok, waiting in state.pending))

    def waiting_for(self, state: ShootdownState) -> str | None:
        if not state.pending:
            return None
        return "; ".join(f"acks from {', '.join(f'cpu{c}' for c in sorted(w))} for cpu{tok.initiator}'s flush"
                         for tok, w in state.pending)


__all__ = ["Shootdown", "ShootdownState", "NAME"]
