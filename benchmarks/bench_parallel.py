"""One large exhaustive exploration, one process against the same search sharded over
two processes (`--jobs 2`) and over a two-worker Dask LocalCluster (`--cluster`),
beside the machine's own two-process baseline, all measured side by side in one run.

The exploration: READERS threads each loading a file map A (prefaulted on their CPUs)
while one more thread replaces A with `mmap A fixed kind=file file=f2 fill=2`, under
wilcox, with the default reductions. Goals (docs/design.md#performance-goals, issue
10): `--jobs 2` at least 1.6x as fast as one process on an idle machine; the cluster
within 1.3x of `--jobs 2`.

The baseline: two equal pure-Python CPU loops run one after the other in one
process, then at once in two processes: the ratio is what this machine gives two
processes right now (2.0 on two idle cores; less when something else runs). Each
round measures everything once, in turn, so that all figures of a round saw the
same load; the table gives every round and the range.

    .venv/bin/python benchmarks/bench_parallel.py                 # 4 readers x 2 loads, 3 rounds (~4 min)
    .venv/bin/python benchmarks/bench_parallel.py --readers 3 --rounds 5 --no-cluster
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import time
from typing import Any

from _common import inline, machine, table

from vmactors.explore.exhaustive import Limits, explore_exhaustive
from vmactors.explore.parallel import explore_sharded
from vmactors.explore.space import Options


def scenario(readers: int, loads: int):  # type: ignore[no-untyped-def]
    cpus = ", ".join(str(i) for i in range(readers))
    lines = ['name = "readers-vs-mapfixed"', '[[map]]', 'name = "A"', 'kind = "file"', 'file = "f1"', "fill = 1",
             f"prefault = [{cpus}]"]
    for _ in range(readers):
        lines += ["[[thread]]", "ops = [" + ", ".join(f'"r{i} = load A"' for i in range(loads)) + "]"]
    lines += ["[[thread]]", 'ops = ["mmap A fixed kind=file file=f2 fill=2"]']
    return inline("\n".join(lines) + "\n", f"readers-{readers}x{loads}")


def burn(n: int) -> int:
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFF
    return x


def baseline(n: int) -> float:
    """Two equal CPU loops: one after the other here, over at once in two processes."""
    t = time.perf_counter()
    burn(n)
    burn(n)
    one = time.perf_counter() - t
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=burn, args=(n,)) for _ in range(2)]
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    two = time.perf_counter() - t
    return one / two


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", type=int, default=4, help="reader threads (default: 4)")
    ap.add_argument("--loads", type=int, default=2, help="loads per reader (default: 2)")
    ap.add_argument("--policy", default="wilcox", help="default: wilcox")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of measurements (default: 3)")
    ap.add_argument("--burn", type=int, default=6_000_000, help="iterations of each baseline loop")
    ap.add_argument("--no-cluster", action="store_true", help="skip the Dask LocalCluster")
    args = ap.parse_args()
    print(f"bench_parallel  {machine()}")
    s = scenario(args.readers, args.loads)
    options, limits = Options(), Limits(max_states=10_000_000)
    print(f"{args.readers} readers x {args.loads} load(s) + MAP_FIXED, {args.policy}, reductions on\n")

    client: Any = None
    cluster: Any = None
    if not args.no_cluster:
        from distributed import Client, LocalCluster

        t = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        client = Client(cluster)
        print(f"LocalCluster of 2 worker processes up in {time.perf_counter() - t:.1f} s (not counted below)\n")

    rows = []
    figures: dict[str, list[float]] = {"base": [], "jobs": [], "cluster": [], "cluster/jobs": []}
    reference = None
    try:
        for r in range(args.rounds):
            base = baseline(args.burn)
            c0, t0 = time.process_time(), time.perf_counter()
            one, _ = explore_exhaustive(s, args.policy, options=options, max_states=limits.max_states)
            t_one, c_one = time.perf_counter() - t0, time.process_time() - c0
            # One process freezes what it holds out of the cyclic collector as it
            # goes, shard processes run without it: how much of a difference that is.
            gc.disable()
            c0 = time.process_time()
            explore_exhaustive(s, args.policy, options=options, max_states=limits.max_states)
            c_nogc = time.process_time() - c0
            gc.enable()
            gc.collect()
            if reference is None:
                reference = one
                print(f"{one.distinct_states:,} states, {one.transitions:,} transitions, exists {one.exists}, "
                      f"violations {[f.invariant for f in one.findings]}\n")
            k0, c0, t0 = children_cpu(), time.process_time(), time.perf_counter()
            two, _ = explore_sharded(s, args.policy, shards=2, options=options, limits=limits)
            t_two = time.perf_counter() - t0
            c_two = time.process_time() - c0 + children_cpu() - k0
            assert two == one, "--jobs 2 gave another exploration"
            t_cl = c_cl = float("nan")
            if client is not None:
                w0 = sum(client.run(time.process_time).values())
                c0, t0 = time.process_time(), time.perf_counter()
                three, _ = explore_sharded(s, args.policy, shards=2, client=client, options=options, limits=limits)
                t_cl = time.perf_counter() - t0
                c_cl = time.process_time() - c0 + sum(client.run(time.process_time).values()) - w0
                assert three == one, "the cluster gave another exploration"
            figures["base"].append(base)
            figures["jobs"].append(t_one / t_two)
            if client is not None:
                figures["cluster"].append(t_one / t_cl)
                figures["cluster/jobs"].append(t_cl / t_two)
            rows.append((r + 1, f"{os.getloadavg()[0]:.2f}", f"{base:.2f}x", f"{t_one:.2f} s ({c_one:.2f})",
                         f"{c_nogc:.2f}",
                         f"{t_two:.2f} s ({c_two:.2f})", f"{t_one / t_two:.2f}x",
                         f"{t_cl:.2f} s ({c_cl:.2f})" if client is not None else "-",
                         f"{t_one / t_cl:.2f}x" if client is not None else "-",
                         f"{t_cl / t_two:.2f}" if client is not None else "-"))
    finally:
        if client is not None:
            client.close()
            cluster.close()
    print(table(("round", "load", "baseline 2 procs", "1 process s (CPU s)", "CPU s, no gc", "--jobs 2 s (CPU s)",
                 "speed-up",
                 "cluster 2 s (CPU s)", "speed-up", "cluster / jobs"), rows))

    def span(xs: list[float]) -> str:
        return f"{min(xs):.2f}-{max(xs):.2f}" if xs else "-"

    print(f"\nranges over {args.rounds} rounds: baseline {span(figures['base'])}x; --jobs 2 "
          f"{span(figures['jobs'])}x (goal >= 1.6x on an idle machine); cluster {span(figures['cluster'])}x; "
          f"cluster time / --jobs 2 time {span(figures['cluster/jobs'])} (goal <= 1.3)")
    print("(CPU s: this process plus its shard processes, or the cluster's workers. The baseline is what two\n"
          " processes give two equal CPU loops in the same round; with other work on the machine both fall\n"
          " together. 'CPU s, no gc' is one process with the collector off, as --jobs runs its shards; the\n"
          " cluster's shards freeze what they hold out of it instead, as one process does.)")


if __name__ == "__main__":
    main()
