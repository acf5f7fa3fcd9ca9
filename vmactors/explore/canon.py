"""The canonical state key (DESIGN §3): the whole system without history counters
(steps, virtual time, message ids, tree versions, grace-period numbers) and with
frame ids renamed in order of first appearance in a fixed traversal, so equal
situations reached by different paths merge.

VMA ids need no renaming: they are names fixed by the scenario (`A`, `T.K`), the same
whatever the interleaving.
"""

from __future__ import annotations

from typing import Hashable

from ..actors.cpu import CpuState, FaultTask, SyscallTask
from ..sim.system import System


def state_key(system: System) -> Hashable:
    ren: dict[int, int] = {}

    def f(fid: int | None) -> int | None:
        if fid is None:
            return None
        got = ren.get(fid)
        if got is None:
            got = ren[fid] = len(ren)
        return got

    world = system.world
    cache = tuple((k, f(v)) for k, v in sorted(world.page_cache.items()))
    ptes = tuple((p, f(e.frame), e.prot, e.vma, e.owner) for p, e in sorted(world.ptes.items()))
    cpus = tuple(_cpu_key(c, f) for c in system.cpus)
    free = tuple(f(x) for x in world.frames.free)
    frames_tab = world.frames.frames
    for fid in sorted(frames_tab.keys()):
        f(fid)  # frames nothing refers to (none in practice) still get a stable name
    by_new = sorted(ren.items(), key=lambda kv: kv[1])
    frames = tuple(
        (fr.owner, fr.fill, fr.words, fr.state) for fr in (frames_tab[old] for old, _ in by_new)
    )
    tree = world.tree
    return (
        tree.starts, tree.ends, tree.entries,
        tuple(sorted(world.vmas.items())),
        cache, ptes, cpus, free, frames,
        world.writers, world.unmapped, world.fences,
        system.shootdown.pending,
        (system.rcu.waiting, system.rcu.current, system.rcu.next),
        (system.rwsem.readers, system.rwsem.writer, system.rwsem.waiters),
        tuple(sorted((k, v) for k, v in system.channels.items() if v)),
    )


def _task_key(task: FaultTask | SyscallTask | None, f) -> Hashable:  # type: ignore[no-untyped-def]
    if task is None:
        return None
    if isinstance(task, FaultTask):
        return ("F", task.phase, task.vaddr, task.access, task.waiting, task.vma, f(task.frame), task.fresh, task.holds)
    return ("S", task.op, task.phase, task.start, task.pages, task.waiting, task.request, task.prot, task.label,
            task.old, task.new, tuple(f(x) for x in task.frames), task.ret)


def _cpu_key(c: CpuState, f) -> Hashable:  # type: ignore[no-untyped-def]
    tlb = tuple((p, f(e.frame), e.prot, e.vma, e.owner) for p, e in sorted(c.tlb.items()))
    return (c.pc, tuple(sorted(c.regs.items())), tlb, _task_key(c.task, f), c.started, c.rcu_nesting, c.qs_owed,
            _task_key(c.tail, f))
