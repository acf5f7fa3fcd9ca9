"""The whole system as one hashable value, and the values that describe one step.

`System` holds the shared world, every actor's state (by slot: CPUs first, then the
services, in the fixed actor order) and the messages in flight, one FIFO channel per
(sender, receiver) pair. History — the step number, message ids, virtual clocks, the
actor that ran last — is excluded from equality, so two paths that reach the same
situation reach the same state.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import attrs
import immutables

from ..actors.effects import Note
from ..actors.footprint import Footprint
from ..actors.messages import Envelope
from ..actors.tasks import CpuState
from ..ids import ActorId
from ..log.schema import Event
from ..mm.world import World

#: A channel: (sender slot, receiver slot).
Channel = tuple[int, int]


@attrs.frozen(cache_hash=True)
class System:
    world: World
    #: Every actor's state, by slot.
    actors: tuple[Hashable, ...]
    #: (sender slot, receiver slot) -> messages in send order.
    channels: immutables.Map[Channel, tuple[Envelope, ...]]
    # History, not identity: excluded from equality and the state key.
    #: The slot of the actor that took the last step.
    last: int | None = attrs.field(default=None, eq=False)
    step: int = attrs.field(default=0, eq=False)
    next_msg_id: int = attrs.field(default=1, eq=False)
    #: Per-slot virtual clocks (ns).
    clocks: tuple[int, ...] = attrs.field(default=(), eq=False)

    @property
    def ncpus(self) -> int:
        return sum(1 for s in self.actors if isinstance(s, CpuState))

    @property
    def cpus(self) -> tuple[CpuState, ...]:
        """The CPUs' states, cpu0 first."""
        return tuple(s for s in self.actors if isinstance(s, CpuState))

    def vtime(self) -> int:
        """The latest virtual time any actor has reached."""
        return max(self.clocks, default=0)


@attrs.frozen
class Step:
    """One schedulable step: `actor` takes its own step number `choice` (`src` None),
    or receives the oldest message of the channel from `src`."""

    actor: ActorId
    src: ActorId | None = None
    choice: int = 0

    @property
    def channel(self) -> tuple[ActorId, ActorId] | None:
        return None if self.src is None else (self.src, self.actor)


@attrs.frozen
class ActorOutcome:
    """What one actor's step did, as the actor itself computes it (the Trio runtime's
    tasks compute exactly this)."""

    state: Any
    world: World
    #: Events, and for each sent message its index in `sent`.
    events: tuple[Event | int, ...]
    sent: tuple[Envelope, ...]
    notes: tuple[Note, ...]
    #: Virtual start and end of the step.
    start: int
    end: int
    #: What the step touched, when it ran with recording effects (tests).
    touched: Footprint | None = None


@attrs.frozen
class StepResult:
    system: System
    events: tuple[Event | int, ...]
    #: The messages this step sent (with ids), for rendering `msg.send` events.
    sent: tuple[Envelope, ...]
    received: Envelope | None
    notes: tuple[Note, ...]
    vtime_ns: int
    #: What the step touched, when it ran with recording effects (tests).
    touched: Footprint | None = None


__all__ = ["System", "Step", "StepResult", "ActorOutcome", "Channel"]
