"""Random and PCT sampling: many seeded runs, aggregated like an exhaustive search.

Run i of a sampling with seed S uses its own seed, derived from (S, i) by a stable
digest, so the same runs happen whatever `--jobs` splits them into.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

from ..scenario.exists import evaluate
from ..scenario.model import Scenario
from ..sim.run import Run, reg_map
from ..sim.strategies import make
from .results import Exploration, Finding, FinalState, sort_states, verdict


def run_seed(seed: int, index: int) -> int:
    """The seed of run `index` of a sampling seeded `seed` (stable across processes)."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


#: Per run: (regs, end, exists, {invariant: (steps, choices, detail)}).
RunSummary = tuple[tuple[tuple[str, object], ...], str, "bool | None", dict[str, tuple[int, tuple[int, ...], str]]]


def sample_runs(scenario: Scenario, policy: str, strategy: str, seed: int, indices: Sequence[int],
                depth: int = 3, max_steps: int = 100_000,
                progress: Callable[[int], None] | None = None,
                sink: list[RunSummary] | None = None) -> list[RunSummary]:
    """Run the sampling runs `indices`; each run's summary is appended to `sink` (a
    fresh list if None) as soon as it ends, so an interrupted sampling keeps them."""
    out: list[RunSummary] = [] if sink is None else sink
    k = run_length(scenario, policy, max_steps) if strategy == "pct" else 200
    for n, i in enumerate(indices):
        run = Run(scenario, policy, make(strategy, run_seed(seed, i), depth=depth, k=k), run_seed(seed, i),
                  None, max_steps)
        result = run.run()
        held = evaluate(scenario.exists, reg_map(result.regs), run.labels) if scenario.exists else None
        found = {}
        for v in result.first_violations:
            found[v.invariant] = (result.steps, result.choices, v.detail)
        end = result.outcome if result.outcome in ("deadlock", "step-limit") else "ok"
        out.append((tuple(result.regs.items()), end, held, found))
        if progress is not None:
            progress(n + 1)
    return out


def run_length(scenario: Scenario, policy: str, max_steps: int = 100_000) -> int:
    """PCT's k: the number of steps of the run that never preempts (all choices 0),
    so its d-1 change points fall inside a run rather than past its end."""
    return max(1, Run(scenario, policy, make("replay", 0), 0, None, max_steps).run().steps)


def shrink(scenario: Scenario, policy: str, invariant: str, choices: tuple[int, ...],
           max_steps: int = 100_000, budget: int = 200) -> tuple[int, ...]:
    """Shrink a violating choice list toward fewer steps and more zeros (fewer
    preemptions), keeping the violation. Greedy, bounded by `budget` replays."""

    def violates(cs: tuple[int, ...]) -> int | None:
        run = Run(scenario, policy, make("replay", 0, choices=cs), 0, None, max_steps)
        try:
            result = run.run()
        except ValueError:  # a choice out of range after an earlier change
            return None
        return result.steps if invariant in result.violations else None

    best = choices
    tries = 0
    i = len(best) - 1
    while i >= 0 and tries < budget:
        if best[i] != 0:
            cand = best[:i] + (0,) + best[i + 1:]
            tries += 1
            if violates(cand) is not None:
                best = cand
        i -= 1
    # Trailing zeros are implied by replay.
    while best and best[-1] == 0:
        best = best[:-1]
    return best


def aggregate(scenario: Scenario, policy: str, strategy: str, summaries: list[RunSummary],
              interrupted: bool = False) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
    grouped: dict[tuple, list] = {}
    best: dict[str, tuple[int, tuple[int, ...], str]] = {}
    runs_of: dict[str, int] = {}
    for regs, end, held, found in summaries:
        g = grouped.setdefault((regs, end), [0, held])
        g[0] += 1
        for name, (steps, cs, detail) in found.items():
            runs_of[name] = runs_of.get(name, 0) + 1
            if name not in best or (steps, len(cs)) < (best[name][0], len(best[name][1])):
                best[name] = (steps, cs, detail)
    states = sort_states([FinalState(regs, end, n, held) for (regs, end), (n, held) in grouped.items()])
    choices = {}
    findings = []
    for name in sorted(best):
        steps, cs, detail = best[name]
        cs = shrink(scenario, policy, name, cs)
        choices[name] = cs
        findings.append(Finding(name, runs_of[name], detail, cs, steps))
    e = Exploration(scenario=scenario, policy=policy, strategy=strategy, complete=False, counts="sampled",
                    runs=len(summaries), states=states, exists=verdict(states, scenario.exists is not None),
                    findings=tuple(findings), interrupted=interrupted)
    return e, choices
