"""Shared helpers for the benchmark scripts: the library scenarios, a machine line,
small tables. Benchmarks are plain commands (docs/design.md#performance-goals): they print figures and
ratios measured in one process; nothing here is a pass/fail test."""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmactors.scenario import load_scenario, parse_scenario  # noqa: E402
from vmactors.scenario.model import Scenario  # noqa: E402

MAIN_POLICIES = ("mmap_sem", "wilcox", "glisse", "pervma")


def library() -> list[Scenario]:
    """Every scenario in `scenarios/`, by file name."""
    return [load_scenario(p) for p in sorted((ROOT / "scenarios").glob("*.toml"))]


def inline(text: str, name: str) -> Scenario:
    return parse_scenario(text, f"<{name}>.toml")


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{datetime.date.today().isoformat()}  {platform.python_implementation()} {platform.python_version()}  "
            f"{os.cpu_count()} CPUs  {platform.machine()}  load average {load:.2f} at start")


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def for_seconds(seconds: float, fn: Callable[[int], int]) -> tuple[int, int, float]:
    """Call fn(i) for i = 0, 1, … until `seconds` have passed; returns (calls, sum of
    what fn returned, elapsed seconds)."""
    t = time.perf_counter()
    calls = total = 0
    while True:
        total += fn(calls)
        calls += 1
        el = time.perf_counter() - t
        if el >= seconds:
            return calls, total, el


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    rows = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def _fmt(c: object) -> str:
    if isinstance(c, float):
        if c >= 100:
            return f"{c:,.0f}"
        if c >= 10:
            return f"{c:.1f}"
        return f"{c:.3g}" if c < 1 else f"{c:.2f}"
    if isinstance(c, int):
        return f"{c:,}"
    return str(c)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"
