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

Each search runs in a fresh process, as `vmactors explore [--jobs 2 | --cluster]`
runs it (its start and imports not counted), and the LocalCluster runs only for the
cluster's search (started and closed around it, not counted). Both matter on this
machine: a sharded search forked from a process that has already run a large search
was 0.2–0.9 s slower (the coordinator then copies, page by page, the heap it shares
with its shards as it writes to it; `--warm` measures that case), and an idle
LocalCluster beside a `--jobs 2` search took about 1 s of its 12.

    .venv/bin/python benchmarks/bench_parallel.py                 # 4 readers x 2 loads, 3 rounds (~4 min)
    .venv/bin/python benchmarks/bench_parallel.py --readers 3 --rounds 5 --no-cluster
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Any

from _common import ROOT, inline, machine, table


def scenario(readers: int, loads: int):  # type: ignore[no-untyped-def]
    cpus = ", ".join(str(i) for i in range(readers))
    lines = ['name = "readers-vs-mapfixed"', '[[map]]', 'name = "A"', 'kind = "file"', 'file = "f1"', "fill = 1",
             f"prefault = [{cpus}]"]
    for _ in range(readers):
        lines += ["[[thread]]", "ops = [" + ", ".join(f'"r{i} = load A"' for i in range(loads)) + "]"]
    lines += ["[[thread]]", 'ops = ["mmap A fixed kind=file file=f2 fill=2"]']
    return inline("\n".join(lines) + "\n", f"readers-{readers}x{loads}")


#: One measured search, in a fresh process, as `vmactors explore` runs it (the
#: interpreter's start and imports not counted). argv: how (one | nogc | jobs |
#: cluster), readers, loads, policy, warm (1: run one unmeasured search first),
#: and the scheduler's address for `cluster`. Prints one JSON line.
SEARCH = r"""
import gc, json, resource, sys, time
sys.path.insert(0, "benchmarks")
from bench_parallel import scenario
from vmactors.explore.exhaustive import Limits, explore_exhaustive
from vmactors.explore.parallel import explore_sharded
how, readers, loads, policy, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1"
s = scenario(readers, loads)
limits = Limits(max_states=10_000_000)
client = None
if how == "cluster":
    from distributed import Client
    client = Client(sys.argv[6])
if warm:
    explore_exhaustive(s, policy, max_states=limits.max_states)
    gc.collect()
def children():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
workers = (lambda: sum(client.run(time.process_time).values())) if client is not None else (lambda: 0.0)
if how == "nogc":
    gc.disable()
k0, w0, c0, t0 = children(), workers(), time.process_time(), time.perf_counter()
if how in ("one", "nogc"):
    e, _ = explore_exhaustive(s, policy, max_states=limits.max_states)
else:
    e, _ = explore_sharded(s, policy, shards=2, client=client, limits=limits)
wall = time.perf_counter() - t0
cpu = time.process_time() - c0 + children() - k0 + workers() - w0
print(json.dumps({"wall": wall, "cpu": cpu, "exploration": e.to_json(), "states": e.distinct_states,
                  "transitions": e.transitions}))
if client is not None:
    client.close()
"""


