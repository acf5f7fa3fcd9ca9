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
from vmactors.log import schema as LS
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

#: The tests that each take tens of seconds (a walk or an exploration of the whole
#: library), by file and name, longest first. They are collected first: pytest-xdist
#: hands tests out in collection order, and one of them started last would run alone
#: on one core while the other idles (test_generated_docs.py sorts last by name).
LONG_TESTS = (
    "tests/test_generated_docs.py::test_generated_sections_are_up_to_date",
    "tests/system/test_footprint.py::test_every_step_of_the_library_touches_only_what_it_declares",
    "tests/policies/test_protocol_tables.py::test_every_row_runs_in_the_library",
    "tests/differential/test_differential.py::test_exhaustive_exploration_agrees_with_the_reference_under_every_policy",
)


@pytest.fixture(name="runs_under")
def runs_under_fixture() -> Callable[[Scenario, str], bool]:
    return runs_under


#: VMACTORS_FULL_WALKS=1: the library-wide walks run every scenario under every
#: ablation too (several minutes more); see `runs_under`.
FULL_WALKS = bool(os.environ.get("VMACTORS_FULL_WALKS"))


def runs_under(scen: Scenario, policy: str) -> bool:
    """Whether the library-wide walks (footprints, the two runtimes) run library
    scenario `scen` under `policy`. Every scenario runs under every design and
    mmap_sem-4.19. An ablation runs on the scenarios whose `[expect]` names it: there
    it trips its invariant, so the rows it changes run; the rows it shares with its
    design are walked under the design on the whole library. With VMACTORS_FULL_WALKS=1
    an ablation walks every scenario except those the reductions do not apply to
    (`reducible`: the kernel's history of docs/history.md, with fork, mremap,
    truncate, stacks, page tables freed — the largest state spaces under wilcox's
    ablations), which still need their `[expect]` to name it."""
    from vmactors.explore.space import reducible
    from vmactors.policies import ABLATIONS

    if policy not in ABLATIONS or policy in dict(scen.expect):
        return True
    return FULL_WALKS and reducible(scen)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_TESTS)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("[")[0], len(rank)))  # stable: the rest keep their order


# --- scenarios ------------------------------------------------------------------


@pytest.fixture
def scenario(tmp_path: Path) -> Callable[..., Scenario]:
    """`scenario(text, name="s.toml")`: the text (dedented) written to tmp_path and parsed."""

    def make(text: str, name: str = "s.toml") -> Scenario:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return load_scenario(path)

    return make


#: Three interchangeable readers of a prefaulted file map and one MAP_FIXED writer:
#: large enough to shard and to cut, and its readers are symmetric.
READERS = """\
name = "readers"
[[map]]
name = "A"
kind = "file"
file = "f1"
fill = 1
prefault = [0, 1, 2]
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["mmap A fixed kind=file file=f2 fill=2"]
"""


@pytest.fixture
def readers_text() -> str:
    """The text of `READERS`: 3 readers of a file map and one MAP_FIXED writer."""
    return READERS


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
#
# What the events are -- their names, the keys each must have, who logs it, which keys
# take one of a few values -- comes from `vmactors.log.schema`, the module the writer
# renders and the page's table is generated from. What makes this check more than the
# writer checking itself is the rest: the key order, message ids, causes, FIFO channels,
# per-actor clocks, IPI lines after their messages, step-0 set-up events, run.start/run.end.

HEAD = LS.LINE_HEAD + LS.HEAD
MSG_KEYS = tuple(k for k in LS.HEAD if k in LS.required_keys(LS.MsgSend))
CPU_ACTOR = re.compile(r"^cpu\d+$")
SERVICE = {"tree", "shootdown", "rcu", "mmap_sem"}
MSG_EVENTS = (LS.MsgSend.NAME, LS.MsgRecv.NAME)
IPI_EVENTS = {LS.IpiSend.NAME: "ipi", LS.IpiAck.NAME: "ack"}  # event -> kind of the msg.send it follows


def _always_keys(cls: type[LS.Event]) -> tuple[str, ...]:
    """The keys every line of `cls` carries: the required ones and those written even
    when null (`result`)."""
    req = LS.required_keys(cls)
    return req + tuple(k for k in LS.key_order(cls) if k in LS.KEEP_NONE and k not in req)


#: event -> (who may log it, required keys besides the four common ones).
#: Who: `cpuN` any CPU actor, `any` any actor, alternatives joined by `|`.
EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: (cls.WHO, _always_keys(cls)) for name, cls in LS.EVENTS.items()}
#: Step 0, after run.start: what the scenario sets up, logged by `sim`.
SETUP_EVENTS: dict[str, tuple[str, ...]] = {
    LS.TreeStore.NAME: LS.required_keys(LS.TreeStore) + ("vma",),  # a `[[map]]` is a VMA
    LS.PteInstall.NAME: LS.required_keys(LS.PteInstall),
    LS.TlbFill.NAME: LS.required_keys(LS.TlbFill),  # with the CPU whose TLB it fills
}
#: Events about memory: `addr` (page-aligned int) and `pages` are required.
MEMORY_EVENTS = LS.MEMORY_EVENTS
SINGLE_PAGE = LS.SINGLE_PAGE
INVARIANTS = tuple(LS.INVARIANTS)


