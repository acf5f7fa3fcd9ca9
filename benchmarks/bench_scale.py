"""Exploration at scale (docs/performance.md#exploration-at-scale): distinct states and
CPU seconds of one exhaustive search against CPUs and ops per thread, for two scenario
families, under `wilcox`:

- `readers`: k threads load a file map A (`ops` loads each) while one thread replaces
  it with `mmap A fixed kind=file file=f2 fill=2` (the MAP_FIXED debate);
- `faulters`: k threads load an anonymous map A while one thread runs
  `munmap A` then `B = mmap fill=2` (reuse of the unmapped range).

Each cell is measured in a fresh process, with each reduction switched on and off
(`exact`: none; `por`: partial-order reduction; `sym`: symmetry; `both`: the default),
and with the explorer as it was before this work (`before`: the tree at commit
efdd2fb, checked out into a temporary git worktree), side by side in one run. A cell
that passes --max-states or --seconds is shown as `>N` (states when it was stopped);
a larger cell of the same family (no fewer CPUs, no fewer ops) is then not run for
that explorer, whose search there would be larger still, and is shown as `>` (so
`--full` takes about 25 minutes, not hours).
The last lines: the two goals of 4 CPUs x 2 loads (< 10 s) and 5 CPUs x 1 load
(< 30 s), and the ratios of the library's states and CPU time, reduced against
before.

    .venv/bin/python benchmarks/bench_scale.py                 # CPUs 2-4, ops 1-2 (~10 min)
    .venv/bin/python benchmarks/bench_scale.py --full          # CPUs 2-5, ops 1-4 (~25 min)
    .venv/bin/python benchmarks/bench_scale.py --cells readers:4x2,readers:5x1 --modes both,before
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, machine, table

BEFORE = "efdd2fb"  # the last commit before partial-order and symmetry reduction
MODES = ("before", "exact", "por", "sym", "both")

#: Runs one cell in a fresh process and prints one JSON line. argv: family cpus ops mode max_states.
CELL = r"""
import json, resource, sys, time
from vmactors.scenario.parse import parse_scenario
from vmactors.explore.exhaustive import explore_exhaustive
family, cpus, ops, mode, max_states = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
loads = lambda: "".join('[[thread]]\nops = [' + ", ".join(f'"r{j} = load A"' for j in range(ops)) + ']\n'
                        for _ in range(cpus - 1))
if family == "readers":
    text = (f'name = "readers"\ncpus = {cpus}\n[[map]]\nname = "A"\nkind = "file"\nfile = "f1"\nfill = 1\n'
            + loads() + '[[thread]]\nops = ["mmap A fixed kind=file file=f2 fill=2"]\n')
else:
    text = (f'name = "faulters"\ncpus = {cpus}\n[[map]]\nname = "A"\nfill = 1\n'
            + loads() + '[[thread]]\nops = ["munmap A", "B = mmap fill=2"]\n')
s = parse_scenario(text, family + ".toml")
kw = {}
if mode != "before":
    from vmactors.explore.space import Options
    kw["options"] = Options(reduction=mode in ("por", "both"), symmetry=mode in ("sym", "both"))
