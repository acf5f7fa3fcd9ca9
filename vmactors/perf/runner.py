"""One timed run, fast: the timed scheduler (`vmactors.perf.timed`) applied incrementally
to the pure actor steps, with no log and no invariant checks, and the measurements a
benchmark wants taken on the way.

It drives `Machine.actor_step` as the Trio runtime's actor tasks do (each actor's state
and clock, one FIFO channel per sender and receiver, the shared world), but keeps each
actor's earliest step in a heap, so choosing the next step costs O(log actors) rather
than a scan of every actor. `TimedStrategy` on a `Run` takes the same steps (tested).

Measured, for the CPUs that run the faulting threads:

- each fault's latency: from the start of the step that took the page fault to the
  end of the step that installed its PTE (`fault.begin` to `fault.end`); SIGSEGVs are
  counted apart;
- the span: until the last of those CPUs finished its last op; throughput = faults
  per virtual second of span;
- wait time, by lock: a CPU blocked on a message (a rwsem grant, a flush, a fence,
  readers draining) burns the time until it arrives; a CPU whose step moved a cache
  line (`vmactors.system.clock`) spends the transfer and the time queued behind other
  transfers of that line.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import attrs
import immutables

from ..actors.footprint import Obj
from ..actors.messages import Envelope, Message
from ..actors.rwsem import RwsemState
from ..actors.tasks import CpuState
from ..ids import MMAP_SEM, ActorId
from ..log.schema import Event
from ..system.clock import CostModel, StepCost
from ..system.machine import Machine
from .timed import RwsemQueue, start_of

#: What a CPU blocked on a message waits for, by the message's kind.
WAITS_FOR = {"grant": "mmap_sem", "trylock_done": "mmap_sem", "flush_done": "shootdown", "fence_open": "fence",
             "drained": "vm_refcnt", "tree_done": "vma tree"}


class _KeepWaits(CostModel):
    """The cost model, remembering the line waits of the last step."""

    def __init__(self, model: CostModel) -> None:
        super().__init__(model.costs)
        self.last: StepCost | None = None

    def step(self, actor: ActorId, accesses: Mapping[Obj, bool], events: Iterable[Event | int],
             env: Envelope | None, start: int, caches: immutables.Map[Hashable, Hashable],
             sent: Iterable[tuple[ActorId, Message]] = ()) -> StepCost:
        out = super().step(actor, accesses, events, env, start, caches, sent)
        self.last = out
        return out


@attrs.frozen
class Measurement:
    """What one timed run measured (times in virtual ns)."""

    faults: int
    segv: int
    ops: int
    #: Ops (loads, stores) the faulting CPUs finished.
    fault_ops: int
    span_ns: int
    #: Every successful fault's latency, sorted.
    latencies: tuple[int, ...]
    #: Lock or line name -> total ns the faulting CPUs waited on it.
    waits: tuple[tuple[str, int], ...]
    steps: int
    outcome: str  # ok | deadlock | step-limit

    @property
    def throughput(self) -> float:
        """Faults per virtual second."""
        return self.faults * 1e9 / self.span_ns if self.span_ns else 0.0

    def percentile(self, p: float) -> int:
        """Nearest-rank percentile of the fault latencies (0 without faults)."""
        if not self.latencies:
            return 0
        rank = max(1, -(-len(self.latencies) * p // 100))
        return self.latencies[int(rank) - 1]


#: Told of each step: (actor slot, sender slot or -1, own-step choice, start, end).
OnStep = Callable[[int, int, int, int, int], None]


def run_timed(machine: Machine, fault_cpus: Iterable[int] | None = None, *, max_steps: int = 50_000_000,
              progress: Callable[[int], None] | None = None, on_step: OnStep | None = None) -> Measurement:
    """Run `machine`'s scenario to the end under the timed scheduler and measure it.
    `fault_cpus`: the CPUs whose faults and waits count (default: all); `progress`
    is called with the number of ops finished so far, every few thousand steps;
    `on_step` with each step taken (tests)."""
    original = machine.cost
    assert original is not None, "a timed run needs the machine's cost model"
    model = _KeepWaits(original)
    machine.cost = model
    try:
        return _Runner(machine, model, fault_cpus).run(max_steps, progress, on_step)
    finally:
        machine.cost = original


class _Runner:
    def __init__(self, machine: Machine, model: _KeepWaits, fault_cpus: Iterable[int] | None) -> None:
        self.m = machine
        self.model = model
        n = len(machine.actors)
        init = machine.initial
        self.states: list[Any] = list(init.actors)
        self.world = init.world
        self.clocks = [0] * n
        self.channels: dict[tuple[int, int], deque[Envelope]] = {}
        self.incoming: list[set[int]] = [set() for _ in range(n)]
        names = [a.name for a in machine.ids]
        #: Deliveries to one actor are listed by sender name.
        self.rank = {s: r for r, s in enumerate(sorted(range(n), key=names.__getitem__))}
        self.rw_slot = machine.slot[MMAP_SEM]
        self.queue = RwsemQueue()
        self.version = [0] * n
        self.heap: list[tuple[int, int, int, int, int, int, int]] = []
        self.fault_cpus = frozenset(range(machine.ncpus) if fault_cpus is None else fault_cpus)

    def best(self, slot: int) -> None:
        """Push actor `slot`'s earliest step (start, slot, ready, index, version, src, choice)."""
        self.version[slot] += 1
        actor = self.m.actors[slot]
        state = self.states[slot]
        clock = self.clocks[slot]
        best: tuple[int, int, int, int, int, int, int] | None = None
        own = actor.own_steps(state)
        if own:
            if slot == self.rw_slot:
                assert isinstance(state, RwsemState)
                grants = self.queue.grants(state)
                if grants:
                    best = (clock, slot, clock, grants[0], self.version[slot], -1, grants[0])
            else:
                best = (clock, slot, clock, 0, self.version[slot], -1, 0)
        if self.incoming[slot]:
            rejects = actor.rejects(state)
            for src in self.incoming[slot]:
                env = self.channels[(src, slot)][0]
                if env.msg.KIND in rejects:
                    continue
                if slot == self.rw_slot:
                    assert isinstance(state, RwsemState)
                    if self.queue.holds_back(env, state):
                        continue
                key = (max(clock, env.sent_at), slot, env.sent_at, own + self.rank[src], self.version[slot], src, 0)
                if best is None or key < best:
                    best = key
        if best is not None:
            heapq.heappush(self.heap, best)

    def run(self, max_steps: int, progress: Callable[[int], None] | None, on_step: OnStep | None) -> Measurement:
        m = self.m
        n = len(m.actors)
        if isinstance(self.states[self.rw_slot], RwsemState):
            self.queue.observe(self.states[self.rw_slot])
        for slot in range(n):
            self.best(slot)
        ncpus = m.ncpus
        fault_cpus = self.fault_cpus
        begun: dict[int, int] = {}
        latencies: list[int] = []
        waits: dict[str, int] = {}
        last_op = [0] * ncpus
        faults = segv = ops = fault_ops = steps = 0
        next_msg_id = 1
        outcome = "ok"
        heap = self.heap
        version = self.version
        while heap:
            start, slot, _, _, ver, src, choice = heapq.heappop(heap)
            if ver != version[slot]:
                continue
            if steps >= max_steps:
                outcome = "step-limit"
                break
            steps += 1
            env = None
            if src >= 0:
                queue = self.channels[(src, slot)]
                env = queue.popleft()
                if not queue:
                    self.incoming[slot].discard(src)
            before = self.states[slot]
            clock = self.clocks[slot]
            out = m.actor_step(slot, before, self.world, env, choice, clock, next_msg_id)
            assert out.start == start_of(clock, env)
            if on_step is not None:
                on_step(slot, src, choice, out.start, out.end)
            self.states[slot] = out.state
            self.world = out.world
            self.clocks[slot] = out.end
            next_msg_id += len(out.sent)
            touched = {slot}
            for e in out.sent:
                dst = m.slot[e.dst]
                self.channels.setdefault((slot, dst), deque()).append(e)
                self.incoming[dst].add(slot)
                touched.add(dst)
            if slot == self.rw_slot:
                assert isinstance(out.state, RwsemState)
                self.queue.observe(out.state)
            for s in touched:
                self.best(s)
            if slot < ncpus:
                counted = slot in fault_cpus
                if counted:
                    gap = out.start - clock
                    if gap > 0 and isinstance(before, CpuState) and before.task is not None \
                            and before.task.waiting is not None:
                        what = WAITS_FOR.get(before.task.waiting, before.task.waiting)
                        waits[what] = waits.get(what, 0) + gap
                    cost = self.model.last
                    if cost is not None:
                        for name, ns in cost.waits:
                            waits[name] = waits.get(name, 0) + ns
                for ev in out.events:
                    if isinstance(ev, int):
                        continue
                    name = ev.NAME
                    if name == "op.end":
                        ops += 1
                        fault_ops += counted
                        last_op[slot] = out.end
                        if progress is not None and ops % 2000 == 0:
                            progress(ops)
                    elif not counted:
                        continue
                    elif name == "fault.begin":
                        begun[slot] = out.start
                    elif name == "fault.end":
                        faults += 1
                        latencies.append(out.end - begun.pop(slot, out.start))
                    elif name == "fault.segv":
                        segv += 1
                        begun.pop(slot, None)
        else:
            done = all(a.done(s) for a, s in zip(m.actors, self.states))
            outcome = "ok" if done else "deadlock"
        if progress is not None:
            progress(ops)
        span = max((last_op[c] for c in fault_cpus if c < ncpus), default=0)
        return Measurement(faults=faults, segv=segv, ops=ops, fault_ops=fault_ops, span_ns=span, latencies=tuple(sorted(latencies)),
                           waits=tuple(sorted(waits.items())), steps=steps, outcome=outcome)


__all__ = ["run_timed", "Measurement", "WAITS_FOR", "OnStep"]
