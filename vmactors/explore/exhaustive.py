"""Exhaustive exploration as a stateful search (docs/design.md#exploring).

Breadth-first over canonical states (`canon.state_key`), so each distinct state is
expanded once however many interleavings reach it, and the first violating step
found lies on a shortest violating run. Interleaving counts are then computed over
the state graph: the number of paths from the initial state to each final state
(exact big integers), and, per invariant, the number of paths that cross a
violating step.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Hashable

import attrs

from ..invariants import check_step
from ..scenario.exists import evaluate
from ..scenario.model import Scenario
from ..sim.run import reg_map
from ..system.machine import Machine
from ..system.state import Step, System
from .canon import state_key
from .results import Exploration, Finding, FinalState, sort_states, verdict

DEFAULT_MAX_STATES = 200_000

Progress = Callable[[int, int], None]


@attrs.frozen
class _Witness:
    node: int
    step: Step | None  # None: the node itself is the witness (deadlock)
    detail: str
    length: int


def explore_exhaustive(
    scenario: Scenario,
    policy_name: str,
    *,
    max_states: int = DEFAULT_MAX_STATES,
    max_steps: int = 100_000,
    progress: Progress | None = None,
) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
    """Explore every interleaving; returns the exploration and, per violated
    invariant, the choice list of a shortest violating run."""
    machine = Machine(scenario, policy_name)
    init, labels = machine.initial, machine.labels
    keys: dict[Hashable, int] = {state_key(machine, init): 0}
    systems: list[System | None] = [init]
    depth = [0]
    parent: list[tuple[int, Step] | None] = [None]
    succ: list[list[tuple[int, int]]] = [[]]
    finals: dict[int, tuple[tuple[tuple[str, object], ...], str]] = {}
    bits: dict[str, int] = {}
    witnesses: dict[str, _Witness] = {}
    queue = deque([0])
    cut: str | None = None
    transitions = 0

    try:
        while queue:
            i = queue.popleft()
            system = systems[i]
            assert system is not None
            systems[i] = None  # expanded: only its key and edges are kept
            steps = machine.enabled(system)
            end = None
            if not steps:
                end = "ok" if machine.finished(system) else "deadlock"
            elif depth[i] >= max_steps:
                end = "step-limit"
            if end is not None:
                finals[i] = (tuple(machine.final_regs(system).items()), end)
                if end == "deadlock" and "deadlock" not in witnesses:
                    witnesses["deadlock"] = _Witness(i, None, "no step is enabled and a thread is unfinished", depth[i])
                continue
            if len(keys) >= max_states:
                cut = f"--max-states {max_states} reached"
                queue.appendleft(i)
                systems[i] = system
                break
            for step in steps:
                result = machine.apply(system, step)
                transitions += 1
                mask = 0
                for v in check_step(system, result):
                    b = bits.setdefault(v.invariant, 1 << len(bits))
                    mask |= b
                    if v.invariant not in witnesses:
                        witnesses[v.invariant] = _Witness(i, step, v.detail, depth[i] + 1)
                k = state_key(machine, result.system)
                j = keys.get(k)
                if j is None:
                    j = keys[k] = len(systems)
                    systems.append(result.system)
                    depth.append(depth[i] + 1)
                    parent.append((i, step))
                    succ.append([])
                    queue.append(j)
                succ[i].append((j, mask))
            if progress is not None and i % 256 == 0:
                progress(len(keys), len(queue))
    except KeyboardInterrupt:
        cut = "interrupted"

    # Count interleavings over the graph, in topological order.
    n = len(systems)
    indeg = [0] * n
    for i in range(n):
        for j, _ in succ[i]:
            indeg[j] += 1
    paths = [0] * n
    paths[0] = 1
    clean = {name: [0] * n for name in bits}
    for name in clean:
        clean[name][0] = 1
    order = deque(i for i in range(n) if indeg[i] == 0)
    done = 0
    while order:
        i = order.popleft()
        done += 1
        for j, mask in succ[i]:
            paths[j] += paths[i]
            for name, b in bits.items():
                if not mask & b:
                    clean[name][j] += clean[name][i]
            indeg[j] -= 1
            if indeg[j] == 0:
                order.append(j)
    if done < n and cut is None:
        cut = "the state graph has a cycle (a livelock), so interleavings cannot be counted"

    grouped: dict[tuple, int] = {}
    first_node: dict[tuple, int] = {}
    for i, key in finals.items():
        grouped[key] = grouped.get(key, 0) + paths[i]
        first_node.setdefault(key, i)  # nodes are numbered in BFS order: the nearest first
    states = []
    for (regs, end), count in grouped.items():
        held = evaluate(scenario.exists, reg_map(dict(regs)), labels) if scenario.exists is not None else None
        node = first_node[(regs, end)]
        states.append(FinalState(regs, end, count, held, to_choices(machine, _path_to(parent, node)), depth[node]))
    sorted_states = sort_states(states)

    runs_of: dict[str, int] = {name: sum(paths[i] - clean[name][i] for i in finals) for name in bits}
    if "deadlock" in witnesses:
        runs_of["deadlock"] = sum(paths[i] for i, (_, end) in finals.items() if end == "deadlock")
    findings = []
    choices: dict[str, tuple[int, ...]] = {}
    for name in sorted(witnesses):
        w = witnesses[name]
        path = _path_to(parent, w.node)
        if w.step is not None:
            path.append(w.step)
        choices[name] = to_choices(machine, path)
        findings.append(Finding(name, runs_of.get(name, 0), w.detail, choices[name], w.length))
    total = sum(s.count for s in sorted_states)
    exploration = Exploration(
        scenario=scenario,
        policy=machine.policy.name,
        strategy="exhaustive",
        complete=cut is None,
        counts="exact",
        runs=total,
        states=sorted_states,
        exists=verdict(sorted_states, scenario.exists is not None),
        findings=tuple(findings),
        distinct_states=len(keys),
        transitions=transitions,
        cut=cut,
    )
    return exploration, choices


def _path_to(parent: list[tuple[int, Step] | None], node: int) -> list[Step]:
    path: list[Step] = []
    while parent[node] is not None:
        p = parent[node]
        assert p is not None
        node, step = p
        path.append(step)
    path.reverse()
    return path


def to_choices(machine: Machine, path: list[Step]) -> tuple[int, ...]:
    """The choice list (indices into each step's enabled list) that takes `path`."""
    system = machine.initial
    out = []
    for step in path:
        out.append(machine.enabled(system).index(step))
        system = machine.apply(system, step).system
    return tuple(out)
