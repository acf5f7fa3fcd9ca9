"""One run of a scenario under a policy: the step loop, invariant checks, the log.

The loop is written once, as a generator (`Run.loop`): it asks for the enabled
steps, stops when there are none or the step limit is reached, lets the strategy
choose, hands the chosen step out and takes back what it did. The direct driver
(`Run.run`) answers it by applying the pure step relation; the Trio runtime
(`vmactors.sim.trio_runtime`) answers it by granting the step to an actor task. A
test driving a run by hand (`vmactors.testing.Sim`) takes single steps with `take`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from ..version import __version__
from ..actors.policy import Policy
from ..actors.tasks import Program
from ..invariants import Violation, check_step
from ..log import EventLog, line, render_events
from ..log.schema import FORMAT, InvariantViolated, PteInstall, RunEnd, RunStart, TlbFill, TreeStore
from ..scenario.exists import evaluate
from ..scenario.model import RegValue, Scenario
from ..system.machine import Machine
from ..system.state import Step, StepResult, System
from .strategies import Strategy, make

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


def reg_map(regs: dict[str, RegValue]) -> dict[tuple[int, str], RegValue]:
    out = {}
    for k, v in regs.items():
        t, r = k.split(":", 1)
        out[(int(t), r)] = v
    return out


#: What the loop yields: the choice index and the step; it is sent the step's result.
Loop = Generator[tuple[int, Step], StepResult, "RunResult"]


class Run:
    """One run, stepped by a strategy or by hand."""

    def __init__(self, scenario: Scenario, policy: str | Policy, strategy: Strategy, seed: int = 0,
                 log: IO[bytes] | None = None, max_steps: int = DEFAULT_MAX_STEPS,
                 machine: Machine | None = None) -> None:
        self.scenario = scenario
        self.machine = machine if machine is not None else Machine(scenario, policy)
        self.policy = self.machine.policy
        self.strategy = strategy
        self.system: System = self.machine.initial
        self.labels = self.machine.labels
        self.max_steps = max_steps
        self.choices: list[int] = []
        self.violated: dict[str, Violation] = {}
        self.log = EventLog(log) if log is not None else None
        self.events: list[dict[str, Any]] | None = None
        self.ended: str | None = None
        #: Actors a test stands in for (their slots): not expected to finish.
        self.stand_in: frozenset[int] = frozenset()
        self._header = [line(0, 0, "sim", RunStart(format=FORMAT, vmactors=__version__, scenario=scenario.name,
                                                   scenario_sha256=scenario.sha256, policy=self.policy.name,
                                                   strategy=strategy.name, seed=seed))]
        if self.log is not None:
            self._header += self._setup_events()
            for event in self._header:
                self._emit(event)

    @property
    def program(self) -> Program:
        """What the CPUs run, and where each map label is (`program.maps`)."""
        return self.machine.program

    def _setup_events(self) -> list[dict[str, Any]]:
        """Step 0: the address space as the scenario sets it up (maps, prefaulted
        PTEs and TLB entries), so a log tells where every translation came from."""
        out: list[dict[str, Any]] = []
        for space in self.system.world.mms:
            for start, end, entry in space.tree.items():
                assert isinstance(entry, str)
                out.append(line(0, 0, "sim", TreeStore(addr=start, pages=(end - start) // 4096, vma=entry,
                                                       entry="vma")))
            for page in sorted(space.ptes):
                pte = space.ptes[page]
                out.append(line(0, 0, "sim", PteInstall(addr=page, pages=1, frame=pte.frame, vma=pte.vma,
                                                        prot=pte.prot)))
        for cpu in self.system.cpus:
            for page in sorted(cpu.tlb):
                e = cpu.tlb[page]
                out.append(line(0, 0, "sim", TlbFill(cpu=cpu.id, addr=page, pages=1, frame=e.frame, vma=e.vma,
                                                     prot=e.prot)))
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

    # --- steps ---------------------------------------------------------------------------------

    def enabled(self) -> list[Step]:
        return self.machine.enabled(self.system)

    def take(self, index: int, steps: Sequence[Step] | None = None) -> StepResult:
        """Take the `index`-th enabled step (`steps`: the enabled list, if known)."""
        step = (steps if steps is not None else self.enabled())[index]
        result = self.machine.apply(self.system, step)
        self.commit(index, step, result)
        return result

    def commit(self, index: int | None, step: Step, result: StepResult) -> None:
        """Make `result` (of taking `step`, choice `index`) the current state: check
        the invariants and log the step. (`index` None: a step no scheduler chose, a
        test's stand-in sending.)"""
        before = self.system
        if index is not None:
            self.choices.append(index)
        self.system = result.system
        violations = check_step(before, result)
        if self.log is not None or self.events is not None:
            for ev in render_events(result.system.step, result.vtime_ns, step.actor.name, result.events,
                                    result.sent, result.received):
                self._emit(ev)
            for v in violations:
                self._emit(line(result.system.step, result.vtime_ns, "sim",
                                InvariantViolated(invariant=v.invariant, detail=v.detail, **v.fields())))
        for v in violations:
            self.violated.setdefault(v.invariant, v)

    def next_step(self, enabled: Callable[[], list[Step]] | None = None) -> tuple[int, Step] | None:
        """The step to take next, chosen by the strategy among `enabled()` (default:
        the step relation's), with its choice index; None when the run is over
        (nothing enabled, or the step limit reached)."""
        if self.ended is not None:
            return None
        steps = (enabled or self.enabled)()
        if not steps:
            self.ended = "done"
            return None
        if self.system.step >= self.max_steps:
            self.ended = "step-limit"
            return None
        index = self.strategy.choose(steps, self.system.step + 1)
        return index, steps[index]

    def loop(self, enabled: Callable[[], list[Step]] | None = None) -> Loop:
        """The step loop (see the module docstring): yields each chosen step and is
        sent what it did."""
        while (chosen := self.next_step(enabled)) is not None:
            result = yield chosen
            self.commit(*chosen, result)
        return self.finish()

    def run(self) -> RunResult:
        """Run to the end with the direct driver: each chosen step is applied here."""
        loop = self.loop()
        try:
            _, step = next(loop)
            while True:
                _, step = loop.send(self.machine.apply(self.system, step))
        except StopIteration as stop:
            result: RunResult = stop.value
            return result

    def finish(self) -> RunResult:
        blocked: dict[str, str] = {}
        outcome = "ok"
        vtime = self.system.vtime()
        if self.ended == "step-limit":
            outcome = "step-limit"
        elif not self.machine.finished(self.system, self.stand_in):
            outcome = "deadlock"
            blocked = self.machine.waiting(self.system, self.stand_in)
            v = Violation("deadlock", "no step is enabled; " + "; ".join(f"{a} waits for {w}" for a, w in blocked.items()))
            self.violated.setdefault("deadlock", v)
            self._emit(line(self.system.step, vtime, "sim", InvariantViolated(invariant="deadlock", detail=v.detail)))
        elif self.violated:
            outcome = "violation"
        regs = self.machine.final_regs(self.system)
        verdict = None
        if self.scenario.exists is not None:
            verdict = evaluate(self.scenario.exists, reg_map(regs), self.labels)
        names = tuple(sorted(self.violated))
        self._emit(line(self.system.step, vtime, "sim", RunEnd(outcome=outcome, regs=regs, violations=list(names),
                                                                waiting=blocked or None)))
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


__all__ = ["Run", "RunResult", "run_scenario", "reg_map", "DEFAULT_MAX_STEPS"]
