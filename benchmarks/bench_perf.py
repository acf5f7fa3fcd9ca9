"""`vmactors bench` speed (issue 13's goal): 64 CPUs x 1,000 faults per CPU under one
policy in under 60 s of wall time on this machine, and byte-identical JSON from two
processes.

For each main policy: the wall time of one timed run of `pft` at 64 CPUs x 1,000
faults (scenario generation and parsing included), its steps and steps per second,
and the ratio to the 60 s goal; then the same point run by two fresh processes with
different PYTHONHASHSEEDs through `vmactors bench --json`, compared byte for byte.

    .venv/bin/python benchmarks/bench_perf.py [--cpus 64] [--faults 1000] [--workload pft] [--no-json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import MAIN_POLICIES, ROOT, machine, table, verdict

from vmactors.perf.bench import measure
from vmactors.perf.workloads import WORKLOADS
from vmactors.system.clock import Costs

GOAL_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpus", type=int, default=64)
    ap.add_argument("--faults", type=int, default=1000)
    ap.add_argument("--workload", default="pft", choices=sorted(WORKLOADS))
    ap.add_argument("--no-json", action="store_true", help="skip the two-process JSON comparison")
    args = ap.parse_args()
    w = WORKLOADS[args.workload]
    print(f"bench_perf  {machine()}")
    print(f"workload {w.name}: {args.cpus} CPUs x {args.faults} faults per CPU, one policy per run\n")
    rows = []
    for p in MAIN_POLICIES:
        t = time.perf_counter()
        point = measure(w, p, args.cpus, args.faults, Costs())
        wall = time.perf_counter() - t
        m = point.m
        rows.append((p, wall, m.steps, m.steps / wall, wall / m.steps * 1e6, m.faults, f"{m.throughput / 1e6:.1f}M",
                     wall / GOAL_S, verdict(wall < GOAL_S)))
    print(table(("policy", "wall s", "steps", "steps/s", "us/step", "faults", "faults per virtual s",
                 "wall / 60 s", "goal < 60 s"), rows))
    if args.no_json:
        return
    outs = []
    times = []
    for seed in ("1", "2"):
        t = time.perf_counter()
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.append(subprocess.run([sys.executable, "-m", "vmactors", "bench", w.name, "--cpus", str(args.cpus),
                                    "--faults", str(args.faults), "--policy", MAIN_POLICIES[0], "--json"],
                                   capture_output=True, env=env, check=True, cwd=ROOT).stdout)
        times.append(time.perf_counter() - t)
    same = outs[0] == outs[1]
    print(f"\ntwo processes (PYTHONHASHSEED 1 and 2), `vmactors bench {w.name} --cpus {args.cpus} --faults "
          f"{args.faults} --policy {MAIN_POLICIES[0]} --json`: {len(outs[0]):,} bytes each, "
          f"{times[0]:.1f} s and {times[1]:.1f} s; byte-identical: {verdict(same)}")


if __name__ == "__main__":
    main()