t = time.process_time()
e, _ = explore_exhaustive(s, "wilcox", max_states=max_states, **kw)
cpu = time.process_time() - t
print(json.dumps({"states": e.distinct_states, "complete": e.complete, "seconds": cpu,
                  "finals": len(e.states), "exists": e.exists,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""

LIBRARY = r"""
import json, sys, time, pathlib
from vmactors.scenario import load_scenario
from vmactors.explore.exhaustive import explore_exhaustive
out = {}
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.toml")):
    try:
        s = load_scenario(str(f))
    except Exception:  # a scenario newer than the tree (an op or policy it does not know)
        continue
    for p in ("mmap_sem", "wilcox", "glisse", "pervma"):
        t = time.process_time()
        e, _ = explore_exhaustive(s, p)
        out[f"{s.name} {p}"] = [e.distinct_states, time.process_time() - t]
print(json.dumps(out))
"""


def worktree(commit: str) -> Path:
    """The tree at `commit`, checked out into a temporary folder (git worktree)."""
    path = Path(tempfile.mkdtemp(prefix="vmactors-before-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), commit], check=True)
    return path


def run_cell(tree: Path, family: str, cpus: int, ops: int, mode: str, max_states: int, seconds: float) -> dict:
    env = {"PYTHONPATH": str(tree), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"}
    try:
        p = subprocess.run([sys.executable, "-c", CELL, family, str(cpus), str(ops), mode, str(max_states)],
                           capture_output=True, text=True, timeout=seconds, env=env, cwd=tree)
    except subprocess.TimeoutExpired:
        return {"timeout": seconds}
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def stopped(r: dict) -> bool:
    """Whether a cell's search was cut (or failed): a larger cell would be too."""
    return "skipped" in r or "timeout" in r or "error" in r or not r.get("complete")


def show(r: dict) -> str:
    if "skipped" in r:
        return ">"
    if "timeout" in r:
        return f">{r['timeout']:.0f}s"
    if "error" in r:
        return "error"
    states = f"{r['states']:,}" if r["complete"] else f">{r['states']:,}"
    return f"{states} / {r['seconds']:.1f}s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="CPUs 2-5 x ops 1-4 (default: CPUs 2-4 x ops 1-2)")
    ap.add_argument("--cells", help="only these cells, e.g. readers:4x2,faulters:3x3")
    ap.add_argument("--modes", default=",".join(MODES), help=f"which explorers (default: {','.join(MODES)})")
    ap.add_argument("--max-states", type=int, default=300_000, help="stop a search there (default 300000)")
    ap.add_argument("--seconds", type=float, default=120.0, help="stop a cell after this long (default 120)")
    ap.add_argument("--no-library", action="store_true", help="skip the library comparison")
    args = ap.parse_args()
    modes = args.modes.split(",")
    print(f"bench_scale  {machine()}\n")
    before = worktree(BEFORE) if "before" in modes or not args.no_library else None
    try:
        if args.cells:
            cells = []
            for c in args.cells.split(","):
                fam, size = c.split(":")
                k, o = size.split("x")
                cells.append((fam, int(k), int(o)))
        else:
            cpus = range(2, 6) if args.full else range(2, 5)
            ops = range(1, 5) if args.full else range(1, 3)
            cells = [(f, c, o) for f in ("readers", "faulters") for c in cpus for o in ops]
        rows = []
        results: dict[tuple[str, int, int, str], dict] = {}
        for fam, c, o in cells:
            row: list[object] = [f"{fam} {c} CPUs x {o}"]
            for mode in modes:
                tree = before if mode == "before" else ROOT
                assert tree is not None
                if any(f == fam and m == mode and c2 <= c and o2 <= o and stopped(r2)
                       for (f, c2, o2, m), r2 in results.items()):
                    r = {"skipped": True}
                else:
                    r = run_cell(tree, fam, c, o, mode, args.max_states, args.seconds)
                results[(fam, c, o, mode)] = r
                row.append(show(r))
            b, n = results.get((fam, c, o, "before"), {}), results.get((fam, c, o, "both"), {})
            if b.get("complete") and n.get("complete"):
                row.append(f"{b['states'] / n['states']:.1f}x / {b['seconds'] / max(n['seconds'], 1e-9):.1f}x")
            else:
                row.append("-")
            rows.append(row)
            print(f"  {row}", file=sys.stderr, flush=True)
        print("states / CPU seconds per explorer (wilcox; `>N` a search stopped by --max-states or --seconds, "
              "`>` not run: a smaller cell was stopped)")
        print(table(["cell", *modes, "before/both"], rows))
        print()
        for fam, c, o, goal in (("readers", 4, 2, 10.0), ("readers", 5, 1, 30.0)):
            r = results.get((fam, c, o, "both"))
            if r and r.get("complete"):
                print(f"goal {fam} {c} CPUs x {o}: {r['seconds']:.1f} CPU s (goal < {goal:.0f} s), "
                      f"{r['states']:,} states, {r['rss_mb']} MB")
        if not args.no_library and before is not None:
            print("\nthe library under the four main policies: states and CPU seconds, before and reduced")
            env = {"PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"}
            old = json.loads(subprocess.run([sys.executable, "-c", LIBRARY, str(ROOT / "scenarios")], env={
                **env, "PYTHONPATH": str(before)}, cwd=before, capture_output=True, text=True, check=True).stdout)
            new = json.loads(subprocess.run([sys.executable, "-c", LIBRARY, str(ROOT / "scenarios")], env={
                **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
            common = sorted(set(old) & set(new))
            ratios = sorted(old[k][0] / new[k][0] for k in common)
            cost = sorted((old[k][1] / old[k][0]) / (new[k][1] / new[k][0]) for k in common)
            t_old, t_new = sum(old[k][1] for k in common), sum(new[k][1] for k in common)
            print(f"  {len(common)} explorations: states before/reduced median {ratios[len(ratios) // 2]:.2f}x "
                  f"(min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x); {sum(r >= 5 for r in ratios)} of them >= 5x")
            print(f"  CPU time {t_old:.1f} s before, {t_new:.1f} s reduced ({t_old / t_new:.2f}x); "
                  f"cost per state before/reduced median {cost[len(cost) // 2]:.2f}x")
    finally:
        if before is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)


if __name__ == "__main__":
    main()
