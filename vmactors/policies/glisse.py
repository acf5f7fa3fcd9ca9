"""`glisse`: Jérôme Glisse's counter-proposal (seed message, 9 Dec 2019).

As `wilcox` (RCU lookup, `rcu_map_pages`, refcounted anon faults), except:

- munmap stores NULL at once: "any concurrent fault while munmap is on going should
  SEGFAULT"; "any new mmap might install itself in the unmaped area but can not
  service fault until the munmap is fully done" — a fault that finds a VMA in a range
  whose old flush is pending waits (by message) until that flush is done;
- MAP_FIXED: "Today if you do a mmap MAP_FIXED you will block concurrent fault until
  the rwsem is release. I argue we should keep that behavior" — faults that find the
  range being replaced wait until the whole MAP_FIXED is done.

Both waits are one mechanism, a *fence* over the range: this design's own record
(`("fences",)`: the fenced ranges with their owner and waiting CPUs), put up by the
tree owner in the same step as the tree store (a hook), so no fault can find the
range's new VMA before the fence is up, and taken down by the writer, which then
wakes every waiting CPU with a `fence_open` message.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import ClassVar

import attrs

from ..actors import footprint as fp
from ..actors.effects import Effects
from ..actors.footprint import EMPTY, Footprint
from ..actors.kernel import Kernel
from ..actors.messages import MapFixed, Message, RangeMessage, TreeRequest, Unmap
from ..actors.phases import EXIT, START, Access, Path, Phase, View, goto, wait
from ..actors.policy import NoTreeHooks
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MmId, cpu
from ..log.schema import LockRelease, LockWait
from ..mm.layout import PAGE_SIZE
from ..mm.world import World
from .common import PGTABLE_PINS, TASK_FRAMES, flush_phase
from .wilcox import WILCOX, WilcoxKnobs, after_lookup, leave_rcu, put_vma, rcu_lookup


@attrs.frozen(cache_hash=True)
class Fence:
    """[start, end) fenced by `owner`'s munmap flush or MAP_FIXED; `waiters` are the
    CPUs whose faults wait for it to come down."""

    start: int
    end: int
    owner: int
    waiters: frozenset[int] = frozenset()

    @property
    def pages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE


FENCES = ("fences",)


@attrs.frozen(cache_hash=True)
class FenceOpen(RangeMessage):
    """The fence over the range is down: look the address up again."""

    KIND: ClassVar[str] = "fence_open"


class FenceHooks(NoTreeHooks):
    """The tree owner puts the fence up in the same step as the store."""

    def tree_updated(self, fx: Effects, mm: MmId, who: int, msg: TreeRequest, start: int, end: int) -> None:
        if isinstance(msg, (MapFixed, Unmap)):
            fences: tuple[Fence, ...] = fx.policy_get(mm, FENCES, ())
            fx.policy_set(mm, FENCES, fences + (Fence(start, end, who),))

    def tree_footprint(self, world: World, mm: MmId, msg: TreeRequest) -> Footprint:
        if isinstance(msg, (MapFixed, Unmap)):
            return Footprint.of(writes=[fp.policy(mm, FENCES)])
        return EMPTY


def _fences(v: View) -> Iterable[fp.Obj]:
    return [fp.policy(v.cpu.mm, FENCES)]


FENCE = Access("fences", _fences, lambda s: [fp.policy(s.mm, FENCES)])


def open_fence(k: Kernel) -> None:
    """Take down this CPU's fences and wake the faults waiting on them."""
    keep = []
    fences: tuple[Fence, ...] = k.policy_get(FENCES, ())
    for fence in fences:
        if fence.owner != k.id:
            keep.append(fence)
            continue
        k.emit(LockRelease(cpu=k.id, addr=fence.start, pages=fence.pages, lock="fence", mode="write"))
        for w in sorted(fence.waiters):
            k.send(cpu(w), FenceOpen(addr=fence.start, pages=fence.pages))
    k.policy_set(FENCES, tuple(keep) or None)


