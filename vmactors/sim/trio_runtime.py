"""The Trio runtime: every actor is a Trio task that owns its state; messages between
actors cross Trio memory channels; a scheduler grants turns.

- Each actor task keeps its own state (a value of the actor's pure state machine)
  and its own virtual clock, and has one receive channel per sender. It waits for a
  turn; a turn names either one of its own steps or the channel whose oldest message
  it takes. It then calls the actor's pure step (`Machine.actor_step`), sends what
  that step sent, each message on the memory channel of its (sender, receiver)
  pair, and reports back what it did and what it can do next (its own steps, the
  message kinds it refuses).
- The scheduler owns every choice. It knows only what the actors report and which
  message kinds are queued on which channel, enumerates the enabled steps from that
  (the same `enumerate_steps` the pure step relation uses, so a choice index means
  the same step in both runtimes), lets the run's strategy choose, and grants the
  turn. One turn at a time: shared memory (page tables, frames) changes only inside
  a granted step.
- The run (`vmactors.sim.run.Run`) is the observer: it is told each step's outcome
  and assembles the system value from it to check the invariants and write the log.
  Nothing an actor task does depends on that copy.

Trio randomises the order of runnable tasks; nothing here depends on it, so a run is
the same as the direct driver's for the same choices (a test compares the logs).

Tests can leave actors out and stand in for them (`stand_in`): a delivery to a
stand-in is handed to the test (`Actors.receive`), and the test sends as it
(`Actors.send`); each is a logged step like any other.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import IO, Any

import attrs
import trio

from ..actors.messages import Envelope, Message
from ..actors.policy import Policy
from ..ids import ActorId, actor_id
from ..mm.world import World
from ..scenario.model import Scenario
from ..system.machine import Machine, enumerate_steps
from ..system.state import ActorOutcome, Channel, Step, StepResult
from .run import DEFAULT_MAX_STEPS, Loop, Run, RunResult
from .strategies import Strategy


class RoutingError(RuntimeError):
    """A turn reached the wrong actor task, or a message the wrong channel."""


class StandInError(RuntimeError):
    """A message a stand-in sent broke the actor that took it (a CPU not waiting for
    it, a service that does not take it): raised where the step was granted, so the
    test that stood in sees it at that step."""


@attrs.frozen
class Turn:
    """The scheduler grants `step` to its actor; sent messages get ids from `first_msg_id`."""

    step: Step
    first_msg_id: int


@attrs.frozen
class Report:
    """What an actor task did in its turn, and what it can do next."""

    slot: int
    outcome: ActorOutcome
    received: Envelope | None
    own: int
    rejects: frozenset[str]


class SharedMemory:
    """The world (page tables, frames, page caches): read and replaced only by the
    actor task holding the turn."""

    def __init__(self, world: World) -> None:
        self.world = world


class TrioRuntime:
    """The actor tasks of one run, their channels, and the scheduler's books."""

    def __init__(self, machine: Machine, stand_in: Iterable[str] = ()) -> None:
        self.machine = machine
        self.ids = machine.ids
        n = len(self.ids)
        self.stand_in = frozenset(machine.slot[actor_id(a)] for a in stand_in)
        self.memory = SharedMemory(machine.initial.world)
        # One memory channel per (sender, receiver) pair: FIFO between the two.
        self._send: dict[Channel, trio.MemorySendChannel[Envelope]] = {}
        self._recv: dict[Channel, trio.MemoryReceiveChannel[Envelope]] = {}
        for s in range(n):
            for d in range(n):
                if s != d:
                    self._send[(s, d)], self._recv[(s, d)] = trio.open_memory_channel[Envelope](math.inf)
        self._turns: list[trio.MemorySendChannel[Turn]] = []
        self._turn_inboxes: list[trio.MemoryReceiveChannel[Turn]] = []
        for _ in range(n):
            send, recv = trio.open_memory_channel[Turn](1)
            self._turns.append(send)
            self._turn_inboxes.append(recv)
        self._reports_send, self._reports = trio.open_memory_channel[Report | StandInError](math.inf)
        # The scheduler's books: what each actor said it can do, and the kinds queued
        # on each channel (it never looks inside an actor).
        self.own: list[int] = [0] * n
        self.rejected: list[frozenset[str]] = [frozenset()] * n
        self.queued: dict[Channel, deque[str]] = {}
        self.last: int | None = None
        # Stand-ins: messages delivered to the test, not yet received by it.
        self.stand_in_inbox: deque[Envelope] = deque()
        #: Messages that crossed a Trio channel (sent, and received), for tests.
        self.crossed: list[tuple[str, str, str]] = []

    # --- actor tasks ---------------------------------------------------------------------------

    def spawn(self, nursery: trio.Nursery) -> None:
        states = self.machine.initial.actors
        for slot, actor in enumerate(self.machine.actors):
            if slot in self.stand_in:
                continue
            self.own[slot] = actor.own_steps(states[slot])
            self.rejected[slot] = actor.rejects(states[slot])
            nursery.start_soon(self._actor_task, slot, states[slot], name=actor.id.name)

    async def _actor_task(self, slot: int, state: Any) -> None:
        machine = self.machine
        me = self.ids[slot]
        actor = machine.actors[slot]
        clock = 0
        async with self._turn_inboxes[slot]:
            async for turn in self._turn_inboxes[slot]:
                step = turn.step
                if step.actor != me:
                    raise RoutingError(f"{me}'s task was granted {step.actor}'s step")
                env = None if step.src is None else self._take(step.src, slot)
                try:
                    out = machine.actor_step(slot, state, self.memory.world, env, step.choice, clock,
                                             turn.first_msg_id)
                except Exception as broken:
                    if env is None or machine.slot[env.src] not in self.stand_in:
                        raise
                    why = StandInError(f"{me} cannot take {env.kind} from {env.src} (sent by the test): {broken}")
                    await self._reports_send.send(why)
                    continue
                state, clock = out.state, out.end
                self.memory.world = out.world
                for e in out.sent:
                    self._send[(slot, machine.slot[e.dst])].send_nowait(e)
                await self._reports_send.send(Report(slot, out, env, actor.own_steps(state), actor.rejects(state)))

    def _take(self, src: ActorId, slot: int) -> Envelope:
        """The oldest message on the channel from `src` to actor `slot`, checked to be
        addressed from `src` to it."""
        me = self.ids[slot]
        try:
            env = self._recv[(self.machine.slot[src], slot)].receive_nowait()
        except trio.WouldBlock:
            raise RoutingError(f"{me} was to take a message from {src}, but their channel is empty") from None
        if env.dst != me or env.src != src:
            raise RoutingError(f"{me} took {env.src} -> {env.dst}: {env.kind} from {src}'s channel")
        self.crossed.append((env.src.name, env.dst.name, env.kind))
        return env

    # --- the scheduler --------------------------------------------------------------------------

    def enabled(self) -> list[Step]:
        heads = ((s, d, q[0]) for (s, d), q in self.queued.items() if q)
        return enumerate_steps(self.ids, self.last, self.own, heads, self.rejected.__getitem__)

    def _books(self, slot: int, received: Envelope | None, sent: Sequence[Envelope]) -> None:
        if received is not None:
            self.queued[(self.machine.slot[received.src], slot)].popleft()
        for e in sent:
            self.queued.setdefault((slot, self.machine.slot[e.dst]), deque()).append(e.kind)
        self.last = slot

    def _observed(self, run: Run, report: Report) -> StepResult:
        """The step as the observer sees it: the run's system after it."""
        system = run.system
        channels = system.channels
        if report.received is not None:
            key = (self.machine.slot[report.received.src], report.slot)
            queue = channels[key]
            channels = channels.set(key, queue[1:]) if len(queue) > 1 else channels.delete(key)
        return self.machine.commit(system, report.slot, channels, report.received, report.outcome)

    async def grant(self, run: Run, step: Step) -> StepResult:
        """Grant `step` to its actor's task (or, for a stand-in, to the test) and wait
        for its report."""
        slot = self.machine.slot[step.actor]
        if slot in self.stand_in:
            return self._stand_in_receives(run, slot, step)
        self._turns[slot].send_nowait(Turn(step, run.system.next_msg_id))
        report = await self._reports.receive()
        if isinstance(report, StandInError):
            raise report
        if report.slot != slot:
            raise RoutingError(f"granted {step.actor}, heard from {self.ids[report.slot]}")
        self.own[slot], self.rejected[slot] = report.own, report.rejects
        self._books(slot, report.received, report.outcome.sent)
        return self._observed(run, report)

    def close(self) -> None:
        for send in self._turns:
            send.close()

    # --- stand-ins --------------------------------------------------------------------------------

    def _stand_in_receives(self, run: Run, slot: int, step: Step) -> StepResult:
        assert step.src is not None, "a stand-in has no own steps"
        env = self._take(step.src, slot)
        self.stand_in_inbox.append(env)
        clock = run.system.clocks[slot]
        start = max(clock, env.sent_at)
        out = ActorOutcome(run.system.actors[slot], self.memory.world, (), (), (), start, start)
        self._books(slot, env, ())
        return self._observed(run, Report(slot, out, env, 0, frozenset()))

    def stand_in_sends(self, run: Run, src: ActorId, dst: ActorId, msg: Message,
                       cause: int | None = None) -> StepResult:
        slot, dslot = self.machine.slot[src], self.machine.slot[dst]
        if slot not in self.stand_in:
            raise RoutingError(f"{src} is not stood in for")
        clock = run.system.clocks[slot]
        env = Envelope(src, dst, msg, run.system.next_msg_id, cause, clock + 20)
        self._send[(slot, dslot)].send_nowait(env)
        out = ActorOutcome(run.system.actors[slot], self.memory.world, (0,), (env,), (), clock, clock + 20)
        self._books(slot, None, (env,))
        return self._observed(run, Report(slot, out, None, 0, frozenset()))


