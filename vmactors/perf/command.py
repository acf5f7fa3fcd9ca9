"""The `vmactors bench` command (registered by `vmactors.cli`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import UsageError

EPILOG = """workloads:
  pft             every CPU faults fresh pages of one big private anonymous VMA
  pft-vmas        every CPU faults fresh pages of its own anonymous VMA
  churn           as pft-vmas, while one more CPU maps, touches and unmaps a page elsewhere
  fixed-other     as pft, while one more CPU MAP_FIXEDs another range
  fixed-same      CPUs fault pages of a range one more CPU keeps replacing with MAP_FIXED
  file-map-pages  every CPU read-faults its own pages of one shared file mapping
and two documents:
  costs           the cost model's parameters, defaults and sources (Markdown)
  report          the seed's performance claims measured, and public measurements beside
                  the model (Markdown, as in docs/performance-model.md)

examples:
  vmactors bench pft --cpus 1,2,4,8,16,32,64 --plot pft.svg
  vmactors bench churn --policy mmap_sem --policy pervma --faults 200 --json
  vmactors bench file-map-pages --policy wilcox --policy wilcox-no-map-pages
  vmactors bench pft --costs my-machine.toml      # override cost parameters (see `vmactors bench costs`)
times are virtual: a deterministic model of a two-socket x86 server, not this machine"""


def register(sub: Any) -> None:
    from .bench import BENCH_POLICIES, DEFAULT_FAULTS, WORKLOADS

    p = sub.add_parser("bench", help="modelled fault throughput, latency and lock waits against CPU count",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", metavar="WORKLOAD", choices=[*WORKLOADS, "costs", "report"],
                   help="a workload, or `costs` / `report` (see below)")
    p.add_argument("--policy", action="append", dest="policies", metavar="P", choices=BENCH_POLICIES,
                   help="a policy, ablation or bench variant; repeatable (default: mmap_sem, wilcox, glisse, pervma)")
    p.add_argument("--cpus", metavar="LIST", default=None,
                   help="faulting CPU counts, comma-separated (default: 1,2,4,8,16,32,64; report: 1,4,16,64)")
    p.add_argument("--faults", type=int, default=None, metavar="N",
                   help=f"faults per CPU (default: {DEFAULT_FAULTS}; report: 100)")
    p.add_argument("--costs", metavar="FILE",
                   help="a TOML file of cost parameters to override (default: the costs `vmactors bench costs` lists)")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document (default: a table)")
    p.add_argument("--plot", metavar="FILE",
                   help="also plot throughput against CPUs per policy, .png or .svg (default: no plot)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from ..explore.runner import ProgressBar, stderr_is_tty
    from ..policies import MAIN_POLICIES
    from ..system.clock import Costs, load_costs
    from . import bench, report

    costs = load_costs(args.costs) if args.costs else Costs()
    if args.faults is not None and args.faults < 1:
        raise UsageError("--faults must be at least 1")
    if args.workload == "costs":
        print(report.costs_table(costs))
        return 0
    if args.workload == "report":
        cpus = bench.parse_cpus(args.cpus) if args.cpus else report.REPORT_CPUS
        faults = args.faults or report.REPORT_FAULTS
        with ProgressBar(stderr_is_tty()) as bar:
            advance = bar.task("bench report", None)
            print(report.report(costs, cpus, faults, progress=advance))
        return 0
    if args.plot and not args.plot.lower().endswith((".png", ".svg")):
        raise UsageError(f"--plot {args.plot}: the file must end in .png or .svg")
    workload = bench.WORKLOADS[args.workload]
    policies = args.policies or list(MAIN_POLICIES)
    cpus = bench.parse_cpus(args.cpus) if args.cpus else bench.DEFAULT_CPUS
    faults = args.faults or bench.DEFAULT_FAULTS
    with ProgressBar(stderr_is_tty()) as bar:
        advance = bar.task(f"bench {workload.name}", bench.total_ops(workload, cpus, faults, len(policies)))
        points = bench.sweep(workload, policies, cpus, faults, costs, progress=advance)
    if args.plot:
        bench.plot(args.plot, f"{workload.name}: {faults} faults per CPU (modelled)", points,
                   "ops" if workload.name == "fixed-same" else "faults")
    if args.json:
        sys.stdout.write(bench.dumps(bench.document(workload, faults, costs, points)))
    else:
        print(bench.table(workload, faults, points))
        if args.plot:
            print(f"\nplot: {args.plot}")
    return 0


__all__ = ["register", "cmd_bench"]
