"""Partial-order reduction: which of a state's enabled steps the search may follow
alone (docs/design.md#exploring).

A set T of enabled steps is *persistent* when nothing the other actors can do before
a step of T runs depends on T or affects it: then every run from the state is
equivalent (same final state, same violations) to one that starts with a step of T,
and the search follows T only. This module proposes, for each actor in turn, T = all
its enabled steps, and accepts the first T (fewest steps) that passes; otherwise the
search follows every step.

What "depends" means (`conflicts`): two steps conflict when one writes a shared
object the other reads or writes (their footprints, `vmactors.actors.footprint`,
plus what the invariant checkers read after them: a step whose checks read a PTE
conflicts with a step that writes it, so merging paths never changes a verdict), or
when they are steps of one actor that touch the same part of it: two steps of a
service always do; a CPU's interrupt (an IPI, a quiescent-state request) only
conflicts with its other steps if those touch its TLB where the IPI flushes, its RCU
read-side state, or send on the same channel.

What "the other actors can do" means (`Future`): an over-approximation built from the
protocol tables — each phase a CPU may still run (the rest of its task, every phase
of the paths of its remaining ops), bounded by the patterns its `Access` words
declare for steps not yet taken, the services' reactions to the messages it may send,
the IPIs any flush sends to every CPU, and what the checkers may read after each of
those steps. The actor whose T is proposed may itself receive, before T runs, only an
interrupt (a CPU with no reply outstanding), or nothing (a service no one may still
write to); anything else rejects T.

The search also keys states with the invariants violated on the way (`space`), since
a reduced search reaches some states by fewer paths.

Two CPUs loading two different maps: either may go first, so cpu0's step alone is
persistent.

>>> from vmactors.testing import VM
>>> s = VM().scenario('name = "t"\\n[[map]]\\nname = "A"\\nfill = 7\\n[[map]]\\nname = "B"\\nfill = 8\\n'
...                   '[[thread]]\\nops = ["r0 = load A"]\\n[[thread]]\\nops = ["r0 = load B"]\\n')
>>> from vmactors.system.machine import Machine
>>> m = Machine(s, "mmap_sem")
>>> steps = m.enabled(m.initial)
>>> [str(st.actor) for st in steps]
['cpu0', 'cpu1']
>>> Reducer(m).ample(m.initial, steps, lambda i: m.apply(m.initial, steps[i]))
[0]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import attrs

from ..actors import footprint as fp
from ..actors.cpu import CpuActor
from ..actors.footprint import ANY, Obj, Pattern, matches
from ..actors.messages import INTERRUPTS, Ack, CallRcu, Flush, Ipi, Message, Qs, QsRequest
from ..actors.phases import EXIT, START, Scope
from ..actors.rcu import RcuState
from ..actors.tasks import CpuState, FaultTask, SyscallTask, Task
from ..ids import MM0, RCU, SHOOTDOWN, ActorKind, MmId
from ..invariants import check_reads
from ..mm.layout import page_of, page_range
from ..ops import Load, Madvise, Mmap, MmapFixed, Mprotect, Munmap, Op, Store
from ..system.machine import Machine
from ..system.state import Step, StepResult, System

#: Local parts of a CPU a step may touch (shared objects are in the footprint).
TASK = "task"
RCU_STATE = "rcu"
#: Its own TLB, which an IPI flushes (also in the footprint, as a shared object).
OWN_TLB = "tlb"


class Patterns:
    """A set of object patterns, indexed by object kind for quick matching."""

    __slots__ = ("any", "by_kind", "_hits")

    def __init__(self, patterns: Iterable[Pattern] = ()) -> None:
        self.any = False
        self.by_kind: dict[Any, list[Pattern]] = {}
        #: Objects tested, and the answer: a future is kept per actor state and asked
        #: about the same few objects at every state where that actor is a candidate.
        self._hits: dict[Obj, bool] = {}
        self.update(patterns)

    def update(self, patterns: Iterable[Pattern]) -> None:
        self._hits.clear()
        for p in patterns:
            if p == ANY:
                self.any = True
            else:
                lst = self.by_kind.setdefault(p[0], [])
                if p not in lst:
                    lst.append(p)

    def merge(self, other: "Patterns") -> None:
        self._hits.clear()
        self.any = self.any or other.any
        for k, ps in other.by_kind.items():
            self.update(ps)

    def hits(self, obj: Obj) -> bool:
        hit = self._hits.get(obj)
        if hit is None:
            if self.any:
                hit = True
            else:
                ps = self.by_kind.get(obj[0])
                hit = ps is not None and any(matches(obj, p) for p in ps)
            if len(self._hits) > 10_000:
                self._hits.clear()
            self._hits[obj] = hit
        return hit


@attrs.define
class Future:
    """What an actor may still do, bounded: objects it may read and write, the actor
    kinds it may send to, whether it may flush TLBs (an IPI to every CPU) or start an
    RCU grace period (a quiescent-state request to every CPU)."""

    reads: Patterns = attrs.field(factory=Patterns)
    writes: Patterns = attrs.field(factory=Patterns)
    #: (actor kind, message kind) it may send.
    sends: set[tuple[ActorKind, str]] = attrs.field(factory=set)
    flushes: bool = False
    grace_period: bool = False

    def sends_to(self, kind: ActorKind) -> set[str]:
        return {k for a, k in self.sends if a is kind}

    def merge(self, other: "Future") -> None:
        self.reads.merge(other.reads)
        self.writes.merge(other.writes)
        self.sends |= other.sends
        self.flushes = self.flushes or other.flushes
        self.grace_period = self.grace_period or other.grace_period


@attrs.frozen
class Effect:
    """What one step did that independence depends on."""

    slot: int
    reads: frozenset[Obj]
    writes: frozenset[Obj]
    #: Parts of its own actor it touched (a CPU: TASK, RCU_STATE, OWN_TLB).
    local: frozenset[str]
    #: Slots it sent to.
    sends: frozenset[int]
    #: The message it took (None: an own step).
    received: Message | None = None

    def hits(self, f: Future) -> bool:
        """Whether this step conflicts with anything in `f`."""
        return any(f.reads.hits(o) or f.writes.hits(o) for o in self.writes) or any(
            f.writes.hits(o) for o in self.reads)


def destination(msg: type[Message]) -> ActorKind:
    """The kind of actor a message kind goes to."""
    from ..actors.messages import (
        Ack, ClearZero, Downgrade, DownRead, DownReadTrylock, DownWrite, MapFixed, Mmap as MmapMsg, Protect, Qs,
        StoreVma, Unmap, UpRead, UpWrite,
    )

    if issubclass(msg, (DownRead, DownWrite, UpRead, UpWrite, Downgrade, DownReadTrylock)):
        return ActorKind.MMAP_SEM
    if issubclass(msg, (MmapMsg, MapFixed, Unmap, ClearZero, Protect, StoreVma)):
        return ActorKind.TREE
    if issubclass(msg, (Flush, Ack)):
        return ActorKind.SHOOTDOWN
    if issubclass(msg, (CallRcu, Qs)):
        return ActorKind.RCU
    return ActorKind.CPU


def scenario_features(machine: Machine) -> frozenset[str]:
    """Which of `vmactors.actors.phases.FEATURES` the machine's scenario has."""
    s = machine.scenario
    out = set()
    ops = [op for t in s.threads for op in t.ops]
    files = any(m.kind == "file" for m in s.maps) or any(
        isinstance(op, (Mmap, MmapFixed)) and op.kind == "file" for op in ops)
    # A write fault copies a page after a fork, and where an anonymous MAP_FIXED may
    # leave a file page mapped under the new VMA (`Kernel.wp_copies`).
    if s.forks or (files and any(isinstance(op, MmapFixed) and op.kind == "anon" for op in ops)):
        out.add("cow")
    if any(m.growsdown for m in s.maps):
        out.add("stack")
    if s.free_pgtables:
        out.add("pgtables")
    return frozenset(out)


