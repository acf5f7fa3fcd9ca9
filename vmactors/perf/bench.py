"""`vmactors bench`: workloads x policies x CPU counts under the timed scheduler; the
table, the JSON document and the plot of the results."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from ..actors.policy import Policy
from ..errors import UsageError
from ..output import write_output
from ..policies import POLICY_NAMES, get_policy
from ..system.clock import CostModel, Costs
from ..system.machine import Machine
from .runner import Measurement, run_timed
from .variants import VARIANTS
from .workloads import WORKLOADS, Workload, rounds

FORMAT = 1
DEFAULT_CPUS = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_FAULTS = 1000
BENCH_POLICIES = tuple(POLICY_NAMES) + tuple(VARIANTS)


def policy(name: str) -> Policy:
    """A policy, an ablation or a bench variant, by name."""
    if name in VARIANTS:
        return VARIANTS[name]
    if name not in POLICY_NAMES:
        raise UsageError(f"unknown policy {name!r}; known: {', '.join(BENCH_POLICIES)}")
    return get_policy(name)


@attrs.frozen
class Point:
    """One measurement: a workload under one policy on `cpus` faulting CPUs."""

    workload: str
    policy: str
    cpus: int
    faults_per_cpu: int
    m: Measurement

    def to_json(self) -> dict[str, Any]:
        m = self.m
        return {
            "policy": self.policy,
            "cpus": self.cpus,
            "outcome": m.outcome,
            "faults": m.faults,
            "segv": m.segv,
            "ops": m.ops,
            "span_ns": m.span_ns,
            "faults_per_s": round(m.throughput),
            "ops_per_s": round(self.ops_per_s),
            "latency_ns": {"p50": m.percentile(50), "p99": m.percentile(99)},
            "wait_ns": dict(m.waits),
            "steps": m.steps,
        }

    @property
    def ops_per_s(self) -> float:
        """Loads and stores the faulting CPUs finished per virtual second."""
        return self.m.fault_ops * 1e9 / self.m.span_ns if self.m.span_ns else 0.0

    @property
    def throughput(self) -> float:
        return self.m.throughput


def measure(workload: Workload, policy_name: str, cpus: int, faults: int, costs: Costs,
            progress: Callable[[int], None] | None = None) -> Point:
    machine = Machine(workload.scenario(cpus, faults), policy(policy_name))
    machine.cost = CostModel(costs)
    m = run_timed(machine, workload.fault_cpus(cpus), progress=progress)
    return Point(workload.name, policy_name, cpus, faults, m)


def sweep(workload: Workload, policies: Sequence[str], cpus: Sequence[int], faults: int, costs: Costs,
          progress: Callable[..., None] | None = None) -> list[Point]:
    """Every (policy, CPU count) point, in that order; `progress(advance=ops)` as ops finish."""
    points = []
    for p in policies:
        for n in cpus:
            done = 0

            def tick(ops: int) -> None:
                nonlocal done
                if progress is not None:
                    progress(advance=ops - done, info=f"{p}, {n} CPUs")
                done = ops

            points.append(measure(workload, p, n, faults, costs, tick))
    return points


def total_ops(workload: Workload, cpus: Sequence[int], faults: int, policies: int) -> int:
    """How many ops a sweep runs (for a progress bar)."""
    extra = {"churn": 3, "fixed-other": 2, "fixed-same": 1}.get(workload.name, 0) * rounds(faults)
    return policies * sum(n * faults + extra for n in cpus)


def document(workload: Workload, faults: int, costs: Costs, points: Sequence[Point]) -> dict[str, Any]:
    """The `--json` document."""
    return {
        "format": FORMAT,
        "workload": workload.name,
        "about": workload.summary,
        "faults_per_cpu": faults,
        "writer_rounds": rounds(faults) if workload.writer else None,
        "costs": costs.as_dict(),
        "results": [p.to_json() for p in points],
    }


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


def _top_waits(m: Measurement, k: int = 3) -> str:
    if not m.faults:
        return ""
    waits = sorted(m.waits, key=lambda kv: (-kv[1], kv[0]))[:k]
    return ", ".join(f"{name} {ns / m.faults:,.0f}" for name, ns in waits if ns)


def table(workload: Workload, faults: int, points: Sequence[Point]) -> str:
    """The text report: one block per policy."""
    lines = [f"bench {workload.name}: {workload.summary}; {faults} faults per CPU"
             + (f", {rounds(faults)} writer rounds on one more CPU" if workload.writer else "")]
    for name in dict.fromkeys(p.policy for p in points):
        lines += ["", f"policy {name}",
                  f"  {'cpus':>5} {'faults/s':>13} {'ops/s':>13} {'p50 ns':>9} {'p99 ns':>9}  "
                  "wait per fault (ns), largest first"]
        for p in points:
            if p.policy != name:
                continue
            m = p.m
            note = "" if m.outcome == "ok" else f"  [{m.outcome}]"
            segv = f" ({m.segv} segv)" if m.segv else ""
            lines.append(f"  {p.cpus:>5} {m.throughput:>13,.0f} {p.ops_per_s:>13,.0f} {m.percentile(50):>9,} "
                         f"{m.percentile(99):>9,}  {_top_waits(m)}{segv}{note}")
    return "\n".join(lines)


def plot(path: str, title: str, points: Sequence[Point], metric: str = "faults") -> None:
    """Throughput against CPUs, one line per policy; PNG or SVG by the file's suffix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fmt = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if fmt not in ("png", "svg"):
        raise UsageError(f"--plot {path}: the file must end in .png or .svg")
    plt.rcParams["svg.hashsalt"] = "vmactors"  # the same SVG each time
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    # Curves often coincide (designs that write the same number of shared lines):
    # markers and dashes of their own keep each one visible.
    styles = [("o", "-", 9), ("s", "--", 7), ("^", ":", 6), ("x", "-.", 8), ("D", (0, (1, 3)), 4)]
    for i, name in enumerate(dict.fromkeys(p.policy for p in points)):
        mine = [p for p in points if p.policy == name]
        ys = [(p.throughput if metric == "faults" else p.ops_per_s) / 1e6 for p in mine]
        marker, dash, size = styles[i % len(styles)]
        ax.plot([p.cpus for p in mine], ys, marker=marker, linestyle=dash, markersize=size, fillstyle="none",
                label=name)
    ax.set_xscale("log", base=2)
    cpus = sorted({p.cpus for p in points})
    ax.set_xticks(cpus, [str(c) for c in cpus])
    ax.set_xlabel("CPUs faulting")
    ax.set_ylabel(("faults" if metric == "faults" else "loads and stores") + " per virtual second (millions)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    meta: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
    image = io.BytesIO()
    try:
        fig.savefig(image, format=fmt, metadata=meta)
    finally:
        plt.close(fig)
    write_output(path, image.getvalue(), "plot")


def parse_cpus(text: str) -> tuple[int, ...]:
    """`1,2,4` -> (1, 2, 4)."""
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--cpus {text!r}: a comma-separated list of CPU counts, like 1,2,4,8") from None
    if not out or any(n < 1 for n in out):
        raise UsageError(f"--cpus {text!r}: each CPU count must be at least 1")
    return out


__all__ = ["Point", "measure", "sweep", "document", "dumps", "table", "plot", "parse_cpus", "policy",
           "DEFAULT_CPUS", "DEFAULT_FAULTS", "BENCH_POLICIES", "WORKLOADS", "total_ops"]
