"""Growth (docs/design.md#performance-goals): tree lookup cost against the number of VMAs (should grow like
log n), run time against CPUs and against ops per thread (should be linear), and
per-step cost against the size of the address space (should be flat: the invariant
checks are incremental).

    .venv/bin/python benchmarks/bench_growth.py
"""

from __future__ import annotations

import argparse
import math
import random
import time

from _common import inline, machine, table

from vmactors.mm.layout import PAGE_SIZE
from vmactors.mm.vma_tree import ZERO, VmaTree
from vmactors.sim.run import Run
from vmactors.sim.strategies import RandomStrategy


def tree_of(n: int) -> VmaTree:
    """n one-page VMAs with one-page gaps, every tenth entry a ZERO, built directly
    (storing them one by one would time the copy-on-update, not the lookup)."""
    base = 0x10000
    starts = tuple(base + 2 * i * PAGE_SIZE for i in range(n))
    ends = tuple(s + PAGE_SIZE for s in starts)
    entries = tuple(ZERO if i % 10 == 9 else f"v{i}" for i in range(n))
    return VmaTree(starts, ends, entries)


def lookups(n: int, count: int) -> float:
    """ns per find_vma on uniformly random addresses (hits, gaps and ZEROs)."""
    tree = tree_of(n)
    rng = random.Random(n)
    top = 0x10000 + 2 * n * PAGE_SIZE
    addrs = [rng.randrange(0x10000, top, 8) for _ in range(count)]
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        for a in addrs:
            tree.find_vma(a)
        best = min(best, time.perf_counter() - t)
    return best / count * 1e9


def loop_overhead(count: int) -> float:
    addrs = list(range(count))
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        for a in addrs:
            pass
        best = min(best, time.perf_counter() - t)
    return best / count * 1e9


def scenario(cpus: int, ops: int, maps: int = 1, munmap: bool = True):
    """`cpus` threads each doing `ops` loads/stores of map A (prefaulted on every
    CPU); the last thread ends with `munmap Z` of a map nobody reads, so every run
    has one shootdown to all CPUs. `maps` maps in all (A, Z and fillers)."""
    lines = ['name = "growth"', f"cpus = {cpus}"]
    names = ["A", "Z"] + [f"M{i}" for i in range(max(0, maps - 2))]
    for name in names[:max(maps, 2)]:
        pre = ", ".join(str(c) for c in range(cpus))
        lines += ["[[map]]", f'name = "{name}"', "fill = 1", f"prefault = [{pre}]"]
    for t in range(cpus):
        body = [f"r{i} = load A" if i % 2 == 0 else f"store A {i}" for i in range(ops)]
        if munmap and t == cpus - 1:
            body.append("munmap Z")
        lines += ["[[thread]]", "ops = [" + ", ".join(f'"{o}"' for o in body) + "]"]
    return inline("\n".join(lines) + "\n", f"growth-{cpus}-{ops}-{maps}")


def time_runs(s, policy: str, runs: int, repeat: int = 3) -> tuple[float, float, float]:
    """(ms per run, mean steps, us per step), setup excluded; the best of `repeat`
    passes over the same seeds (the machine may be shared)."""
    best = math.inf
    steps = 0
    for _ in range(repeat):
        total = 0.0
        steps = 0
        for seed in range(runs):
            run = Run(s, policy, RandomStrategy(seed), seed)
            t = time.perf_counter()
            steps += run.run().steps
            total += time.perf_counter() - t
        best = min(best, total)
    return best / runs * 1e3, steps / runs, best / steps * 1e6


def stores(n: int, count: int = 200) -> float:
    """us per VmaTree.store (a one-page update in the middle of the tree)."""
    tree = tree_of(n)
    mid = tree.starts[n // 2]
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for i in range(count):
            tree.store(mid, mid + PAGE_SIZE, ZERO if i % 2 else None)
        best = min(best, time.perf_counter() - t)
    return best / count * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lookups", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--policy", default="wilcox")
    args = ap.parse_args()
    print(f"bench_growth  {machine()}\n")

    print(f"VmaTree.find_vma, {args.lookups:,} random addresses, best of 5")
    empty = loop_overhead(args.lookups)
    rows = []
    base = None
    for n in (10, 100, 1000, 10_000):
        ns = lookups(n, args.lookups) - empty
        base = base or (ns, math.log2(10))
        rows.append((n, ns, ns / base[0], math.log2(n) / base[1], n / 10, stores(n)))
    print(table(("VMAs", "ns/lookup", "cost vs n=10", "log2 n vs n=10", "n vs n=10", "us/store"), rows))
    print("(loop overhead subtracted from lookups, a bisect over the start addresses: the cost should track\n"
          " log2 n, not n; a store copies the entry tuples, so it grows like n)\n")

    print(f"Run time against CPUs ({args.policy}, 4 loads/stores per thread + one munmap; random strategy, "
          f"{args.runs} runs, best of 3, setup excluded)")
    rows = []
    for cpus in (1, 2, 4, 8, 16):
        ms, steps, us = time_runs(scenario(cpus, 4), args.policy, args.runs)
        rows.append((cpus, steps, ms, us))
    print(table(("CPUs", "steps/run", "ms/run", "us/step"), rows) + "\n")

    print(f"Run time against ops per thread ({args.policy}, 2 CPUs)")
    rows = []
    for ops in (2, 4, 8, 16, 32, 64):
        ms, steps, us = time_runs(scenario(2, ops), args.policy, args.runs)
        rows.append((ops, steps, ms, us))
    print(table(("ops/thread", "steps/run", "ms/run", "us/step"), rows) + "\n")

    print(f"Per-step cost against the address space ({args.policy}, 2 CPUs x 4 ops + munmap; maps prefaulted)")
    rows = []
    for maps in (2, 10, 100, 1000):
        s = scenario(2, 4, maps=maps)
        t = time.perf_counter()
        Run(s, args.policy, RandomStrategy(0), 0)
        setup = (time.perf_counter() - t) * 1e3
        ms, steps, us = time_runs(s, args.policy, args.runs)
        rows.append((maps, setup, steps, ms, us))
    print(table(("maps", "setup ms", "steps/run", "ms/run", "us/step"), rows))


if __name__ == "__main__":
    main()
