"""Symmetry reduction over interchangeable CPUs (docs/design.md#exploring).

Two CPUs are interchangeable when their threads run the same loads and stores (same
op texts, same address space) from the same TLB contents: swapping what the two are
doing then gives a state with the same future, up to swapping them back. So a search
keys each state by one canonical member of its orbit under such swaps and explores
one state per orbit.

Swapping CPUs i and j renames every place a CPU is named: the CPU states trade
slots (each keeps its slot's id and thread label), channels and the messages in
them, the services' records (the rwsem's holders and waiters, the shootdown's
pending acks, RCU's grace period), and the locking design's own records
(`Policy.rename_record`). A test checks that the step relation commutes with
swapping two readers racing a munmap under each main policy
(`tests/explore/test_symmetry.py`): a rename that missed a place would merge states
that are not symmetric.

Threads that make syscalls are never interchangeable: their VMAs are named after the
thread. Final states are reported for every thread labelling: the search finds one
of each orbit and `expand_final_states` adds its images.

The canonical member: the CPUs of each class sorted by a signature that renaming does
not change — the CPU's own state without its name or frame numbers, and the kinds of
the messages in flight to and from it — ties kept in slot order. Two members of an
orbit that tie differently may end up with two keys: the search then explores that
orbit twice, which costs time, never an answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import immutables

from ..actors.cpu import CpuActor
from ..actors.tasks import CpuState
from ..ops import Load, Store
from ..system.machine import Machine
from ..actors.messages import Envelope
from ..system.state import Step, System

if TYPE_CHECKING:
    from .results import FinalState


def symmetry_classes(machine: Machine) -> tuple[tuple[int, ...], ...]:
    """Groups (of two or more) of interchangeable CPUs, by index."""
    groups: dict[Any, list[int]] = {}
    init = machine.initial
    for i in range(machine.ncpus):
        actor = machine.actors[i]
        assert isinstance(actor, CpuActor)
        prog = actor.thread
        if prog.thread is None or not all(isinstance(op, (Load, Store)) for op in prog.ops):
            continue
        state = init.actors[i]
        assert isinstance(state, CpuState)
        key = (prog.texts, prog.ops, state.mm, state.tlb)
        groups.setdefault(key, []).append(i)
    return tuple(tuple(g) for g in groups.values() if len(g) > 1)


class Symmetry:
    """Renames and canonicalises the states of one machine."""

    #: Renamed parts remembered before the memo is dropped (it holds them alive).
    LIMIT = 200_000

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.classes = symmetry_classes(machine)
        self.ncpus = machine.ncpus
        self._record = machine.policy.rename_record
        # The thread label of each CPU (a final state's registers are named by it).
        self._threads = {i: machine.program.threads[i].thread for i in range(self.ncpus)}
        # The part of a signature that depends on the CPU's own state alone: the state's
        # hash is cached, so looking it up is cheaper than building it again.
        self._own: dict[CpuState, tuple[Any, ...]] = {}
        #: (id of a part, renaming) -> (the part, kept alive so its id is not reused; its renaming).
        self._renamed: dict[tuple[int, tuple[int, ...]], tuple[Any, Any]] = {}

    def __bool__(self) -> bool:
        return bool(self.classes)

    # --- renaming ---------------------------------------------------------------------------

    def rename(self, system: System, ren: Mapping[int, int]) -> System:
        """`system` with CPU i's part played by CPU ren[i] (a permutation within classes)."""
        m = self.machine
        n = self.ncpus
        # Most states a search keys are renamed, and a step changes one actor and one
        # or two channels: the renamed parts of the state's siblings and parent are
        # looked up by identity (exact: a part equal in value but not in its history
        # fields, message ids or versions, is renamed afresh).
        memo = self._renamed
        if len(memo) > self.LIMIT:
            memo.clear()
        rt = tuple(ren[i] for i in range(n))
        actors = list(system.actors)
        for i in range(n):
            j = ren[i]
            if j != i:
                state = system.actors[i]
                hit = memo.get((id(state), rt))
                if hit is None:
                    target = m.actors[j]
                    assert isinstance(target, CpuActor)
                    adopted = target.adopt(m.actors[i].rename_cpus(state, ren))
                    if m.interned is not None:  # (see `Machine.interned`)
                        adopted = m.interned.setdefault(adopted, adopted)
                    hit = memo[(id(state), rt)] = (state, adopted)
                actors[j] = hit[1]
        for s in range(n, len(actors)):
            state = system.actors[s]
            hit = memo.get((id(state), rt))
            if hit is None:
                hit = memo[(id(state), rt)] = (state, m.actors[s].rename_cpus(state, ren))
            actors[s] = hit[1]

        def slot(k: int) -> int:
            return ren[k] if k < n else k

        channels: dict[tuple[int, int], tuple[Envelope, ...]] = {}
        for (a, b), q in system.channels.items():
            hit = memo.get((id(q), rt))
            if hit is None:
                renamed = tuple(e.rename_cpus(ren) for e in q)
                hit = memo[(id(q), rt)] = (q, q if all(x is y for x, y in zip(renamed, q)) else renamed)
            channels[(slot(a), slot(b))] = hit[1]
        world = system.world
        hit = memo.get((id(world), rt))
        if hit is None:
            hit = memo[(id(world), rt)] = (world, world.rename_cpus(ren, self._record))
        last = None if system.last is None else slot(system.last)
        clocks = list(system.clocks)
        for k, t in enumerate(system.clocks):
            clocks[slot(k)] = t
        return System(world=hit[1], actors=tuple(actors), channels=immutables.Map(channels),
                      last=last, step=system.step, next_msg_id=system.next_msg_id, clocks=tuple(clocks))

    def rename_step(self, step: Step, ren: Mapping[int, int]) -> Step:
        def actor(a: Any) -> Any:
            from ..ids import cpu

            return cpu(ren[a.index]) if a is not None and a.is_cpu else a

        return Step(actor(step.actor), actor(step.src), step.choice)

    # --- canonical form ---------------------------------------------------------------------

    def canonical(self, system: System) -> System:
        """The member of `system`'s orbit the search keys it by."""
        ren: dict[int, int] | None = None
        inflight = self._inflight(system)
        for cls in self.classes:
            order = sorted(cls, key=lambda i: self._signature(system, i, inflight.get(i, ())))
            if order != list(cls):
                if ren is None:
                    ren = {i: i for i in range(self.ncpus)}
                for k, i in enumerate(order):
                    ren[i] = cls[k]
        return system if ren is None else self.rename(system, ren)

    def _inflight(self, system: System) -> dict[int, tuple[Any, ...]]:
        """Per CPU, the kinds of the messages in flight to and from it (other CPUs
        only as "cpu")."""
        n = self.ncpus
        ids = self.machine.ids
        out: dict[int, list[Any]] = {}
        for (a, b), q in system.channels.items():
            if not q:
                continue
            kinds = tuple(e.kind for e in q)
            if a < n:
                out.setdefault(a, []).append(("from", "cpu" if b < n else ids[b].name, kinds))
            if b < n:
                out.setdefault(b, []).append(("to", "cpu" if a < n else ids[a].name, kinds))
        return {i: tuple(sorted(v)) for i, v in out.items()}

    def _signature(self, system: System, i: int, inflight: tuple[Any, ...]) -> tuple[Any, ...]:
        """What renaming leaves unchanged about CPU i (a total order, the same in
        every process: ints and strings only)."""
        state = system.actors[i]
        assert isinstance(state, CpuState)
        own = self._own.get(state)
        if own is None:
            if len(self._own) > 200_000:
                self._own.clear()
            own = self._own[state] = (
                state.pc, state.started, state.rcu_nesting, state.qs_owed, _task(state.task), _task(state.tail),
                tuple(sorted((k, _value(v)) for k, v in state.regs.items())),
                tuple(sorted((p, e.vma, e.prot) for p, e in state.tlb.items())))
        return own + (inflight,)

    # --- final states -------------------------------------------------------------------------

    def thread_renamings(self) -> list[dict[int, int]]:
        """Every renaming of the classes' thread labels (identity included)."""
        out: list[dict[int, int]] = []
        per_class = [[dict(zip(cls, perm)) for perm in itertools.permutations(cls)] for cls in self.classes]
        for combo in itertools.product(*per_class):
            ren = {i: i for i in range(self.ncpus)}
            for d in combo:
                ren.update(d)
            out.append(ren)
        return out

    def relabel(self, regs: Sequence[tuple[str, Any]], ren: Mapping[int, int]) -> tuple[tuple[str, Any], ...]:
        """Final registers with CPU i's thread label read as CPU ren[i]'s."""
        by_thread = {self._threads[i]: self._threads[ren[i]] for i in range(self.ncpus)
                     if self._threads[i] is not None}
        out = []
        for key, value in regs:
            t, name = key.split(":", 1)
            out.append((f"{by_thread.get(int(t), int(t))}:{name}", value))
        return tuple(sorted(out, key=lambda kv: (int(kv[0].split(":", 1)[0]), kv[0].split(":", 1)[1])))


