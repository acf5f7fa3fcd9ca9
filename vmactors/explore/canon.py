"""The canonical state key (DESIGN §3): the whole system without history counters
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

from typing import Hashable, TypeVar

import attrs
import immutables

from ..actors.cpu import FaultTask, SyscallTask
from ..mm.frames import FrameTable
from ..sim.system import System

#: A CPU's `task` (either kind) or its `tail` (a syscall only): renaming frames keeps the type.
_Task = TypeVar("_Task", bound=FaultTask | SyscallTask | None)


def frame_order(system: System) -> list[int]:
    """Frame ids in order of first appearance: page cache, PTEs, TLBs, CPU tasks,
    the free stack, then any frame nothing refers to."""
    seen: dict[int, None] = {}
    world = system.world
    for k in sorted(world.page_cache):
        seen.setdefault(world.page_cache[k], None)
    ptes = world.ptes
    for p in sorted(ptes):
        seen.setdefault(ptes[p].frame, None)
    for c in system.cpus:
        tlb = c.tlb
        for p in sorted(tlb):
            seen.setdefault(tlb[p].frame, None)
        for task in (c.task, c.tail):
            if isinstance(task, FaultTask):
                if task.frame is not None:
                    seen.setdefault(task.frame, None)
            elif isinstance(task, SyscallTask):
                for fid in task.frames:
                    seen.setdefault(fid, None)
    for fid in world.frames.free:
        seen.setdefault(fid, None)
    if len(seen) != len(world.frames.frames):
        for fid in sorted(world.frames.frames.keys()):
            seen.setdefault(fid, None)
    return list(seen)


def state_key(system: System) -> Hashable:
    """A hashable value equal for two systems exactly when they are the same
    situation up to history and frame naming."""
    order = frame_order(system)
    if all(i == fid for i, fid in enumerate(order)):
        return system
    return rename_frames(system, {fid: i for i, fid in enumerate(order)})


def rename_frames(system: System, ren: dict[int, int]) -> System:
    world = system.world

    def pte_map(m: immutables.Map) -> immutables.Map:
        return immutables.Map({p: attrs.evolve(e, frame=ren[e.frame]) for p, e in m.items()})

    table = world.frames
    frames = immutables.Map({ren[fid]: attrs.evolve(fr, id=ren[fid]) for fid, fr in table.frames.items()})
    new_table = FrameTable(frames=frames, free=tuple(ren[f] for f in table.free), next_id=table.next_id)
    new_world = attrs.evolve(
        world,
        ptes=pte_map(world.ptes),
        page_cache=immutables.Map({k: ren[v] for k, v in world.page_cache.items()}),
        frames=new_table,
    )

    def task(t: _Task) -> _Task:
        if isinstance(t, FaultTask) and t.frame is not None:
            return attrs.evolve(t, frame=ren[t.frame])
        if isinstance(t, SyscallTask) and t.frames:
            return attrs.evolve(t, frames=tuple(ren[f] for f in t.frames))
        return t

    cpus = tuple(
        attrs.evolve(c, tlb=pte_map(c.tlb), task=task(c.task), tail=task(c.tail)) for c in system.cpus
    )
    return attrs.evolve(system, world=new_world, cpus=cpus)
