"""What an exploration found, in one shape for every strategy, and its renderings:
the herd7-style table and the `--json` object (DESIGN §7)."""

from __future__ import annotations

from typing import Any

import attrs

from ..scenario.model import RegValue, Scenario


@attrs.frozen
class FinalState:
    regs: tuple[tuple[str, RegValue], ...]
    end: str  # ok | deadlock | step-limit
    count: int
    exists: bool | None = None

    def sort_key(self) -> tuple:
        out = []
        for k, v in self.regs:
            t, r = k.split(":", 1)
            out.append((int(t), r, (0, v, "") if isinstance(v, int) else (1, 0, str(v))))
        return (out, self.end)


@attrs.frozen
class Finding:
    """One violated invariant: how many runs violated it and the shortest one."""

    invariant: str
    runs: int
    detail: str
    choices: tuple[int, ...]
    steps: int
    replay: str | None = None


@attrs.frozen
class Exploration:
    scenario: Scenario
    policy: str
    strategy: str
    complete: bool
    counts: str  # exact | reduced | sampled
    runs: int
    states: tuple[FinalState, ...]
    exists: str | None
    findings: tuple[Finding, ...]
    distinct_states: int = 0
    transitions: int = 0
    cut: str | None = None
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "policy": self.policy,
            "strategy": self.strategy,
            "complete": self.complete,
            "counts": self.counts,
            "runs": self.runs,
            "states": [{"regs": dict(s.regs), "end": s.end, "count": s.count} for s in self.states],
            "exists": self.exists,
            "violations": {f.invariant: {"runs": f.runs, "replay": f.replay} for f in self.findings},
        }


def verdict(states: tuple[FinalState, ...] | list[FinalState], has_exists: bool) -> str | None:
    if not has_exists:
        return None
    held = [s.exists for s in states]
    if not held or not any(held):
        return "never"
    if all(held):
        return "always"
    return "sometimes"


def sort_states(states: list[FinalState]) -> tuple[FinalState, ...]:
    return tuple(sorted(states, key=FinalState.sort_key))


def _fmt_value(v: RegValue) -> str:
    if isinstance(v, int) and v >= 0x10000:
        return hex(v)
    return str(v)


def render_table(e: Exploration) -> str:
    """The herd7-style text report."""
    lines = [f"Test {e.scenario.name}  policy {e.policy}  strategy {e.strategy}"]
    if e.scenario.exists_text:
        lines.append(f"exists ({e.scenario.exists_text})")
    lines.append(f"States {len(e.states)}")
    width = max((len(str(s.count)) for s in e.states), default=1)
    for s in e.states:
        mark = "*" if s.exists else " "
        regs = " ".join(f"{k}={_fmt_value(v)};" for k, v in s.regs) or "(no registers)"
        end = "" if s.end == "ok" else f"  [{s.end}]"
        lines.append(f"{mark} {s.count:>{width}}  {regs}{end}")
    how = (
        f"complete, {e.runs:,} interleavings, {e.distinct_states:,} states"
        if e.strategy == "exhaustive" and e.complete
        else f"INCOMPLETE ({e.cut}), {e.runs:,} interleavings seen, {e.distinct_states:,} states"
        if e.strategy == "exhaustive"
        else f"{e.runs:,} {e.strategy.upper() if e.strategy == 'pct' else e.strategy} runs"
    )
    if e.interrupted:
        how += ", interrupted"
    if e.exists is not None:
        seen = {"never": "not seen", "sometimes": "seen sometimes", "always": "seen always"}[e.exists]
        if e.strategy == "exhaustive" and e.complete:
            lines.append(f"Exists: {e.exists} — {how}")
        elif e.strategy == "exhaustive":
            lines.append(f"Exists: {seen} so far — {how}")
        else:
            lines.append(f"Exists: {seen} in {how}")
    else:
        lines.append(f"Explored: {how}")
    if e.strategy == "exhaustive" and not e.complete and e.cut and "max-states" in e.cut:
        lines.append("Hint: raise --max-states, or sample instead: --strategy pct --runs 10000 --jobs 2")
    if e.findings:
        lines.append("Violations:")
        for f in e.findings:
            lines.append(f"  {f.invariant}: {f.runs:,} runs; shortest {f.steps} steps: {f.detail}")
            if f.replay:
                lines.append(f"    vmactors replay {f.replay}")
    else:
        lines.append("Violations: none")
    return "\n".join(lines)
