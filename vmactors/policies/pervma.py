"""`pervma`: what Linux shipped — per-VMA locks (v6.4; this models v6.15+).

Kernel sources modelled (torvalds/linux):
- `mm/mmap_lock.c` `lock_vma_under_rcu()`: under `rcu_read_lock()`, find the VMA
  (`mas_walk`), then `vma_start_read()`: fails when the VMA is write-locked
  (`vm_lock_seq == mm_lock_seq`) or detached; on success the reader holds a
  `vm_refcnt` reference. v6.4–v6.14 used a per-VMA rw_semaphore instead of the
  refcount; the observable protocol is the same.
- `arch/x86/mm/fault.c` `do_user_addr_fault()`: if `lock_vma_under_rcu()` gives
  nothing, fall back to `lock_mm_and_find_vma()` under `mmap_lock` for read, which
  waits for a writer; no VMA there -> SIGSEGV (`bad_area`).
- `include/linux/mmap_lock.h` / `mm/mmap_lock.c` `vma_start_write()`: sets
  `vm_lock_seq` and waits until the VMA's current readers have drained
  (`__vma_enter_locked`); every VMA write lock is dropped when `mmap_lock` is
  released for write (`mmap_write_unlock` bumps `mm_lock_seq`).
- `mm/vma.c` `do_vmi_align_munmap()` / `vms_complete_munmap_vmas()`: VMAs are
  write-locked and detached, the tree range cleared, then `mmap_write_downgrade()`,
  and the zap (`unmap_region`), TLB flush and frees run under the read lock;
  `vm_area_free()` frees the VMA RCU-safely.
- `mm/vma.c` `__mmap_region()` / `vma_link()`: a new VMA is write-locked before it
  enters the tree ("mm: always lock new vma before inserting into vma tree", 2023),
  so a fault that finds it before the writer unlocks falls back and waits.
- `mm/vma.c` `__mmap_region()` with MAP_FIXED over a live range: the old VMAs are
  write-locked and detached and their PTEs zapped and flushed
  (`vms_clean_up_area`) while they are still in the tree; then the new VMA is
  stored. Faults on the range find a detached or write-locked VMA and fall back to
  `mmap_lock`, where they wait for the writer.

This design's own records, per address space:
- `("write_locked",)`: the VMAs write-locked under the current `mmap_lock` writer
  (`vm_lock_seq == mm_lock_seq`); one record, as `mm_lock_seq` is one word, so
  `mmap_write_unlock` drops them all at once;
- `("readers", vma)`: `vm_refcnt` readers holding the per-VMA read lock;
- `("drain_waiter", vma)`: the CPU in `vma_start_write` waiting for them to drain.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import attrs

from ..actors import footprint as fp
from ..actors.effects import Effects
from ..actors.footprint import Footprint
from ..actors.kernel import Kernel, check_access
from ..actors.messages import (
    CallRcu,
    Downgrade,
    DownRead,
    Message,
    Protect,
    StoreVma,
    TreeDone,
    TreeRequest,
    Unmap,
    UpRead,
    UpWrite,
)
from ..actors.phases import EXIT, START, Access, Path, Phase, ProtocolTable, View, goto, wait
from ..actors.policy import NoTreeHooks, Policy
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MMAP_SEM, RCU, TREE, MmId, cpu
from ..log.schema import FaultRetry, LockAcquire, LockRelease, LockWait, VmaDetach
from ..mm.layout import PAGE_SIZE
from ..mm.vma import Vma
from ..mm.world import World
from .common import (
    OLD_VMAS,
    RANGE_PTE_FRAMES,
    RANGE_PTES,
    RANGE_VMAS,
    RETURN_WRITES,
    TASK_FRAMES,
    TASK_VMA,
    TREE_READ,
    VMA_AT_ADDR,
    WRITERS,
    alloc_for_fault,
    down_read_then,
    fault_under_mmap_sem,
    flush_phase,
    madvise_path,
    mmap_done,
    mmap_path,
    mmap_placed,
    take_old,
    writer_start,
)
from .common import FRESH_FRAME, INSTALL_WRITES, PAGE_PTE

# --- this design's own records ---------------------------------------------------------------------

WRITE_LOCKED = ("write_locked",)


def readers_key(vma_id: str) -> tuple[str, str]:
    return ("readers", vma_id)


def drain_key(vma_id: str) -> tuple[str, str]:
    return ("drain_waiter", vma_id)


@attrs.frozen(cache_hash=True)
class Drained(Message):
    """The last reader of a VMA left: the writer in vma_start_write may go on."""

    KIND: ClassVar[str] = "drained"
    vma: str

    def log_arg(self) -> str:
        return self.vma


def write_locked(k: Kernel) -> frozenset[str]:
    return k.policy_get(WRITE_LOCKED, frozenset())


def set_write_locked(k: Kernel, vids: frozenset[str]) -> None:
    k.policy_set(WRITE_LOCKED, vids or None)


class BornLocked(NoTreeHooks):
    """A new VMA is write-locked before it enters the tree ("mm: always lock new vma
    before inserting into vma tree"), until the writer's mmap_write_unlock."""

    def vma_created(self, fx: Effects, mm: MmId, vma: Vma) -> None:
        locked: frozenset[str] = fx.policy_get(mm, WRITE_LOCKED, frozenset())
        fx.policy_set(mm, WRITE_LOCKED, locked | {vma.id})

    def tree_footprint(self, world: World, mm: MmId, msg: TreeRequest) -> Footprint:
        return Footprint.of(writes=[fp.policy(mm, WRITE_LOCKED)])


def _write_locked(v: View) -> Iterable[fp.Obj]:
    return [fp.policy(v.cpu.mm, WRITE_LOCKED)]


def _task_readers(v: View) -> Iterable[fp.Obj]:
    vid = v.fault.vma
    return [fp.policy(v.cpu.mm, readers_key(vid)), fp.policy(v.cpu.mm, drain_key(vid))] if vid is not None else []


def _range_readers(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    assert t.start is not None
    tree = v.world.mm(v.cpu.mm).tree
    return [fp.policy(v.cpu.mm, key(vid)) for vid in tree.vma_ids(t.start, t.end) for key in (readers_key, drain_key)]


WRITE_LOCKS = Access("vma write locks", _write_locked)
TASK_READERS = Access("vma readers", _task_readers)
RANGE_READERS = Access("readers@range", _range_readers)

# --- fault: lock_vma_under_rcu ------------------------------------------------------------------------


def fallback(k: Kernel, t: FaultTask, reason: str) -> FaultTask:
    k.emit(FaultRetry(cpu=k.id, addr=t.page, pages=1, vma=t.vma, reason=f"{reason}: lock_mm_and_find_vma"))
    return down_read_then("mm_lookup", t, k, vma=None, holds=("mmap_sem",))


def vma_end_read(k: Kernel, vma_id: str) -> None:
    """Drop the per-VMA read lock; the last reader wakes a writer waiting to drain them."""
    readers = k.policy_get(readers_key(vma_id), 0) - 1
    k.emit(LockRelease(cpu=k.id, vma=vma_id, lock="vma", mode="read"))
    if readers == 0:
        waiter: int | None = k.policy_get(drain_key(vma_id), None)
        if waiter is not None:
            k.send(cpu(waiter), Drained(vma=vma_id))
            k.policy_set(drain_key(vma_id), None)
    k.policy_set(readers_key(vma_id), readers or None)


def fault_start(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    k.rcu_read_lock()
    vma = k.find_vma(t.vaddr)
    if vma is None:
        k.rcu_read_unlock()
        return fallback(k, t, "no vma under RCU")
    return goto(t, "vma_lock", vma=vma.id, holds=("rcu",))


def fault_vma_lock(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    assert t.vma is not None
    vma = k.read_vma(t.vma)
    locked = t.vma in write_locked(k)
    if locked or vma.state != "live":
        k.rcu_read_unlock()
        return fallback(k, t, f"vma {vma.id} is {'write-locked' if locked else vma.state}")
    k.policy_set(readers_key(vma.id), k.policy_get(readers_key(vma.id), 0) + 1)
    k.emit(LockAcquire(cpu=k.id, vma=vma.id, lock="vma", mode="read"))
    k.rcu_read_unlock()
    why = check_access(vma, t.access)
    if why is not None:
        vma_end_read(k, vma.id)
        k.segv(t, why)
        return EXIT
    return goto(t, "alloc", holds=("vma_read",))


def fault_alloc(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    return alloc_for_fault(k, t, "install")


def fault_install(k: Kernel, t: FaultTask, msg: Message | None) -> str:
    assert t.vma is not None
    k.install_for_fault(k.vma(t.vma), t)
    vma_end_read(k, t.vma)
    k.fault_done(t)
    return EXIT


# --- writers ------------------------------------------------------------------------------------------


def vma_start_write(k: Kernel, t: SyscallTask, next_phase: str) -> SyscallTask:
    """Write-lock every VMA in the range; wait for the first one with readers to
    drain (re-entered after each `drained`)."""
    assert t.start is not None
    locked = write_locked(k)
    for vid in k.tree().vma_ids(t.start, t.end):
        if vid not in locked:
            locked = locked | {vid}
            set_write_locked(k, locked)
            k.emit(LockAcquire(cpu=k.id, vma=vid, lock="vma", mode="write"))
        if k.policy_get(readers_key(vid), 0):
            k.policy_set(drain_key(vid), k.id)
            k.emit(LockWait(cpu=k.id, vma=vid, lock="vma", mode="write"))
            return wait(t, "write_lock", Drained)
    return goto(t, next_phase)


def write_unlock(k: Kernel) -> None:
    """mmap_write_unlock: every VMA write lock taken under it goes too."""
    set_write_locked(k, frozenset())
    k.send(MMAP_SEM, UpWrite(mm=k.mm))


def _write_lock_phase(next_phase: str) -> Phase:
    def write_lock(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        return vma_start_write(k, t, next_phase)

    return Phase("write_lock", write_lock, ("write_lock", next_phase),
                 "vma_start_write on each VMA (wait for its readers to drain)",
                 reads=(TREE_READ, RANGE_READERS), writes=(WRITE_LOCKS, RANGE_READERS))


def mmap_unlock_done(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    t = mmap_placed(t, msg)
    write_unlock(k)
    k.syscall_return(t)
    return EXIT


def munmap_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    k.send(TREE, Unmap(addr=t.start, pages=t.pages, entry="null", mm=k.mm))
    return wait(t, "zap", TreeDone)


def munmap_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    woken = take_old(t, msg, "zap")
    if woken is not None:
        return woken
    assert t.start is not None
    # Readers may take mmap_lock again while the zap, flush and frees run.
    k.send(MMAP_SEM, Downgrade(mm=k.mm))
    return goto(t, "flush", frames=k.zap_range(t.start, t.pages))


def munmap_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    for fid in t.frames:
        k.free_frame(fid)
    for vid in t.old:
        set_write_locked(k, write_locked(k) - {vid})
        k.send(RCU, CallRcu(vma=vid, mm=k.mm))
    k.send(MMAP_SEM, UpRead(mm=k.mm))
    k.syscall_return(goto(t, "free", frames=()), t.old)
    return EXIT


def map_fixed_detach(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.request is not None
    old = k.tree().vma_ids(t.start, t.end)
    k.add_writer(t.start, t.end)
    for vid in old:
        k.set_vma(attrs.evolve(k.vma(vid), state="detached"))
        k.emit(VmaDetach(cpu=k.id, vma=vid))
    return goto(t, "zap", old=old, new=t.request.vma, ret=t.start)


def map_fixed_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    return goto(t, "flush", frames=k.zap_range(t.start, t.pages))


def map_fixed_store(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    for fid in t.frames:
        k.free_frame(fid)
    assert t.start is not None and t.request is not None
    k.send(TREE, StoreVma(addr=t.start, pages=t.pages, request=t.request, mm=k.mm))
    return wait(t, "done", TreeDone, frames=())


def map_fixed_done(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    for vid in t.old:
        k.send(RCU, CallRcu(vma=vid, mm=k.mm))
    write_unlock(k)
    k.syscall_return(t, t.old)
    return EXIT


def mprotect_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.prot is not None
    k.send(TREE, Protect(addr=t.start, pages=t.pages, prot=t.prot, copy=None, mm=k.mm))
    return wait(t, "protect", TreeDone)


def mprotect_protect(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    if msg is not None:
        assert isinstance(msg, TreeDone)
        return goto(t, "protect", old=msg.vmas, new=None)
    assert t.start is not None and t.prot is not None
    k.change_protection(t.start, t.pages, t.prot, None)
    return goto(t, "flush")


def mprotect_release(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    write_unlock(k)
    k.syscall_return(t)
    return EXIT


ZAP_WRITES = (RANGE_PTES, RANGE_PTE_FRAMES)

PROTOCOL = ProtocolTable((
    Path("fault", (
        Phase(START, fault_start, ("vma_lock", "mm_lookup"),
              "rcu_read_lock; mas_walk for the VMA (none: rcu_read_unlock, fall back)", sends=(DownRead,),
              reads=(TREE_READ, VMA_AT_ADDR)),
        Phase("vma_lock", fault_vma_lock, ("alloc", "mm_lookup", EXIT),
              "vma_start_read: write-locked or detached -> rcu_read_unlock, fall back; else take a vm_refcnt reader "
              "reference; rcu_read_unlock", sends=(DownRead, Drained),
              reads=(TASK_VMA, WRITE_LOCKS), writes=(TASK_READERS,)),
        Phase("alloc", fault_alloc, ("install",), "page-cache lookup or page allocation",
              reads=(PAGE_PTE, TASK_VMA), writes=(FRESH_FRAME,)),
        Phase("install", fault_install, (EXIT,),
              "page-table lock: set the PTE; vma_end_read (the last reader wakes a waiting writer)",
              sends=(Drained,), reads=(TASK_VMA,), writes=INSTALL_WRITES + (TASK_READERS,)),
    ) + fault_under_mmap_sem("mm_")),
    Path("munmap", (
        writer_start("write_lock", "mmap_write_lock"),
        _write_lock_phase("update"),
        Phase("update", munmap_update, ("zap",), "tree owner clears the range (NULL); VMAs detached", sends=(Unmap,)),
        Phase("zap", munmap_zap, ("zap", "flush"), "mmap_write_downgrade; zap the PTEs", sends=(Downgrade,),
              writes=(RANGE_PTES,)),
        flush_phase("free"),
        Phase("free", munmap_free, (EXIT,),
              "free the frames; VMAs freed RCU-safely (call_rcu); mmap_read_unlock; return",
              sends=(CallRcu, UpRead), writes=(TASK_FRAMES, WRITE_LOCKS) + RETURN_WRITES),
    )),
    Path("mmap_fixed", (
        writer_start("write_lock", "mmap_write_lock"),
        _write_lock_phase("detach"),
        Phase("detach", map_fixed_detach, ("zap",), "detach the old VMAs, still in the tree",
              reads=(TREE_READ,), writes=(RANGE_VMAS, WRITERS)),
        Phase("zap", map_fixed_zap, ("flush",), "zap the old PTEs", writes=ZAP_WRITES[:1]),
        flush_phase("store"),
        Phase("store", map_fixed_store, ("done",), "free the old frames; tree owner stores the new VMA",
              sends=(StoreVma,), writes=(TASK_FRAMES,)),
        Phase("done", map_fixed_done, (EXIT,),
              "old VMAs freed RCU-safely; mmap_write_unlock (drops every VMA write lock); return",
              sends=(CallRcu, UpWrite), writes=(WRITE_LOCKS,) + RETURN_WRITES),
    )),
    Path("mprotect", (
        writer_start("write_lock", "mmap_write_lock"),
        _write_lock_phase("update"),
        Phase("update", mprotect_update, ("protect",), "tree owner changes the VMA's protection in place",
              sends=(Protect,)),
        Phase("protect", mprotect_protect, ("protect", "flush"), "change the PTEs", writes=(RANGE_PTES,)),
        flush_phase("release"),
        Phase("release", mprotect_release, (EXIT,), "mmap_write_unlock; return", sends=(UpWrite,),
              writes=(WRITE_LOCKS,) + RETURN_WRITES),
    )),
    mmap_path(
        done=Phase("done", mmap_unlock_done, (EXIT,), "mmap_write_unlock (the new VMA's write lock goes too); "
                   "return the address", sends=(UpWrite,), writes=(WRITE_LOCKS,) + RETURN_WRITES),
        insert_doc="tree owner places and stores the new VMA, write-locked"),
    madvise_path(),
))

PERVMA = Policy(
    name="pervma",
    summary=("Linux 6.4+ per-VMA locks: lock_vma_under_rcu, fallback to mmap_lock; writers write-lock VMAs "
             "(waiting for readers), MAP_FIXED blocks faults"),
    protocol=PROTOCOL,
    hooks=BornLocked(),
)

__all__ = ["PERVMA", "PROTOCOL", "Drained", "BornLocked", "vma_start_write", "write_unlock", "vma_end_read",
           "WRITE_LOCKED", "PAGE_SIZE", "mmap_done", "RANGE_PTE_FRAMES", "OLD_VMAS"]
