"""PCT against random on bugs of known depth (docs/design.md#performance-goals, docs/design.md#reproducible-runs): how often one run
finds the violation, next to PCT's guarantee 1/(n·k^(d-1)) (Burckhardt et al.,
ASPLOS 2010: n actors, k steps, bug depth d).

The main scenario is a munmap racing a reader that touches A twice, under the
`*-free-before-flush` ablations: the reader must fault A in before the munmap takes
the range, be preempted, and load again through its TLB entry after the frame was
freed but before its IPI — an ordering plus one preemption, a depth-2 bug.

PCT runs twice: with the strategy's default k (the CLI's `--strategy pct`), and
with k set to the scenario's measured run length, as the paper prescribes.

    .venv/bin/python benchmarks/bench_pct.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import inspect
import math

from _common import inline, machine, table, timed

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.sampling import run_seed
from vmactors.sim.run import Run
from vmactors.sim.strategies import PctStrategy, RandomStrategy, make

DEFAULT_K = inspect.signature(PctStrategy.__init__).parameters["k"].default

MUNMAP_READER = inline("""
name = "munmap-with-reader"
[[map]]
name = "A"
fill = 1
[[thread]]
ops = ["munmap A"]
[[thread]]
ops = ["r0 = load A", "r1 = load A"]
""", "munmap-with-reader")

CASES = [
    (MUNMAP_READER, "mmap_sem-free-before-flush", "frame-uaf", 2),
    (MUNMAP_READER, "wilcox-free-before-flush", "frame-uaf", 2),
]


def rate(scenario, policy, invariant, strategy_of, runs: int) -> tuple[int, float, float]:
    hits = steps = 0
    for i in range(runs):
        seed = run_seed(0, i)
        r = Run(scenario, policy, strategy_of(seed), seed).run()
        hits += invariant in r.violations
        steps += r.steps
    return hits, hits / runs, steps / runs


def wilson(hits: int, n: int) -> str:
    """95% Wilson interval, in percent."""
    if n == 0:
        return ""
    p, z = hits / n, 1.96
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return f"{100 * max(0, c - h):.2f}-{100 * (c + h):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000, help="runs per strategy (default 1000)")
    args = ap.parse_args()
    print(f"bench_pct  {machine()}\n")
    for scenario, policy, invariant, depth in CASES:
        el, (e, _) = timed(lambda: explore_exhaustive(scenario, policy))
        found = {f.invariant: f for f in e.findings}
        uniform = found[invariant].runs / e.runs if invariant in found else 0.0
        _, _, k = rate(scenario, policy, invariant, lambda s: RandomStrategy(s), 50)
        k = round(k)
        n = len(Run(scenario, policy, RandomStrategy(0)).system.actor_names())
        bound = 1 / (n * k ** (depth - 1))
        print(f"{scenario.name} under {policy}: {invariant}, a depth-{depth} bug")
        print(f"  exhaustive: {e.runs:,} interleavings, {found[invariant].runs if invariant in found else 0:,} violate "
              f"({100 * uniform:.2f}% of interleavings; shortest {found[invariant].steps} steps)")
        print(f"  n = {n} actors (CPUs and service actors), k = {k} steps per run (mean) -> "
              f"PCT bound 1/(n*k^(d-1)) = {100 * bound:.2f}% per run for d = {depth}")
        print(f"  (the strategy's default k = {DEFAULT_K} draws change points past the end of most runs: "
              f"its bound is {100 / (n * DEFAULT_K ** (depth - 1)):.3f}%)")
        rows = []
        strategies = [("random", lambda s: RandomStrategy(s))]
        for d in (1, 2, 3):
            strategies.append((f"PCT d={d}, default k", lambda s, d=d: make("pct", s, depth=d)))
        for d in (2, 3):
            strategies.append((f"PCT d={d}, k={k}", lambda s, d=d: PctStrategy(s, d, k=k)))
        for label, strategy_of in strategies:
            el, (hits, r, _) = timed(lambda: rate(scenario, policy, invariant, strategy_of, args.runs))
            rows.append((label, args.runs, hits, f"{100 * r:.2f}", wilson(hits, args.runs),
                         "yes" if r >= bound else "no", args.runs / el))
        print(table(("strategy", "runs", "found", "rate %", "95% CI %", ">= bound", "runs/s"), rows))
        print()


if __name__ == "__main__":
    main()
