"""The cost model: virtual nanoseconds per step kind (DESIGN §9).

Each actor has its own clock; a step starts when both the actor and the message it
handles are ready, and lasts the sum of the costs of what it did. So virtual time
models parallel CPUs, and fault throughput against CPU count can be compared across
policies. Figures are rough x86 orders of magnitude, not measurements.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..log.schema import Event

#: event name -> cost in virtual ns.
COSTS: dict[str, int] = {
    "mem.load": 1,          # TLB hit and cache hit
    "mem.store": 1,
    "tlb.fill": 30,         # page walk
    "fault.begin": 400,     # exception entry and exit
    "frame.alloc": 250,     # page allocation and zeroing
    "pte.install": 50,
    "pte.zap": 40,
    "pte.protect": 40,
    "tlb.flush": 100,
    "ipi.send": 1500,       # IPI round trip, paid by the coordinator per target
    "lock.acquire": 100,    # lock hand-off (cache-line transfer)
    "tree.store": 200,
    "rcu.gp.end": 20000,    # a grace period
    "frame.free": 80,
    "vma.free": 80,
}
#: What any step costs at least (message handling, bookkeeping).
BASE_NS = 20


def cost_of(events: Iterable[Event | int]) -> int:
    """The virtual duration of a step that logged `events` (ints stand for sent messages)."""
    total = BASE_NS
    for ev in events:
        if not isinstance(ev, int):
            total += COSTS.get(ev.NAME, 0)
    return total
