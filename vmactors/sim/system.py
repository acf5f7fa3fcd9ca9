"""The whole system as one hashable value, and the step relation over it.

`enabled(system)` lists the steps the scheduler may choose from; `apply(system,
step)` runs one actor step (a pure handler) and returns the next system and what
happened. Choice 0 is always "the actor that ran last goes on", so a choice list
shrunk toward zeros has few preemptions.

Messages wait in per-(sender, receiver) FIFO channels: between one sender and one
receiver they arrive in the order sent, across senders in any order the scheduler
picks.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
import immutables

from ..actors import cpu as cpu_actor
from ..actors import rcu as rcu_actor
from ..actors import rwsem as rwsem_actor
from ..actors import shootdown as shootdown_actor
from ..actors import tree_owner as tree_actor
from ..actors.cpu import CpuState, Program
from ..actors.messages import Effects, Event, Message
from ..mm.world import World
from ..policies.base import Policy
from .clock import cost_of

SERVICE_ACTORS = ("tree", "shootdown", "rcu", "mmap_sem")


@attrs.frozen
class Step:
    """One schedulable step: `actor` takes its own next step (`channel` None, and for
    the rwsem `grant` says which waiter), or receives the head of `channel`."""

    actor: str
    channel: tuple[str, str] | None = None
    grant: int = 0

    def describe(self) -> str:
        if self.channel is None:
            return f"{self.actor} runs" if self.actor != "mmap_sem" else f"mmap_sem grants waiter {self.grant}"
        return f"{self.channel[0]} -> {self.channel[1]}"


@attrs.frozen(cache_hash=True)
class System:
    world: World
    cpus: tuple[CpuState, ...]
    tree: tree_actor.TreeOwnerState
    shootdown: shootdown_actor.ShootdownState
    rcu: rcu_actor.RcuState
    rwsem: rwsem_actor.RwsemState
    #: (src, dst) -> messages in send order.
    channels: immutables.Map[tuple[str, str], tuple[Message, ...]]
    # History, not identity: excluded from equality and the state key.
    last: str | None = attrs.field(default=None, eq=False)
    step: int = attrs.field(default=0, eq=False)
    next_msg_id: int = attrs.field(default=1, eq=False)
    #: Per-actor virtual clocks (ns).
    clocks: immutables.Map[str, int] = attrs.field(default=immutables.Map(), eq=False)

    def actor_names(self) -> tuple[str, ...]:
        return actor_names(len(self.cpus))


@functools.lru_cache(maxsize=None)
def actor_names(ncpus: int) -> tuple[str, ...]:
    """cpu0 … cpuN-1, then the service actors: the fixed actor order."""
    return tuple(f"cpu{i}" for i in range(ncpus)) + SERVICE_ACTORS


@attrs.frozen
class StepResult:
    system: System
    events: tuple[Event, ...]
    #: The messages this step sent (with ids), for rendering `msg.send` events.
    sent: tuple[Message, ...]
    received: Message | None
    notes: tuple[tuple[str, Any], ...]
    vtime_ns: int


def _own_steps(system: System, actor: str, program: Program) -> list[Step]:
    if actor.startswith("cpu"):
        c = system.cpus[int(actor[3:])]
        return [Step(actor)] if cpu_actor.runnable(c, program) else []
    if actor == "mmap_sem":
        return [Step(actor, grant=i) for i in range(len(system.rwsem.grantable()))]
    return []


def _accepts(system: System, actor: str, msg: Message, policy: Policy) -> bool:
    if actor.startswith("cpu"):
        return cpu_actor.accepts(system.cpus[int(actor[3:])], msg, policy)
    return True


def enabled(system: System, program: Program, policy: Policy) -> list[Step]:
    """Every step that may go next; the last actor's steps first."""
    by_actor: dict[str, list[Step]] = {a: _own_steps(system, a, program) for a in system.actor_names()}
    for (src, dst), queue in sorted(system.channels.items()):
        if queue and _accepts(system, dst, queue[0], policy):
            by_actor[dst].append(Step(dst, (src, dst)))
    order = list(system.actor_names())
    if system.last is not None:
        order.remove(system.last)
        order.insert(0, system.last)
    return [s for a in order for s in by_actor[a]]


