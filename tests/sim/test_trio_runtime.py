"""The Trio runtime (`vmactors.sim.trio_runtime`) is a real actor runtime, and it runs
exactly the steps the direct driver (`vmactors.sim.run.Run`) runs.

What is proven here, and how:

1. Same runs. Every library scenario (scenarios/*.toml), under every policy, for 20
   random seeds and one PCT seed, and cut short by a step limit, gives a
   byte-identical log and an equal `RunResult` in both runtimes; so do a replayed
   choice list, a deadlock and the step-limit ending of an inline scenario.
2. Routing mistakes are caught. Mutations injected with monkeypatch (the runtime is
   not edited) send a turn to another actor's task, make a task take its message
   from another sender's channel, or put one message on a wrong (sender, receiver)
   channel. Each run where the mutation fired must end in a `RoutingError` (Trio
   wraps it in an ExceptionGroup; we unwrap) or log differently from the direct
   driver; the same runs unmutated are identical. A message put on a wrong channel
   is a `RoutingError` when its real receiver is granted it (that channel is empty)
   or when the wrong receiver takes it.
3. One task per actor. A `trio.abc.Instrument` counts the tasks named after actors:
   exactly one per actor (CPUs + 4), all alive together, all exited at the end, and
   each actor's steps run inside its own task. The same count goes through the real
   command line (`vmactors run`, `trio.run` wrapped to add the instrument);
   `--runtime direct` spawns none and writes the same log.
4. Messages cross Trio channels. `runtime.crossed` (the messages taken off a Trio
   channel) equals the log's `msg.recv` lines, in order, each over a real
   (sender, receiver) pair; what is left on each channel when the run ends is what
   was sent on it and not received.
"""

from __future__ import annotations

import functools
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from vmactors.policies import POLICY_NAMES
from vmactors.scenario import load_scenario
from vmactors.scenario.model import Scenario
from vmactors.sim import trio_runtime
from vmactors.sim.run import DEFAULT_MAX_STEPS, Run, RunResult
from vmactors.sim.strategies import ReplayStrategy, Strategy, make
from vmactors.sim.trio_runtime import RoutingError, TrioRuntime, run_trio
from vmactors.system.machine import Machine

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))
SEEDS = range(20)
PCT_SEED = 3
MUTATION_SEEDS = (0,)
MAIN_POLICIES = ("mmap_sem", "wilcox", "glisse", "pervma")
#: A munmap (mmap_sem, tree, shootdown traffic), a faulting reader and a TLB reader.
MUNMAP_AND_READER = ROOT / "scenarios" / "munmap-concurrent-fault.toml"

SCENARIO = """
    name = "trio"
    cpus = 3
    [[map]]
    name = "A"
    fill = 1
    prefault = [1, 2]
    [[map]]
    name = "F"
    kind = "file"
    file = "f"
    fill = 3
    [[thread]]
    ops = ["r0 = load A", "r1 = load F", "store A 8"]
    [[thread]]
    ops = ["mmap A fixed fill=2", "munmap F"]
    [[thread]]
    ops = ["r2 = load A", "B = mmap", "r3 = load B"]
"""

Outcome = tuple[RunResult, bytes]


@functools.cache
def library() -> tuple[Scenario, ...]:
    return tuple(load_scenario(p) for p in LIBRARY)


def direct(scen: Scenario, policy: str, strategy: Strategy, seed: int = 0,
           max_steps: int = DEFAULT_MAX_STEPS) -> Outcome:
    buf = io.BytesIO()
    result = Run(scen, policy, strategy, seed, buf, max_steps).run()
    return result, buf.getvalue()


async def via_trio(scen: Scenario, policy: str, strategy: Strategy, seed: int = 0,
                   max_steps: int = DEFAULT_MAX_STEPS) -> Outcome:
    buf = io.BytesIO()
    with trio.fail_after(20):  # a routing mistake must not hang the suite
        result = await run_trio(scen, policy, strategy, seed, buf, max_steps)
    return result, buf.getvalue()


