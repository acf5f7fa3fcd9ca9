"""The state space an exhaustive search walks: a state's key and its successors.

`Expander` is the one piece every search runs — the single-process search of
`exhaustive`, each worker of a search sharded over processes or a Dask cluster
(`parallel`): given a state, it says whether the state is final and, if not, which
steps the search follows from it, the state each step reaches, that state's key
(its canonical form), and the invariants the step
violates.

With reduction on, the key also holds the invariants violated on the way to the
state, so that merging two paths never hides a violation one of them met (the
partial-order reduction, `por`, explores a subset of the steps, and a state reached
by an unexplored order may be reached here only through a violating one).

>>> from vmactors.testing import VM
>>> s = VM().scenario('name = "t"\\n[[map]]\\nname = "A"\\nfill = 7\\n[[thread]]\\nops = ["r0 = load A"]\\n')
>>> x = Expander(s, "mmap_sem")
>>> key, system, flags = x.root()
>>> [str(e.step.actor) for e in x.expand(system, flags, 0)]
['cpu0']
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import attrs

from ..actors.effects import Effects, RecordingEffects
from ..invariants import Violation, check_step
from ..ops import Load, Madvise, Mmap, MmapFixed, Munmap, Mprotect, Store
from ..policies import Policy
from ..scenario.model import RegValue, Scenario
from ..system.machine import Machine
from ..system.state import Step, StepResult, System
from .canon import Canon
from .por import Reducer
from .symmetry import Symmetry

#: The ends of a run a final state records.
ENDS = ("ok", "deadlock", "step-limit")


@attrs.frozen
class Final:
    """A state with no step to take (or at the step bound): how the run ends."""

    regs: tuple[tuple[str, RegValue], ...]
    end: str


@attrs.frozen
class Edge:
    """One step the search follows from a state."""

    step: Step
    #: The step's index in the state's enabled list: its choice in a replay.
    choice: int
    #: The key of the state it reaches.
    key: Hashable
    #: That state (as reached, not canonicalised).
    system: System = attrs.field(eq=False)
    #: Invariants violated on the way to it (reduction on; else empty).
    flags: frozenset[str] = frozenset()
    #: The invariants this step violates.
    violations: tuple[Violation, ...] = ()


@attrs.frozen
class Options:
    """How a search reduces the state space (docs/design.md#exploring)."""

    #: Partial-order reduction (`por`): counts become "reduced".
    reduction: bool = True
    #: Symmetry reduction over interchangeable CPUs (`symmetry`).
    symmetry: bool = True

    @property
    def counts(self) -> str:
        return "reduced" if self.reduction or self.symmetry else "exact"


EXACT = Options(reduction=False, symmetry=False)

#: The ops whose protocols the reductions know (their futures, what the checkers
#: read after them, every record that names a CPU).
REDUCIBLE_OPS = (Load, Store, Mmap, MmapFixed, Munmap, Mprotect, Madvise)


def reducible(scenario: Scenario) -> bool:
    """Whether the reductions apply to `scenario`: one address space, the ops above,
    no grows-down maps, no page-table pages to free. Elsewhere (fork, mremap,
    truncate, stack expansion: the kernel-history scenarios) a search is unreduced:
    its counts are exact, its answers need no argument."""
    # A fork is an op outside REDUCIBLE_OPS, so a scenario with a child address space
    # (and threads in it) is already excluded by the last test.
    if any(m.growsdown for m in scenario.maps) or scenario.free_pgtables:
        return False
    return all(isinstance(op, REDUCIBLE_OPS) for t in scenario.threads for op in t.ops)


class Expander:
    """Keys and successors of the states of one scenario under one policy."""

    def __init__(self, scenario: Scenario, policy: str | Policy, options: Options = Options()) -> None:
        self.machine = Machine(scenario, policy)
        self.machine.cost = None  # the search never reads virtual time
        self.machine.interned = {}
        self.machine.steps = {}
        if not reducible(scenario):
            options = EXACT
        self.options = options
        self._canon = Canon(self.machine)
        self._flagged = options.reduction
        #: The partial-order reduction, when it is on.
        self.reducer: Reducer | None = Reducer(self.machine) if options.reduction else None
        # The reduction needs what each step touched.
        self._recording: type[Effects] = RecordingEffects if options.reduction else Effects
        sym = Symmetry(self.machine) if options.symmetry else None
        #: The symmetry reduction, when it is on and some CPUs are interchangeable.
        self.symmetry: Symmetry | None = sym if sym else None

    @property
    def scenario(self) -> Scenario:
        return self.machine.scenario

    def key(self, system: System, flags: frozenset[str] = frozenset()) -> Hashable:
        """`system`'s canonical form (and, reduction on, the invariants violated on
        the way to it): equal for two systems exactly when the search may merge them.
        Python's cached hashes make it cheap to compare and store."""
        sym = self.symmetry
        canonical: Hashable = self._canon.key(system if sym is None else sym.canonical(system))
        return (canonical, tuple(sorted(flags))) if flags else canonical

    def root(self) -> tuple[Hashable, System, frozenset[str]]:
        init = self.machine.initial
        return self.key(init), init, frozenset()

    def final(self, system: System, depth: int, max_steps: int, steps: Sequence[Step] | None = None
              ) -> Final | None:
        """How a run that is in `system` after `depth` steps ends, or None if it goes on
        (`steps`: its enabled steps, if the caller has them)."""
        m = self.machine
        if not (m.enabled(system) if steps is None else steps):
            return Final(tuple(m.final_regs(system).items()), "ok" if m.finished(system) else "deadlock")
        if depth >= max_steps:
            return Final(tuple(m.final_regs(system).items()), "step-limit")
        return None

    def expand(self, system: System, flags: frozenset[str], depth: int, steps: Sequence[Step] | None = None
               ) -> list[Edge]:
        """The steps the search follows from `system`, in choice order (`steps`: its
        enabled steps, if the caller has them)."""
        m = self.machine
        if steps is None:
            steps = m.enabled(system)
        results: dict[int, StepResult] = {}

        recording = self._recording

        def result(i: int) -> StepResult:
            r = results.get(i)
            if r is None:
                r = results[i] = m.apply(system, steps[i], recording)
            return r

        chosen: Sequence[int] = range(len(steps))
        if self.reducer is not None:
            ample = self.reducer.ample(system, steps, result)
            if ample is not None:
                chosen = ample
        out = []
        for choice in chosen:
            step = steps[choice]
            result_ = result(choice)
            found = check_step(system, result_)
            violations = tuple(found) if found else ()
            child_flags = flags
            if violations and self._flagged:
                child_flags = flags | {v.invariant for v in violations}
            out.append(Edge(step, choice, self.key(result_.system, child_flags), result_.system, child_flags,
                            violations))
        return out


__all__ = ["Expander", "Edge", "Final", "Options", "EXACT", "ENDS", "reducible", "REDUCIBLE_OPS"]
