"""Exploration speed (docs/design.md#performance-goals): exhaustive time, distinct states and states/s per
library scenario and main policy (goal: a few seconds each — taken here as <= 5 s);
random and PCT runs/s; the `--jobs 2` speed-up on sampling and on a 4-policy
exhaustive exploration (goal >= 1.7x on 2 cores), measured through
`vmactors.explore.runner.explore`.

    .venv/bin/python benchmarks/bench_explore.py [--runs 2000] [--sample-seconds 0.15]
"""

from __future__ import annotations

import argparse
import os
import time

from _common import MAIN_POLICIES, library, machine, table, timed, verdict

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.runner import ExploreOptions, explore
from vmactors.explore.sampling import sample_runs

FEW_SECONDS = 5.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000, help="random runs for the --jobs speed-up (default 2000)")
    ap.add_argument("--sample-seconds", type=float, default=0.15, help="seconds per runs/s figure (default 0.15)")
    ap.add_argument("--speedup-scenario", default="mapfixed-two-readers")
    ap.add_argument("--speedup-policy", default="glisse",
                    help="policy for the sampling speed-up (one without findings, so no shrinking; default glisse)")
    args = ap.parse_args()
    scenarios = library()
    print(f"bench_explore  {machine()}\n")

    print("Exhaustive search (stateful, BFS over canonical states), one process")
    rows = []
    worst = 0.0
    seconds: dict[tuple[str, str], float] = {}
    for s in scenarios:
        for p in MAIN_POLICIES:
            el, (e, _) = timed(lambda: explore_exhaustive(s, p))
            seconds[s.name, p] = el
            worst = max(worst, el)
            rows.append((s.name, p, el, e.distinct_states, e.transitions, e.distinct_states / el,
                         "yes" if e.complete else f"NO ({e.cut})", verdict(el <= FEW_SECONDS)))
    print(table(("scenario", "policy", "seconds", "states", "transitions", "states/s", "complete",
                 f"<= {FEW_SECONDS:g} s"), rows))
    print(f"slowest: {worst:.2f} s (goal: a few seconds each: {verdict(worst <= FEW_SECONDS)})\n")

    print(f"Sampling, one process (each row: runs for about {args.sample_seconds:g} s per strategy)")
    rows = []
    for s in scenarios:
        for p in MAIN_POLICIES:
            rates = []
            for strategy in ("random", "pct"):
                done = 0
                t = time.perf_counter()
                while (el := time.perf_counter() - t) < args.sample_seconds or done < 10:
                    done += len(sample_runs(s, p, strategy, 0, range(done, done + 10)))
                rates.append(done / el)
            rows.append((s.name, p, rates[0], rates[1]))
    print(table(("scenario", "policy", "random runs/s", "PCT runs/s"), rows) + "\n")

    target = next((s for s in scenarios if s.name == args.speedup_scenario), scenarios[0])
    print(f"--jobs speed-up on {target.name}, through runner.explore ({os.cpu_count()} CPUs)")
    machine_speedup = baseline_speedup()
    print(f"the machine itself, right now: two equal pure-Python jobs on 2 processes finish {machine_speedup:.2f}x "
          f"as fast as on 1 (the ceiling for any --jobs 2 figure below)")
    rows = []
    speedups = []
    cases = [
        (f"{args.runs} random runs [{args.speedup_policy}]", [args.speedup_policy],
         dict(strategy="random", runs=args.runs)),
        ("exhaustive, 4 policies", list(MAIN_POLICIES), dict(strategy="exhaustive")),
    ]
    for label, policies, kw in cases:
        times = {}
        cpu = {}
        for jobs in (1, 2):
            opts = ExploreOptions(jobs=jobs, save=None, **kw)
            before = cpu_seconds()
            times[jobs], _ = timed(lambda: explore(target, policies, opts))
            cpu[jobs] = cpu_seconds() - before
        speedup = times[1] / times[2]
        speedups.append(speedup)
        rows.append((label, times[1], times[2], speedup, cpu[1], cpu[2], verdict(speedup >= 1.7)))
    print(table(("workload", "--jobs 1 s", "--jobs 2 s", "speed-up", "CPU s, 1 job", "CPU s, 2 jobs",
                 "goal >= 1.7x"), rows))
    print("(CPU s: user+sys of this process and its workers. If 2 jobs use about the CPU time of 1 but the\n"
          " wall time does not halve, the second core was busy with something else: see the load average.)")
    # One job per policy: the best 2-process speed-up is bounded by the longest
    # policy, and the pool takes the policies in the order given.
    el = {p: seconds[target.name, p] for p in MAIN_POLICIES}
    total = sum(el.values())
    given = makespan([el[p] for p in MAIN_POLICIES], 2)
    longest_first = makespan(sorted(el.values(), reverse=True), 2)
    print(f"exhaustive, one job per policy (seconds from the first table: "
          f"{', '.join(f'{p} {t:.2f}' for p, t in el.items())}):\n"
          f"  2 workers taking the policies in the order given finish after {given:.2f} s -> at best "
          f"{total / given:.2f}x;\n  longest first: {longest_first:.2f} s -> {total / longest_first:.2f}x; "
          f"no schedule beats total/longest = {total / max(max(el.values()), total / 2):.2f}x")


def _burn(n: int) -> int:
    x = 0
    for i in range(n):
        x += i * i
    return x


def baseline_speedup(n: int = 5_000_000) -> float:
    """How much faster two processes do two equal pure-Python jobs than one does."""
    from concurrent.futures import ProcessPoolExecutor

    one, _ = timed(lambda: (_burn(n), _burn(n)))
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_burn, [1000, 1000]))  # workers started before timing
        two, _ = timed(lambda: list(pool.map(_burn, [n, n])))
    return one / two


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def makespan(durations: list[float], workers: int) -> float:
    """When the last of `durations` ends if each free worker takes the next one in order."""
    free = [0.0] * workers
    for d in durations:
        i = free.index(min(free))
        free[i] += d
    return max(free)


if __name__ == "__main__":
    main()