def _logged_by(who: str, actor: str) -> bool:
    """Whether `actor` may log an event whose `WHO` is `who`."""
    return any(w == "any" or w == actor or (w == "cpuN" and CPU_ACTOR.match(actor) is not None)
               for w in who.split("|"))


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
    start, end = LS.RunStart.NAME, LS.RunEnd.NAME
    need(first["event"] == start, f"first line is not {start}: {first}")
    need(last["event"] == end, f"last line is not {end}: {last}")
    need(sum(e["event"] == start for e in events) == 1, f"{start} more than once")
    need(sum(e["event"] == end for e in events) == 1, f"{end} more than once")
    if first["event"] == start:
        need(first["step"] == 0 and first["vtime_ns"] == 0 and first["actor"] == "sim", f"{start} head: {first}")
        need(list(first)[4:] == list(LS.key_order(LS.RunStart)), f"{start} fields: {list(first)}")
        need(first.get("format") == LS.FORMAT, f"format: {first}")
        need(isinstance(first.get("scenario_sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", first["scenario_sha256"]),
             f"scenario_sha256: {first}")
        need(isinstance(first.get("seed"), int), f"seed: {first}")
    if last["event"] == end:
        need(list(last)[4:7] == list(LS.required_keys(LS.RunEnd)), f"{end} fields: {list(last)}")
        regs = last.get("regs")
        need(isinstance(regs, dict) and all(re.fullmatch(r"\d+:\w+", k) and _reg_value(v) for k, v in regs.items()),
             f"regs: {last}")
        viol = last.get("violations")
        need(isinstance(viol, list) and viol == sorted(viol), f"violations: {last}")
        need(("waiting" in last) == (last.get("outcome") == "deadlock"), f"waiting: {last}")
        need(last["step"] == max(e["step"] for e in events), f"{end} step: {last}")
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
        cls = LS.EVENTS[name]
        who, required = EVENTS[name]
        if actor == "sim" and ev["step"] == 0 and name in SETUP_EVENTS:
            # Step 0: the address space as the scenario sets it up.
            who, required = "sim", SETUP_EVENTS[name]
        need(_logged_by(who, actor), f"{where}: actor")
        for k in required:
            need(k in ev, f"{where}: lacks {k!r}")
        # Only the event's own keys, in the order the page lists them.
        own = keys[4:]
        order = LS.key_order(cls)
        need(set(own) <= set(order) and own == [k for k in order if k in ev], f"{where}: keys {own} not {list(order)}")
        for k, values in LS.choices(cls).items():
            if k in ev:
                need(ev[k] in values, f"{where}: {k}")
        if CPU_ACTOR.match(actor) and name not in MSG_EVENTS:
            need(ev.get("cpu") == int(actor[3:]), f"{where}: a CPU's event without its cpu")
        if name.startswith("lock."):
            # The rwsem logs its own lock events (it decides who waits and who gets it).
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
        if name in MSG_EVENTS:
            need(isinstance(ev.get("msg_id"), int) and isinstance(ev.get("kind"), str), f"{where}: msg keys")
            ends = [x for x in (ev.get("src"), ev.get("dst")) if isinstance(x, str) and CPU_ACTOR.match(x)]
            need(ev.get("cpu") == (int(ends[0][3:]) if ends else None), f"{where}: cpu is not the CPU end")
            cause = ev.get("cause")
            need(cause is None or (isinstance(cause, int) and cause in received),
                 f"{where}: cause does not name a message handled earlier")
            if name == LS.MsgSend.NAME:
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
        if name in IPI_EVENTS:
            # It follows the msg.send of the IPI (or of the ack), in the same step.
            prev = events[n - 2] if n >= 2 else {}
            kind = IPI_EVENTS[name]
            need(prev.get("event") == LS.MsgSend.NAME and prev.get("kind") == kind and prev.get("step") == ev["step"]
                 and prev.get("addr") == ev.get("addr") and prev.get("pages") == ev.get("pages")
                 and (name == LS.IpiAck.NAME or prev.get("dst") == f"cpu{ev.get('cpu')}"),
                 f"{where}: does not follow the msg.send of its {kind}")
        if name == LS.MemLoad.NAME:
            need(ev.get("vaddr", -1) - ev.get("addr", 0) in range(4096) and _reg_value(ev.get("value")), where)
        if name == LS.TreeStore.NAME:
            need((ev.get("vma") is not None) == (ev.get("entry") == "vma"), f"{where}: vma vs entry")
        if name.startswith("syscall."):
            placed = name == LS.SyscallEnd.NAME and isinstance(ev.get("ret"), int)
            if ev.get("op") in ("fork", "truncate"):  # no range
                need("addr" not in ev and "pages" not in ev, f"{where}: a range")
            elif ev.get("op") != "mmap" or placed:
                need("addr" in ev and "pages" in ev, f"{where}: lacks addr/pages")
        if name.startswith("rcu."):
            need(isinstance(ev.get("gp"), int), f"{where}: gp")
        if name == LS.InvariantViolated.NAME:
            need(ev.get("invariant") in INVARIANTS, f"{where}: invariant")
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
