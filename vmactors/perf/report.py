"""The generated parts of docs/performance-model.md: the cost parameters, the seed
message's performance claims measured with a verdict each, and the public
measurements beside the model's figures.

Every verdict is computed from the figures by the rule printed next to it, so the
document stays true when the protocols or the costs change and it is regenerated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..system.clock import Costs
from .bench import Point, sweep
from .workloads import WORKLOADS

REPORT_CPUS = (1, 4, 16, 64)
REPORT_FAULTS = 100
MAIN = ("mmap_sem", "wilcox", "glisse", "pervma")
#: Which policies each workload of the report runs.
RUNS: dict[str, tuple[str, ...]] = {
    "pft": MAIN, "pft-vmas": MAIN, "churn": MAIN, "fixed-other": MAIN, "fixed-same": MAIN,
    "file-map-pages": MAIN + ("wilcox-no-map-pages",),
}


def costs_table(costs: Costs) -> str:
    rows = ["| parameter | default | unit | what it costs | source of the default |", "|---|---|---|---|---|"]
    for name, value, unit, doc, source in costs.rows():
        rows.append(f"| `{name}` | {value:,} | {unit} | {doc} | {source} |")
    return "\n".join(rows)


class Results:
    """Every point of the report, by (workload, policy, cpus)."""

    def __init__(self, points: Sequence[Point]) -> None:
        self.points = {(p.workload, p.policy, p.cpus): p for p in points}
        self.cpus = sorted({p.cpus for p in points})

    def get(self, workload: str, policy: str, cpus: int) -> Point:
        return self.points[(workload, policy, cpus)]

    def tput(self, workload: str, policy: str, cpus: int) -> float:
        return self.get(workload, policy, cpus).throughput

    def ops(self, workload: str, policy: str, cpus: int) -> float:
        return self.get(workload, policy, cpus).ops_per_s

    def ratio(self, workload: str, a: str, b: str, cpus: int, metric: str = "faults") -> float:
        f = self.tput if metric == "faults" else self.ops
        den = f(workload, b, cpus)
        return f(workload, a, cpus) / den if den else 0.0

    def wait(self, workload: str, policy: str, cpus: int, lock: str) -> float:
        """ns per fault waited on `lock`."""
        p = self.get(workload, policy, cpus)
        return dict(p.m.waits).get(lock, 0) / p.m.faults if p.m.faults else 0.0


def _m(x: float) -> str:
    return f"{x / 1e6:.1f}M"


def _pct(r: float) -> str:
    return f"{(r - 1) * 100:+.0f}%"


def throughput_tables(res: Results) -> str:
    out = []
    for w, policies in RUNS.items():
        metric = "ops" if w == "fixed-same" else "faults"
        head = "| CPUs | " + " | ".join(policies) + " |"
        out += [f"**{w}** — {WORKLOADS[w].summary}. "
                + ("Loads and stores per virtual second (faults come and go with each MAP_FIXED); "
                   if metric == "ops" else "Faults per virtual second; ")
                + "p99 fault latency (ns) in parentheses.", "", head, "|---" * (len(policies) + 1) + "|"]
        for n in res.cpus:
            cells = []
            for p in policies:
                pt = res.get(w, p, n)
                v = pt.ops_per_s if metric == "ops" else pt.throughput
                cells.append(f"{_m(v)} ({pt.m.percentile(99):,})")
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def _within(worst: tuple[float, int, str], a: str, b: str) -> str:
    """The verdict of "a costs nothing against b": never more than 5% below it."""
    r, n, w = worst
    if r >= 0.95:
        return f"holds: {a} is never more than 5% below {b} (its worst: {_pct(r)}, `{w}` at {n} CPUs)"
    return f"does not hold: {a} is {_pct(r)} against {b} on `{w}` at {n} CPUs (rule: never more than 5% below)"


def _shape(model: float, real: float) -> str:
    """Whether the model's change (a ratio) goes the way the measured one did."""
    if abs(model - 1) < 0.02:
        return "the model shows no difference"
    return "agrees" if (model > 1) == (real > 1) else "the opposite"


