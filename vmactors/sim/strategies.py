"""Scheduling strategies: each picks one of the enabled steps (an index), seeded.

Choice 0 means "the actor that ran last goes on" (see `system.enabled`), so every
strategy's choice list can be replayed by `Replay` and shrunk toward zeros.
"""

from __future__ import annotations

import random
from typing import Protocol, Sequence

from ..system.state import Step


class Strategy(Protocol):
    name: str

    def choose(self, steps: Sequence[Step], step_no: int) -> int: ...


class RandomStrategy:
    """Uniformly random among the enabled steps (seeded)."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def choose(self, steps: Sequence[Step], step_no: int) -> int:
        return self._rng.randrange(len(steps))


class PctStrategy:
    """PCT (Burckhardt et al., ASPLOS 2010): random distinct actor priorities, the
    highest-priority actor with an enabled step runs; at d-1 random change points
    (steps drawn from 1..k) the running actor's priority drops below all others.

    An actor may have several enabled steps (a CPU's next op and an IPI waiting for
    it): PCT picks among them at random, so an IPI can come before the CPU's next op
    (the window where stale TLB entries bite) without costing a change point."""

    name = "pct"

    def __init__(self, seed: int, depth: int = 3, k: int = 200) -> None:
        self._rng = random.Random(seed)
        self._depth = depth
        self._k = max(k, 1)
        self._prio: dict[str, float] = {}
        self._changes = sorted(self._rng.sample(range(1, self._k + 1), min(depth - 1, self._k))) if depth > 1 else []
        self._low = 0.0

    def _priority(self, actor: str) -> float:
        if actor not in self._prio:
            self._prio[actor] = 1.0 + self._rng.random()
        return self._prio[actor]

    def _best(self, steps: Sequence[Step]) -> str:
        return max((s.actor.name for s in steps), key=self._priority)

    def choose(self, steps: Sequence[Step], step_no: int) -> int:
        actor = self._best(steps)
        if self._changes and step_no >= self._changes[0]:
            self._changes.pop(0)
            self._low -= 1.0
            self._prio[actor] = self._low
            actor = self._best(steps)
        mine = [i for i, s in enumerate(steps) if s.actor.name == actor]
        return mine[0] if len(mine) == 1 else mine[self._rng.randrange(len(mine))]


class ReplayStrategy:
    """Follows a recorded choice list, one choice per scheduler decision (steps a test
    took as a stand-in are not decisions); past its end, choice 0."""

    name = "replay"

    def __init__(self, choices: Sequence[int]) -> None:
        self._choices = list(choices)
        self._made = 0

    def choose(self, steps: Sequence[Step], step_no: int) -> int:
        i = self._made
        self._made += 1
        c = self._choices[i] if i < len(self._choices) else 0
        if c >= len(steps):
            raise ValueError(f"replay choice {c} at step {step_no} but only {len(steps)} steps are enabled")
        return c


def make(name: str, seed: int, depth: int = 3, choices: Sequence[int] = (), k: int = 200) -> Strategy:
    if name == "random":
        return RandomStrategy(seed)
    if name == "pct":
        return PctStrategy(seed, depth, k)
    if name == "replay":
        return ReplayStrategy(choices)
    raise ValueError(f"unknown strategy {name!r}")
