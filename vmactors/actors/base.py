"""The one interface every actor kind implements.

An actor is a pure state machine. Its state is an explicit hashable value (a CPU
halfway through a fault included); its implementation object holds only what is
constant for a run (its id, the policy, the program). The step relation
(`vmactors.system.step`) and the Trio runtime both drive actors through this
interface alone:

- `own_steps(state)`: how many spontaneous steps it can take now (a CPU: its next
  op or protocol phase; the rwsem: granting one of its waiters);
- `rejects(state)`: message kinds it does not take now (a CPU waiting for the rwsem
  with interrupts off: IPIs);
- `handle(state, fx, envelope, choice)`: one step, the delivery of `envelope` or
  (None) its `choice`-th own step; returns the new state, its other effects in `fx`;
- `footprint(state, world, envelope, choice)`: the shared objects that step reads
  and writes, declared before it runs;
- `waiting_for(state)`, `done(state)`, `describe(state, choice)`: for deadlock
  reports, the end of a run, and people.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from ..ids import ActorId
from ..log.schema import Event
from ..mm.world import World
from .effects import Effects, Note
from .footprint import Footprint
from .messages import Envelope, Message

S = TypeVar("S")


class Actor(abc.ABC, Generic[S]):
    """Base class of every actor kind (see the module docstring)."""

    id: ActorId

    @abc.abstractmethod
    def initial(self) -> S:
        """The state before the threads start."""

    def own_steps(self, state: S) -> int:
        return 0

    def rejects(self, state: S) -> frozenset[str]:
        return frozenset()

    @abc.abstractmethod
    def handle(self, state: S, fx: Effects, env: Envelope | None, choice: int) -> S:
        """Deliver `env`, or (None) take own step number `choice`."""

    @abc.abstractmethod
    def footprint(self, state: S, world: World, env: Envelope | None, choice: int) -> Footprint:
        """What `handle(state, ·, env, choice)` reads and writes of the shared world."""

    def commutes(self, state: S, msg: Message, kind: str) -> bool:
        """Whether receiving `msg` now and receiving a message of kind `kind` (from
        another sender) give the same state in either order (partial-order reduction
        may then take `msg` first). Only services whose requests commute say yes."""
        return False

    def waiting_for(self, state: S) -> str | None:
        """What the actor is blocked on, for a deadlock report (None: nothing)."""
        return None

    def done(self, state: S) -> bool:
        """Whether the run may end with this actor in `state` (a CPU: its thread finished)."""
        return True

    def describe(self, state: S, choice: int) -> str:
        """Own step `choice`, in words."""
        return f"{self.id} runs"

    # Canonical states rename frames; only actors whose state names frames override these.

    def frames_of(self, state: S) -> Iterable[int]:
        return ()

    def rename_frames(self, state: S, ren: Mapping[int, int]) -> S:
        return state

    # Symmetry reduction renames CPUs; only actors whose state names CPUs override this.

    def rename_cpus(self, state: S, ren: Mapping[int, int]) -> S:
        """`state` with every CPU index `i` in it read as `ren[i]`."""
        return state


@attrs.frozen
class Stepped:
    """What one step of one actor did: its new state, the world after it, the messages
    it sent (receiver, message) and the events it logged, in order."""

    state: Any
    world: World
    sent: tuple[tuple[ActorId, Message], ...]
    events: tuple[Event, ...]
    notes: tuple[Note, ...]

    def to(self, dst: ActorId) -> list[Message]:
        """The messages sent to `dst`."""
        return [m for d, m in self.sent if d == dst]


def step_actor(actor: Actor[S], state: S, world: World, msg: Message | None = None, src: ActorId | None = None,
               choice: int = 0) -> Stepped:
    """Drive one actor by hand, without a scheduler: deliver `msg` from `src` (or take
    own step `choice`). The sans-io form `handle(state, message) -> (state,
    messages, events)` that protocol tests use.

    >>> from vmactors.actors.rwsem import Rwsem
    >>> from vmactors.actors.messages import DownRead
    >>> from vmactors.ids import cpu
    >>> r = Rwsem()
    >>> out = step_actor(r, r.initial(), World.empty(), DownRead(), src=cpu(1))
    >>> out.sent, [e.NAME for e in out.events]
    (((ActorId(cpu1), Grant(mode='read')),), ['lock.acquire'])
    """
    env = None if msg is None else Envelope(src if src is not None else actor.id, actor.id, msg)
    fx = Effects(world, actor.id)
    new = actor.handle(state, fx, env, choice)
    return Stepped(new, fx.world, tuple(fx.out), tuple(e for e in fx.events if not isinstance(e, int)),
                   tuple(fx.notes))


__all__ = ["Actor", "S", "Stepped", "step_actor"]
