"""Exhaustive exploration as a stateful breadth-first search (docs/design.md#exploring).

Level by level from the initial state, each distinct state (by its canonical form,
`space`) is expanded once however many interleavings reach it, so the first violating step found lies on a shortest
violating run of the graph searched. With reduction on (the default) the graph is
smaller than the full one: steps a partial-order reduction shows redundant are not
followed (`por`) and states that differ only by a permutation of interchangeable
CPUs are one (`symmetry`); the final states, the `exists` verdict and the violated
invariants are those of the full graph, the counts are those of the reduced one.

A search stops early at `--max-states` (it never holds more), at `--time-limit`, at
`--max-memory`, or when interrupted (Ctrl-C, SIGTERM); it then reports what it found:
the final states it reached, the violations it saw, and how many states were left.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any

import attrs

from ..scenario.exists import evaluate
from ..scenario.model import Scenario
from ..sim.run import reg_map
from .graph import StateGraph
from .results import CYCLE, INTERRUPTED, Cut, Exploration, Finding, FinalState, sort_states, verdict
from .shorten import shorten
from .space import Expander, Options
from .symmetry import expand_final_states

DEFAULT_MAX_STATES = 200_000

#: progress(states, frontier)
Progress = Callable[[int, int], None]


@attrs.frozen
class Limits:
    """When a search stops before it is complete."""

    max_states: int = DEFAULT_MAX_STATES
    max_steps: int = 100_000
    #: Seconds of wall time (None: no limit).
    time_limit: float | None = None
    #: Bytes of resident memory (None: no limit).
    max_memory: int | None = None


def explore_exhaustive(
    scenario: Scenario,
    policy_name: str,
    *,
    max_states: int = DEFAULT_MAX_STATES,
    max_steps: int = 100_000,
    progress: Progress | None = None,
    options: Options = Options(),
    time_limit: float | None = None,
    max_memory: int | None = None,
) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
    """Explore every interleaving; returns the exploration and, per violated
    invariant, the choice list of a shortest violating run found."""
    search = Search(Expander(scenario, policy_name, options),
                    Limits(max_states, max_steps, time_limit, max_memory), progress)
    search.run()
    return search.result()


class Search:
    """One breadth-first search in this process."""

    def __init__(self, expander: Expander, limits: Limits = Limits(), progress: Progress | None = None) -> None:
        self.expander = expander
        self.limits = limits
        self.progress = progress
        key, system, flags = expander.root()
        self.graph = StateGraph(key)
        #: Nodes found but not expanded: node -> (system, flags).
        self.pending: dict[int, tuple[Any, frozenset[str]]] = {0: (system, flags)}
        self.level: list[int] = [0]
        self.cut: Cut | None = None
        self._freeze = False
        self._deadline = None if limits.time_limit is None else time.monotonic() + limits.time_limit

    @property
    def frontier(self) -> int:
        """States found and not yet expanded."""
        return len(self.pending)

    def run(self) -> None:
        # The states a search holds live until it ends and have no cycles; left to
        # the cyclic collector, each full collection walks all of them. So they are
        # frozen as they come (`_expand_level`), unless something else in this
        # process froze objects, whose thawing is then not the search's to do.
        self._freeze = gc.get_freeze_count() == 0
        try:
            while self.level and self.cut is None:
                self.level = self._expand_level(self.level)
        except KeyboardInterrupt:
            self.cut = INTERRUPTED
        finally:
            if self._freeze:
                gc.unfreeze()

    def _expand_level(self, level: list[int]) -> list[int]:
        g, x, lim = self.graph, self.expander, self.limits
        index, enabled = g.index, x.machine.enabled
        nxt: list[int] = []
        for n, i in enumerate(level):
            if n % 64 == 0:
                if self._freeze:
                    gc.freeze()
                self.cut = over_budget(self.limits, self._deadline)
                if self.cut is not None:
                    return level[n:]
                if self.progress is not None:
                    self.progress(len(g), len(self.pending))
            system, flags = self.pending[i]
            steps = enabled(system)
            final = x.final(system, g.depth[i], lim.max_steps, steps)
            if final is not None:
                del self.pending[i]
                g.final(i, final)
                continue
            edges = x.expand(system, flags, g.depth[i], steps)
            # One look-up per edge: a hit compares two equal states field by field.
            known = [index.get(e.key) for e in edges]
            if len(g) + known.count(None) > lim.max_states:
                self.cut = Cut.max_states(lim.max_states)
                return level[n:]
            del self.pending[i]
            succ = g.succ[i]
            for e, j in zip(edges, known):
                if j is None:
                    j, fresh = g.add(e.key, i, e.choice)
                    if fresh:
                        self.pending[j] = (e.system, e.flags)
                        nxt.append(j)
                if e.violations:
                    g.edge(i, j, e.choice, e.violations)
                else:  # `g.edge` without a witness to record
                    succ.append((j, 0))
                    g.transitions += 1
        return nxt

    def result(self) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
        return assemble(self.expander, self.graph, self.cut, len(self.pending))


def over_budget(limits: Limits, deadline: float | None) -> Cut | None:
    """The cut a search must make now for its time limit (`deadline`, in
    time.monotonic()) or its memory limit, if either is passed."""
    if deadline is not None and time.monotonic() > deadline:
        assert limits.time_limit is not None
        return Cut.time_limit(limits.time_limit)
    if limits.max_memory is not None and resident_bytes() > limits.max_memory:
        return Cut.max_memory(limits.max_memory)
    return None


def resident_bytes() -> int:
    """This process's resident memory (Linux: /proc; elsewhere its peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def assemble(expander: Expander, g: StateGraph, cut: Cut | None, frontier: int
             ) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
    """What a search's graph says (its cut, if any, and the states left unexpanded)."""
    scenario = expander.scenario
    machine = expander.machine
    paths, runs_of, acyclic = g.counts()
    if not acyclic and cut is None:
        cut = CYCLE
    grouped: dict[tuple[Any, str], int] = {}
    first: dict[tuple[Any, str], int] = {}
    for i, f in g.finals.items():
        k = (f.regs, f.end)
        grouped[k] = grouped.get(k, 0) + paths[i]
        first.setdefault(k, i)  # nodes are numbered breadth-first: the nearest first
    states = []
    for (regs, end), count in grouped.items():
        node = first[(regs, end)]
        states.append(FinalState(regs, end, count, None, tuple(g.path(node)), g.depth[node]))
    if expander.options.symmetry:
        states = expand_final_states(machine, expander.symmetry, states)
    labels = machine.labels
    states = [attrs.evolve(s, exists=evaluate(scenario.exists, reg_map(dict(s.regs)), labels))
              if scenario.exists is not None else s for s in states]
    sorted_states = sort_states(states)
    findings = []
    choices: dict[str, tuple[int, ...]] = {}
    for name in sorted(g.witnesses):
        w = g.witnesses[name]
        path, detail = tuple(g.witness_path(name)), w.detail
        if expander.reducer is not None:  # the reduced graph's shortest may not be the shortest
            shorter = shorten(machine, expander.reducer, path, name)
            if shorter is not None:
                path, detail = shorter
        choices[name] = path
        findings.append(Finding(name, runs_of.get(name, 0), detail, path, len(path)))
    complete = cut is None
    exploration = Exploration(
        scenario=scenario,
        policy=machine.policy.name,
        strategy="exhaustive",
        complete=complete,
        counts=expander.options.counts,
        runs=sum(s.count for s in sorted_states),
        states=sorted_states,
        exists=verdict(sorted_states, scenario.exists is not None, complete),
        findings=tuple(findings),
        distinct_states=len(g),
        transitions=g.transitions,
        cut=cut,
        interrupted=cut == INTERRUPTED,
        frontier=frontier,
    )
    return exploration, choices


__all__ = ["explore_exhaustive", "Search", "Limits", "assemble", "resident_bytes", "DEFAULT_MAX_STATES"]
