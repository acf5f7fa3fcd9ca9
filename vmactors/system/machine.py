"""The actor table of one run, and the step relation that dispatches through it.

A `Machine` is built from a scenario and a policy: one actor per CPU, then the tree
owner, the shootdown coordinator, RCU and the rwsem, each registered in `actors` by
slot. Everything else goes through the `Actor` interface:

- `enabled(system)` lists the steps the scheduler may choose from — each actor's own
  steps, and the delivery of the oldest message of each channel its receiver takes
  now — the actor that ran last first, so choice 0 means "it goes on";
- `apply(system, step)` runs one actor step and returns the next system and what
  happened;
- `actor_step(...)` is that step as the actor alone computes it: the Trio runtime's
  actor tasks call it, the direct driver and the explorer call `apply`.

>>> from vmactors.testing import VM
>>> s = VM().scenario('name = "t"\\n[[map]]\\nname = "A"\\nfill = 7\\n[[thread]]\\nops = ["r0 = load A"]\\n')
>>> m = Machine(s, "mmap_sem")
>>> [str(st.actor) for st in m.enabled(m.initial)]
['cpu0']
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import attrs
import immutables

from ..actors.base import Actor
from ..actors.cpu import CpuActor
from ..actors.effects import Effects, Note, RecordingEffects
from ..actors.footprint import Footprint
from ..actors.messages import Envelope
from ..actors.policy import Policy
from ..actors.rcu import Rcu
from ..actors.rwsem import Rwsem
from ..actors.shootdown import Shootdown
from ..actors.tasks import CpuState, Program
from ..actors.tree_owner import TreeOwner
from ..ids import ActorId
from ..log.schema import Event
from ..mm.world import World
from ..scenario.model import RegValue, Scenario
from .clock import DEFAULT, CostModel, traced
from .setup import build
from .state import ActorOutcome, Channel, Step, StepResult, System


def enumerate_steps(ids: Sequence[ActorId], last: int | None, own: Sequence[int],
                    heads: Iterable[tuple[int, int, str]], rejects: Callable[[int], frozenset[str]]) -> list[Step]:
    """The enabled steps, in choice order: actor by actor (the one that ran last
    first, then the fixed actor order), its own steps, then the deliveries of the
    channels to it whose head it takes now, by sender name.

    `own[slot]` is how many own steps each actor has; `heads` the (sender, receiver,
    kind) of each non-empty channel's oldest message. Both runtimes call this, so a
    choice index means the same step in each."""
    by_dst: dict[int, list[int]] = {}
    for src, dst, kind in heads:
        if kind not in rejects(dst):
            srcs = by_dst.get(dst)
            if srcs is None:
                by_dst[dst] = [src]
            else:
                srcs.append(src)
    order = _order(len(ids), last)
    out: list[Step] = []
    for slot in order:
        aid = ids[slot]
        if own[slot]:
            out.extend(_own_steps(aid, own[slot]))
        srcs = by_dst.get(slot)
        if srcs:
            if len(srcs) > 1:
                srcs.sort(key=lambda s: ids[s].name)
            out.extend(_delivery(aid, ids[src]) for src in srcs)
    return out


@functools.cache
def _order(n: int, last: int | None) -> tuple[int, ...]:
    """The actor slots in choice order: the one that ran last first."""
    return tuple(range(n)) if last is None else (last, *range(last), *range(last + 1, n))


# Steps are values: the explorer lists a state's enabled steps for every state it
# expands, so each distinct one is built once.
@functools.cache
def _own_steps(actor: ActorId, count: int) -> tuple[Step, ...]:
    return tuple(Step(actor, None, c) for c in range(count))


@functools.cache
def _delivery(actor: ActorId, src: ActorId) -> Step:
    return Step(actor, src)


class Machine:
    """Scenario + policy -> the actor table, the initial system and the step relation."""

    def __init__(self, scenario: Scenario, policy: str | Policy) -> None:
        from ..policies import get_policy

        self.scenario = scenario
        self.policy = get_policy(policy)
        setup = build(scenario)
        self.program: Program = setup.program
        self.labels: dict[str, int] = setup.labels
        ncpus = scenario.cpus
        self.actors: tuple[Actor[Any], ...] = tuple(
            [CpuActor(i, self.policy, self.program) for i in range(ncpus)]
            + [TreeOwner(self.policy.hooks), Shootdown(ncpus, tuple(t.mm for t in self.program.threads)), Rcu(ncpus),
               Rwsem(len(setup.world.mms))])
        self.ids: tuple[ActorId, ...] = tuple(a.id for a in self.actors)
        self.slot: dict[ActorId, int] = {aid: i for i, aid in enumerate(self.ids)}
        self.ncpus = ncpus
        #: The cost model that times every step (`vmactors.system.clock`); None: steps
        #: take no virtual time (exhaustive search, which never looks at the clock).
        self.cost: CostModel | None = DEFAULT
        states: list[Hashable] = [a.initial() for a in self.actors]
        for i in range(ncpus):
            cpu_state = states[i]
            assert isinstance(cpu_state, CpuState)
            states[i] = attrs.evolve(cpu_state, tlb=setup.tlbs[i])
        world = setup.world if self.policy.setup is None else self.policy.setup(setup.world)
        #: CPU states by value, when the caller wants equal ones to be one object (an
        #: exhaustive search: its look-ups by state then compare by identity). Exact
        #: for a CPU's state, which has no history fields (`eq=False`).
        self.interned: dict[CpuState, CpuState] | None = None
        #: Steps already taken, when the caller wants them remembered (an exhaustive
        #: search, with no cost model: `_remembered_step`).
        self.steps: dict[Hashable, tuple[ActorOutcome, bool, bool]] | None = None
        #: A state class -> the names of its history fields (`eq=False`).
        self._history: dict[type, tuple[str, ...]] = {}
        #: id of a step -> (the step, kept alive; its actor's slot; its sender's slot).
        self._step_slots: dict[int, tuple[Step, int, int | None]] = {}
        #: Slots of the actors that have own steps at all (the others only receive).
        self._own_steppers = tuple(i for i, a in enumerate(self.actors)
                                   if type(a).own_steps is not Actor.own_steps)
        #: Slots of the actors whose states may name frames (`Actor.frames_of`).
        self.frame_holders = tuple(i for i, a in enumerate(self.actors)
                                    if type(a).frames_of is not Actor.frames_of)
        #: A part of a state (page cache, PTEs, an actor's state) -> its frames in order.
        self._frame_memo: dict[Hashable, tuple[int, ...]] = {}
        #: The frame holders' states out of a system's, as a tuple (None: one holder or none).
        self._held: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None = (
            operator.itemgetter(*self.frame_holders) if len(self.frame_holders) > 1 else None)
        #: (id of a world, ids of its frame holders' states) -> (them, kept alive; the order).
        self._frame_orders: dict[tuple[int, ...], tuple[World, tuple[Any, ...], tuple[int, ...]]] = {}
        self.initial = System(world=world, actors=tuple(states), channels=immutables.Map(),
                              clocks=(0,) * len(self.actors))

    # --- the scheduler's view ----------------------------------------------------------------

    def enabled(self, system: System) -> list[Step]:
        """Every step that may go next, in choice order."""
        states = system.actors
        actors = self.actors
        own = [0] * len(actors)
        for i in self._own_steppers:
            own[i] = actors[i].own_steps(states[i])
        heads = [(s, d, q[0].msg.KIND) for (s, d), q in system.channels.items() if q]
        return enumerate_steps(self.ids, system.last, own, heads, lambda d: actors[d].rejects(states[d]))

    def finished(self, system: System, skip: frozenset[int] = frozenset()) -> bool:
        """Whether every actor (but the `skip` slots) may end the run as it is."""
        return all(a.done(s) for i, (a, s) in enumerate(zip(self.actors, system.actors)) if i not in skip)

    def waiting(self, system: System, skip: frozenset[int] = frozenset()) -> dict[str, str]:
        """What each blocked actor (but the `skip` slots) waits for (for a deadlock report)."""
        out: dict[str, str] = {}
        for i, (actor, state) in enumerate(zip(self.actors, system.actors)):
            if i in skip:
                continue
            w = actor.waiting_for(state)
            if w is not None:
                out[actor.id.name] = w
            elif not actor.done(state) and not actor.own_steps(state):
                out[actor.id.name] = "nothing it can do"
        for (src, dst), queue in sorted(system.channels.items(), key=lambda kv: self.channel_names(kv[0])):
            if queue:
                out.setdefault(self.ids[dst].name, f"cannot take {queue[0].kind} from {self.ids[src].name}")
        return out

    def channel_names(self, ch: Channel) -> tuple[str, str]:
        return self.ids[ch[0]].name, self.ids[ch[1]].name

    def head(self, system: System, step: Step) -> Envelope | None:
        """The message `step` delivers (None: an own step)."""
        if step.src is None:
            return None
        return system.channels[(self.slot[step.src], self.slot[step.actor])][0]

    def describe(self, system: System, step: Step) -> str:
        """`cpu1 runs`, `mmap_sem grants waiter 0`, `shootdown -> cpu0: ipi`."""
        env = self.head(system, step)
        if env is None:
            slot = self.slot[step.actor]
            return self.actors[slot].describe(system.actors[slot], step.choice)
        return f"{env.src} -> {env.dst}: {env.kind}"

    def state_of(self, system: System, actor: ActorId) -> Any:
        return system.actors[self.slot[actor]]

    # --- the step relation -----------------------------------------------------------------------

    def actor_step(self, slot: int, state: Any, world: World, env: Envelope | None, choice: int, clock: int,
                   first_msg_id: int, effects: type[Effects] = Effects) -> ActorOutcome:
        """One step of actor `slot`, computed from its own state, the shared world and
        the message it takes: pure. Sent messages get ids from `first_msg_id` on."""
        actor = self.actors[slot]
        model = self.cost
        fx = (effects if model is None else traced(effects))(world, actor.id)
        new_state = actor.handle(state, fx, env, choice)
        # Virtual time: the step starts when both the actor and the message are ready;
        # the cost model times what it touched and logged.
        start = clock if env is None else max(clock, env.sent_at)
        out_world = fx.world
        if model is None:
            end = start
        else:
            cost = model.step(actor.id, getattr(fx, "accesses", {}), fx.events, env, start, world.caches, fx.out)
            end = cost.end
            if cost.caches is not out_world.caches:
                out_world = attrs.evolve(out_world, caches=cost.caches)
        cause = env.msg_id if env is not None else None
        sent = tuple(Envelope(actor.id, dst, msg, first_msg_id + i, cause, end) for i, (dst, msg) in enumerate(fx.out))
        touched = fx.footprint() if isinstance(fx, RecordingEffects) else None
        return ActorOutcome(new_state, out_world, tuple(fx.events), sent, tuple(fx.notes), start, end, touched)

    def apply(self, system: System, step: Step, effects: type[Effects] = Effects) -> StepResult:
        """Run one actor step. Pure: `system` is not changed."""
        slots = self._step_slots.get(id(step))
        if slots is None:
            slots = self._slots_of(step)
        slot, src = slots[1], slots[2]
        channels = system.channels
        env = None
        if src is not None:
            key = (src, slot)
            queue = channels[key]
            env = queue[0]
            channels = channels.set(key, queue[1:]) if len(queue) > 1 else channels.delete(key)
        if self.steps is not None:
            return self._remembered_step(slot, system, channels, env, step.choice, effects)
        out = self.actor_step(slot, system.actors[slot], system.world, env, step.choice, system.clocks[slot],
                              system.next_msg_id, effects)
        return self.commit(system, slot, channels, env, out)

    def _slots_of(self, step: Step) -> tuple[Step, int, int | None]:
        """(step, its actor's slot, its sender's slot or None), remembered by the step's
        identity (the step kept alive with it): the explorer's steps are built once
        (`_own_steps`, `_delivery`), and an id is cheaper to look up than a step."""
        if len(self._step_slots) > 10_000:
            self._step_slots.clear()
        slots = self._step_slots[id(step)] = (step, self.slot[step.actor],
                                              None if step.src is None else self.slot[step.src])
        return slots

    def step_slots(self, step: Step) -> tuple[Step, int, int | None]:
        """(step, its actor's slot, its sender's slot or None)."""
        slots = self._step_slots.get(id(step))
        return self._slots_of(step) if slots is None else slots

    def step_key(self, system: System, slot: int, env: Envelope | None, choice: int) -> Hashable:
        """What actor `slot`'s step in `system` (taking `env`, or own step `choice`)
        is a function of, as a hashable value: equal keys, equal steps, up to the
        stamps on what they send (`_remembered_step`)."""
        state: Any = system.actors[slot]
        world = system.world
        history = self._history.get(type(state))
        if history is None:
            history = self._history[type(state)] = tuple(a.name for a in attrs.fields(type(state)) if not a.eq)
        return (slot, state, tuple([getattr(state, name) for name in history]) if history else (), world,
                world.frames.next_id, world.caches, None if env is None else (env.src, env.msg), choice)

    def _remembered_step(self, slot: int, system: System, channels: immutables.Map[Channel, tuple[Envelope, ...]],
                         env: Envelope | None, choice: int, effects: type[Effects]) -> StepResult:
        """`actor_step` of actor `slot`, remembered (`steps`), then committed. A step is
        a function of the actor's state (with its history fields, `eq=False`: a grace
        period's number, the tree's version), the world (with its own: the next frame
        id, the cost model's caches), the message it takes and the choice; the
        message's id and time, and the clock, only stamp what it sends, so they are
        applied afresh. A step that changed neither the state nor the world gives back
        the caller's objects, as a step run afresh does."""
        assert self.cost is None and self.steps is not None
        memo = self.steps
        state, world = system.actors[slot], system.world
        key = (self.step_key(system, slot, env, choice), effects)
        hit = memo.get(key)
        if hit is None:
            out = self.actor_step(slot, state, world, env, choice, system.clocks[slot], system.next_msg_id, effects)
            if len(memo) > 200_000:
                memo.clear()
            new_state = out.state
            if slot < self.ncpus and self.interned is not None:
                # Remembered interned: a hit then needs no look-up (`commit`).
                new_state = self.intern(new_state)
                out = attrs.evolve(out, state=new_state)
            memo[key] = (out, out.state is state, out.world is world)
            return self.commit(system, slot, channels, env, out)
        out, same_state, same_world = hit
        start = system.clocks[slot] if env is None else max(system.clocks[slot], env.sent_at)
        sent = out.sent
        if sent:
            cause = env.msg_id if env is not None else None
            first = system.next_msg_id
            sent = tuple(Envelope(e.src, e.dst, e.msg, first + i, cause, start) for i, e in enumerate(sent))
        return self._commit(system, slot, channels, env, state if same_state else out.state,
                            world if same_world else out.world, out.events, sent, out.notes, start, start,
                            out.touched, True)

    def intern(self, state: CpuState) -> CpuState:
        """The one object of `state`'s value (`interned`, which must be on): a CPU's
        state has no history fields, so equal states are interchangeable."""
        interned = self.interned
        assert interned is not None
        if len(interned) > 200_000:
            interned.clear()
        return interned.setdefault(state, state)

    def commit(self, system: System, slot: int, channels: immutables.Map[Channel, tuple[Envelope, ...]],
               env: Envelope | None, out: ActorOutcome) -> StepResult:
        """The system after actor `slot`'s step `out` (its received message already
        taken off `channels`)."""
        return self._commit(system, slot, channels, env, out.state, out.world, out.events, out.sent, out.notes,
                            out.start, out.end, out.touched, False)

    def _commit(self, system: System, slot: int, channels: immutables.Map[Channel, tuple[Envelope, ...]],
                env: Envelope | None, state: Any, world: World, events: tuple[Event | int, ...],
                sent: tuple[Envelope, ...], notes: tuple[Note, ...], start: int, end: int,
                touched: Footprint | None, interned: bool) -> StepResult:
        """`commit`, from the outcome's parts (`interned`: `state` is already the
        interned one, when it is a CPU's)."""
        for e in sent:
            key = (slot, self.slot[e.dst])
            channels = channels.set(key, channels.get(key, ()) + (e,))
        states = system.actors
        if not interned and self.interned is not None and slot < self.ncpus:
            state = self.intern(state)
        clocks = system.clocks
        new = System(
            world=world,
            actors=states[:slot] + (state,) + states[slot + 1:],
            channels=channels,
            last=slot,
            step=system.step + 1,
            next_msg_id=system.next_msg_id + len(sent),
            clocks=clocks[:slot] + (end,) + clocks[slot + 1:],
        )
        return StepResult(new, events, sent, env, notes, start, touched)

    def footprint(self, system: System, step: Step) -> Footprint:
        """What `step` reads and writes of the shared world, declared before it runs."""
        slot = self.slot[step.actor]
        return self.actors[slot].footprint(system.actors[slot], system.world, self.head(system, step), step.choice)

    # --- results ---------------------------------------------------------------------------------

    def final_regs(self, system: System) -> dict[str, RegValue]:
        """Registers as `"T:REG" -> value`, in thread then name order."""
        out: dict[str, RegValue] = {}
        for c in sorted(system.cpus, key=lambda c: (c.thread is None, c.thread)):
            if c.thread is None:
                continue
            for name in sorted(c.regs.keys()):
                out[f"{c.thread}:{name}"] = c.regs[name]
        return out

    def frame_order(self, system: System) -> tuple[int, ...]:
        """Frame ids in order of first appearance: page cache, PTEs, each actor's own
        (a CPU's TLB and tasks), the free stack, then any frame nothing refers to."""
        # Every state's key computes this. A step that touched no frames gives back
        # the world and the frame holders' states it was given, so a state's siblings
        # often share all of them: the whole order is looked up by their identities
        # (kept alive with it). Otherwise the parts a step did not change are looked
        # up (their hashes are cached), not walked again.
        world = system.world
        states = system.actors
        held = tuple(states[slot] for slot in self.frame_holders) if self._held is None else self._held(states)
        whole = self._frame_orders
        key = (id(world), *map(id, held))
        hit = whole.get(key)
        if hit is not None:
            return hit[2]
        if len(whole) > 100_000:
            whole.clear()
        order = self._frame_order(system)
        whole[key] = (world, held, order)
        return order

    def _frame_order(self, system: System) -> tuple[int, ...]:
        world = system.world
        memo = self._frame_memo
        if len(memo) > 200_000:
            memo.clear()
        cache = world.page_cache
        part = memo.get(cache)
        if part is None:
            part = memo[cache] = tuple(cache[k] for k in sorted(cache))
        parts = [part]
        for space in world.mms:
            ptes = space.ptes
            part = memo.get(ptes)
            if part is None:
                part = memo[ptes] = tuple(ptes[p].frame for p in sorted(ptes))
            parts.append(part)
        states = system.actors
        for slot in self.frame_holders:
            state = states[slot]
            part = memo.get(state)
            if part is None:
                part = memo[state] = tuple(self.actors[slot].frames_of(state))
            parts.append(part)
        frames = world.frames
        parts.append(frames.free)
        seen: dict[int, None] = dict.fromkeys(itertools.chain.from_iterable(parts))
        if len(seen) != len(frames.frames):
            seen.update(dict.fromkeys(sorted(frames.frames.keys())))
        return tuple(seen)


__all__ = ["Machine", "enumerate_steps"]