def apply(system: System, step: Step, program: Program, policy: Policy) -> StepResult:
    """Run one actor step. Pure: `system` is not changed."""
    msg: Message | None = None
    channels = system.channels
    if step.channel is not None:
        queue = channels[step.channel]
        msg = queue[0]
        channels = channels.set(step.channel, queue[1:]) if len(queue) > 1 else channels.delete(step.channel)
    actor = step.actor
    fx = Effects(system.world, actor)
    changes: dict[str, Any] = {}
    if actor.startswith("cpu"):
        i = int(actor[3:])
        new_cpu = cpu_actor.handle(system.cpus[i], fx, msg, program, policy)
        changes["cpus"] = system.cpus[:i] + (new_cpu,) + system.cpus[i + 1 :]
    elif actor == "tree":
        assert msg is not None
        changes["tree"] = tree_actor.handle(system.tree, fx, msg)
    elif actor == "shootdown":
        assert msg is not None
        changes["shootdown"] = shootdown_actor.handle(system.shootdown, fx, msg, program.ncpus)
    elif actor == "rcu":
        assert msg is not None
        changes["rcu"] = rcu_actor.handle(system.rcu, fx, msg, program.ncpus)
    elif actor == "mmap_sem":
        changes["rwsem"] = rwsem_actor.handle(system.rwsem, fx, msg, step.grant)
    else:  # pragma: no cover
        raise ValueError(actor)

    # Virtual time: the step starts when both the actor and the message are ready.
    start = system.clocks.get(actor, 0)
    if msg is not None:
        start = max(start, system.clocks.get(f"msg:{msg.msg_id}", 0))
    end = start + cost_of(actor, msg, fx.events)
    clocks = system.clocks.set(actor, end)
    if msg is not None and f"msg:{msg.msg_id}" in clocks:
        clocks = clocks.delete(f"msg:{msg.msg_id}")

    cause = msg.msg_id if msg is not None else None
    sent: list[Message] = []
    next_id = system.next_msg_id
    for m in fx.out:
        m = Message(m.kind, m.src, m.dst, m.addr, m.pages, m.arg, next_id, cause)
        next_id += 1
        sent.append(m)
        key = (m.src, m.dst)
        channels = channels.set(key, channels.get(key, ()) + (m,))
        clocks = clocks.set(f"msg:{m.msg_id}", end)
    new = System(
        world=fx.world,
        cpus=changes.get("cpus", system.cpus),
        tree=changes.get("tree", system.tree),
        shootdown=changes.get("shootdown", system.shootdown),
        rcu=changes.get("rcu", system.rcu),
        rwsem=changes.get("rwsem", system.rwsem),
        channels=channels,
        last=actor,
        step=system.step + 1,
        next_msg_id=next_id,
        clocks=clocks,
    )
    return StepResult(new, tuple(fx.events), tuple(sent), msg, tuple(fx.notes), start)


def finished(system: System, program: Program) -> bool:
    return all(cpu_actor.finished(c, program) for c in system.cpus)


def quiescent(system: System) -> bool:
    """No message in flight (a finished run may still have some, e.g. late acks)."""
    return not any(system.channels.values())


def waiting(system: System, program: Program) -> dict[str, str]:
    """What each blocked actor waits for (for a deadlock report)."""
    out: dict[str, str] = {}
    for c in system.cpus:
        w = cpu_actor.waiting_for(c)
        if w is not None:
            out[c.name] = w
        elif not cpu_actor.finished(c, program) and not cpu_actor.runnable(c, program):
            out[c.name] = "nothing it can do"
    w = shootdown_actor.waiting_for(system.shootdown)
    if w is not None:
        out["shootdown"] = w
    w = rcu_actor.waiting_for(system.rcu)
    if w is not None:
        out["rcu"] = w
    if system.rwsem.waiters:
        holders = [f"cpu{c} (read)" for c in sorted(system.rwsem.readers)]
        if system.rwsem.writer is not None:
            holders.append(f"cpu{system.rwsem.writer} (write)")
        out["mmap_sem"] = f"held by {', '.join(holders) or 'nobody'}; queued: " + ", ".join(
            f"cpu{c} ({m})" for c, m in sorted(system.rwsem.waiters)
        )
    for (src, dst), queue in sorted(system.channels.items()):
        if queue:
            out.setdefault(dst, f"cannot take {queue[0].kind} from {src}")
    return out

