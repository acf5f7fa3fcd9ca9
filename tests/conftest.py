"""Shared helpers for the core test-suite.

Everything here is reached through fixtures (another conftest.py may own the module
name `conftest`, so no test imports this file by name):

- `scenario(text, name=...)`: write TOML to tmp_path, parse it with `load_scenario`.
- `walk(scenario, policy, monitor=..., init=...)`: every interleaving of a tiny
  scenario, as a search over (system state, monitor state): the monitor sees each
  step's log lines (as `dict`s before JSON encoding, with `step` and `vtime_ns` 0) and folds
  them into a hashable summary, so facts about the *order* of events can be stated
  over all interleavings, not only over final states.
- `run_events(scenario, policy, choices)`: one run along a choice list (then choice
  0): its result and the lines of its JSONL log.
- `log_schema.check(lines)` / `log_schema.problems(lines)`: the log against
  docs/log-schema.md.
- `vmcli(*args, cwd=...)`: `vmactors ARGS` in this process; `cli(*args, ...)`: the same
  as `python -m vmactors` in a fresh process (for what only a process can show).
- `h`: shared values (the repository root, the main policies).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Hashable, Iterable, Sequence

import attrs
import pytest
from hypothesis import settings

from vmactors.explore.canon import state_key
from vmactors.invariants import check_step
from vmactors.log import render_events
from vmactors.scenario import load_scenario
from vmactors.scenario.model import Scenario
from vmactors.sim.run import Run
from vmactors.sim.strategies import ReplayStrategy
from vmactors.system.machine import Machine

settings.register_profile("ci", max_examples=50, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

ROOT = Path(__file__).resolve().parent.parent
MAIN_POLICIES = ("mmap_sem", "wilcox", "glisse", "pervma")


# --- scenarios ------------------------------------------------------------------


@pytest.fixture
def scenario(tmp_path: Path) -> Callable[..., Scenario]:
    """`scenario(text, name="s.toml")`: the text (dedented) written to tmp_path and parsed."""

    def make(text: str, name: str = "s.toml") -> Scenario:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return load_scenario(path)

    return make


# --- all interleavings, with a monitor ------------------------------------------


@attrs.frozen
class Terminal:
    """One end of the search: final registers, how the run ended, the monitor's
    summary, the invariants violated on the way, and one choice list that gets here."""

    regs: dict = attrs.field(eq=False)
    end: str
    memo: Hashable
    violations: frozenset[str]
    choices: tuple[int, ...] = attrs.field(eq=False)
    system: Any = attrs.field(eq=False, repr=False)


Monitor = Callable[[Hashable, list[dict[str, Any]]], Hashable]


def walk(
    scen: Scenario,
    policy: str,
    monitor: Monitor | None = None,
    init: Hashable = None,
    limit: int = 100_000,
) -> list[Terminal]:
    """Every distinct (final state, monitor summary, violations) reachable in `scen`
    under `policy`. The monitor gets its summary and the log lines of one step and
    returns the new summary; it must not look at history counters (`step`,
    `vtime_ns`, `msg_id`, `cause`), which differ between paths that merge."""
    machine = Machine(scen, policy)
    system = machine.initial
    start = (state_key(machine, system), init, frozenset())
    seen = {start}
    queue = deque([(system, init, frozenset(), ())])
    out: list[Terminal] = []
    while queue:
        system, memo, viol, choices = queue.popleft()
        steps = machine.enabled(system)
        if not steps:
            end = "ok" if machine.finished(system) else "deadlock"
            if end == "deadlock":
                viol = viol | {"deadlock"}
            out.append(Terminal(machine.final_regs(system), end, memo, viol, choices, system))
            continue
        for i, step in enumerate(steps):
            result = machine.apply(system, step)
            v = viol | {x.invariant for x in check_step(system, result)}
            m = memo
            if monitor is not None:
                lines = list(render_events(0, 0, step.actor.name, result.events, result.sent, result.received))
                m = monitor(memo, lines)
            key = (state_key(machine, result.system), m, v)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > limit:
                raise AssertionError(f"walk: more than {limit} nodes; make the scenario smaller")
            queue.append((result.system, m, v, choices + (i,)))
    return out


@pytest.fixture(name="walk")
def walk_fixture() -> Callable[..., list[Terminal]]:
    return walk


def replay_events(scen: Scenario, policy: str, choices: Sequence[int]) -> tuple[Any, list[dict[str, Any]]]:
    """Run along `choices` (then choice 0); the result and the lines of its JSONL log."""
    buf = io.BytesIO()
    result = Run(scen, policy, ReplayStrategy(choices), 0, buf).run()
    return result, [json.loads(line) for line in buf.getvalue().splitlines()]


@pytest.fixture(name="run_events")
def run_events_fixture() -> Callable[..., tuple[Any, list[dict[str, Any]]]]:
    return replay_events


# --- the log schema (docs/log-schema.md) ------------------------------------------

HEAD = ("step", "vtime_ns", "actor", "event", "cpu", "addr", "pages", "frame", "vma",
        "msg_id", "src", "dst", "kind", "cause")
MSG_KEYS = ("msg_id", "src", "dst", "kind", "cause")
CPU_ACTOR = re.compile(r"^cpu\d+$")
SERVICE = {"tree", "shootdown", "rcu", "mmap_sem"}

#: event -> (who may log it, required keys besides the four common ones).
#: `cpuN` means any CPU actor. Keys listed in parentheses in the page as "where
#: relevant" are not required.
EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "run.start": ("sim", ("format", "vmactors", "scenario", "scenario_sha256", "policy", "strategy", "seed")),
    "run.end": ("sim", ("outcome", "regs", "violations")),
    "msg.send": ("any", MSG_KEYS),
    "msg.recv": ("any", MSG_KEYS),
    "ipi.send": ("shootdown", ("cpu", "addr", "pages")),
    "ipi.ack": ("cpuN", ("cpu", "addr", "pages")),
    "mem.load": ("cpuN", ("cpu", "addr", "pages", "frame", "vma", "vaddr", "reg", "value")),
    "mem.store": ("cpuN", ("cpu", "addr", "pages", "frame", "vma", "vaddr", "value")),
    "tlb.fill": ("cpuN", ("cpu", "addr", "pages", "frame", "vma", "prot")),
    "tlb.flush": ("cpuN", ("cpu", "addr", "pages", "reason")),
    "pte.install": ("cpuN", ("cpu", "addr", "pages", "frame", "vma", "prot")),
    "pte.zap": ("cpuN", ("cpu", "addr", "pages", "frame", "vma")),
    "pte.protect": ("cpuN", ("cpu", "addr", "pages", "frame", "vma", "prot")),
    "fault.begin": ("cpuN", ("cpu", "addr", "pages", "vaddr", "access")),
    "fault.retry": ("cpuN", ("cpu", "addr", "pages", "reason")),
    "fault.segv": ("cpuN", ("cpu", "addr", "pages", "reason")),
    "fault.end": ("cpuN", ("cpu", "addr", "pages", "vma")),
    "lock.wait": ("cpuN", ("cpu", "lock", "mode")),
    "lock.acquire": ("cpuN", ("cpu", "lock", "mode")),
    "lock.release": ("cpuN", ("cpu", "lock", "mode")),
    "tree.store": ("tree", ("addr", "pages", "entry")),
    "vma.free": ("cpuN|rcu", ("addr", "pages", "vma")),
    "vma.detach": ("cpuN", ("cpu", "vma")),
    "rcu.gp.start": ("rcu", ("gp",)),
    "rcu.gp.end": ("rcu", ("gp",)),
    "rcu.qs": ("rcu", ("cpu", "gp")),
    "frame.alloc": ("cpuN", ("cpu", "addr", "pages", "frame", "vma")),
    "frame.free": ("cpuN", ("cpu", "frame")),
    "syscall.begin": ("cpuN", ("cpu", "op", "text")),
    "syscall.end": ("cpuN", ("cpu", "op", "text", "ret")),
    "op.begin": ("cpuN", ("cpu", "thread", "index", "text")),
    "op.end": ("cpuN", ("cpu", "thread", "index", "text", "result")),
    "invariant.violated": ("sim", ("invariant", "detail")),
}
#: Step 0, after run.start: what the scenario sets up, logged by `sim`.
SETUP_EVENTS: dict[str, tuple[str, ...]] = {
    "tree.store": ("addr", "pages", "vma", "entry"),
    "pte.install": ("addr", "pages", "frame", "vma", "prot"),
    "tlb.fill": ("cpu", "addr", "pages", "frame", "vma", "prot"),
}
#: `lock.*` events about the rwsem are logged by the `mmap_sem` actor (it decides
#: who waits and who gets it; the event names the CPU); the others by the CPU.
LOCK_ACTORS = {"mmap_sem"}
#: Events about memory: `addr` (page-aligned int) and `pages` are required.
MEMORY_EVENTS = {"vma.free", "mem.load", "mem.store", "tlb.fill", "tlb.flush", "pte.install", "pte.zap", "pte.protect",
                 "fault.begin", "fault.retry", "fault.segv", "fault.end", "tree.store", "frame.alloc",
                 "ipi.send", "ipi.ack"}
SINGLE_PAGE = {"mem.load", "tlb.fill", "pte.install", "pte.zap", "pte.protect", "fault.begin", "frame.alloc"}


def _reg_value(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or v == "segv"


class _Problems:
    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def need(self, ok: object, msg: str, code: str = "schema") -> bool:
        if not ok:
            self.found.append((code, msg))
        return bool(ok)


def schema_problems(lines: Iterable[bytes | str | dict[str, Any]]) -> list[tuple[str, str]]:
    """Every way a whole log departs from docs/log-schema.md, as (code, message).

    Codes: `unknown-event` (an event the page does not list), `schema` (anything else)."""
    p = _Problems()
    need = p.need
    events: list[dict[str, Any]] = []
    for n, raw in enumerate(lines, 1):
        if isinstance(raw, dict):
            events.append(raw)
            continue
        text = raw.decode() if isinstance(raw, bytes) else raw
        if need(text.strip(), f"line {n} is empty"):
            events.append(json.loads(text))
    if not need(events, "empty log"):
        return p.found
    first, last = events[0], events[-1]
    need(first["event"] == "run.start", f"first line is not run.start: {first}")
    need(last["event"] == "run.end", f"last line is not run.end: {last}")
    need(sum(e["event"] == "run.start" for e in events) == 1, "run.start more than once")
    need(sum(e["event"] == "run.end" for e in events) == 1, "run.end more than once")
    if first["event"] == "run.start":
        need(first["step"] == 0 and first["vtime_ns"] == 0 and first["actor"] == "sim", f"run.start head: {first}")
        need(list(first)[4:] == ["format", "vmactors", "scenario", "scenario_sha256", "policy", "strategy", "seed"],
             f"run.start fields: {list(first)}")
        need(first.get("format") == 1, f"format: {first}")
        need(isinstance(first.get("scenario_sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", first["scenario_sha256"]),
             f"scenario_sha256: {first}")
        need(isinstance(first.get("seed"), int), f"seed: {first}")
    if last["event"] == "run.end":
        need(list(last)[4:7] == ["outcome", "regs", "violations"], f"run.end fields: {list(last)}")
        need(last.get("outcome") in ("ok", "violation", "deadlock", "step-limit"), f"outcome: {last}")
        regs = last.get("regs")
        need(isinstance(regs, dict) and all(re.fullmatch(r"\d+:\w+", k) and _reg_value(v) for k, v in regs.items()),
             f"regs: {last}")
        viol = last.get("violations")
        need(isinstance(viol, list) and viol == sorted(viol), f"violations: {last}")
        need(("waiting" in last) == (last.get("outcome") == "deadlock"), f"waiting: {last}")
        need(last["step"] == max(e["step"] for e in events), f"run.end step: {last}")
    sent: set[int] = set()
    received: set[int] = set()
    prev_step = 0
    clock: dict[str, int] = {}
    channels: dict[tuple[str, str], list[int]] = {}
    for n, ev in enumerate(events, 1):
        where = f"line {n}: {ev}"
        keys = list(ev)
        head = [k for k in keys if k in HEAD]
        need(keys[:4] == ["step", "vtime_ns", "actor", "event"], f"{where}: head keys")
        need(head == [k for k in HEAD if k in ev] and keys[: len(head)] == head, f"{where}: key order")
        for k in ("step", "vtime_ns"):
            need(isinstance(ev.get(k), int) and not isinstance(ev.get(k), bool) and ev[k] >= 0, f"{where}: {k}")
        need(ev["step"] >= prev_step, f"{where}: step goes back")
        prev_step = ev["step"]
        actor, name = ev["actor"], ev["event"]
        need(CPU_ACTOR.match(actor) or actor in SERVICE or actor == "sim", f"{where}: actor name")
        if actor != "sim":
            # Each actor has its own virtual clock, which never goes back.
            need(ev["vtime_ns"] >= clock.get(actor, 0), f"{where}: {actor}'s vtime_ns goes back")
            clock[actor] = ev["vtime_ns"]
        if not need(name in EVENTS, f"{where}: event {name!r} is not in docs/log-schema.md", "unknown-event"):
            continue
        who, required = EVENTS[name]
        if actor == "sim" and ev["step"] == 0 and name in SETUP_EVENTS:
            # Step 0: the address space as the scenario sets it up.
            who, required = "sim", SETUP_EVENTS[name]
        if who == "sim":
            need(actor == "sim", f"{where}: actor")
        elif who == "cpuN":
            need(CPU_ACTOR.match(actor) or (name.startswith("lock.") and actor in LOCK_ACTORS), f"{where}: actor")
        elif who == "cpuN|rcu":
            need(CPU_ACTOR.match(actor) or actor == "rcu", f"{where}: actor")
        elif who != "any":
            need(actor == who, f"{where}: actor")
        for k in required:
            need(k in ev, f"{where}: lacks {k!r}")
        if CPU_ACTOR.match(actor) and name not in ("msg.send", "msg.recv"):
            need(ev.get("cpu") == int(actor[3:]), f"{where}: a CPU's event without its cpu")
        if name.startswith("lock."):
            need((ev.get("lock") == "mmap_sem") == (actor == "mmap_sem"), f"{where}: who logs the lock event")
        if "cpu" in ev:
            need(isinstance(ev["cpu"], int) and not isinstance(ev["cpu"], bool), f"{where}: cpu not an int")
        if name in MEMORY_EVENTS or "addr" in ev:
            if need(isinstance(ev.get("addr"), int), f"{where}: addr"):
                need(ev["addr"] % 4096 == 0, f"{where}: addr not page-aligned")
            need(isinstance(ev.get("pages"), int) and ev["pages"] >= 1, f"{where}: pages")
        if name in SINGLE_PAGE:
            need(ev.get("pages") == 1, f"{where}: pages != 1")
        if "frame" in ev:
            need(isinstance(ev["frame"], int), f"{where}: frame")
        if ev.get("vma") is not None:
            need(isinstance(ev["vma"], str), f"{where}: vma")
        if name in ("msg.send", "msg.recv"):
            need(isinstance(ev.get("msg_id"), int) and isinstance(ev.get("kind"), str), f"{where}: msg keys")
            ends = [x for x in (ev.get("src"), ev.get("dst")) if isinstance(x, str) and CPU_ACTOR.match(x)]
            need(ev.get("cpu") == (int(ends[0][3:]) if ends else None), f"{where}: cpu is not the CPU end")
            cause = ev.get("cause")
            need(cause is None or (isinstance(cause, int) and cause in received),
                 f"{where}: cause does not name a message handled earlier")
            if name == "msg.send":
                need(ev.get("src") == actor, f"{where}: src")
                need(ev.get("msg_id", 0) > max(sent, default=0), f"{where}: msg_ids not unique, in send order")
                sent.add(ev.get("msg_id", 0))
                channels.setdefault((ev.get("src"), ev.get("dst")), []).append(ev.get("msg_id", 0))
            else:
                # Between one sender and one receiver, messages arrive in the order sent.
                queue = channels.get((ev.get("src"), ev.get("dst")), [])
                need(queue and queue[0] == ev.get("msg_id"), f"{where}: not the oldest message of its channel")
                if queue and queue[0] == ev.get("msg_id"):
                    queue.pop(0)
                need(ev.get("dst") == actor, f"{where}: dst")
                need(ev.get("msg_id") in sent and ev.get("msg_id") not in received, f"{where}: recv of unsent msg")
                received.add(ev.get("msg_id", 0))
        if name in ("ipi.send", "ipi.ack"):
            # It follows the msg.send of the IPI (or of the ack), in the same step.
            prev = events[n - 2] if n >= 2 else {}
            kind = "ipi" if name == "ipi.send" else "ack"
            need(prev.get("event") == "msg.send" and prev.get("kind") == kind and prev.get("step") == ev["step"]
                 and prev.get("addr") == ev.get("addr") and prev.get("pages") == ev.get("pages")
                 and (name == "ipi.ack" or prev.get("dst") == f"cpu{ev.get('cpu')}"),
                 f"{where}: does not follow the msg.send of its {kind}")
        if name == "mem.load":
            need(ev.get("vaddr", -1) - ev.get("addr", 0) in range(4096) and _reg_value(ev.get("value")), where)
        if name == "fault.begin":
            need(ev.get("access") in ("load", "store"), f"{where}: access")
        if name == "tlb.flush":
            need(ev.get("reason") in ("local", "ipi"), f"{where}: reason")
        if name.startswith("lock."):
            need(ev.get("lock") in ("mmap_sem", "vma", "rcu", "refcount", "fence"), f"{where}: lock")
            need(ev.get("mode") in ("read", "write"), f"{where}: mode")
        if name == "tree.store":
            need(ev.get("entry") in ("vma", "zero", "null"), f"{where}: entry")
            need((ev.get("vma") is not None) == (ev.get("entry") == "vma"), f"{where}: vma vs entry")
        if name.startswith("syscall."):
            need(ev.get("op") in ("mmap", "mmap-fixed", "munmap", "mprotect"), f"{where}: op")
            placed = name == "syscall.end" and isinstance(ev.get("ret"), int)
            if ev.get("op") != "mmap" or placed:
                need("addr" in ev and "pages" in ev, f"{where}: lacks addr/pages")
        if name.startswith("rcu."):
            need(isinstance(ev.get("gp"), int), f"{where}: gp")
        if name == "invariant.violated":
            need(ev.get("invariant") in ("coherence", "frame-uaf", "vma-uaf", "orphan-pte", "munmap-incomplete",
                                         "deadlock"), f"{where}: invariant")
    return p.found


#: Departures from docs/log-schema.md that tests validating logs tolerate (none today;
#: a known one gets its own code here and an xfail test in tests/log/test_schema.py).
KNOWN_DEVIATIONS: frozenset[str] = frozenset()


def check_log_schema(lines: Iterable[bytes | str | dict[str, Any]],
                     tolerate: frozenset[str] = KNOWN_DEVIATIONS) -> list[dict[str, Any]]:
    """Assert that a log follows docs/log-schema.md (but for the `tolerate`d codes);
    return the parsed lines."""
    lines = list(lines)
    problems = [msg for code, msg in schema_problems(lines) if code not in tolerate]
    assert not problems, "\n".join(problems[:10])
    return [ln if isinstance(ln, dict) else json.loads(ln) for ln in lines]


@pytest.fixture(name="log_schema")
def log_schema_fixture() -> SimpleNamespace:
    """`log_schema.check(lines)` asserts; `log_schema.problems(lines)` lists."""
    return SimpleNamespace(check=check_log_schema, problems=schema_problems, KNOWN_DEVIATIONS=KNOWN_DEVIATIONS)


# --- the command line ------------------------------------------------------------


def run_cli(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m vmactors ARGS` in a fresh process."""
    full_env = dict(os.environ)
    full_env.pop("COLUMNS", None)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "vmactors", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=full_env, timeout=timeout)


@pytest.fixture(name="cli")
def cli_fixture() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def run_main(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`vmactors ARGS` in this process (`vmactors.cli.main`), with stdout and stderr
    captured and the working directory set to `cwd`; a `SystemExit` (argparse) gives
    its code. Any other exception propagates: the CLI must not raise one."""
    from vmactors.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(["vmactors", *map(str, args)], code, out.getvalue(), err.getvalue())


@pytest.fixture(name="vmcli")
def vmcli_fixture() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_main


@pytest.fixture
def h() -> SimpleNamespace:
    """Small shared values."""
    return SimpleNamespace(ROOT=ROOT, MAIN_POLICIES=MAIN_POLICIES, Terminal=Terminal)
