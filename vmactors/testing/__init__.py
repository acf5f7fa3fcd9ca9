"""Protocol tests in a few lines: build a scenario inline, run it, step it by hand,
query its log — the API behind the `vm` pytest fixture (`vmactors.pytest_plugin`).

A test reads like a litmus test: the setup, the interleaving, the expected outcome.

>>> from vmactors.testing import VM
>>> vm = VM()
>>> s = vm.scenario('''
... name = "one-load"
... [[map]]
... name = "A"
... fill = 7
... [[thread]]
... ops = ["r0 = load A"]
... ''')
>>> r = vm.run(s, policy="mmap_sem", seed=3)
>>> r.outcome, r.regs
('ok', {'0:r0': 7})
>>> [e["event"] for e in r.events(event="fault.*")]
['fault.begin', 'fault.end']

Stepping by hand: `step()` takes choice 0 (the actor that ran last goes on),
`step("cpu1")` the first enabled step of cpu1, `deliver("ipi", to="cpu0")` the
delivery of the IPI waiting at the head of a channel to cpu0, and `run_until(...)`
/ `run_until_message(...)` step (choice 0, or with `only="cpu1"` only steps on
cpu1's behalf, the messages it caused included) until an event is logged or a
message is in flight. `sim.choices` replays the run
with `vm.run(s, policy, choices=sim.choices)`.

Hypothesis strategies for property tests: `choice_lists()` and `small_scenarios()`
(Hypothesis is imported only when they are called).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import re
from pathlib import Path
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import orjson

from .. import library
from ..errors import UsageError
from ..ids import MMAP_SEM
from ..explore.exhaustive import DEFAULT_MAX_STATES, explore_exhaustive
from ..explore.results import Exploration
from ..policies import MAIN_POLICIES
from ..scenario.model import RegValue, Scenario
from ..scenario.parse import load_scenario, parse_scenario
from ..sim.run import DEFAULT_MAX_STEPS, Run, RunResult
from ..sim.strategies import Strategy, make
from ..system.state import Step

if TYPE_CHECKING:  # pragma: no cover
    from hypothesis.strategies import SearchStrategy

    from .actors import Actors

__all__ = [
    "VM",
    "Sim",
    "Result",
    "SimError",
    "WrappingReplay",
    "MAIN_POLICIES",
    "render_toml",
    "match_events",
    "outcomes",
    "choice_lists",
    "small_scenarios",
    "OP_KINDS",
]

Event = dict[str, Any]


class SimError(AssertionError):
    """A hand-driven step that cannot be taken (no such actor step, no such message,
    the run ended before the awaited event). An AssertionError, so pytest shows it
    as a test failure with the message, not as an error in the test's code."""


# --- querying a log ---------------------------------------------------------------------

_GLOB = re.compile(r"[*?\[]")
#: A library scenario's name, as `vm.run("mapfixed-two-readers", ...)` may give it.
_LIBRARY_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


def _field_matches(value: Any, want: Any) -> bool:
    if isinstance(want, str) and isinstance(value, str) and _GLOB.search(want):
        return fnmatch.fnmatchcase(value, want)
    if isinstance(want, tuple):
        want = list(want)
    if isinstance(want, bool) or isinstance(value, bool):
        return type(value) is type(want) and value == want
    return bool(value == want)


def match_events(events: Iterable[Event], event: str | None = None, **fields: Any) -> list[Event]:
    """The events whose name matches the glob `event` and whose fields equal
    `fields` (a string value with `*`, `?` or `[` is a glob too). A field an event
    does not have never matches.

    >>> evs = [{"event": "ipi.send", "cpu": 1}, {"event": "ipi.ack", "cpu": 1}, {"event": "tlb.flush", "cpu": 0}]
    >>> [e["event"] for e in match_events(evs, event="ipi.*", cpu=1)]
    ['ipi.send', 'ipi.ack']
    """
    out = []
    for ev in events:
        if event is not None and not fnmatch.fnmatchcase(ev.get("event", ""), event):
            continue
        if all(k in ev and _field_matches(ev[k], v) for k, v in fields.items()):
            out.append(ev)
    return out


