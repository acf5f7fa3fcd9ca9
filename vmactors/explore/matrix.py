"""`vmactors matrix`: the scenario x policy table of verdicts, generated, never typed.

Each cell is the exhaustive `exists` verdict and the invariants violated, e.g.
`sometimes; coherence`. A cell whose search was cut (`--max-states`, `--time-limit`,
`--max-memory`) says so and says only what it saw: `unknown; incomplete` (the
`exists` clause not seen to hold), `sometimes; coherence; incomplete` — never
`never`. Interrupted (SIGINT, SIGTERM), the table of the cells that finished is
still there (`Matrix.render`); the others read `interrupted`.

Cells run one after the other, or side by side over `--jobs N` processes or the
workers of a Dask cluster (`--cluster`).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ..scenario.model import Scenario
from ..scenario.parse import load_scenario
from ..signals import reraise
from .check import scenario_files
from .exhaustive import DEFAULT_MAX_STATES
from .parallel import Exhaustive, cluster, pool

#: A cell whose exploration did not finish.
INTERRUPTED = "interrupted"


def _cell(scenario: Scenario, policy: str, search: Exhaustive) -> str:
    e, _ = search.explore(scenario, policy)
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


def compute(table: Matrix, *, jobs: int = 1, max_states: int = DEFAULT_MAX_STATES,
            progress: Callable[[], None] | None = None, search: Exhaustive | None = None,
            cluster_address: str | None = None) -> Matrix:
    """Fill `table`'s cells, in order: here, or with `jobs` > 1 in worker processes
    (which a signal stops at once), or on the workers of the Dask cluster at
    `cluster_address`. `search` sets the reductions and limits of every search
    (default: the default reductions and `max_states`)."""
    search = search if search is not None else Exhaustive(max_states=max_states)
    cells = [(s, p) for s in table.scenarios for p in table.policies]
    with cluster(cluster_address) as client, pool(jobs, client) as workers:
        if workers is None:
            for s, p in cells:
                table.cells.append(_cell(s, p, search))
                if progress:
                    progress()
        else:
            futures = [workers.submit(_cell, s, p, search) for s, p in cells]
            for f in futures:
                table.cells.append(f.result())
                if progress:
                    progress()
    return table


def matrix(paths: list[str], policies: list[str], *, jobs: int = 1, markdown: bool = False,
           max_states: int = DEFAULT_MAX_STATES, progress: Callable[[], None] | None = None,
           search: Exhaustive | None = None, cluster_address: str | None = None) -> str:
    """The table of every scenario under `paths` and every policy, rendered."""
    table = Matrix([load_scenario(f) for f in scenario_files(paths)], list(policies))
    return compute(table, jobs=jobs, max_states=max_states, progress=progress, search=search,
                   cluster_address=cluster_address).render(markdown)