def search(how: str, args: argparse.Namespace, address: str | None = None) -> dict[str, Any]:
    """Run one search in a fresh process (`SEARCH`) and return what it measured."""
    argv = [sys.executable, "-c", SEARCH, how, str(args.readers), str(args.loads), args.policy,
            "1" if args.warm else "0", *([address] if address else [])]
    p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"bench_parallel: the {how} search failed:\n{p.stderr}")
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def on_cluster(args: argparse.Namespace, one: dict[str, Any]) -> tuple[float, float]:
    """(wall, CPU s) of the search over a 2-worker LocalCluster started for it (not
    counted) and closed after: an idle cluster's processes (scheduler, workers,
    nannies) take about a second of CPU from a 12-second `--jobs 2` search measured
    beside it."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        three = search("cluster", args, cluster.scheduler_address)
    assert three["exploration"] == one["exploration"], "the cluster gave another exploration"
    return three["wall"], three["cpu"]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", type=int, default=4, help="reader threads (default: 4)")
    ap.add_argument("--loads", type=int, default=2, help="loads per reader (default: 2)")
    ap.add_argument("--policy", default="wilcox", help="default: wilcox")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of measurements (default: 3)")
    ap.add_argument("--burn", type=int, default=6_000_000, help="iterations of each baseline loop")
    ap.add_argument("--no-cluster", action="store_true", help="skip the Dask LocalCluster")
    ap.add_argument("--warm", action="store_true",
                    help="each search's process first runs the search once in one process, unmeasured (a "
                         "sharded search then forks from a process that holds what that search left)")
    args = ap.parse_args()
    print(f"bench_parallel  {machine()}")
    print(f"{args.readers} readers x {args.loads} load(s) + MAP_FIXED, {args.policy}, reductions on; "
          f"each search in a fresh process{', after one unmeasured search' if args.warm else ''}\n")

    rows = []
    figures: dict[str, list[float]] = {"base": [], "jobs": [], "cluster": [], "cluster/jobs": []}
    reference = None
    cluster = not args.no_cluster
    for r in range(args.rounds):
        base = baseline(args.burn)
        one = search("one", args)
        nogc = search("nogc", args)
        if reference is None:
            reference = one
            ex = one["exploration"]
            print(f"{one['states']:,} states, {one['transitions']:,} transitions, exists {ex['exists']}, "
                  f"violations {list(ex['violations'])}\n")
        two = search("jobs", args)
        assert two["exploration"] == one["exploration"], "--jobs 2 gave another exploration"
        t_one, t_two = one["wall"], two["wall"]
        t_cl = c_cl = float("nan")
        if cluster:
            t_cl, c_cl = on_cluster(args, one)
        figures["base"].append(base)
        figures["jobs"].append(t_one / t_two)
        if cluster:
            figures["cluster"].append(t_one / t_cl)
            figures["cluster/jobs"].append(t_cl / t_two)
        rows.append((r + 1, f"{os.getloadavg()[0]:.2f}", f"{base:.2f}x", f"{t_one:.2f} s ({one['cpu']:.2f})",
                     f"{nogc['cpu']:.2f}",
                     f"{t_two:.2f} s ({two['cpu']:.2f})", f"{t_one / t_two:.2f}x",
                     f"{t_cl:.2f} s ({c_cl:.2f})" if cluster else "-",
                     f"{t_one / t_cl:.2f}x" if cluster else "-",
                     f"{t_cl / t_two:.2f}" if cluster else "-"))
    print(table(("round", "load", "baseline 2 procs", "1 process s (CPU s)", "CPU s, no gc", "--jobs 2 s (CPU s)",
                 "speed-up",
                 "cluster 2 s (CPU s)", "speed-up", "cluster / jobs"), rows))

    def span(xs: list[float]) -> str:
        return f"{min(xs):.2f}-{max(xs):.2f}" if xs else "-"

    print(f"\nranges over {args.rounds} rounds: baseline {span(figures['base'])}x; --jobs 2 "
          f"{span(figures['jobs'])}x (goal >= 1.6x on an idle machine); cluster {span(figures['cluster'])}x; "
          f"cluster time / --jobs 2 time {span(figures['cluster/jobs'])} (goal <= 1.3)")
    print("(CPU s: the search's process plus its shard processes, or the cluster's workers. The baseline is\n"
          " what two processes give two equal CPU loops in the same round; with other work on the machine both\n"
          " fall together. 'CPU s, no gc' is one process with the collector off, as --jobs runs its shards; the\n"
          " cluster's shards freeze what they hold out of it instead, as one process does.)")


if __name__ == "__main__":
    main()
