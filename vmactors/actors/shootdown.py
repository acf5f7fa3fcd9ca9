"""The TLB-shootdown coordinator: IPIs to every other CPU, acks, completion.

| message | effect |
|---|---|
| `flush` from cpuI (range) | an `ipi` to every CPU but I (`ipi.send` each); with no other CPU, `flush_done` at once |
| `ack` from cpuJ | J crossed off; after the last ack, `flush_done` to cpuI |
"""

from __future__ import annotations

from typing import cast

import attrs

from .messages import Effects, Message

NAME = "shootdown"


@attrs.frozen(cache_hash=True)
class ShootdownState:
    #: In-flight flushes: ((initiator, addr, pages), CPUs yet to ack).
    pending: tuple[tuple[tuple[int, int, int], frozenset[int]], ...] = ()


def handle(state: ShootdownState, fx: Effects, msg: Message, ncpus: int) -> ShootdownState:
    assert msg.addr is not None and msg.pages is not None
    if msg.kind == "flush":
        initiator = int(msg.src[3:])
        token = (initiator, msg.addr, msg.pages)
        others = frozenset(c for c in range(ncpus) if c != initiator)
        if not others:
            fx.send(msg.src, "flush_done", msg.addr, msg.pages)
            return state
        for c in sorted(others):
            fx.send(f"cpu{c}", "ipi", msg.addr, msg.pages, arg=token)
            fx.emit("ipi.send", cpu=c, addr=msg.addr, pages=msg.pages)
        return attrs.evolve(state, pending=state.pending + ((token, others),))
    if msg.kind == "ack":
        token = cast(tuple[int, int, int], msg.arg)
        acker = int(msg.src[3:])
        pending = []
        for tok, waiting in state.pending:
            if tok == token:
                waiting = waiting - {acker}
                if not waiting:
                    fx.send(f"cpu{tok[0]}", "flush_done", tok[1], tok[2])
                    continue
            pending.append((tok, waiting))
        return attrs.evolve(state, pending=tuple(pending))
    raise ValueError(f"shootdown cannot handle {msg.kind!r}")


def waiting_for(state: ShootdownState) -> str | None:
    if not state.pending:
        return None
    return "; ".join(
        f"acks from {', '.join(f'cpu{c}' for c in sorted(w))} for cpu{tok[0]}'s flush" for tok, w in state.pending
    )