def _value(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int) else (1, str(v))


def _task(task: Any) -> tuple[Any, ...]:
    """A task as a sortable tuple, without frame numbers."""
    if task is None:
        return ()
    out: list[Any] = [type(task).__name__]
    for a in attrs.fields(type(task)):
        if a.name in ("frame", "frames"):
            continue
        v = getattr(task, a.name)
        out.append(repr(v) if not isinstance(v, (int, str)) or isinstance(v, bool) else v)
    return tuple(str(x) if not isinstance(x, int) else x for x in out)


def expand_final_states(machine: Machine, sym: "Symmetry | None", states: list["FinalState"]) -> list["FinalState"]:
    """Add each final state's images under the symmetry `sym` (other thread
    labellings), with the choices of a run that ends in the image."""
    if sym is None or not sym:
        return states
    out: dict[tuple[Any, str], FinalState] = {}
    for s in states:
        out.setdefault((s.regs, s.end), s)
    for s in states:
        for ren in sym.thread_renamings():
            regs = sym.relabel(s.regs, ren)
            if (regs, s.end) in out:
                continue
            choices = _image_choices(machine, sym, s.choices or (), ren)
            out[(regs, s.end)] = attrs.evolve(s, regs=regs, choices=choices)
    return list(out.values())


def _image_choices(m: Machine, sym: "Symmetry", choices: Sequence[int], ren: Mapping[int, int]) -> tuple[int, ...]:
    """The choices of the run whose every step is the renamed step of `choices`' run."""
    system = m.initial
    image = m.initial
    out = []
    for c in choices:
        steps = m.enabled(system)
        step = steps[c]
        target = sym.rename_step(step, ren)
        image_steps = m.enabled(image)
        out.append(image_steps.index(target))
        system = m.apply(system, step).system
        image = m.apply(image, target).system
    return tuple(out)


__all__ = ["Symmetry", "symmetry_classes", "expand_final_states"]
