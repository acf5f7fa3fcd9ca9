"""Protocol tests in which the test is an actor.

`vm.actors(scenario, policy, stand_in=["shootdown"])` starts the scenario's actors as
Trio tasks (the runtime `vmactors run` uses), but for the ones named in `stand_in`:
the test plays those. A message to a stand-in is handed to the test
(`await system.receive(...)`), and the test sends as it (`system.send(...)`); both
are logged steps like any other, so invariants are checked and the log can be
queried. A stand-in only exchanges messages: it has no state of its own in the world.

The test drives time: the actors take steps only while the test awaits `receive`,
`step`, `idle`, `run_until` or `finish`, each step chosen by the strategy (by default
choice 0: the actor that ran last goes on), so a test is deterministic. `hold("cpu1")`
keeps an actor from taking steps of its own (messages to it are still delivered: an
IPI still interrupts it) until `release("cpu1")`, to stop a CPU at the point a
litmus test needs.

    async def test_a_cpu_acks_only_after_its_flush(vm):
        async with vm.actors(SCENARIO, "wilcox", stand_in=["shootdown"]) as system:
            flush = await system.receive("shootdown", kind="flush")
            token = ShootdownToken(flush.src.index, flush.msg.addr, flush.msg.pages)
            system.send("shootdown", "cpu1", Ipi(addr=flush.msg.addr, pages=flush.msg.pages, token=token))
            ack = await system.receive("shootdown", kind="ack")
            assert flush.msg.addr not in system.state("cpu1").tlb
            ...
"""

from __future__ import annotations

import fnmatch
import io
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from ..actors.messages import Envelope, Message
from ..ids import actor_id
from ..scenario.model import Scenario
from ..sim.run import Run
from ..sim.strategies import Strategy
from ..sim.trio_runtime import StandInError, TrioRuntime
from ..system.state import Step, System

if TYPE_CHECKING:  # pragma: no cover
    from . import Result

Event = dict[str, Any]


def _error(message: str) -> AssertionError:
    from . import SimError

    return SimError(message)


