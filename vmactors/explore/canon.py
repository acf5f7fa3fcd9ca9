"""The canonical state key (docs/design.md#exploring): the whole system without history counters
(steps, virtual time, message ids, tree versions, grace-period numbers) and with
frame ids renamed in order of first appearance in a fixed traversal, so equal
situations reached by different paths merge.

History counters are attrs fields with `eq=False`, so the system value itself
compares and hashes without them; sub-values cache their hashes, and unchanged
actors are shared between successive states, so hashing a state costs little more
than hashing what the last step changed. Frame ids are renamed only when the
traversal order is not already 0, 1, 2, … (the common case needs no copy).

VMA ids need no renaming: they are names fixed by the scenario (`A`, `T.K`), the
same whatever the interleaving.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import attrs
import immutables

from ..mm.frames import FrameTable
from ..mm.page_table import Pte
from ..mm.world import AddressSpace, World
from ..system.machine import Machine
from ..system.state import System


def state_key(machine: Machine, system: System) -> Hashable:
    """A hashable value equal for two systems exactly when they are the same
    situation up to history and frame naming."""
    return Canon(machine).key(system)


#: Frame orders that need no renaming (0, 1, 2, …), as one tuple to slice.
_IDENTITY = tuple(range(256))


class Canon:
    """`state_key` for the states of one machine, remembering the parts it renamed:
    a step changes one actor and a little of the world, so most of a successor's
    parts were renamed, under the same renaming, for its siblings and its parent.

    A part is remembered by its value (`eq=False` history fields aside), so a
    renamed part may carry another equal part's history: harmless, since a key is
    only ever compared and hashed, never run."""

    #: Remembered parts before the memo is dropped (it holds them alive).
    LIMIT = 200_000

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self._memo: dict[tuple[Hashable, tuple[int, ...]], Hashable] = {}

    def key(self, system: System) -> Hashable:
        order = self.machine.frame_order(system)
        if order == _IDENTITY[:len(order)]:  # (more frames than that: renamed, to themselves)
            return system
        if len(self._memo) > self.LIMIT:
            self._memo.clear()
        return self._rename(system, order)

    def _rename(self, system: System, order: tuple[int, ...]) -> System:
        memo = self._memo
        ren = {fid: i for i, fid in enumerate(order)}
        world = system.world
        new_world = memo.get((world, order))
        if new_world is None:
            new_world = memo[(world, order)] = self._rename_world(world, order, ren)
        states = system.actors
        actors = list(states)
        machine_actors = self.machine.actors
        for slot in self.machine.frame_holders:
            state = states[slot]
            renamed = memo.get((state, order))
            if renamed is None:
                renamed = memo[(state, order)] = machine_actors[slot].rename_frames(state, ren)
            actors[slot] = renamed
        assert isinstance(new_world, World)
        return System(world=new_world, actors=tuple(actors), channels=system.channels, last=system.last,
                      step=system.step, next_msg_id=system.next_msg_id, clocks=system.clocks)

    def _rename_world(self, world: World, order: tuple[int, ...], ren: Mapping[int, int]) -> World:
        memo = self._memo
        table = world.frames
        new_table = memo.get((table, order))
        if new_table is None:
            frames = immutables.Map({ren[fid]: attrs.evolve(fr, id=ren[fid]) for fid, fr in table.frames.items()})
            new_table = memo[(table, order)] = FrameTable(frames=frames, free=tuple(ren[f] for f in table.free),
                                                          next_id=table.next_id)
        mms: list[AddressSpace] = []
        for space in world.mms:
            renamed = memo.get((space, order))
            if renamed is None:
                renamed = memo[(space, order)] = attrs.evolve(space, ptes=_ptes(space.ptes, ren))
            assert isinstance(renamed, AddressSpace)
            mms.append(renamed)
        cache = memo.get((world.page_cache, order))
        if cache is None:
            renamed_cache: immutables.Map[tuple[str, int], int] = immutables.Map(
                {k: ren[v] for k, v in world.page_cache.items()})
            cache = memo[(world.page_cache, order)] = renamed_cache
        assert isinstance(new_table, FrameTable) and isinstance(cache, immutables.Map)
        return World(mms=tuple(mms), page_cache=cache, frames=new_table, caches=world.caches)


def _ptes(m: immutables.Map[int, Pte], ren: Mapping[int, int]) -> immutables.Map[int, Pte]:
    return immutables.Map({p: attrs.evolve(e, frame=ren[e.frame]) for p, e in m.items()})


__all__ = ["state_key", "Canon", "AddressSpace"]