def assert_same(want: Outcome, got: Outcome, what: object) -> None:
    """Byte-identical logs (showing the first differing line) and equal results."""
    (r1, log1), (r2, log2) = want, got
    if log1 != log2:
        a, b = log1.splitlines(), log2.splitlines()
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        pytest.fail(f"{what}: logs differ at line {i + 1}\n"
                    f"  direct: {a[i].decode() if i < len(a) else '<end>'}\n"
                    f"  trio:   {b[i].decode() if i < len(b) else '<end>'}")
    assert r1 == r2, what


def actor_names(scen: Scenario) -> list[str]:
    return [f"cpu{i}" for i in range(scen.cpus)] + ["tree", "shootdown", "rcu", "mmap_sem"]


# --- 1. the same runs as the direct driver -----------------------------------------------------


@pytest.mark.parametrize("policy", POLICY_NAMES)
async def test_every_library_scenario_runs_the_same_in_both_runtimes(policy: str, runs_under) -> None:
    assert len(library()) >= 15
    for scen in library():
        if not runs_under(scen, policy):
            continue
        for seed in SEEDS:
            want = direct(scen, policy, make("random", seed), seed)
            assert_same(want, await via_trio(scen, policy, make("random", seed), seed), (scen.name, "random", seed))
        want = direct(scen, policy, make("pct", PCT_SEED), PCT_SEED)
        assert_same(want, await via_trio(scen, policy, make("pct", PCT_SEED), PCT_SEED), (scen.name, "pct"))
        # Cut short: the step-limit ending, halfway through the PCT run.
        limit = max(1, want[0].steps // 2)
        short = direct(scen, policy, make("pct", PCT_SEED), PCT_SEED, limit)
        assert short[0].outcome == "step-limit" and short[0].steps == limit
        assert_same(short, await via_trio(scen, policy, make("pct", PCT_SEED), PCT_SEED, limit), (scen.name, limit))


@pytest.mark.parametrize("policy", MAIN_POLICIES)
async def test_same_log_for_a_replayed_choice_list(scenario, policy: str) -> None:
    s = scenario(SCENARIO)
    recorded, _ = direct(s, policy, make("random", 21), 21)
    want = direct(s, policy, ReplayStrategy(recorded.choices))
    got = await via_trio(s, policy, ReplayStrategy(recorded.choices))
    assert_same(want, got, policy)
    assert got[0].choices == recorded.choices and got[0].regs == recorded.regs


async def test_a_deadlock_ends_the_same_way(scenario, walk) -> None:
    s = scenario("""
        name = "blocked"
        [[map]]
        name = "A"
        [[map]]
        name = "B"
        prefault = [0, 1]
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["mprotect B prot=r"]
    """)
    dead = next(t for t in walk(s, "mmap_sem-irqs-off-wait") if t.end == "deadlock")
    want = direct(s, "mmap_sem-irqs-off-wait", ReplayStrategy(dead.choices))
    got = await via_trio(s, "mmap_sem-irqs-off-wait", ReplayStrategy(dead.choices))
    assert want[0].outcome == "deadlock" and want[0].waiting
    assert_same(want, got, "deadlock")


async def test_the_step_limit_ends_the_same_way(scenario) -> None:
    s = scenario(SCENARIO)
    want = direct(s, "wilcox", make("random", 2), 2, max_steps=10)
    got = await via_trio(s, "wilcox", make("random", 2), 2, max_steps=10)
    assert want[0].outcome == "step-limit" and want[0].steps == 10
    assert_same(want, got, "step-limit")


# --- 2. routing mistakes are caught --------------------------------------------------------------


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            yield from leaves(e)
    else:
        yield exc


@functools.cache
def direct_cached(name: str, policy: str, seed: int) -> Outcome:
    """The direct driver's run of a library scenario (pure, so computed once)."""
    scen = next(s for s in library() if s.name == name)
    return direct(scen, policy, make("random", seed), seed)


async def verdict(scen: Scenario, policy: str, seed: int) -> str:
    """How a Trio run compares with the direct driver's: "same", "log-differs",
    "routing-error", or "empty-channel" (a raw trio.WouldBlock: a task was granted
    a delivery from a channel with nothing on it)."""
    want = direct_cached(scen.name, policy, seed)
    try:
        got = await via_trio(scen, policy, make("random", seed), seed)
    except Exception as exc:  # classified, or re-raised
        found = list(leaves(exc))
        if any(isinstance(e, RoutingError) for e in found):
            return "routing-error"
        if any(isinstance(e, trio.WouldBlock) for e in found):
            return "empty-channel"
        raise
    return "same" if got == want else "log-differs"


def mutation_runs() -> Iterator[tuple[Scenario, str, int]]:
    """The runs each mutation is tried on: every library scenario, main policies."""
    for scen in library():
        for policy in MAIN_POLICIES:
            for seed in MUTATION_SEEDS:
                yield scen, policy, seed


async def verdicts(fired: list[Any]) -> Counter[str]:
    """The verdict of each mutation run in which the mutation fired (`fired` grows
    when it does)."""
    out: Counter[str] = Counter()
    for scen, policy, seed in mutation_runs():
        before = len(fired)
        v = await verdict(scen, policy, seed)
        if len(fired) > before:
            out[v] += 1
    return out


def turns_go_to(monkeypatch: pytest.MonkeyPatch, pick: Callable[[int, int], int]) -> list[Any]:
    """Mutation: `grant` puts the turn for actor `slot` on the turn channel of actor
    `pick(slot, n)`. Returns the steps it misdirected."""
    fired: list[Any] = []
    real_grant = TrioRuntime.grant

    async def grant(self: TrioRuntime, run: Run, step: Any) -> Any:
        slot, turns = self.machine.slot[step.actor], self._turns
        target = pick(slot, len(turns))
        if target != slot:
            fired.append(step)
        self._turns = [turns[target]] * len(turns)
        try:
            return await real_grant(self, run, step)
        finally:
            self._turns = turns

    monkeypatch.setattr(TrioRuntime, "grant", grant)
    return fired


class Rerouted(dict):  # type: ignore[type-arg]
    """A runtime's channel table whose lookups go through `route(key) -> key`."""

    def __init__(self, table: dict[Any, Any], route: Callable[[Any], Any]) -> None:
        super().__init__(table)
        self.route = route

    def __getitem__(self, key: Any) -> Any:
        return dict.__getitem__(self, self.route(key))


Route = Callable[[tuple[int, int]], tuple[int, int]]


def reroute(monkeypatch: pytest.MonkeyPatch, table: str, router: Callable[[TrioRuntime], Route]) -> None:
    """Mutation: before the actor tasks of a run start, each lookup in the runtime's
    `_send` or `_recv` table goes through `route = router(runtime)`: to channel
    `route(key)` instead of `key`."""
    real_spawn = TrioRuntime.spawn

    def spawn(self: TrioRuntime, nursery: trio.Nursery) -> None:
        setattr(self, table, Rerouted(getattr(self, table), router(self)))
        real_spawn(self, nursery)

    monkeypatch.setattr(TrioRuntime, "spawn", spawn)


def other(n: int, *avoid: int) -> int:
    """The first slot after avoid[0] (cyclically) that is none of `avoid`."""
    return next(x % n for x in range(avoid[0] + 1, avoid[0] + n + 1) if x % n not in avoid)


async def test_the_unmutated_runs_are_the_same() -> None:
    """The baseline of every mutation test below: the same runs, no mutation."""
    for scen, policy, seed in mutation_runs():
        assert await verdict(scen, policy, seed) == "same", (scen.name, policy, seed)


@pytest.mark.parametrize("pick", [
    pytest.param(lambda slot, n: 0, id="every-turn-to-cpu0"),
    pytest.param(lambda slot, n: (slot + 1) % n, id="every-turn-to-the-next-actor"),
])
async def test_a_turn_sent_to_another_actors_task_is_a_routing_error(monkeypatch, pick) -> None:
    """Mutation: `grant` puts each turn on another actor's turn channel (the previous
    version of this file passed with every step handed to cpu0's task)."""
    fired = turns_go_to(monkeypatch, pick)
    seen = await verdicts(fired)
    assert seen and set(seen) == {"routing-error"}, seen


async def test_a_task_taking_another_senders_message_is_a_routing_error(monkeypatch) -> None:
    """Mutation: a delivery from `src` takes the head of another non-empty channel
    to the same receiver."""
    fired: list[Any] = []

    def router(rt: TrioRuntime) -> Route:
        def route(key: tuple[int, int]) -> tuple[int, int]:
            src, dst = key
            for (s, d), ch in dict.items(rt._recv):
                if d == dst and s != src and ch.statistics().current_buffer_used:
                    fired.append(key)
                    return (s, d)
            return key

        return route

    reroute(monkeypatch, "_recv", router)
    seen = await verdicts(fired)
    assert seen["routing-error"] >= 10 and set(seen) == {"routing-error"}, seen


def misroute_one(monkeypatch: pytest.MonkeyPatch, nth: int, wrong: str) -> list[Any]:
    """Mutation: the `nth` message sent in the run goes on the channel to another
    receiver (`wrong="receiver"`) or from another sender (`wrong="sender"`)."""
    fired: list[Any] = []

    def router(rt: TrioRuntime) -> Route:
        n, sent = len(rt.ids), 0

        def route(key: tuple[int, int]) -> tuple[int, int]:
            nonlocal sent
            sent += 1
            if sent != nth:
                return key
            src, dst = key
            fired.append(key)
            return (src, other(n, dst, src)) if wrong == "receiver" else (other(n, src, dst), dst)

        return route

    reroute(monkeypatch, "_send", router)
    return fired


@pytest.mark.parametrize("wrong", ["receiver", "sender"])
@pytest.mark.parametrize("nth", [1, 4])
async def test_a_message_on_the_wrong_channel_does_not_go_unnoticed(monkeypatch, nth: int, wrong: str) -> None:
    """Mutation: one message goes on a wrong (sender, receiver) channel: a routing
    error, or at least a different run; it must never pass."""
    fired = misroute_one(monkeypatch, nth, wrong)
    seen = await verdicts(fired)
    assert sum(seen.values()) >= 10 and set(seen) <= {"routing-error", "log-differs"}, seen


async def test_a_message_on_the_wrong_channel_is_a_routing_error(monkeypatch) -> None:
    fired = misroute_one(monkeypatch, 1, "receiver")
    seen = await verdicts(fired)
    assert seen and set(seen) == {"routing-error"}, seen


# --- 3. one Trio task per actor -------------------------------------------------------------------


class ActorTasks(trio.abc.Instrument):
    """Counts the Trio tasks named after an actor: spawned, exited, alive at once."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.spawned: Counter[str] = Counter()
        self.exited: Counter[str] = Counter()
        self.alive: set[trio.lowlevel.Task] = set()
        self.most_alive = 0

    def expect(self, scen: Scenario) -> None:
        self.names |= set(actor_names(scen))

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.name in self.names:
            self.spawned[task.name] += 1
            self.alive.add(task)
            self.most_alive = max(self.most_alive, len(self.alive))

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        if task.name in self.names:
            self.exited[task.name] += 1
            self.alive.discard(task)

    def assert_one_task_per_actor(self, scen: Scenario) -> None:
        names = actor_names(scen)
        assert len(names) == scen.cpus + 4
        assert self.spawned == Counter(names), self.spawned
        assert self.exited == self.spawned, "an actor task did not exit"
        assert self.most_alive == len(names), "the actor tasks were not alive together"


def test_each_actor_is_one_trio_task_that_runs_its_own_steps(monkeypatch) -> None:
    ran: list[tuple[str, str]] = []  # (the task, the actor whose step it ran)
    real_step = Machine.actor_step

    def actor_step(self: Machine, slot: int, *args: Any, **kwargs: Any) -> Any:
        ran.append((trio.lowlevel.current_task().name, self.ids[slot].name))
        return real_step(self, slot, *args, **kwargs)

    monkeypatch.setattr(Machine, "actor_step", actor_step)
    for scen in library():
        assert [a.name for a in Machine(scen, "mmap_sem").ids] == actor_names(scen)
        tasks = ActorTasks()
        tasks.expect(scen)
        ran.clear()
        result = trio.run(run_trio, scen, "mmap_sem", make("random", 0), 0, None, instruments=[tasks])
        tasks.assert_one_task_per_actor(scen)
        assert len(ran) == result.steps and all(task == actor for task, actor in ran), (scen.name, ran)


@pytest.fixture
def instrumented_trio_run(monkeypatch) -> ActorTasks:
    """`trio.run`, as `run_with_trio` (the command line's default) calls it, with an
    `ActorTasks` instrument added."""
    assert vars(trio_runtime)["trio"] is trio  # the module run_with_trio calls trio.run of
    tasks = ActorTasks()
    real_run = trio.run

    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["instruments"] = [*kwargs.get("instruments", ()), tasks]
        return real_run(*args, **kwargs)

    monkeypatch.setattr(trio, "run", run)
    return tasks


def test_vmactors_run_spawns_one_task_per_actor(vmcli, instrumented_trio_run, tmp_path) -> None:
    tasks = instrumented_trio_run
    path = ROOT / "scenarios" / "mapfixed-two-readers.toml"
    scen = load_scenario(path)
    tasks.expect(scen)
    trio_log, direct_log = tmp_path / "trio.jsonl", tmp_path / "direct.jsonl"

    done = vmcli("run", path, "--policy", "wilcox", "--seed", 5, "--log", trio_log)
    assert done.returncode in (0, 1) and "mapfixed-two-readers:" in done.stdout, done.stderr
    tasks.assert_one_task_per_actor(scen)

    before = tasks.spawned.copy()
    again = vmcli("run", path, "--policy", "wilcox", "--seed", 5, "--log", direct_log, "--runtime", "direct")
    assert again.stdout == done.stdout
    assert tasks.spawned == before, "--runtime direct spawned Trio tasks"
    assert trio_log.read_bytes() == direct_log.read_bytes()


# --- 4. messages cross Trio channels ---------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICY_NAMES)
async def test_every_received_message_crossed_a_trio_channel(monkeypatch, policy: str) -> None:
    runtimes: list[TrioRuntime] = []
    real_spawn = TrioRuntime.spawn

    def spawn(self: TrioRuntime, nursery: trio.Nursery) -> None:
        runtimes.append(self)
        real_spawn(self, nursery)

    monkeypatch.setattr(TrioRuntime, "spawn", spawn)
    scen = load_scenario(MUNMAP_AND_READER)
    assert any(t.startswith("munmap") for t in scen.threads[0].texts)
    names = actor_names(scen)
    kinds: set[str] = set()
    for seed in range(5):
        result, log = await via_trio(scen, policy, make("random", seed), seed)
        rt = runtimes.pop()
        events = [json.loads(line) for line in log.splitlines()]
        recv = [(e["src"], e["dst"], e["kind"]) for e in events if e["event"] == "msg.recv"]
        assert recv and rt.crossed == recv, (seed, rt.crossed, recv)
        assert all(src in names and dst in names and src != dst for src, dst, _ in rt.crossed)
        kinds |= {kind for _, _, kind in rt.crossed}
        assert all(e["actor"] == e["dst"] for e in events if e["event"] == "msg.recv")
        # What a channel still holds is what was sent on it and never received.
        pending: Counter[tuple[str, str]] = Counter()
        for e in events:
            if e["event"] in ("msg.send", "msg.recv"):
                pending[(e["src"], e["dst"])] += 1 if e["event"] == "msg.send" else -1
        for (s, d), ch in rt._recv.items():
            src, dst = rt.ids[s].name, rt.ids[d].name
            assert ch.statistics().current_buffer_used == pending[(src, dst)], (seed, src, dst)
        if result.outcome == "ok":
            assert not +pending
    # The munmap's traffic to the tree owner and through the TLB shootdown did cross.
    assert {"unmap", "tree_done", "flush", "ipi", "ack", "flush_done"} <= kinds, kinds
