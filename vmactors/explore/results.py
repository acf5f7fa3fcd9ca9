"""What an exploration found, in one shape for every strategy, and its renderings:
the herd7-style table and the `--json` object (docs/design.md#exploring)."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ..scenario.model import RegValue, Scenario


@attrs.frozen
class FinalState:
    regs: tuple[tuple[str, RegValue], ...]
    end: str  # ok | deadlock | step-limit
    count: int
    exists: bool | None = None
    #: A shortest run that ends in this state (exhaustive exploration only): its
    #: choice list and its number of steps.
    choices: tuple[int, ...] | None = attrs.field(default=None, eq=False)
    steps: int = attrs.field(default=0, eq=False)

    def sort_key(self) -> tuple[Any, ...]:
        out = []
        for k, v in self.regs:
            t, r = k.split(":", 1)
            out.append((int(t), r, (0, v, "") if isinstance(v, int) else (1, 0, str(v))))
        return (out, self.end)


@attrs.frozen
class Finding:
    """One violated invariant: how many runs violated it and the shortest
    counterexample: the run in which it is violated earliest. `steps` is the step at
    which that run first violates it (not the length of the whole run), `choices`
    the choice list that gets there (replay goes on with choice 0)."""

    invariant: str
    runs: int
    detail: str
    choices: tuple[int, ...]
    steps: int
    replay: str | None = None
    #: Set when the replay file already held a run violated at an earlier (or the
    #: same) step, which was kept: the step at which this exploration's own shortest
    #: run violates it.
    found_steps: int | None = None


@attrs.frozen
class Cut:
    """Why a search stopped before it was complete: `reason` for programs (one of
    `REASONS`), `text` for people.

    >>> Cut.max_states(300).text
    '--max-states 300 reached'
    """

    reason: str
    text: str

    REASONS: ClassVar[tuple[str, ...]] = ("max-states", "time-limit", "max-memory", "interrupted", "cycle")

    @classmethod
    def max_states(cls, limit: int) -> Cut:
        return cls("max-states", f"--max-states {limit} reached")

    @classmethod
    def time_limit(cls, seconds: float) -> Cut:
        return cls("time-limit", f"--time-limit {seconds:g}s reached")

    @classmethod
    def max_memory(cls, limit_bytes: int) -> Cut:
        return cls("max-memory", f"--max-memory {limit_bytes // 2**20} MiB reached")

    def to_json(self) -> dict[str, str]:
        return {"reason": self.reason, "text": self.text}

    def __str__(self) -> str:
        return self.text


#: A search stopped by SIGINT/SIGTERM (or a shard's stop flag).
INTERRUPTED = Cut("interrupted", "interrupted")
#: A search whose graph has a cycle: it explored everything, but cannot count runs.
CYCLE = Cut("cycle", "the state graph has a cycle (a livelock), so interleavings cannot be counted")


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
    cut: Cut | None = None
    interrupted: bool = False
    #: States found but not explored when the search stopped (0 when complete).
    frontier: int = 0

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
            **({"cut": self.cut.to_json(), "frontier": self.frontier}
               if not self.complete and self.strategy == "exhaustive" and self.cut is not None else {}),
        }


def verdict(states: tuple[FinalState, ...] | list[FinalState], has_exists: bool, complete: bool = True) -> str | None:
    """The `exists` verdict over the final states found: `never`, `sometimes` or
    `always` when they are all of them; from an incomplete search only what was seen
    can be said: `sometimes` if some final state satisfies it, else `unknown`."""
    if not has_exists:
        return None
    held = [s.exists for s in states]
    if not complete:
        return "sometimes" if any(held) else "unknown"
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


def render_table(e: Exploration, traces: dict[str, str] | None = None) -> str:
    """The herd7-style text report; `traces` maps an invariant to the race chart of
    its shortest counterexample, drawn under it."""
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
    counted = "interleavings" if e.counts == "exact" else "interleavings (reduced)"
    how = (
        f"complete, {e.runs:,} {counted}, {e.distinct_states:,} states"
        if e.strategy == "exhaustive" and e.complete
        else f"INCOMPLETE ({e.cut}), {e.runs:,} {counted} seen, {e.distinct_states:,} states, "
             f"{e.frontier:,} left unexplored"
        if e.strategy == "exhaustive"
        else f"{e.runs:,} {e.strategy.upper() if e.strategy == 'pct' else e.strategy} runs"
    )
    if e.interrupted and e.cut != INTERRUPTED:
        how += ", interrupted"
    if e.exists is not None:
        seen = {"never": "not seen", "unknown": "not seen", "sometimes": "seen sometimes",
                "always": "seen always"}[e.exists]
        if e.strategy == "exhaustive" and e.complete:
            lines.append(f"Exists: {e.exists} — {how}")
        elif e.strategy == "exhaustive":
            lines.append(f"Exists: {e.exists} ({seen} so far) — {how}")
        else:
            lines.append(f"Exists: {seen} in {how}")
    else:
        lines.append(f"Explored: {how}")
    obs = observation(e)
    if obs is not None:
        lines.append(obs)
    if e.strategy == "exhaustive" and not e.complete and e.cut is not None and e.cut.reason == "max-states":
        lines.append("Hint: raise --max-states, or sample instead: --strategy pct --runs 10000 --jobs 2")
    if e.findings:
        lines.append("Violations:")
        for f in e.findings:
            # A cut search has counted only the runs that reached a final state.
            runs = f"{f.runs:,} {'runs' if f.runs != 1 else 'run'}" + ("" if e.complete else " so far")
            if e.strategy == "exhaustive" and not e.complete and f.runs == 0:
                runs = "seen (no run through it has ended yet)"
            lines.append(f"  {f.invariant}: {runs}; shortest violates it at step {f.steps}: {f.detail}")
            if f.found_steps is not None:
                lines.append(f"    (this exploration's shortest violates it at step {f.found_steps}; "
                             f"the replay file keeps the earlier one)")
            if f.replay:
                lines.append(f"    vmactors replay {f.replay}")
            chart = (traces or {}).get(f.invariant)
            if chart:
                lines.append("")
                lines.extend(("      " + ln).rstrip() for ln in chart.rstrip("\n").splitlines())
                lines.append("")
    else:
        lines.append("Violations: none")
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def observation(e: Exploration) -> str | None:
    """herd7's closing line, `Observation NAME Never|Sometimes|Always P N`: P final
    states satisfy `exists`, N do not (None when the scenario has no `exists`)."""
    if e.exists is None:
        return None
    positive = sum(1 for s in e.states if s.exists)
    return f"Observation {e.scenario.name} {e.exists.capitalize()} {positive} {len(e.states) - positive}"
