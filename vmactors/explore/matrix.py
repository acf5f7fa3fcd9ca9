"""`vmactors matrix`: the scenario x policy table of verdicts, generated, never typed.

Each cell is the exhaustive `exists` verdict and the invariants violated, e.g.
`sometimes; coherence`. Interrupted (SIGINT, SIGTERM), the table of the cells that
finished is still there (`Matrix.render`); the others read `interrupted`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import attrs

from ..scenario.model import Scenario
from ..scenario.parse import load_scenario
from ..signals import reraise, stop_workers, worker_init
from .check import scenario_files
from .exhaustive import explore_exhaustive

#: A cell whose exploration did not finish.
INTERRUPTED = "interrupted"


def _cell(scenario: Scenario, policy: str, max_states: int) -> str:
    e, _ = explore_exhaustive(scenario, policy, max_states=max_states)
    reraise()  # the search returns what it explored at a signal: not a cell
    parts = [e.exists or "-"]
    violations = [f.invariant for f in e.findings]
    if violations:
        parts.append(", ".join(violations))
    if not e.complete:
        parts.append("incomplete")
    return "; ".join(parts)


@attrs.define
class Matrix:
    """The cells computed so far, in scenario-major order."""

    scenarios: list[Scenario]
    policies: list[str]
    cells: list[str] = attrs.field(factory=list)

    def render(self, markdown: bool = False) -> str:
        n = len(self.policies)
        cells = self.cells + [INTERRUPTED] * (len(self.scenarios) * n - len(self.cells))
        rows = [[s.name] + cells[i * n:(i + 1) * n] for i, s in enumerate(self.scenarios)]
        header = ["scenario"] + self.policies
        if markdown:
            out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(r) + " |" for r in rows]
            return "\n".join(out)
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*header).rstrip(), fmt.format(*["-" * w for w in widths]).rstrip()]
        lines += [fmt.format(*r).rstrip() for r in rows]
        return "\n".join(lines)


def compute(table: Matrix, *, jobs: int = 1, max_states: int = 200_000,
            progress: Callable[[], None] | None = None) -> Matrix:
    """Fill `table`'s cells, in order (with `jobs` > 1 in worker processes, which a
    signal stops at once)."""
    jobs_list = [(s, p) for s in table.scenarios for p in table.policies]
    if jobs > 1:
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=worker_init)
        try:
            futures = [pool.submit(_cell, s, p, max_states) for s, p in jobs_list]
            for f in futures:
                table.cells.append(f.result())
                if progress:
                    progress()
        except BaseException:
            stop_workers(pool)
            raise
        pool.shutdown()
    else:
        for s, p in jobs_list:
            table.cells.append(_cell(s, p, max_states))
            if progress:
                progress()
    return table


def matrix(paths: list[str], policies: list[str], *, jobs: int = 1, markdown: bool = False,
           max_states: int = 200_000, progress: Callable[[], None] | None = None) -> str:
    """The table of every scenario under `paths` and every policy, rendered."""
    table = Matrix([load_scenario(f) for f in scenario_files(paths)], list(policies))
    return compute(table, jobs=jobs, max_states=max_states, progress=progress).render(markdown)
