"""`vmactors check`: every scenario's `[expect]` table against exhaustive exploration."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TextIO

from ..errors import UsageError
from ..scenario.parse import load_scenario
from ..scenario.model import Scenario
from .exhaustive import DEFAULT_MAX_STATES, explore_exhaustive


def scenario_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(path.glob("*.toml")))
        elif path.exists():
            out.append(path)
        else:
            raise UsageError(f"{p}: no such file or directory")
    return out


def check(paths: list[str], out: TextIO, max_states: int = DEFAULT_MAX_STATES,
          progress: Callable[[str], None] | None = None) -> int:
    """Check every scenario under `paths`; returns the exit status (0 or 1)."""
    files = scenario_files(paths)
    # Parse everything first: bad input anywhere is exit 2 before any work.
    scenarios: list[Scenario] = [load_scenario(f) for f in files]
    failures = 0
    checked = 0
    for scen in scenarios:
        if not scen.expect:
            out.write(f"{scen.path}: no [expect] table, skipped\n")
            continue
        out.write(f"{scen.path}\n")
        for policy, want in scen.expect:
            if progress is not None:
                progress(f"{scen.name} [{policy}]")
            e, _ = explore_exhaustive(scen, policy, max_states=max_states)
            checked += 1
            got_v = frozenset(f.invariant for f in e.findings)
            problems = []
            if not e.complete:
                problems.append(f"exploration incomplete: {e.cut}")
            if want.exists is not None and e.exists != want.exists:
                problems.append(f"exists: expected {want.exists}, got {e.exists}")
            if got_v != want.violations:
                extra = sorted(got_v - want.violations)
                missing = sorted(want.violations - got_v)
                diff = ", ".join([f"+{x}" for x in extra] + [f"-{x}" for x in missing])
                problems.append(f"violations: expected [{', '.join(sorted(want.violations))}], "
                                f"got [{', '.join(sorted(got_v))}] ({diff})")
            summary = f"{e.exists or '-'}; violations [{', '.join(sorted(got_v))}]; " \
                      f"{e.runs:,} interleavings, {e.distinct_states:,} states"
            if problems:
                failures += 1
                out.write(f"  {policy:<28} MISMATCH  {summary}\n")
                for p in problems:
                    out.write(f"      {p}\n")
            else:
                out.write(f"  {policy:<28} ok        {summary}\n")
    out.write(f"{checked - failures} passed, {failures} failed\n")
    return 1 if failures else 0
