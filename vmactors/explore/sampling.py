"""Random and PCT sampling: many seeded runs, aggregated like an exhaustive search.

Run i of a sampling with seed S uses its own seed, derived from (S, i) by a stable
digest, so the same runs happen whatever `--jobs` splits them into.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

from ..scenario.exists import evaluate
from ..scenario.model import Scenario
from ..sim.run import Run, RunResult, reg_map
from ..sim.strategies import make
from .results import Exploration, Finding, FinalState, sort_states, verdict


def run_seed(seed: int, index: int) -> int:
    """The seed of run `index` of a sampling seeded `seed` (stable across processes)."""
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


#: Per run: (regs, end, exists, {invariant: (step of its first violation, choices, detail)}).
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
        result, first = run_recording_violations(run)
        held = evaluate(scenario.exists, reg_map(result.regs), run.labels) if scenario.exists else None
        found = {}
        for v in result.first_violations:
            at = first.get(v.invariant, result.steps)
            # The choices up to the violating step are a counterexample by themselves.
            found[v.invariant] = (at, result.choices[:at], v.detail)
        end = result.outcome if result.outcome in ("deadlock", "step-limit") else "ok"
        out.append((tuple(result.regs.items()), end, held, found))
        if progress is not None:
            progress(n + 1)
    return out


def run_recording_violations(run: Run) -> tuple[RunResult, dict[str, int]]:
    """Run to the end with the direct driver; also the step at which each invariant
    was first violated."""
    first: dict[str, int] = {}
    loop = run.loop()
    try:
        _, step = next(loop)
        while True:
            nxt = loop.send(run.machine.apply(run.system, step))
            if len(run.violated) != len(first):
                for name in run.violated:
                    first.setdefault(name, run.system.step)
            _, step = nxt
    except StopIteration as stop:
        result: RunResult = stop.value
    for name in result.violations:  # violated by the last step, or a deadlock at the end
        first.setdefault(name, result.steps)
    return result, first


def run_length(scenario: Scenario, policy: str, max_steps: int = 100_000) -> int:
    """PCT's k: the number of steps of the run that never preempts (all choices 0),
    so its d-1 change points fall inside a run rather than past its end."""
    return max(1, Run(scenario, policy, make("replay", 0), 0, None, max_steps).run().steps)


def shrink(scenario: Scenario, policy: str, invariant: str, choices: tuple[int, ...],
           max_steps: int = 100_000, budget: int = 200) -> tuple[tuple[int, ...], int, str]:
    """Shrink a violating choice list toward more zeros (fewer preemptions) and an
    earlier violation, keeping the violation. Greedy, bounded by `budget` replays.
    Returns the choices, the step at which the invariant is first violated under
    them, and that violation's detail."""

    def violates(cs: tuple[int, ...]) -> tuple[int, str] | None:
        run = Run(scenario, policy, make("replay", 0, choices=cs), 0, None, max_steps)
        try:
            result, first = run_recording_violations(run)
        except ValueError:  # a choice out of range after an earlier change
            return None
        if invariant not in first:
            return None
        detail = next(v.detail for v in result.first_violations if v.invariant == invariant)
        return first[invariant], detail

    found = violates(choices)
    if found is None:  # pragma: no cover - the run that found it violates it
        raise AssertionError(f"{invariant} is not violated by its own counterexample")
    best, (at, detail) = choices[:found[0]], found
    tries = 0
    i = len(best) - 1
    while i >= 0 and tries < budget:
        if best[i] != 0:
            cand = best[:i] + (0,) + best[i + 1:]
            tries += 1
            got = violates(cand)
            if got is not None and got[0] <= at:
                best, (at, detail) = cand[:got[0]], got
                i = min(i, len(best))
        i -= 1
    # Kept to the violating step, trailing zeros included: a replay file's choices must
    # reach the step it names (`replay_file.replay_problem`).
    return best, at, detail


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
        _, cs, _ = best[name]
        cs, at, detail = shrink(scenario, policy, name, cs)
        choices[name] = cs
        findings.append(Finding(name, runs_of[name], detail, cs, at))
    e = Exploration(scenario=scenario, policy=policy, strategy=strategy, complete=False, counts="sampled",
                    runs=len(summaries), states=states, exists=verdict(states, scenario.exists is not None),
                    findings=tuple(findings), interrupted=interrupted)
    return e, choices
