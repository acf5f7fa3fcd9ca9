"""The state graph a breadth-first search builds, and what it says once the search
stops: final states with their interleaving counts, violations with their shortest
counterexamples, and, when the search was cut, what is still unexplored.

Nodes are numbered in the order the search finds them, which is breadth-first and,
within a level, by the parent's number and then the step's choice index; every choice
the graph makes — the parent a node's shortest path goes through, the counterexample
kept for an invariant, the run kept for a final state — is the least node number or
(node, choice), so it is the one a one-process search meets first, and a search
sharded over processes, which numbers nodes by the same rule, makes the same choices.

Counts are computed over the graph in topological order (exact big integers): the
number of paths from the root to each final state and, per invariant, the number
that cross a violating edge. A cut search counts the paths it saw.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable

import attrs

from ..invariants import Violation
from .space import Final


@attrs.frozen
class Witness:
    """Where an invariant is first violated on a shortest path: the edge from
    `node` by `choice` (or the node itself, for a deadlock)."""

    depth: int
    node: int
    choice: int
    detail: str


class StateGraph:
    """Nodes, edges, finals and witnesses of one search."""

    def __init__(self, root_key: Hashable) -> None:
        self.index: dict[Hashable, int] = {root_key: 0}
        self.depth: list[int] = [0]
        #: A node's parent on a shortest path: (parent node, choice).
        self.parent: list[tuple[int, int] | None] = [None]
        self.succ: list[list[tuple[int, int]]] = [[]]
        self.finals: dict[int, Final] = {}
        self.bits: dict[str, int] = {}
        self.witnesses: dict[str, Witness] = {}
        self.transitions = 0

    def __len__(self) -> int:
        return len(self.depth)

    def add(self, key: Hashable, parent: int, choice: int) -> tuple[int, bool]:
        """The node of `key`, reached from `parent` by `choice`: (node, new?)."""
        j = self.index.get(key)
        if j is None:
            j = self.index[key] = self.node(parent, choice)
            return j, True
        return j, False

    def node(self, parent: int, choice: int) -> int:
        """A new node, reached from `parent` by `choice`, without a key (a sharded
        search's coordinator: the shards hold the keys)."""
        j = len(self.depth)
        self.depth.append(self.depth[parent] + 1)
        self.parent.append((parent, choice))
        self.succ.append([])
        return j

    def edge(self, parent: int, child: int, choice: int, violations: Iterable[Violation]) -> None:
        mask = 0
        for v in violations:
            b = self.bits.setdefault(v.invariant, 1 << len(self.bits))
            mask |= b
            w = Witness(self.depth[parent] + 1, parent, choice, v.detail)
            old = self.witnesses.get(v.invariant)
            if old is None or (w.depth, w.node, w.choice) < (old.depth, old.node, old.choice):
                self.witnesses[v.invariant] = w
        self.succ[parent].append((child, mask))
        self.transitions += 1

    def final(self, node: int, final: Final) -> None:
        self.finals[node] = final
        if final.end == "deadlock":
            w = Witness(self.depth[node], node, -1, "no step is enabled and a thread is unfinished")
            old = self.witnesses.get("deadlock")
            if old is None or (w.depth, w.node) < (old.depth, old.node):
                self.witnesses["deadlock"] = w

    # --- after the search ---------------------------------------------------------------------

    def path(self, node: int) -> list[int]:
        """The choices of the recorded shortest path from the root to `node`."""
        out: list[int] = []
        while (p := self.parent[node]) is not None:
            node, choice = p
            out.append(choice)
        out.reverse()
        return out

    def witness_path(self, invariant: str) -> list[int]:
        w = self.witnesses[invariant]
        path = self.path(w.node)
        if w.choice >= 0:
            path.append(w.choice)
        return path

    def counts(self) -> tuple[list[int], dict[str, int], bool]:
        """Paths from the root to each node, violating paths per invariant (those
        that end in a final state), and whether the graph is acyclic."""
        n = len(self.depth)
        indeg = [0] * n
        for edges in self.succ:
            for j, _ in edges:
                indeg[j] += 1
        paths = [0] * n
        paths[0] = 1
        clean = {name: [0] * n for name in self.bits}
        for c in clean.values():
            c[0] = 1
        order = deque(i for i in range(n) if indeg[i] == 0)
        done = 0
        bits = list(self.bits.items())
        while order:
            i = order.popleft()
            done += 1
            pi = paths[i]
            for j, mask in self.succ[i]:
                paths[j] += pi
                for name, b in bits:
                    if not mask & b:
                        clean[name][j] += clean[name][i]
                indeg[j] -= 1
                if indeg[j] == 0:
                    order.append(j)
        runs = {name: sum(paths[i] - clean[name][i] for i in self.finals) for name in self.bits}
        if "deadlock" in self.witnesses:
            runs["deadlock"] = sum(paths[i] for i, f in self.finals.items() if f.end == "deadlock")
        return paths, runs, done == n


__all__ = ["StateGraph", "Witness"]
