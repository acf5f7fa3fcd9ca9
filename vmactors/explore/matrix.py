"""`vmactors matrix`: the scenario x policy table of verdicts, generated, never typed.

Each cell is the exhaustive `exists` verdict and the invariants violated, e.g.
`sometimes; coherence`.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Callable

from ..scenario.model import Scenario
from ..scenario.parse import load_scenario
from .check import scenario_files
from .exhaustive import explore_exhaustive


def _cell(scenario: Scenario, policy: str, max_states: int) -> str:
    e, _ = explore_exhaustive(scenario, policy, max_states=max_states)
    parts = [e.exists or "-"]
    violations = [f.invariant for f in e.findings]
    if violations:
        parts.append(", ".join(violations))
    if not e.complete:
        parts.append("incomplete")
    return "; ".join(parts)


def matrix(paths: list[str], policies: list[str], *, jobs: int = 1, markdown: bool = False,
           max_states: int = 200_000, progress: Callable[[], None] | None = None) -> str:
    scenarios = [load_scenario(f) for f in scenario_files(paths)]
    jobs_list = [(s, p) for s in scenarios for p in policies]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_cell, s, p, max_states) for s, p in jobs_list]
            cells = []
            for f in futures:
                cells.append(f.result())
                if progress:
                    progress()
    else:
        cells = []
        for s, p in jobs_list:
            cells.append(_cell(s, p, max_states))
            if progress:
                progress()
    rows = [[s.name] + cells[i * len(policies):(i + 1) * len(policies)] for i, s in enumerate(scenarios)]
    header = ["scenario"] + policies
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), fmt.format(*["-" * w for w in widths]).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join(lines)