def _parse_lines(data: bytes) -> list[Event]:
    return [orjson.loads(line) for line in data.splitlines() if line]


# --- results ------------------------------------------------------------------------------


class Result:
    """One finished run: its outcome, final registers, violations and the whole log."""

    def __init__(self, scenario: Scenario, policy: str, result: RunResult, log: bytes, *,
                 seed: int | None, runtime: str = "direct") -> None:
        self.scenario = scenario
        self.policy = policy
        self.run_result = result
        #: The JSONL log, byte for byte what `vmactors run --log` writes.
        self.log = log
        self.seed = seed
        self.runtime = runtime
        self._events: list[Event] | None = None

    @property
    def outcome(self) -> str:
        """`ok`, `violation`, `deadlock` or `step-limit` (as `run.end`)."""
        return self.run_result.outcome

    @property
    def regs(self) -> dict[str, RegValue]:
        """Final registers, `"T:REG" -> int | "segv"` (as `run.end`)."""
        return dict(self.run_result.regs)

    @property
    def violations(self) -> tuple[str, ...]:
        """Names of the violated invariants, sorted."""
        return self.run_result.violations

    @property
    def exists(self) -> bool | None:
        """Whether the scenario's `exists` clause holds at the end (None: no clause)."""
        return self.run_result.exists

    @property
    def choices(self) -> tuple[int, ...]:
        """The choice list: `vm.run(s, policy, choices=r.choices)` replays this run."""
        return self.run_result.choices

    @property
    def steps(self) -> int:
        return self.run_result.steps

    @property
    def waiting(self) -> dict[str, str]:
        """On deadlock: what each blocked actor waits for."""
        return dict(self.run_result.waiting)

    @property
    def all_events(self) -> list[Event]:
        if self._events is None:
            self._events = _parse_lines(self.log)
        return self._events

    def events(self, event: str | None = None, **fields: Any) -> list[Event]:
        """Log events matching a name glob and field values, e.g.
        `r.events(event="ipi.*", cpu=1)`."""
        return match_events(self.all_events, event, **fields)

    def write_log(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_bytes(self.log)
        return p

    def describe(self) -> str:
        how = f"seed={self.seed}" if self.seed is not None else f"choices={list(self.choices)}"
        return (f"{self.scenario.name} [{self.policy}, {self.runtime}, {how}]: {self.outcome} after "
                f"{self.steps} steps; regs {self.regs}; violations {list(self.violations) or 'none'}")

    def __repr__(self) -> str:
        return f"<Result {self.describe()}>"


class WrappingReplay:
    """Replay a choice list where a choice past the number of enabled steps wraps
    around (modulo), so any list of small ints is a valid schedule; past the list's
    end, choice 0. Hypothesis shrinks such lists toward zeros, i.e. toward fewer
    preemptions. The run's `choices` record the indices actually taken."""

    name = "replay"

    def __init__(self, choices: Sequence[int]) -> None:
        self._choices = list(choices)
        self._made = 0

    def choose(self, steps: Sequence[Step], step_no: int) -> int:
        i = self._made
        self._made += 1
        c = self._choices[i] if i < len(self._choices) else 0
        return c % len(steps)


def _strategy(strategy: str | None, seed: int, choices: Sequence[int] | None, wrap: bool,
              depth: int) -> tuple[Strategy, int | None]:
    if choices is not None:
        if strategy not in (None, "replay"):
            raise UsageError(f"choices= replays a schedule; it cannot be combined with strategy={strategy!r}")
        return (WrappingReplay(choices) if wrap else make("replay", 0, choices=choices)), None
    return make(strategy or "random", seed, depth=depth), seed


# --- stepping by hand -----------------------------------------------------------------------


class Sim:
    """A run stepped by hand. Every step is logged and checked like any other."""

    def __init__(self, scenario: Scenario, policy: str, *, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        self.scenario = scenario
        self._buf = io.BytesIO()
        self._run = Run(scenario, policy, make("replay", 0), 0, self._buf, max_steps)
        self.policy = self._run.policy.name
        self._read = 0
        self._events: list[Event] = []
        #: msg_id -> the actor whose spontaneous step started its causal chain.
        self._origin: dict[int, str] = {}
        self._pull()
        self.result: Result | None = None

    # state ---------------------------------------------------------------------

    @property
    def run(self) -> Run:
        """The underlying `vmactors.sim.run.Run` (system state, program, policy)."""
        return self._run

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(self._run.choices)

    @property
    def regs(self) -> dict[str, RegValue]:
        """Registers as they are now."""
        return self._run.machine.final_regs(self._run.system)

    @property
    def violations(self) -> tuple[str, ...]:
        """Invariants violated so far."""
        return tuple(sorted(self._run.violated))

    @property
    def done(self) -> bool:
        return self.result is not None or not self._run.enabled()

    def enabled(self) -> list[str]:
        """The enabled steps, described (`cpu1 runs`, `shootdown -> cpu0: ipi`), in
        choice order."""
        return [self._run.machine.describe(self._run.system, s) for s in self._run.enabled()]

    def pending(self, kind: str | None = None, to: str | None = None, src: str | None = None) -> list[Event]:
        """Messages in flight (sent, not yet delivered), oldest first per channel."""
        out = []
        channels = sorted(self._run.system.channels.items(), key=lambda kv: self._run.machine.channel_names(kv[0]))
        for _, queue in channels:
            for m in queue:
                s, d = m.src.name, m.dst.name
                if (kind is None or fnmatch.fnmatchcase(m.kind, kind)) and to in (None, d) and src in (None, s):
                    addr, pages = m.msg.range or (None, None)
                    out.append({"kind": m.kind, "src": s, "dst": d, "addr": addr, "pages": pages,
                                "msg_id": m.msg_id})
        return out

    def events(self, event: str | None = None, **fields: Any) -> list[Event]:
        """Events logged so far, filtered like `Result.events`."""
        return match_events(self._events, event, **fields)

    # steps ---------------------------------------------------------------------

    def _pull(self) -> list[Event]:
        data = self._buf.getvalue()[self._read:]
        self._read += len(data)
        new = _parse_lines(data)
        self._events.extend(new)
        for ev in new:
            if ev["event"] == "msg.send":
                # Who started the chain of messages this one belongs to: a
                # spontaneous step's actor (for a lock grant, the CPU granted).
                cause = ev["cause"]
                if cause is not None and cause in self._origin:
                    origin = self._origin[cause]
                else:
                    origin = ev["dst"] if ev["src"] == "mmap_sem" else ev["src"]
                self._origin[ev["msg_id"]] = origin
        return new

    def _check_open(self) -> None:
        if self.result is not None:
            raise SimError("the run has finished; no more steps")

    def _take(self, index: int) -> list[Event]:
        self._run.take(index)
        return self._pull()

    def step(self, actor: str | int | None = None) -> list[Event]:
        """Take one step and return its events: choice 0 (`actor` None), the first
        enabled step of `actor` ("cpu1", "shootdown", …), or the choice index."""
        self._check_open()
        steps = self._run.enabled()
        if not steps:
            raise SimError("no step is enabled: the run is over (call finish())")
        if actor is None:
            return self._take(0)
        if isinstance(actor, int):
            if not 0 <= actor < len(steps):
                raise SimError(f"choice {actor} but only {len(steps)} steps are enabled: {self.enabled()}")
            return self._take(actor)
        for i, s in enumerate(steps):
            if s.actor.name == actor:
                return self._take(i)
        raise SimError(f"{actor} has no enabled step; enabled: {self.enabled()}" + self._why(actor))

    def _why(self, actor: str) -> str:
        w = self._run.machine.waiting(self._run.system).get(actor)
        return f" ({actor} waits for {w})" if w else ""

    def deliver(self, kind: str, to: str, src: str | None = None) -> list[Event]:
        """Deliver the message of `kind` waiting at the head of a channel to `to`
        (from `src`, if given) and return the events of that step."""
        self._check_open()
        machine = self._run.machine
        for i, s in enumerate(self._run.enabled()):
            if s.src is None or s.actor.name != to or (src is not None and s.src.name != src):
                continue
            env = machine.head(self._run.system, s)
            if env is not None and env.kind == kind:
                return self._take(i)
        queued = self.pending(kind=kind, to=to, src=src)
        if queued:
            raise SimError(f"a {kind!r} message to {to} is in flight but cannot be delivered now "
                           f"(behind another message, or {to} does not take it); enabled: {self.enabled()}")
        raise SimError(f"no {kind!r} message to {to} is in flight; in flight: "
                       f"{[(m['src'], m['dst'], m['kind']) for m in self.pending()]}")

    def _belongs(self, step: Step, names: set[str]) -> bool:
        """Whether `step` is on behalf of one of `names`: its own step, the delivery
        of a message one of their steps caused (transitively), or mmap_sem granting
        one of them the lock."""
        if step.actor.name in names:
            return True
        machine = self._run.machine
        env = machine.head(self._run.system, step)
        if env is not None:
            return self._origin.get(env.msg_id, env.src.name) in names
        if step.actor == MMAP_SEM:
            _, cpu, _ = machine.state_of(self._run.system, MMAP_SEM).grantable()[step.choice]
            return f"cpu{cpu}" in names
        return False

    def _choose(self, only: str | Iterable[str] | None) -> int | None:
        steps = self._run.enabled()
        if not steps:
            return None
        if only is None:
            return 0
        names = {only} if isinstance(only, str) else set(only)
        for i, s in enumerate(steps):
            if self._belongs(s, names):
                return i
        return None

    def run_until(self, event: str | None = None, *, only: str | Iterable[str] | None = None,
                  limit: int = 10_000, **fields: Any) -> Event:
        """Step until a step logs an event matching `event` and `fields`; return
        that event. Each step is choice 0, or with `only` (an actor name or several)
        the first enabled step on their behalf: their own steps, deliveries of
        messages their steps caused (transitively: the tree owner's reply, a
        shootdown's IPIs and acks), and mmap_sem granting them the lock."""
        self._check_open()
        for _ in range(limit):
            i = self._choose(only)
            if i is None:
                break
            for ev in match_events(self._take(i), event, **fields):
                return ev
        raise SimError(f"no event matching event={event!r} {fields} "
                       f"({'no more enabled steps' if only is None else f'no step of {only} enabled'}"
                       f" after {self._run.system.step} steps); enabled: {self.enabled()}")

    def run_until_message(self, kind: str, *, to: str | None = None, src: str | None = None,
                          only: str | Iterable[str] | None = None, limit: int = 10_000) -> Event:
        """Step (as `run_until`) until a message of `kind` (to `to`, from `src`) is
        in flight, without delivering it; return it (`kind`, `src`, `dst`, `addr`,
        `pages`, `msg_id`)."""
        self._check_open()
        for _ in range(limit + 1):
            got = self.pending(kind=kind, to=to, src=src)
            if got:
                return got[0]
            i = self._choose(only)
            if i is None:
                break
            self._take(i)
        raise SimError(f"no {kind!r} message{f' to {to}' if to else ''} was sent "
                       f"(after {self._run.system.step} steps); enabled: {self.enabled()}")

    def finish(self) -> Result:
        """Run to the end with choice 0 (the last actor goes on) and return the result."""
        if self.result is None:
            result = self._run.run()
            self._pull()
            self.result = Result(self.scenario, self.policy, result, self._buf.getvalue(), seed=None,
                                 runtime="by hand")
        return self.result


# --- the entry point -------------------------------------------------------------------------


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TABLE_ORDER = ("map", "thread", "expect")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise UsageError(f"cannot write {type(value).__name__} {value!r} as a scenario value")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def render_toml(data: Mapping[str, Any]) -> str:
    """A scenario dict as scenario TOML: top-level values first, then the `[[map]]`,
    `[[thread]]` and `[expect]` tables (a thread may be given as a plain list of op
    strings). Unknown keys are written too, so the parser reports them as it would
    in a file.

    >>> print(render_toml({"name": "t", "thread": [["r0 = load A"]], "map": [{"name": "A"}]}), end="")
    name = "t"
    <BLANKLINE>
    [[map]]
    name = "A"
    <BLANKLINE>
    [[thread]]
    ops = ["r0 = load A"]
    """
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key == "thread" and isinstance(value, (list, tuple)):
            value = [{"ops": list(v)} if isinstance(v, (list, tuple)) else v for v in value]
        if key in _TABLE_ORDER or isinstance(value, Mapping) or _is_table_array(value):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    tables.sort(key=lambda kv: _TABLE_ORDER.index(kv[0]) if kv[0] in _TABLE_ORDER else len(_TABLE_ORDER))
    for key, value in tables:
        if isinstance(value, Mapping):
            lines += ["", f"[{_toml_key(key)}]"]
            lines += [f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, (list, tuple)) and all(isinstance(v, Mapping) for v in value):
            for entry in value:
                lines += ["", f"[[{_toml_key(key)}]]"]
                lines += [f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in entry.items()]
        else:  # the parser says what is wrong with it
            lines.insert(0, f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


class VM:
    """Build, run, step and explore scenarios; the `vm` fixture is one of these.

    `path` names inline scenarios in error messages (`PATH:LINE:COL: message`).
    Every run is remembered in `runs`, so a failing test can show how to replay it.
    """

    def __init__(self, path: str = "<inline>.toml", base: str | Path | None = None) -> None:
        self.path = path
        self.base = Path(base) if base is not None else None
        self.runs: list[Any] = []  # Result, Sim or Actors

    def scenario(self, source: str | Mapping[str, Any], path: str | None = None) -> Scenario:
        """A scenario from TOML text or from a dict (rendered to TOML, then parsed by
        the same parser as a file, so errors are the same). Raises `ScenarioError`."""
        text = render_toml(source) if isinstance(source, Mapping) else source
        if not isinstance(text, str):
            raise UsageError(f"vm.scenario takes TOML text or a dict, not {type(source).__name__}")
        return parse_scenario(text, path or self.path, hashlib.sha256(text.encode()).hexdigest())

    def load(self, path: str | Path) -> Scenario:
        """A scenario file, or a library scenario by name (`vm.load("mapfixed-two-readers")`,
        installed with vmactors). A relative path is looked up from `base` (the test's
        rootdir under pytest) when it is not found from the current directory."""
        p = Path(path)
        if not p.exists() and not p.is_absolute() and self.base is not None and (self.base / p).exists():
            p = self.base / p
        return load_scenario(library.resolve(p))

    def _resolve(self, s: Scenario | str | Mapping[str, Any]) -> Scenario:
        if isinstance(s, Scenario):
            return s
        if isinstance(s, str) and "\n" not in s and (s.endswith(".toml") or _LIBRARY_NAME.fullmatch(s)):
            return self.load(s)
        return self.scenario(s)

    def run(self, s: Scenario | str | Mapping[str, Any], policy: str = "mmap_sem", *, seed: int = 0,
            choices: Sequence[int] | None = None, strategy: str | None = None, depth: int = 3,
            wrap: bool = False, runtime: str = "direct", max_steps: int = DEFAULT_MAX_STEPS) -> Result:
        """Run once: seeded (`strategy` random by default, or "pct") or replaying
        `choices` (`wrap=True`: out-of-range choices wrap around instead of failing).
        `runtime="trio"` runs the actors as Trio tasks; the log is the same."""
        if runtime not in ("direct", "trio"):
            raise UsageError(f"runtime must be 'direct' or 'trio', not {runtime!r}")
        scenario = self._resolve(s)
        strat, used_seed = _strategy(strategy, seed, choices, wrap, depth)
        buf = io.BytesIO()
        log_seed = used_seed if used_seed is not None else 0
        if runtime == "direct":
            result = Run(scenario, policy, strat, log_seed, buf, max_steps).run()
        else:
            import trio

            from ..sim.trio_runtime import run_trio

            result = trio.run(run_trio, scenario, policy, strat, log_seed, buf, max_steps)
        return self._keep(Result(scenario, policy, result, buf.getvalue(), seed=used_seed, runtime=runtime))

    async def run_trio(self, s: Scenario | str | Mapping[str, Any], policy: str = "mmap_sem", *, seed: int = 0,
                       choices: Sequence[int] | None = None, strategy: str | None = None, depth: int = 3,
                       wrap: bool = False, max_steps: int = DEFAULT_MAX_STEPS) -> Result:
        """As `run(..., runtime="trio")`, from inside a running Trio loop (an async
        test under pytest-trio): `r = await vm.run_trio(s, "wilcox", seed=3)`."""
        from ..sim.trio_runtime import run_trio

        scenario = self._resolve(s)
        strat, used_seed = _strategy(strategy, seed, choices, wrap, depth)
        buf = io.BytesIO()
        result = await run_trio(scenario, policy, strat, used_seed if used_seed is not None else 0, buf, max_steps)
        return self._keep(Result(scenario, policy, result, buf.getvalue(), seed=used_seed, runtime="trio"))

    def _keep(self, result: Result) -> Result:
        self.runs.append(result)
        return result

    def actors(self, s: Scenario | str | Mapping[str, Any], policy: str = "mmap_sem", *,
               stand_in: Iterable[str] = (), seed: int | None = None, choices: Sequence[int] | None = None,
               strategy: str | None = None, depth: int = 3,
               max_steps: int = DEFAULT_MAX_STEPS) -> AbstractAsyncContextManager["Actors"]:
        """The scenario's actors as Trio tasks, but for the ones in `stand_in`, which
        the test plays: `async with vm.actors(s, "wilcox", stand_in=["shootdown"]) as
        system:` (see `vmactors.testing.actors`). Steps are choice 0 unless `seed`
        (random, as `run`), `strategy` or `choices` say otherwise."""
        from .actors import running

        if choices is None and strategy is None and seed is None:
            strat: Strategy = make("replay", 0)
        else:
            strat, _ = _strategy(strategy, seed or 0, choices, False, depth)
        return running(self._resolve(s), policy, stand_in, strat, seed or 0, max_steps, keep=self.runs)

    def start(self, s: Scenario | str | Mapping[str, Any], policy: str = "mmap_sem", *,
              max_steps: int = DEFAULT_MAX_STEPS) -> Sim:
        """A run to step by hand (`Sim`)."""
        sim = Sim(self._resolve(s), policy, max_steps=max_steps)
        self.runs.append(sim)
        return sim

    def explore(self, s: Scenario | str | Mapping[str, Any], policy: str = "mmap_sem", *,
                max_states: int = DEFAULT_MAX_STATES, reduction: bool = True) -> Exploration:
        """Exhaustive exploration (every interleaving, by stateful search). Each
        finding carries the choice list of a shortest violating run. `reduction`:
        partial-order and symmetry reduction (the same answers; counts `reduced`);
        False gives exact interleaving counts."""
        from ..explore.space import EXACT, Options

        exploration, _ = explore_exhaustive(self._resolve(s), policy, max_states=max_states,
                                            options=Options() if reduction else EXACT)
        return exploration

    def report(self) -> str:
        """How to replay every run of this test (the plugin prints it on failure)."""
        lines = []
        for r in self.runs:
            if not isinstance(r, (Sim, Result)):  # stand-in actors: not replayable by vm.run
                lines.append(r.describe())
            elif isinstance(r, Sim):
                state = r.result.describe() if r.result is not None else (
                    f"{r.scenario.name} [{r.policy}, by hand]: stopped after {r.run.system.step} steps; "
                    f"regs {r.regs}; enabled {r.enabled()}")
                lines.append(f"{state}\n    replay: vm.run(s, {r.policy!r}, choices={list(r.choices)})")
            else:
                lines.append(f"{r.describe()}\n    replay: vm.run(s, {r.policy!r}, choices={list(r.choices)})")
        return "\n".join(lines)


def outcomes(exploration: Exploration) -> list[dict[str, RegValue]]:
    """The final register sets an exploration found, in its order."""
    return [dict(s.regs) for s in exploration.states]


# --- Hypothesis strategies ------------------------------------------------------------------


def choice_lists(max_size: int = 80, max_value: int = 4) -> "SearchStrategy[list[int]]":
    """Lists of small ints for `vm.run(..., choices=cs, wrap=True)`; Hypothesis
    shrinks them toward zeros, i.e. toward schedules with fewer preemptions."""
    from hypothesis import strategies as st

    return st.lists(st.integers(min_value=0, max_value=max_value), max_size=max_size)


#: The op kinds `small_scenarios` draws from (a load twice as often as the others).
OP_KINDS = ("load", "store", "munmap", "mmap", "fixed", "madvise")


def small_scenarios(max_maps: int = 2, min_threads: int = 2, max_threads: int = 3,
                    max_ops: int = 3, ops: Sequence[str] = OP_KINDS) -> "SearchStrategy[Scenario]":
    """Random small valid scenarios: 1–2 one-page maps (anon or file, some prefaulted),
    2–3 threads of loads, stores, munmap, mmap, MAP_FIXED and madvise over the maps
    (`ops`: the kinds to draw, of `OP_KINDS`)."""
    from hypothesis import strategies as st

    unknown = sorted(set(ops) - set(OP_KINDS))
    if unknown or not ops:
        raise ValueError(f"small_scenarios: ops must be some of {OP_KINDS}, not {list(ops)}")
    kinds = [k for k in OP_KINDS for _ in range(2 if k == "load" else 1) if k in ops]

    @st.composite
    def build(draw: Any) -> Scenario:
        nmaps = draw(st.integers(1, max_maps))
        nthreads = draw(st.integers(min_threads, max_threads))
        names = ["A", "B"][:nmaps]
        maps = []
        for name in names:
            m: dict[str, Any] = {"name": name, "fill": draw(st.integers(0, 3))}
            if draw(st.booleans()):
                m["kind"] = "file"
                m["file"] = f"f{name}"
            pre = draw(st.sampled_from(["none", "empty", "some"]))
            if pre == "empty":
                m["prefault"] = []
            elif pre == "some":
                m["prefault"] = sorted(draw(st.sets(st.integers(0, nthreads - 1), min_size=1)))
            maps.append(m)
        threads = []
        for t in range(nthreads):
            thread_ops: list[str] = []
            local: list[str] = []
            for i in range(draw(st.integers(1, max_ops))):
                targets = names + local
                kind = draw(st.sampled_from(kinds))
                label = draw(st.sampled_from(targets))
                if kind == "load":
                    thread_ops.append(f"r{i} = load {label}")
                elif kind == "store":
                    thread_ops.append(f"store {label} {draw(st.integers(4, 9))}")
                elif kind == "munmap":
                    thread_ops.append(f"munmap {label}")
                elif kind == "madvise":
                    thread_ops.append(f"madvise {label} dontneed")
                elif kind == "mmap":
                    new = f"N{t}{i}"
                    thread_ops.append(f"{new} = mmap fill={draw(st.integers(0, 3))}")
                    local.append(new)
                else:
                    fill = draw(st.integers(0, 3))
                    if draw(st.booleans()):
                        thread_ops.append(f"mmap {label} fixed kind=file file=g{t}{i} fill={fill}")
                    else:
                        thread_ops.append(f"mmap {label} fixed fill={fill}")
            threads.append({"ops": thread_ops})
        data = {"name": "hypothesis", "map": maps, "thread": threads}
        return VM("<small_scenarios>.toml").scenario(data)

    return build()
