"""Shortening a counterexample found by a reduced search (docs/design.md#exploring).

A partial-order reduction keeps every violation reachable but not every shortest
path to it: it may run an independent step before the violating one that the full
graph could have left out. A run's violating step depends only on the steps before it
that it is ordered after (same actor, a shared object one writes and the other reads
or writes, a message sent and then received); the others commute past it. Keeping only
those steps, in their order, gives a shorter run with the same violating step, which
is replayed to make sure it violates the same invariant (otherwise the run found is
kept).

>>> from vmactors.testing import VM
>>> s = VM().scenario('name = "t"\\n[[map]]\\nname = "A"\\nfill = 7\\n[[thread]]\\nops = ["r0 = load A"]\\n')
>>> from vmactors.system.machine import Machine
>>> from .por import Reducer
>>> m = Machine(s, "mmap_sem")
>>> shorten(m, Reducer(m), (0, 0), "coherence") is None  # no violation there
True
"""

from __future__ import annotations

from collections.abc import Sequence

from ..actors.effects import RecordingEffects
from ..invariants import check_step
from ..system.machine import Machine
from ..system.state import Step, StepResult, System
from .por import Effect, Reducer


def _dependent(a: Effect, a_step: Step, b: Effect, b_step: Step) -> bool:
    """Whether step b (later) must stay after step a."""
    if a.slot == b.slot:
        return True
    if a.writes & (b.reads | b.writes) or b.writes & a.reads:
        return True
    # b takes a message a sent (channels are FIFO per sender, and a channel has one sender).
    return b_step.src is not None and b_step.src == a_step.actor and b.slot in a.sends


def shorten(machine: Machine, reducer: Reducer, choices: Sequence[int], invariant: str
            ) -> tuple[tuple[int, ...], str] | None:
    """The choices of a shorter run than `choices`' whose last step violates
    `invariant`, and the violation's text; None when no shorter one is shown."""
    m = machine
    system = m.initial
    steps: list[Step] = []
    effects: list[Effect] = []
    violated = None
    for i, c in enumerate(choices):
        enabled = m.enabled(system)
        if c >= len(enabled):
            return None
        step = enabled[c]
        r = m.apply(system, step, RecordingEffects)
        steps.append(step)
        effects.append(reducer.effect(system, step, r))
        if _violation(system, r, invariant) is not None:
            violated = i
            break
        system = r.system
    if violated is None:
        return None
    cone = [violated]
    for i in range(violated - 1, -1, -1):
        if any(_dependent(effects[i], steps[i], effects[j], steps[j]) for j in cone):
            cone.append(i)
    if len(cone) == violated + 1:
        return None
    system = m.initial
    out: list[int] = []
    for i in sorted(cone):
        enabled = m.enabled(system)
        if steps[i] not in enabled:
            return None
        c = enabled.index(steps[i])
        r = m.apply(system, enabled[c])
        out.append(c)
        detail = _violation(system, r, invariant)
        if detail is not None:
            return tuple(out), detail
        system = r.system
    return None  # the shorter run does not violate it: keep the run found


def _violation(system: System, result: StepResult, invariant: str) -> str | None:
    return next((v.detail for v in check_step(system, result) if v.invariant == invariant), None)


__all__ = ["shorten"]
