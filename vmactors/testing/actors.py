"""Protocol tests in which the test is an actor.

`vm.actors(scenario, policy, stand_in=["shootdown"])` starts the scenario's actors as
Trio tasks (the runtime `vmactors run` uses), but for the ones named in `stand_in`:
the test plays those. A message to a stand-in is handed to the test
(`await system.receive(...)`), and the test sends as it (`system.send(...)`); both
are logged steps like any other, so invariants are checked and the log can be
queried. The test drives time: the actors take steps only while the test awaits
`receive`, `step`, `run_until` or `finish`, each step chosen by the strategy (by
default choice 0: the actor that ran last goes on), so a test is deterministic.

    async def test_a_cpu_acks_only_after_its_flush(vm):
        async with vm.actors(SCENARIO, "wilcox", stand_in=["shootdown"]) as system:
            flush = await system.receive("shootdown", kind="flush")
            token = ShootdownToken(flush.src.index, flush.msg.addr, flush.msg.pages)
            system.send("shootdown", "cpu0", Ipi(addr=flush.msg.addr, pages=flush.msg.pages, token=token))
            ack = await system.receive("shootdown", kind="ack")
            assert flush.msg.addr not in system.state("cpu0").tlb
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
from ..sim.trio_runtime import TrioRuntime
from ..system.state import Step, System

if TYPE_CHECKING:  # pragma: no cover
    from . import Result

Event = dict[str, Any]


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
        #: The last message each stand-in received (the cause of what it sends next).
        self._last: dict[str, int] = {}
        self.result: Result | None = None

    # --- what the observer sees ---------------------------------------------------------------

    @property
    def system(self) -> System:
        """The system as the run observes it after the last step."""
        return self._run.system

    def state(self, actor: str) -> Any:
        """An actor's state after the last step, e.g. `system.state("cpu0").tlb`."""
        return self._run.machine.state_of(self._run.system, actor_id(actor))

    def events(self, event: str | None = None, **fields: Any) -> list[Event]:
        """Events logged so far, filtered like `Result.events`."""
        from . import match_events

        return match_events(self._run.events or [], event, **fields)

    @property
    def choices(self) -> tuple[int, ...]:
        return tuple(self._run.choices)

    # --- taking steps ----------------------------------------------------------------------------

    def _error(self, message: str) -> AssertionError:
        from . import SimError

        return SimError(message)

    async def step(self) -> list[Event]:
        """Take one step (the strategy's choice); the events it logged. The run must
        not be over."""
        if self.result is not None:
            raise self._error("the run has finished; no more steps")
        before = len(self._run.events or [])
        chosen = self._run.next_step(self.runtime.enabled)
        if chosen is None:
            raise self._error("no step is enabled: the run is over (await finish())")
        self._run.commit(*chosen, await self.runtime.grant(self._run, chosen[1]))
        return (self._run.events or [])[before:]

    def _take_inbox(self, actor: str | None, kind: str | None) -> Envelope | None:
        inbox = self.runtime.stand_in_inbox
        for i, env in enumerate(inbox):
            if (actor is None or env.dst.name == actor) and (kind is None or fnmatch.fnmatchcase(env.kind, kind)):
                del inbox[i]
                self._last[env.dst.name] = env.msg_id
                return env
        return None

    async def receive(self, actor: str | None = None, *, kind: str | None = None, limit: int = 10_000) -> Envelope:
        """The next message delivered to stand-in `actor` (any stand-in if None) whose
        kind matches `kind` (a glob); the system runs until one is delivered. Its
        typed message is `.msg`, the sender `.src`."""
        for _ in range(limit):
            env = self._take_inbox(actor, kind)
            if env is not None:
                return env
            if not self.runtime.enabled() or self._run.system.step >= self._run.max_steps:
                break
            await self.step()
        raise self._error(f"no {kind or 'message'} reached {actor or 'a stand-in'} "
                          f"(after {self._run.system.step} steps); in its inbox: "
                          f"{[(e.src.name, e.kind) for e in self.runtime.stand_in_inbox]}")

    def send(self, actor: str, to: str, msg: Message, *, cause: int | None = None) -> list[Event]:
        """Send `msg` to `to` as stand-in `actor` (a step of its own); its cause is the
        last message `actor` received unless given."""
        if self.result is not None:
            raise self._error("the run has finished")
        before = len(self._run.events or [])
        src, dst = actor_id(actor), actor_id(to)
        result = self.runtime.stand_in_sends(self._run, src, dst, msg, cause if cause is not None else
                                             self._last.get(actor))
        # Not a scheduler's choice (the test chose to send): not in the choice list.
        self._run.commit(None, Step(src), result)
        return (self._run.events or [])[before:]

    async def run_until(self, event: str, *, limit: int = 10_000, **fields: Any) -> Event:
        """Step until a step logs an event matching `event` (a glob) and `fields`."""
        from . import match_events

        for _ in range(limit):
            for ev in match_events(await self.step(), event, **fields):
                return ev
        raise self._error(f"no {event!r} event within {limit} steps")

    async def finish(self) -> "Result":
        """Run to the end; the run's result (its log, outcome and registers)."""
        from . import Result

        if self.result is None:
            while (chosen := self._run.next_step(self.runtime.enabled)) is not None:
                self._run.commit(*chosen, await self.runtime.grant(self._run, chosen[1]))
            run_result = self._run.finish()
            self.result = Result(self.scenario, self.policy, run_result, self._buf.getvalue(), seed=None,
                                 runtime="trio, stand-ins")
        return self.result


@asynccontextmanager
async def running(scenario: Scenario, policy: str, stand_in: Iterable[str], strategy: Strategy, seed: int,
                  max_steps: int) -> AsyncIterator[Actors]:
    system = Actors(scenario, policy, stand_in, strategy, seed, max_steps)
    async with trio.open_nursery() as nursery:
        system.runtime.spawn(nursery)
        try:
            yield system
        finally:
            system.runtime.close()


__all__ = ["Actors", "running"]
