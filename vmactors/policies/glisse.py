"""`glisse`: Jérôme Glisse's counter-proposal (seed message, 9 Dec 2019).

As `wilcox` (RCU lookup, `rcu_map_pages`, refcounted anon faults), except:

- munmap stores NULL at once: "any concurrent fault while munmap is on going should
  SEGFAULT"; "any new mmap might install itself in the unmaped area but can not
  service fault until the munmap is fully done" — a fault that finds a VMA in a range
  whose old flush is pending waits (by message) until that flush is done;
- MAP_FIXED: "Today if you do a mmap MAP_FIXED you will block concurrent fault until
  the rwsem is release. I argue we should keep that behavior" — faults that find the
  range being replaced wait until the whole MAP_FIXED is done.

Both waits are one mechanism, a *fence* over the range, put up by the tree owner in
the same step as the tree store and taken down by the writer, which then wakes every
waiting CPU with a `fence_open` message.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..actors.cpu import CpuState
from ..actors.messages import Effects
from .base import Protocols, wait
from .wilcox import WilcoxPolicy


def open_fence(fx: Effects, cpu: CpuState) -> None:
    """Take down this CPU's fences and wake the faults waiting on them."""
    keep = []
    for fence in fx.world.fences:
        start, end, owner, waiters = fence
        if owner != cpu.id:
            keep.append(fence)
            continue
        fx.emit("lock.release", cpu=cpu.id, addr=start, pages=(end - start) // 4096, lock="fence", mode="write")
        for w in sorted(waiters):
            fx.send(f"cpu{w}", "fence_open", start, (end - start) // 4096)
    fx.world = attrs.evolve(fx.world, fences=tuple(keep))


class GlissePolicy(WilcoxPolicy):
    name: ClassVar[str] = "glisse"
    summary: ClassVar[str] = ("Glisse 2019: as wilcox, but munmap stores NULL at once and faults that find a "
                              "fenced range (reused before its flush, or under MAP_FIXED) wait")
    fences: ClassVar[bool] = True

    PROTOCOLS: ClassVar[Protocols] = {
        "fault": (
            ("start", "rcu_read_lock; find_vma (NULL: SIGSEGV); a VMA in a fenced range: rcu_read_unlock, wait for fence_open, then look up again"),
        ) + WilcoxPolicy.PROTOCOLS["fault"][1:],
        "munmap": (
            ("start", "take the writers' lock"),
            ("update", "tree owner stores NULL and fences the range in one step; VMAs detached"),
            ("zap", "zap the PTEs; release the writers' lock"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("free", "free the frames; take the fence down, waking waiting faults"),
            ("put", "drop the tree's VMA references (the last one: call_rcu); return"),
        ),
        "mmap_fixed": (
            ("start", "take the writers' lock"),
            ("update", "tree owner stores the new VMA and fences the range in one step"),
            ("zap", "zap the old PTEs; release the writers' lock"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("free", "free the old frames, drop the old VMAs' references, take the fence down; return"),
        ),
        "mprotect": WilcoxPolicy.PROTOCOLS["mprotect"],
        "mmap": (
            ("start", "take the writers' lock"),
            ("insert", "tree owner places the VMA (a NULL range whose flush is pending may be reused)"),
            ("done", "release the writers' lock; return the address"),
        ),
    }

    def munmap_entry(self) -> str:
        return "null"

    def fault_must_wait(self, fx: Effects, cpu: CpuState, vma_id: str) -> CpuState | None:
        vma = fx.world.vma(vma_id)
        fences = fx.world.fences
        for i, (start, end, owner, waiters) in enumerate(fences):
            if start < vma.end and vma.start < end and owner != cpu.id:
                fx.world = attrs.evolve(
                    fx.world, fences=fences[:i] + ((start, end, owner, waiters | {cpu.id}),) + fences[i + 1 :]
                )
                cpu = self._leave_rcu(fx, cpu)
                fx.emit("lock.wait", cpu=cpu.id, addr=start, pages=(end - start) // 4096, vma=vma_id,
                        lock="fence", mode="read")
                return wait(cpu, "start", "fence_open", vma=None)
        return None

    def flush_done_hook(self, fx: Effects, cpu: CpuState) -> CpuState:
        open_fence(fx, cpu)
        return cpu

    def map_fixed_done_hook(self, fx: Effects, cpu: CpuState) -> CpuState:
        open_fence(fx, cpu)
        return cpu