def _checked(mm: MmId, pages: frozenset[int] | None) -> list[Pattern]:
    """What the invariant checkers may read after a step on `pages` (`check_reads`)."""
    out: list[Pattern] = [fp.tree(mm), fp.writers(mm), fp.unmapped(mm), ("vma", mm, None), ("frame", None)]
    if pages is None:
        return out + [("pte", mm, None), ("tlb", None, None)]
    return out + [fp.pte(mm, p) for p in pages] + [("tlb", None, p) for p in pages]


def _reaction(kind: ActorKind, mm: MmId, pages: frozenset[int] | None) -> Future:
    """What a service may do, on behalf of a CPU, when one of its requests arrives."""
    f = Future()
    if kind is ActorKind.TREE:
        f.reads.update([fp.tree(mm), ("vma", mm, None), ("policy", mm, None)])
        f.writes.update([fp.tree(mm), ("vma", mm, None), ("policy", mm, None), fp.writers(mm), fp.unmapped(mm)])
        f.reads.update(_checked(mm, pages))
    elif kind is ActorKind.RCU:
        # A grace period's end frees VMAs (and asks every CPU for a quiescent state).
        f.writes.update([("vma", mm, None), ("policy", mm, None)])
        f.reads.update(_checked(mm, None))
        f.grace_period = True
    return f