def fault_start(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    """As wilcox's, but a VMA in a fenced range (other than this CPU's own) makes the
    fault leave RCU and wait for `fence_open`, then look up again."""
    vma = rcu_lookup(k, t)
    if vma is None:
        return EXIT
    if isinstance(vma, FaultTask):
        return vma  # a stack to expand first
    fences: tuple[Fence, ...] = k.policy_get(FENCES, ())
    for i, f in enumerate(fences):
        if f.start < vma.end and vma.start < f.end and f.owner != k.id:
            k.policy_set(FENCES, fences[:i] + (attrs.evolve(f, waiters=f.waiters | {k.id}),) + fences[i + 1:])
            leave_rcu(k)
            k.emit(LockWait(cpu=k.id, addr=f.start, pages=f.pages, vma=vma.id, lock="fence", mode="read"))
            return wait(t, START, FenceOpen, vma=None)
    return after_lookup(t, vma)


def munmap_free(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    k.free_frames(t.frames)
    k.free_pgtable_pages(t.pgtables)
    open_fence(k)
    return goto(t, "put", frames=())


def map_fixed_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.free_frames(t.frames)
    for vid in t.old:
        put_vma(k, vid)
    open_fence(k)
    k.syscall_return(goto(t, "free", frames=()), t.old)
    return EXIT


_wilcox = WILCOX.protocol
_fault_start = _wilcox.phase("fault", START)
_fixed_free = _wilcox.phase("mmap_fixed", "free")

PROTOCOL = (
    _wilcox
    .replace("fault", START, handler=fault_start, next=(START,) + _fault_start.next, writes=(FENCE,),
             doc="rcu_read_lock; find_vma (NULL: SIGSEGV); a VMA in a fenced range: rcu_read_unlock, wait for "
                 "fence_open, then look up again")
    # munmap leaves NULL: no ZERO to clear, and no early-return remainder.
    .with_path(Path("munmap", (
        _wilcox.phase("munmap", START),
        _wilcox.phase("munmap", "update").replace(
            doc="tree owner stores NULL and fences the range in one step; VMAs detached"),
        _wilcox.phase("munmap", "zap"),
        flush_phase("free"),
        Phase("free", munmap_free, ("put",), "free the frames and the unlinked page-table pages; take the fence "
              "down, waking waiting faults", sends=(FenceOpen,), writes=(TASK_FRAMES, FENCE, PGTABLE_PINS)),
        _wilcox.phase("munmap", "put"),
    )))
    .replace("mmap_fixed", "update", doc="tree owner stores the new VMA and fences the range in one step")
    .replace("mmap_fixed", "free", handler=map_fixed_free, sends=_fixed_free.sends + (FenceOpen,),
             doc="free the old frames, drop the old VMAs' references, take the fence down; return",
             writes=_fixed_free.writes + (FENCE,))
    .replace("mmap", "insert", doc="tree owner places the VMA (a NULL range whose flush is pending may be reused)")
)

def rename_fences(key: Hashable, record: Hashable, ren: Mapping[int, int]) -> Hashable:
    """The fences' record with every CPU index read through `ren` (symmetry reduction)."""
    if key != FENCES:
        return record
    assert isinstance(record, tuple)
    return tuple(Fence(f.start, f.end, ren[f.owner], frozenset(ren[c] for c in f.waiters)) for f in record)


GLISSE = attrs.evolve(
    WILCOX,
    name="glisse",
    summary=("Glisse 2019: as wilcox, but munmap stores NULL at once and faults that find a fenced range (reused "
             "before its flush, or under MAP_FIXED) wait"),
    protocol=PROTOCOL,
    config=WilcoxKnobs(zero_entry=False),
    hooks=FenceHooks(),
    rename_record=rename_fences,
    kernel=("none: Jérôme Glisse's reply in the same thread (9 December 2019), which states the behaviour it wants "
            "(faults on a MAP_FIXED range wait, faults during munmap SIGSEGV, a reused range serves no fault "
            "before the old flush is done) on top of Wilcox's design"),
    differences=WILCOX.differences + (
        "both waits are one mechanism here, a fence the tree owner puts up with the store; the message names "
        "no implementation",),
)

__all__ = ["GLISSE", "Fence", "FenceOpen", "FenceHooks", "open_fence", "FENCES", "PROTOCOL"]
