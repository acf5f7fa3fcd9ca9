"""The timed scheduler: steps run in the order of their virtual start (discrete-event).

A step's virtual start is when its actor is free and the message it takes has arrived
(`max(actor clock, sent_at)`, `vmactors.system.clock`). The scheduler takes the step
with the earliest start; ties go by actor order (cpu0, cpu1, …, then tree,
shootdown, rcu, mmap_sem); within one actor, to the step that became ready first
(a message that arrived while the actor was busy goes before the actor's next own
step, as an interrupt is taken at the next instruction), then to the order the step
relation lists them. So a run is a function of the scenario, the policy and the costs.

One rule more, for the rwsem: it grants in arrival order, as Linux's rwsem queues
readers behind a waiting writer. The model's rwsem grants any compatible request at
once and leaves the order of waiters to the scheduler (so exploration sees every
order); this scheduler chooses Linux's: while the rwsem has waiters, `down_read` and
`down_write` requests stay on their channels, and the waiter queued first is granted
first (the readers behind it next, one by one).

`step_key` is that order; `TimedStrategy` applies it to a `Run` (so a timed run can be
logged and replayed), and `vmactors.perf.runner` applies it incrementally for speed;
a test checks the two take the same steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..actors.messages import Envelope
from ..actors.rwsem import RwsemState
from ..ids import MMAP_SEM
from ..system.machine import Machine
from ..system.state import Step, System

#: Request kinds the rwsem's queue holds back while it has waiters.
HELD_BACK = frozenset({"down_read", "down_write"})

#: (virtual start, actor slot, ready time, index among the actor's steps).
Key = tuple[int, int, int, int]


class RwsemQueue:
    """The arrival order of the rwsem's waiters (what the model's rwsem leaves out)."""

    def __init__(self) -> None:
        self._order: dict[tuple[int, int, str], int] = {}
        self._seq = 0

    def observe(self, state: RwsemState) -> None:
        """Note waiters that appeared since the last look (each step adds at most one)."""
        now: set[tuple[int, int, str]] = {(mm, c, m) for mm, lock in enumerate(state.locks) for c, m in lock.waiters}
        for w in sorted(now - self._order.keys()):
            self._order[w] = self._seq
            self._seq += 1
        for w in [w for w in self._order if w not in now]:
            del self._order[w]

    def holds_back(self, env: Envelope, state: RwsemState) -> bool:
        """Whether a lock request waits on its channel: its lock has waiters."""
        if env.msg.KIND not in HELD_BACK:
            return False
        mm = getattr(env.msg, "mm", 0)
        return bool(state.locks[mm].waiters)

    def grants(self, state: RwsemState) -> list[int]:
        """The rwsem's own steps (grants) that may go now: for each lock, its first
        queued waiter, if it can be granted."""
        grantable = state.grantable()
        out = []
        for mm, lock in enumerate(state.locks):
            if not lock.waiters:
                continue
            first = min(((mm, c, m) for c, m in lock.waiters), key=lambda w: self._order.get(w, -1))
            for i, g in enumerate(grantable):
                if g == first:
                    out.append(i)
        return sorted(out)


def start_of(clock: int, env: Envelope | None) -> int:
    """A step's virtual start: its actor's clock, or when its message arrived if later."""
    return clock if env is None else max(clock, env.sent_at)


class TimedStrategy:
    """The timed scheduler as a `Strategy` for `vmactors.sim.run.Run`: call `bind`
    with the run's machine and a way to read its current system before running."""

    name = "timed"

    def __init__(self) -> None:
        self._machine: Machine | None = None
        self._system: Callable[[], System] | None = None
        self._queue = RwsemQueue()

    def bind(self, machine: Machine, system: Callable[[], System]) -> "TimedStrategy":
        self._machine, self._system = machine, system
        return self

    def choose(self, steps: Sequence[Step], step_no: int) -> int:
        assert self._machine is not None and self._system is not None, "bind() the strategy to its run first"
        machine, system = self._machine, self._system()
        rw_slot = machine.slot[MMAP_SEM]
        rw_state = system.actors[rw_slot]
        assert isinstance(rw_state, RwsemState)
        self._queue.observe(rw_state)
        grants = self._queue.grants(rw_state)
        best: tuple[Key, int] | None = None
        seen: dict[int, int] = {}
        for i, step in enumerate(steps):
            slot = machine.slot[step.actor]
            idx = seen.get(slot, 0)
            seen[slot] = idx + 1
            env = machine.head(system, step)
            if slot == rw_slot and (self._queue.holds_back(env, rw_state) if env is not None
                                    else step.choice not in grants):
                continue
            clock = system.clocks[slot]
            key = (start_of(clock, env), slot, clock if env is None else env.sent_at, idx)
            if best is None or key < best[0]:
                best = (key, i)
        if best is None:
            raise RuntimeError("the timed scheduler found no step it may take (the rwsem's queue holds all back)")
        return best[1]


__all__ = ["TimedStrategy", "RwsemQueue", "start_of", "HELD_BACK", "Key"]
