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
from ..mm.world import AddressSpace
from ..system.machine import Machine
from ..system.state import System


def state_key(machine: Machine, system: System) -> Hashable:
    """A hashable value equal for two systems exactly when they are the same
    situation up to history and frame naming."""
    order = machine.frame_order(system)
    if all(i == fid for i, fid in enumerate(order)):
        return system
    return rename_frames(machine, system, {fid: i for i, fid in enumerate(order)})


def _ptes(m: immutables.Map[int, Pte], ren: Mapping[int, int]) -> immutables.Map[int, Pte]:
    return immutables.Map({p: attrs.evolve(e, frame=ren[e.frame]) for p, e in m.items()})


def rename_frames(machine: Machine, system: System, ren: Mapping[int, int]) -> System:
    world = system.world
    table = world.frames
    frames = immutables.Map({ren[fid]: attrs.evolve(fr, id=ren[fid]) for fid, fr in table.frames.items()})
    new_table = FrameTable(frames=frames, free=tuple(ren[f] for f in table.free), next_id=table.next_id)
    mms = tuple(attrs.evolve(s, ptes=_ptes(s.ptes, ren)) for s in world.mms)
    new_world = attrs.evolve(world, mms=mms, page_cache=immutables.Map({k: ren[v] for k, v in world.page_cache.items()}),
                             frames=new_table)
    actors = tuple(a.rename_frames(s, ren) for a, s in zip(machine.actors, system.actors))
    return attrs.evolve(system, world=new_world, actors=actors)


__all__ = ["state_key", "rename_frames", "AddressSpace"]