async def drive(runtime: TrioRuntime, run: Run) -> RunResult:
    """Pump the run's step loop, each chosen step granted as a turn to its actor task."""
    loop: Loop = run.loop(runtime.enabled)
    try:
        _, step = next(loop)
        while True:
            _, step = loop.send(await runtime.grant(run, step))
    except StopIteration as stop:
        done: RunResult = stop.value
        return done


async def run_trio(
    scenario: Scenario,
    policy: str | Policy,
    strategy: Strategy,
    seed: int = 0,
    log: IO[bytes] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> RunResult:
    """Run one scenario with one Trio task per actor; the same result and log as
    `Run.run` for the same strategy and seed."""
    run = Run(scenario, policy, strategy, seed, log, max_steps)
    runtime = TrioRuntime(run.machine)
    async with trio.open_nursery() as nursery:
        runtime.spawn(nursery)
        try:
            return await drive(runtime, run)
        finally:
            runtime.close()


def run_with_trio(scenario: Scenario, policy: str | Policy, strategy: Strategy, seed: int = 0,
                  log: IO[bytes] | None = None, max_steps: int = DEFAULT_MAX_STEPS) -> RunResult:
    """`run_trio` from synchronous code (the command line)."""
    return trio.run(run_trio, scenario, policy, strategy, seed, log, max_steps)


__all__ = ["TrioRuntime", "RoutingError", "StandInError", "run_trio", "run_with_trio", "drive", "Turn", "Report"]
