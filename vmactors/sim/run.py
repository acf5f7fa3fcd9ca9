"""The direct driver: runs one scenario under one policy and strategy, pure steps in a
loop, optionally writing the JSONL log. `vmactors.sim.trio_runtime` runs the same
steps as Trio tasks and gives the same log."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Sequence

import attrs

from .. import __version__
from ..invariants import Violation, check_step
from ..log import FORMAT, EventLog, render_events
from ..policies import get_policy
from ..policies.base import Policy
from ..scenario.exists import evaluate
from ..scenario.model import RegValue, Scenario
from .setup import build
from .strategies import Strategy, make
from .system import Step, StepResult, System, enabled, apply, finished, waiting
from ..actors.cpu import Program

DEFAULT_MAX_STEPS = 100_000


@attrs.frozen
class RunResult:
    outcome: str  # ok | violation | deadlock | step-limit
    regs: dict[str, RegValue]
    violations: tuple[str, ...]
    exists: bool | None
    choices: tuple[int, ...]
    steps: int
    waiting: dict[str, str]
    first_violations: tuple[Violation, ...] = ()


def final_regs(system: System, program: Program) -> dict[str, RegValue]:
    """Registers as `"T:REG" -> value`, in thread then name order."""
    out: dict[str, RegValue] = {}
    for c in sorted(system.cpus, key=lambda c: (c.thread is None, c.thread)):
        if c.thread is None:
            continue
        for name in sorted(c.regs.keys()):
            out[f"{c.thread}:{name}"] = c.regs[name]
    return out


def reg_map(regs: dict[str, RegValue]) -> dict[tuple[int, str], RegValue]:
    out = {}
    for k, v in regs.items():
        t, r = k.split(":", 1)
        out[(int(t), r)] = v
    return out


class Run:
    """One run, stepped by a strategy or by hand; the Trio runtime and the pytest
    plugin drive it step by step."""

    def __init__(self, scenario: Scenario, policy: str | Policy, strategy: Strategy, seed: int = 0,
                 log: IO[bytes] | None = None, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        self.scenario = scenario
        self.policy = get_policy(policy) if isinstance(policy, str) else policy
        self.strategy = strategy
        self.system, self.program, self.labels = build(scenario)
        self.max_steps = max_steps
        self.choices: list[int] = []
        self.violated: dict[str, Violation] = {}
        self.log = EventLog(log) if log is not None else None
        self.events: list[dict[str, Any]] | None = None
        self.ended: str | None = None
        self._header = [{"step": 0, "vtime_ns": 0, "actor": "sim", "event": "run.start", "format": FORMAT,
                         "vmactors": __version__, "scenario": scenario.name, "scenario_sha256": scenario.sha256,
                         "policy": self.policy.name, "strategy": strategy.name, "seed": seed}]
        if self.log is not None:
            self._header += self._setup_events()
            for event in self._header:
                self._emit(event)

    def _setup_events(self) -> list[dict[str, Any]]:
        """Step 0: the address space as the scenario sets it up (maps, prefaulted
        PTEs and TLB entries), so a log tells where every translation came from."""
        world = self.system.world
        head = {"step": 0, "vtime_ns": 0, "actor": "sim"}
        out: list[dict[str, Any]] = []
        for start, end, entry in world.tree.items():
            out.append({**head, "event": "tree.store", "addr": start, "pages": (end - start) // 4096,
                        "vma": entry, "entry": "vma"})
        for page in sorted(world.ptes):
            pte = world.ptes[page]
            out.append({**head, "event": "pte.install", "addr": page, "pages": 1, "frame": pte.frame,
                        "vma": pte.vma, "prot": pte.prot})
        for cpu in self.system.cpus:
            for page in sorted(cpu.tlb):
                e = cpu.tlb[page]
                out.append({**head, "event": "tlb.fill", "cpu": cpu.id, "addr": page, "pages": 1,
                            "frame": e.frame, "vma": e.vma, "prot": e.prot})
        return out

    def _emit(self, event: dict[str, Any]) -> None:
        if self.events is not None:
            self.events.append(dict(event))
        if self.log is not None:
            self.log.write(event)

    def keep_events(self) -> None:
        """Also keep every event in memory (tests and the pytest plugin), from
        `run.start` on if no step was taken yet."""
        if self.system.step == 0:
            if len(self._header) == 1:
                self._header += self._setup_events()
            self.events = [dict(e) for e in self._header]
        else:
            self.events = []

    def enabled(self) -> list[Step]:
        return enabled(self.system, self.program, self.policy)

    def take(self, index: int, steps: list[Step] | None = None) -> StepResult:
        """Take the `index`-th enabled step (`steps`: the enabled list, if known)."""
        step = (steps if steps is not None else self.enabled())[index]
        result = apply(self.system, step, self.program, self.policy)
        self.commit(index, step, result)
        return result

    def commit(self, index: int, step: Step, result: StepResult) -> None:
        """Make `result` (of taking `step`, choice `index`) the current state: check
        the invariants and log the step."""
        before = self.system
        self.choices.append(index)
        self.system = result.system
        violations = check_step(before, result)
        if self.log is not None or self.events is not None:
            for ev in render_events(result.system.step, result.vtime_ns, step.actor, result.events,
                                    result.sent, result.received):
                self._emit(ev)
            for v in violations:
                self._emit({"step": result.system.step, "vtime_ns": result.vtime_ns, "actor": "sim",
                            "event": "invariant.violated", **v.fields(), "invariant": v.invariant,
                            "detail": v.detail})
        for v in violations:
            self.violated.setdefault(v.invariant, v)

    def run(self) -> RunResult:
        while self.ended is None:
            steps = self.enabled()
            if not steps:
                self.ended = "done"
                break
            if self.system.step >= self.max_steps:
                self.ended = "step-limit"
                break
            self.take(self.strategy.choose(steps, self.system.step + 1), steps)
        return self.finish()

    def finish(self) -> RunResult:
        blocked: dict[str, str] = {}
        outcome = "ok"
        if self.ended == "step-limit":
            outcome = "step-limit"
        elif not finished(self.system, self.program):
            outcome = "deadlock"
            blocked = waiting(self.system, self.program)
            v = Violation("deadlock", "no step is enabled; " + "; ".join(f"{a} waits for {w}" for a, w in blocked.items()))
            self.violated.setdefault("deadlock", v)
            self._emit({"step": self.system.step, "vtime_ns": max(self.system.clocks.values(), default=0),
                        "actor": "sim", "event": "invariant.violated", "invariant": "deadlock", "detail": v.detail})
        elif self.violated:
            outcome = "violation"
        regs = final_regs(self.system, self.program)
        verdict = None
        if self.scenario.exists is not None:
            verdict = evaluate(self.scenario.exists, reg_map(regs), self.labels)
        names = tuple(sorted(self.violated))
        end: dict[str, Any] = {"step": self.system.step, "vtime_ns": max(self.system.clocks.values(), default=0),
                               "actor": "sim", "event": "run.end", "outcome": outcome, "regs": regs,
                               "violations": list(names)}
        if blocked:
            end["waiting"] = blocked
        self._emit(end)
        if self.log is not None:
            self.log.close()
        return RunResult(outcome, regs, names, verdict, tuple(self.choices), self.system.step, blocked,
                         tuple(self.violated.values()))


def run_scenario(scenario: Scenario, policy: str = "mmap_sem", *, strategy: str = "random", seed: int = 0,
                 choices: Sequence[int] = (), log_path: str | Path | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS) -> RunResult:
    """Run `scenario` once and return its result (and write the log if asked).

    >>> from vmactors.scenario import parse_scenario
    >>> s = parse_scenario('name = "t"\\n[[map]]\\nname = "A"\\nfill = 7\\n[[thread]]\\nops = ["r0 = load A"]\\n', "t.toml")
    >>> run_scenario(s).regs
    {'0:r0': 7}
    """
    strat = make(strategy, seed, choices=choices)
    if log_path is None:
        return Run(scenario, policy, strat, seed, None, max_steps).run()
    with open(log_path, "wb") as f:
        return Run(scenario, policy, strat, seed, f, max_steps).run()