class Reducer:
    """Proposes persistent sets for the states of one machine."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.ncpus = machine.ncpus
        self._cpu_futures: dict[CpuState, Future] = {}
        self._effects: dict[Hashable, Effect] = {}
        #: id of an effect -> (it, kept alive; id of a future -> (it, whether the two conflict)).
        self._conflicts: dict[int, tuple[Effect, dict[int, tuple[Future, bool]]]] = {}
        self._pairs = 0  # answers held, all effects together
        self._answering: dict[tuple[CpuState, frozenset[tuple[ActorKind, str]]], Future] = {}
        self._service_futures: dict[tuple[Any, ...], Future] = {}
        self._closures: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._irqs_off = machine.policy.irqs_off_lock_wait
        #: The slots of the services that send a CPU interrupts.
        self._shootdown, self._rcu = machine.slot[SHOOTDOWN], machine.slot[RCU]
        # Phases (and sends and accesses) that only a scenario with a feature reaches
        # are left out of the futures of the others (`Phase.feature`, `Phase.only`).
        self._features = scenario_features(machine)

    # --- what a step did ---------------------------------------------------------------------

    def effect(self, system: System, step: Step, result: StepResult) -> Effect:
        m = self.machine
        slot = m.slot[step.actor]
        touched = result.touched if result.touched is not None else m.footprint(system, step)
        reads = set(touched.reads) | check_reads(system, result)
        local: set[str] = set()
        if step.actor.is_cpu:
            before = system.actors[slot]
            after = result.system.actors[slot]
            assert isinstance(before, CpuState) and isinstance(after, CpuState)
            interrupt = step.src is not None and result.received is not None and result.received.kind in INTERRUPTS
            if not interrupt or self._irqs_off:
                local.add(TASK)
            if (before.rcu_nesting, before.qs_owed) != (after.rcu_nesting, after.qs_owed) or (
                    result.received is not None and result.received.kind == "qs_request"):
                local.add(RCU_STATE)
            own_tlb = ("tlb", before.id, None)
            if any(matches(o, own_tlb) for o in itertools.chain(reads, touched.writes)):
                local.add(OWN_TLB)
        else:
            local.add(TASK)  # a service's steps all touch its one state
        sends = frozenset(m.slot[e.dst] for e in result.sent)
        received = result.received.msg if result.received is not None else None
        return Effect(slot, frozenset(reads), touched.writes, frozenset(local), sends, received)

    def _effect(self, system: System, step: Step, result: Callable[[int], StepResult], i: int) -> Effect:
        """`effect` of step `i`, remembered by what the step is a function of
        (`Machine.step_key`): a candidate's steps are tested at most states where it
        is one, and are mostly the same steps. A remembered effect saves running a
        step the search may not follow."""
        m = self.machine
        _, slot, src = m.step_slots(step)
        head = None if src is None else system.channels[(src, slot)][0]
        key = m.step_key(system, slot, head, step.choice)
        hit = self._effects.get(key)
        if hit is None:
            if len(self._effects) > 200_000:
                self._effects.clear()
            hit = self._effects[key] = self.effect(system, step, result(i))
        return hit

    # --- what an actor may still do ------------------------------------------------------------

    def cpu_future(self, slot: int, state: CpuState) -> Future:
        hit = self._cpu_futures.get(state)
        if hit is not None:
            return hit
        f = self._compute_cpu_future(slot, state)
        if len(self._cpu_futures) > 100_000:
            self._cpu_futures.clear()
        self._cpu_futures[state] = f
        return f

    def _compute_cpu_future(self, slot: int, state: CpuState) -> Future:
        actor = self.machine.actors[slot]
        assert isinstance(actor, CpuActor)
        f = Future()
        cpu, mm = state.id, state.mm
        # An IPI flushes its TLB (the ack it sends, and the answer to a quiescent-state
        # request, depend on what is in flight to it: `_futures`).
        f.writes.update([("tlb", cpu, None)])
        if state.qs_owed:
            f.sends.add((ActorKind.RCU, Qs.KIND))
        table = self.machine.policy.protocol
        tasks: list[Task] = [t for t in (state.task, state.tail) if t is not None]
        for task in tasks:
            self._add_phases(f, table, task.path, task.phase, self._task_scope(state, task), mm)
        ops = actor.thread.ops
        first = state.pc + (1 if state.task is not None else 0)
        for op in ops[first:]:
            self._add_op(f, table, state, actor, op, mm)
        return f

    def _task_scope(self, state: CpuState, task: Task) -> Scope:
        if isinstance(task, FaultTask):
            return Scope(state.id, state.mm, frozenset({task.page}))
        assert isinstance(task, SyscallTask)
        if task.start is None:
            return Scope(state.id, state.mm, None)
        return Scope(state.id, state.mm, frozenset(page_range(task.start, task.pages)))

    def _add_op(self, f: Future, table: Any, state: CpuState, actor: CpuActor, op: Op, mm: MmId) -> None:
        prog = actor.program
        if isinstance(op, (Load, Store)):
            label = op.addr.label
            if label is None:
                pages: frozenset[int] | None = frozenset({page_of(op.addr.offset)})
            elif label in state.regs and isinstance(state.regs[label], int):
                pages = frozenset({page_of(state.regs[label] + op.addr.offset)})  # type: ignore[operator]
            elif label in prog.maps:
                pages = frozenset({page_of(prog.maps[label][0] + op.addr.offset)})
            else:
                pages = None
            scope = Scope(state.id, mm, pages)
            # The access itself: TLB, page walk, the frame; then perhaps a fault.
            tlbs = [("tlb", state.id, None)] if pages is None else [fp.tlb(state.id, p) for p in pages]
            ptes = [("pte", mm, None)] if pages is None else [fp.pte(mm, p) for p in pages]
            f.reads.update(tlbs + ptes + [("frame", None)])
            f.writes.update(tlbs + ([("frame", None)] if isinstance(op, Store) else []))
            f.reads.update(_checked(mm, pages))
            self._add_phases(f, table, "fault", START, scope, mm)
            return
        path = {Mmap: "mmap", MmapFixed: "mmap_fixed", Munmap: "munmap", Mprotect: "mprotect",
                Madvise: "madvise"}.get(type(op))
        if path is None:  # an op this reduction does not know: anything
            f.reads.update([ANY])
            f.writes.update([ANY])
            f.sends.update((k, "*") for k in ActorKind)
            f.flushes = f.grace_period = True
            return
        pages = None
        label = getattr(op, "label", None)
        if not isinstance(op, Mmap) and label is not None:
            if label in prog.maps:
                start, n = prog.maps[label]
                pages = frozenset(page_range(start, n))
        self._add_phases(f, table, path, START, Scope(state.id, mm, pages), mm)

    def _add_phases(self, f: Future, table: Any, path: str, phase: str, scope: Scope, mm: MmId) -> None:
        for ph in self._closure(table, path, phase):
            if ph.feature is not None and ph.feature not in self._features:
                continue
            absent = {x for feature, items in ph.only if feature not in self._features for x in items}
            for a in ph.reads:
                if a not in absent:
                    f.reads.update(a.future(scope))
            for a in ph.writes:
                if a not in absent:
                    f.writes.update(a.future(scope))
            f.reads.update(_checked(mm, scope.pages))
            for msg in ph.sends:
                if msg in absent:
                    continue
                kind = destination(msg)
                f.sends.add((kind, msg.KIND))
                if kind is not ActorKind.CPU:
                    r = _reaction(kind, mm, scope.pages)
                    f.merge(r)
                if issubclass(msg, Flush):
                    f.flushes = True
                if issubclass(msg, CallRcu):
                    f.grace_period = True
        if f.flushes:
            f.writes.update([("tlb", None, None)])

    def _closure(self, table: Any, path: str, phase: str) -> tuple[Any, ...]:
        key = (path, phase)
        hit = self._closures.get(key)
        if hit is None:
            seen: dict[str, Any] = {}
            todo = [phase]
            while todo:
                name = todo.pop()
                if name == EXIT or name in seen:
                    continue
                ph = table.phase(path, name)
                seen[name] = ph
                todo.extend(ph.next)
            hit = self._closures[key] = tuple(seen.values())
        return hit

    def service_future(self, system: System, slot: int, inbox: tuple[Message, ...] | None = None) -> Future:
        """What service `slot` may do with what is in flight to it (`inbox`, if the
        caller has it: the messages of its channels, in channel order) and its own
        pending work."""
        m = self.machine
        kind = m.ids[slot].kind
        state = system.actors[slot]
        if inbox is None:
            inbox = tuple(env.msg for (a, b), q in system.channels.items() if b == slot for env in q)
        busy = _own_work(state)
        key = (slot, inbox, busy)
        hit = self._service_futures.get(key)
        if hit is not None:
            return hit
        f = Future()
        for msg in inbox:
            rng = msg.range
            pages = frozenset(page_range(rng[0], rng[1])) if rng is not None else None
            f.merge(_reaction(kind, getattr(msg, "mm", MM0), pages))
        if busy:
            f.merge(_reaction(ActorKind.RCU, MM0, None))
        if len(self._service_futures) > 100_000:
            self._service_futures.clear()
        self._service_futures[key] = f
        return f

    # --- the persistent set ------------------------------------------------------------------------

    def ample(self, system: System, steps: Sequence[Step], result: Callable[[int], StepResult]) -> list[int] | None:
        """The indices of a persistent set of `steps` (enabled in `system`), or None:
        follow them all. `result(i)` runs step i (the caller keeps what it ran)."""
        m = self.machine
        by_slot: dict[int, list[int]] = {}
        for i, st in enumerate(steps):
            by_slot.setdefault(m.slot[st.actor], []).append(i)
        if len(by_slot) < 2:
            return None
        futures: dict[int, Future] | None = None
        for slot, idx in sorted(by_slot.items(), key=lambda kv: (len(kv[1]), kv[0])):
            if not self._candidate(system, slot):
                continue
            if futures is None:
                futures = self._futures(system)
            effects = [self._effect(system, steps[i], result, i) for i in idx]
            if self._persistent(system, slot, effects, futures):
                return idx
        return None

    def _candidate(self, system: System, slot: int) -> bool:
        """Cheap checks first: an actor that may receive something other than an
        interrupt before its steps run is never a candidate."""
        state = system.actors[slot]
        if slot < self.ncpus:
            assert isinstance(state, CpuState)
            if state.tail is not None:
                return False
            task = state.task
            if task is not None and task.waiting is not None:
                # Blocked: only a candidate if the reply it waits for is already here.
                head_kinds = {q[0].kind for (a, b), q in system.channels.items() if b == slot and q}
                return task.waiting in head_kinds
            return True
        return True

    def _futures(self, system: System) -> dict[int, Future]:
        out: dict[int, Future] = {}
        # Interrupts in flight: the CPU will answer them (an ack, a quiescent state).
        answers: dict[int, set[tuple[ActorKind, str]]] = {}
        # What is in flight to each service, in channel order (`service_future`).
        inboxes: dict[int, list[Message]] = {}
        for (a, b), q in system.channels.items():
            if b >= self.ncpus:
                inboxes.setdefault(b, []).extend(env.msg for env in q)
            elif q:
                for env in q:
                    if env.kind == Ipi.KIND:
                        answers.setdefault(b, set()).add((ActorKind.SHOOTDOWN, Ack.KIND))
                    elif env.kind == QsRequest.KIND:
                        answers.setdefault(b, set()).add((ActorKind.RCU, Qs.KIND))
        cpu_futures = self._cpu_futures
        for slot in range(len(system.actors)):
            if slot < self.ncpus:
                state = system.actors[slot]
                assert isinstance(state, CpuState)
                f = cpu_futures.get(state)  # (`cpu_future`'s hit, without the call)
                if f is None:
                    f = self.cpu_future(slot, state)
                extra = answers.get(slot)
                if extra and not extra <= f.sends:
                    key = (state, frozenset(extra))
                    g = self._answering.get(key)
                    if g is None:
                        g = Future()
                        g.merge(f)
                        g.sends |= extra
                        if len(self._answering) > 100_000:
                            self._answering.clear()
                        self._answering[key] = g
                    f = g
                out[slot] = f
            else:
                # A service with nothing in flight to it and no work of its own may
                # do nothing: it has no future to test.
                inbox = inboxes.get(slot)
                if inbox is not None or _own_work(system.actors[slot]):
                    out[slot] = self.service_future(system, slot, tuple(inbox or ()))
        return out

    def _persistent(self, system: System, slot: int, effects: list[Effect], futures: dict[int, Future]) -> bool:
        m = self.machine
        kind = m.ids[slot].kind
        actor = m.actors[slot]
        state = system.actors[slot]
        conflicts = self._conflicts
        # Effects and futures are remembered and never change once built, so a pair's
        # answer is looked up by identity (the pair kept alive with it).
        if self._pairs > 200_000:
            conflicts.clear()
            self._pairs = 0
        answers = []
        for e in effects:
            known = conflicts.get(id(e))
            if known is None or known[0] is not e:
                known = conflicts[id(e)] = (e, {})
            answers.append((e, known[1]))
        for other, f in futures.items():
            if other == slot:
                continue
            for e, known_e in answers:
                hit = known_e.get(id(f))
                if hit is None:
                    hit = known_e[id(f)] = (f, e.hits(f))
                    self._pairs += 1
                if hit[1]:
                    return False
            if kind is not ActorKind.CPU:
                # Someone may still send to this service: only requests that commute
                # with each step of T may come first.
                for k in f.sends_to(kind):
                    if not all(e.received is not None and actor.commutes(state, e.received, k) for e in effects):
                        return False
        if kind is not ActorKind.CPU:
            return True
        # A CPU may still take an IPI (if anyone may flush) and a quiescent-state
        # request (if a grace period may start before it answers the current one):
        # T must not touch what those touch.
        shootdown, rcu = self._shootdown, self._rcu
        ipi = any(f.flushes for s, f in futures.items() if s != slot) or _flush_in_flight(system, shootdown)
        rcu_state = system.actors[rcu]
        assert isinstance(rcu_state, RcuState)
        answering = rcu_state.waiting is not None and state.id in rcu_state.waiting  # type: ignore[attr-defined]
        qs = not answering and (rcu_state.waiting is not None or bool(rcu_state.next)
                                or any(f.grace_period for s, f in futures.items() if s != slot))
        for e in effects:
            if ipi and (shootdown in e.sends or OWN_TLB in e.local):
                return False
            if qs and (rcu in e.sends or RCU_STATE in e.local):
                return False
            if self._irqs_off and (ipi or qs) and TASK in e.local:
                return False  # whether it takes interrupts at all depends on its task
        return True


def _own_work(state: Any) -> bool:
    """Whether a service's state has work of its own, whatever is in flight to it
    (RCU's grace period under way, or callbacks waiting for the next)."""
    return isinstance(state, RcuState) and (state.waiting is not None or bool(state.next))


def _flush_in_flight(system: System, shootdown: int) -> bool:
    """Whether a TLB flush is on its way (a request in flight, or the shootdown
    service's own pending work; `shootdown`: its slot)."""
    for (a, b), q in system.channels.items():
        if q and any(isinstance(e.msg, Flush) for e in q):
            return True
    return bool(getattr(system.actors[shootdown], "pending", ()))


__all__ = ["Reducer", "Future", "Effect", "Patterns", "destination"]