def claims(res: Results) -> str:
    top, low = res.cpus[-1], res.cpus[0]
    rows = ["| # | the seed message says | workload | figures at " + f"{top} CPUs | verdict |", "|---|---|---|---|---|"]

    # 1. Glisse: blocking faults in a MAP_FIXED range (and keeping munmap's behaviour) costs nothing.
    g_w = [(res.ratio("fixed-same", "glisse", "wilcox", n, "ops"), n, "fixed-same") for n in res.cpus]
    g_c = [(res.ratio("churn", "glisse", "wilcox", n), n, "churn") for n in res.cpus]
    worst = min(g_w + g_c)
    fence = res.wait("fixed-same", "glisse", top, "fence")
    rows.append(
        "| 1 | Glisse: keeping today's behaviour — faults in a range being replaced by MAP_FIXED wait, a "
        "new mapping in an unmapped range serves no fault before the flush — \"does not cost anything\" "
        "| `fixed-same` (faults on the range being replaced), `churn` (munmap and mmap beside faults) "
        f"| fixed-same, glisse against wilcox (which never blocks): {_pct(g_w[-1][0])} loads and stores per "
        f"second, {fence:,.0f} ns per fault waiting on the fence; churn: {_pct(g_c[-1][0])} faults per second "
        f"| {_within(worst, 'glisse', 'wilcox')} |")

    # 2. Glisse: the fence's cost is low and does not impede concurrency on other ranges.
    other = [(res.ratio("fixed-other", "glisse", "wilcox", n), n, "fixed-other") for n in res.cpus]
    sem = res.ratio("fixed-other", "mmap_sem", "wilcox", top)
    rows.append(
        "| 2 | Glisse: \"The implementation cost can be kept very low and it does not impede concurrency on "
        "other virtual range\" | `fixed-other` (faults on one range while another CPU MAP_FIXEDs another) "
        f"| glisse {_pct(other[-1][0])} against wilcox; mmap_sem {_pct(sem)} (its writer blocks every fault) "
        f"| {_within(min(other), 'glisse', 'wilcox')} |")

    # 3. Wilcox: a per-VMA refcount scales better than the rwsem.
    vmas = res.ratio("pft-vmas", "wilcox", "mmap_sem", top)
    one = res.ratio("pft", "wilcox", "mmap_sem", top)
    ok3 = vmas > 1.1
    rows.append(
        "| 3 | Wilcox: drivers \"would already have *better* scalability than today due to the rwsem being split "
        "into a per-VMA refcount\" | `pft-vmas` (a VMA per CPU) and `pft` (one VMA), refcounted anonymous "
        f"faults | wilcox against mmap_sem: {_pct(vmas)} with a VMA per CPU, {_pct(one)} with one shared VMA "
        f"| {'holds' if ok3 else 'does not hold'} when faults spread over VMAs (rule: more than 10% better); "
        + ("on one VMA the refcount is one contended line, as the rwsem word is |" if one < 1.1 else "|"))

    # 4. Glisse: rcu_map_pages avoids the refcount overhead.
    mp = res.ratio("file-map-pages", "wilcox", "wilcox-no-map-pages", top)
    mp_low = res.ratio("file-map-pages", "wilcox", "wilcox-no-map-pages", low)
    ok4 = mp > 1.1
    rows.append(
        "| 4 | Glisse: `->map_pages` under RCU is \"a good plan to avoid excessive refcount overhead\" "
        "| `file-map-pages`: wilcox (`rcu_map_pages`, no reference) against `wilcox-no-map-pages` (the same "
        f"design with the refcounted `->fault`) | {_pct(mp)} at {top} CPUs, {_pct(mp_low)} at {low} "
        f"| {'holds' if ok4 else 'does not hold'} (rule: more than 10% better at {top} CPUs) |")
    return "\n".join(rows)


def _closest(res: Results, n: int) -> int:
    return min(res.cpus, key=lambda c: (abs(c - n), -c))


def public(res: Results) -> str:
    top = res.cpus[-1]
    four = _closest(res, 4)
    rows = ["| public measurement | the model | shape |", "|---|---|---|"]
    small = res.ratio("pft", "pervma", "mmap_sem", four)
    big = res.ratio("pft", "pervma", "mmap_sem", top)
    rows.append(
        "| per-VMA locks against `mmap_lock`, pft-threads on a 32-core / 64-thread Ice Lake: −9.5% at 4 "
        f"threads, +21.9% at 128 | pervma against mmap_sem on `pft`: {_pct(small)} at {four} CPUs, "
        f"{_pct(big)} at {top} | at {four} CPUs: {_shape(small, 0.905)}; at {top}: {_shape(big, 1.219)} |")
    spf = _closest(res, 48)
    s = res.ratio("file-map-pages", "wilcox", "mmap_sem", spf)
    rows.append(
        "| speculative page faults (no lock, no shared write): 3.7x the baseline at 48 threads | wilcox's "
        f"`rcu_map_pages` against mmap_sem on `file-map-pages` at {spf} CPUs: {s:.1f}x "
        f"| {_shape(s, 3.7)} in direction |")
    a = 1 - res.ratio("file-map-pages", "wilcox-no-map-pages", "wilcox", spf)
    rows.append(
        "| one shared atomic per VMA in the fault path cost 62% at 48 threads | `wilcox-no-map-pages` against "
        f"wilcox on `file-map-pages` (the only difference: a reference taken and dropped on the VMA) at {spf} "
        f"CPUs: {a * 100:.0f}% lower | {_shape(1 - a, 0.38)} in direction |")
    return "\n".join(rows)


def report(costs: Costs, cpus: Sequence[int] = REPORT_CPUS, faults: int = REPORT_FAULTS,
           progress: Callable[..., None] | None = None) -> str:
    points: list[Point] = []
    for w, policies in RUNS.items():
        points += sweep(WORKLOADS[w], policies, cpus, faults, costs, progress)
    res = Results(points)
    return "\n\n".join([
        f"Measured with `vmactors bench` under the timed scheduler: {faults} faults per CPU, "
        f"{', '.join(map(str, cpus))} faulting CPUs, the default costs.",
        "#### The claims", claims(res),
        "#### Beside the public measurements", public(res),
        "#### Throughput", throughput_tables(res),
    ])


__all__ = ["report", "costs_table", "claims", "public", "Results", "REPORT_CPUS", "REPORT_FAULTS", "RUNS"]