class Actors:
    """A running system whose stand-in actors the test plays (see the module docstring)."""

    def __init__(self, scenario: Scenario, policy: str, stand_in: Iterable[str], strategy: Strategy, seed: int,
                 max_steps: int) -> None:
        self.scenario = scenario
        self._buf = io.BytesIO()
        self._run = Run(scenario, policy, strategy, seed, self._buf, max_steps)
        self._run.keep_events()
        self.runtime = TrioRuntime(self._run.machine, stand_in)
        self._run.stand_in = self.runtime.stand_in
        self.policy = self._run.policy.name
        self.stand_ins = tuple(sorted(self.runtime.ids[s].name for s in self.runtime.stand_in))
        #: The last message each stand-in received (the cause of what it sends next).
        self._last: dict[str, int] = {}
        self._held: set[str] = set()
        self.result: Result | None = None

    # --- what the observer sees ---------------------------------------------------------------

    @property
    def system(self) -> System:
        """The system as the run observes it after the last step."""
        return self._run.system

    def state(self, actor: str) -> Any:
        """An actor's state after the last step, e.g. `system.state("cpu0").tlb`."""
        return self._run.machine.state_of(self._run.system, actor_id(actor))

    def addr(self, label: str) -> int:
        """The address of a `[[map]]` label."""
        return self._run.labels[label]

    def events(self, event: str | None = None, **fields: Any) -> list[Event]:
        """Events logged so far, filtered like `Result.events`."""
        from . import match_events

        return match_events(self._run.events or [], event, **fields)

    @property
    def inbox(self) -> list[Envelope]:
        """Messages delivered to the stand-ins that the test has not received yet."""
        return list(self.runtime.stand_in_inbox)

    @property
    def choices(self) -> tuple[int, ...]:
        """The scheduler's choices so far (`vm.actors(..., choices=...)` with the same
        stand-in actions replays them)."""
        return tuple(self._run.choices)

    def enabled(self) -> list[str]:
        """The steps that may go next, described, in choice order (held actors' own
        steps left out)."""
        return [self._run.machine.describe(self._run.system, s) for s in self._enabled()]

    # --- holding actors still ------------------------------------------------------------------

    def hold(self, *actors: str) -> None:
        """Keep `actors` from taking steps of their own until `release`; messages to
        them are still delivered."""
        for a in actors:
            actor_id(a)
        self._held |= set(actors)

    def release(self, *actors: str) -> None:
        self._held -= set(actors)

    def _enabled(self) -> list[Step]:
        steps = self.runtime.enabled()
        if not self._held:
            return steps
        return [s for s in steps if not (s.src is None and s.actor.name in self._held)]

    # --- taking steps ----------------------------------------------------------------------------

    async def _take(self, index: int | None = None, steps: list[Step] | None = None) -> list[Event]:
        before = len(self._run.events or [])
        if index is None:
            chosen = self._run.next_step(self._enabled)
            assert chosen is not None
        else:
            assert steps is not None
            chosen = (index, steps[index])
        try:
            result = await self.runtime.grant(self._run, chosen[1])
        except StandInError as e:
            raise _error(str(e)) from None
        self._run.commit(*chosen, result)
        return (self._run.events or [])[before:]

    def _check_open(self) -> list[Step]:
        if self.result is not None:
            raise _error("the run has finished; no more steps")
        if self._run.system.step >= self._run.max_steps:
            raise _error(f"the step limit ({self._run.max_steps}) is reached")
        return self._enabled()

    async def step(self, actor: str | None = None) -> list[Event]:
        """Take one step and return the events it logged: the strategy's choice, or the
        first enabled step of `actor` (its own or a delivery to it). Only the test can
        go on when nothing is enabled: that is an error here (see `idle`)."""
        steps = self._check_open()
        if not steps:
            raise _error("no step is enabled: only the test can go on "
                         f"(held: {sorted(self._held) or 'none'}; in the stand-ins' inbox: "
                         f"{[(e.src.name, e.dst.name, e.kind) for e in self.runtime.stand_in_inbox]})")
        if actor is None:
            return await self._take()
        for i, s in enumerate(steps):
            if s.actor.name == actor:
                return await self._take(i, steps)
        raise _error(f"{actor} has no enabled step; enabled: {self.enabled()}")

    async def idle(self, limit: int = 10_000) -> list[Event]:
        """Step until nothing but the test (or a held actor) can go on; the events
        logged on the way. The run is not over: the test may still send."""
        out: list[Event] = []
        for _ in range(limit):
            if not self._check_open():
                return out
            out += await self._take()
        raise _error(f"still not idle after {limit} steps")

    def _take_inbox(self, actor: str | None, kind: str | None, src: str | None) -> Envelope | None:
        inbox = self.runtime.stand_in_inbox
        for i, env in enumerate(inbox):
            if ((actor is None or env.dst.name == actor) and (kind is None or fnmatch.fnmatchcase(env.kind, kind))
                    and (src is None or env.src.name == src)):
                del inbox[i]
                self._last[env.dst.name] = env.msg_id
                return env
        return None

    async def receive(self, actor: str | None = None, *, kind: str | None = None, src: str | None = None,
                      limit: int = 10_000) -> Envelope:
        """The next message delivered to stand-in `actor` (any stand-in if None) whose
        kind matches `kind` (a glob) and that `src` sent; the system runs until one
        is delivered. Its typed message is `.msg`, the sender `.src`."""
        for _ in range(limit):
            env = self._take_inbox(actor, kind, src)
            if env is not None:
                return env
            if not self._check_open():
                break
            await self._take()
        raise _error(f"no {kind or 'message'}{f' from {src}' if src else ''} reached {actor or 'a stand-in'} "
                     f"(after {self._run.system.step} steps; nothing else can go on); in the inbox: "
                     f"{[(e.src.name, e.dst.name, e.kind) for e in self.runtime.stand_in_inbox]}")

    def send(self, actor: str, to: str, msg: Message, *, cause: int | None = None) -> list[Event]:
        """Send `msg` to `to` as stand-in `actor` (a step of its own); its cause is the
        last message `actor` received unless given."""
        if self.result is not None:
            raise _error("the run has finished")
        if actor not in self.stand_ins:
            raise _error(f"{actor} is not stood in for (stand-ins: {', '.join(self.stand_ins) or 'none'})")
        before = len(self._run.events or [])
        src = actor_id(actor)
        result = self.runtime.stand_in_sends(self._run, src, actor_id(to), msg,
                                             cause if cause is not None else self._last.get(actor))
        # Not a scheduler's choice (the test chose to send): not in the choice list.
        self._run.commit(None, Step(src), result)
        return (self._run.events or [])[before:]

    async def run_until(self, event: str, *, limit: int = 10_000, **fields: Any) -> Event:
        """Step until a step logs an event matching `event` (a glob) and `fields`."""
        from . import match_events

        for _ in range(limit):
            if not self._check_open():
                break
            for ev in match_events(await self._take(), event, **fields):
                return ev
        raise _error(f"no {event!r} event {fields or ''} (after {self._run.system.step} steps); "
                     f"enabled: {self.enabled()}")

    async def finish(self) -> "Result":
        """Release every held actor, run to the end, and return the run's result."""
        from . import Result

        if self.result is None:
            self._held.clear()
            while (chosen := self._run.next_step(self._enabled)) is not None:
                self._run.commit(*chosen, await self.runtime.grant(self._run, chosen[1]))
            self.result = Result(self.scenario, self.policy, self._run.finish(), self._buf.getvalue(), seed=None,
                                 runtime="trio, stand-ins " + ", ".join(self.stand_ins))
        return self.result

    def describe(self) -> str:
        if self.result is not None:
            return self.result.describe()
        return (f"{self.scenario.name} [{self.policy}, trio, stand-ins {', '.join(self.stand_ins)}]: stopped after "
                f"{self._run.system.step} steps; enabled {self.enabled()}; choices={list(self.choices)}")


def _only(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (Trio wraps what
    a nursery's body raises)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def running(scenario: Scenario, policy: str, stand_in: Iterable[str], strategy: Strategy, seed: int,
                  max_steps: int, keep: list[Any] | None = None) -> AsyncIterator[Actors]:
    system = Actors(scenario, policy, stand_in, strategy, seed, max_steps)
    if keep is not None:
        keep.append(system)
    try:
        async with trio.open_nursery() as nursery:
            system.runtime.spawn(nursery)
            try:
                yield system
            finally:
                system.runtime.close()
    except BaseExceptionGroup as group:
        raise _only(group) from None


__all__ = ["Actors", "running"]
