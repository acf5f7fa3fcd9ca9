"""`mmap_sem`: the baseline the debate was about — one rwsem per mm, as in Linux v5.4
(December 2019) — and `mmap_sem-4.19`, the same before 4.20.

Kernel sources modelled (torvalds/linux, v5.4):
- `arch/x86/mm/fault.c` `do_user_addr_fault()`: `down_read(&mm->mmap_sem)`, then
  `find_vma()`; no VMA (or one that forbids the access) -> `bad_area` (SIGSEGV);
  else `handle_mm_fault()` under the read lock.
- `mm/mmap.c` `__vm_munmap(start, len, downgrade=true)` -> `__do_munmap()`:
  `down_write`; `detach_vmas_to_be_unmapped()` (the VMAs leave the tree); then
  `downgrade_write()` (commit dd2283f2605e, 4.20); then `unmap_region()` (zap the
  PTEs, `free_pgtables`, `tlb_finish_mmu()`: the TLB flush) and `remove_vma_list()`
  (the VMAs freed) under the read lock; `up_read`. Before 4.20 (`mmap_sem-4.19`) the
  same steps ran under the write lock to the end.
- `mm/mmap.c` `mmap_region()` with MAP_FIXED: `do_munmap()` (no downgrade: detach,
  zap, flush, free) and then `vma_link()` of the new VMA, all under the write lock.
- `mm/mprotect.c` `mprotect_fixup()` / `change_protection()`: the VMA's flags, then
  the PTEs and the TLB flush, under the write lock.
- `mm/madvise.c` `madvise_dontneed_free()`: under the read lock (common.madvise_path).
- `arch/x86/mm/fault.c` with `mm/mmap.c` `expand_stack()` / `expand_downwards()`: a
  fault below a VM_GROWSDOWN VMA grows it under the read lock (anon_vma lock and
  `mm->page_table_lock` serialise two expansions; the tree owner does here).
- `mm/mmap.c` `__do_munmap()` with the stable fix 246c320a8cfe ("mm/mmap.c: close race
  between munmap() and expand_upwards()/downwards()", 5.8, backported to stable kernels): no
  downgrade when the VMA after the unmapped range grows down, because that VMA can
  grow into the range under the read lock (CVE-2020-29369; the ablation
  `mmap_sem-downgrade-next-to-stack` is 5.4.0 as released). `unmap_region()` zaps,
  then `free_pgtables()` unlinks the page-table pages wholly between
  `prev->vm_end` and `next->vm_start` (read when it starts), then `tlb_finish_mmu()`
  flushes and frees; page-table pages are modelled where a scenario says
  `free_pgtables = true`.
- `mm/mremap.c` `move_ptes()` (4.19+, eb66ae030829 "mremap: properly flush TLB before
  releasing the page"): the old range is flushed before the page-table lock is
  dropped; 4.18 flushed after (CVE-2018-18281, the ablation
  `mmap_sem-mremap-flush-after-unlock`). `move_vma()` runs under the write lock.
- `kernel/fork.c` `dup_mmap()`: under the parent's write lock, copy each VMA and its
  page tables (`copy_page_range`: anonymous pages shared copy-on-write), then
  `flush_tlb_mm()`; `mm/memory.c` `do_wp_page()` / `wp_page_copy()` on a write fault.
- `mm/truncate.c` `truncate_pagecache()` (common.truncate_path): no mmap_sem.

So a fault concurrent with munmap may SIGSEGV while other CPUs' stale TLB entries still
read the old page (after the downgrade), a fault on a range being replaced by
MAP_FIXED waits and then sees the new mapping, and mprotect's flush runs with the
write lock held.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ..actors import footprint as fp
from ..actors.kernel import Kernel
from ..actors.messages import (
    Downgrade,
    DownRead,
    Flush,
    Grant,
    Message,
    Protect,
    StoreVma,
    TreeDone,
    Unmap,
    UpRead,
    UpWrite,
)
from ..actors.phases import EXIT, START, Access, Path, Phase, ProtocolTable, View, goto, wait
from ..actors.policy import Policy
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MMAP_SEM, TREE
from .common import (
    RANGE_PTL,
    after_ptl,
    OLD_VMAS,
    PGTABLE_BOUNDS,
    PGTABLE_PINS,
    RANGE_PTES,
    RANGE_TLB,
    RETURN_WRITES,
    TASK_FRAMES,
    TREE_READ,
    ZAP_WRITES,
    down_read_then,
    MODEL_DIFFERENCES,
    fault_under_mmap_sem,
    flush_and_wait,
    flush_phase,
    fork_path,
    free_pgtables_phase,
    madvise_path,
    mmap_path,
    mremap_path,
    take_old,
    truncate_path,
    writer_start,
    zap_then,
)


@attrs.frozen
class MmapSemKnobs:
    #: munmap downgrades the write lock to read before its zap, flush and frees (4.20+).
    downgrade: bool = True
    #: Ablation: the zapped frames are freed once the shootdown is asked for, before
    #: it completes.
    free_before_flush: bool = False
    #: Ablation (5.4.0, before 246c320a8cfe): munmap downgrades even when the VMA above
    #: the range grows down.
    downgrade_next_to_stack: bool = False
    #: move_ptes flushes the old range before it drops the page-table lock (4.19+);
    #: the ablation (4.18) flushes after.
    mremap_flush_under_ptl: bool = True


# --- fault -------------------------------------------------------------------------------------


def fault_start(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    return down_read_then("lookup", t, k, holds=("mmap_sem",))


# --- writers -------------------------------------------------------------------------------------


def _zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    return goto(t, "flush", frames=k.zap_range(t.start, t.pages))


def _unmap_region(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    return zap_then(k, t, "flush")


def _flush(next_phase: str) -> Phase:
    def flush(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        t = flush_and_wait(k, t, next_phase)
        if k.knobs(MmapSemKnobs).free_before_flush:
            k.free_frames(t.frames)
            t = attrs.evolve(t, frames=())
        return t

    return Phase("flush", flush, (next_phase,), "flush the local TLB, ask for the shootdown, wait for every ack "
                 "(mmap_sem-free-before-flush: free the frames now)", sends=(Flush,), writes=(RANGE_TLB, TASK_FRAMES))


def _free_unmapped(k: Kernel, t: SyscallTask) -> None:
    """Free the task's frames, then the old VMAs it detached (remove_vma_list)."""
    k.free_frames(t.frames)
    for vid in t.old:
        if k.vma(vid).state == "detached":
            k.free_vma_now(vid)


def _free(next_phase: str) -> Phase:
    def free(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        _free_unmapped(k, t)
        return goto(t, next_phase, frames=())

    def free_munmap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        k.free_pgtable_pages(t.pgtables)
        return free(k, t, msg)

    if next_phase == "release":  # munmap's: the page-table pages free_pgtables unlinked go too
        return Phase("free", free_munmap, (next_phase,), "free the frames, the unlinked page-table pages, then the "
                     "VMAs (remove_vma_list)", reads=(OLD_VMAS,), writes=(TASK_FRAMES, OLD_VMAS, PGTABLE_PINS))
    return Phase("free", free, (next_phase,), "free the frames, then the VMAs (remove_vma_list)",
                 reads=(OLD_VMAS,), writes=(TASK_FRAMES, OLD_VMAS))


def _release(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.send(MMAP_SEM, UpRead(mm=k.mm) if t.downgraded else UpWrite(mm=k.mm))
    k.syscall_return(t, t.old if t.op != "mprotect" else ())
    return EXIT


def munmap_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    k.send(TREE, Unmap(addr=t.start, pages=t.pages, entry="null", mm=k.mm))
    return wait(t, "detached", TreeDone)


def munmap_detached(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    """The VMAs are out of the tree: remember them; then (4.20+) downgrade, unless the
    VMA after the range grows down: it could grow into the range under the read lock
    while the range's page tables are being freed (246c320a8cfe)."""
    knobs = k.knobs(MmapSemKnobs)
    downgrade = knobs.downgrade and (knobs.downgrade_next_to_stack or not next_grows_down(k, t))
    return take_old(t, msg, "downgrade" if downgrade else "zap") or t


def next_grows_down(k: Kernel, t: SyscallTask) -> bool:
    """Whether the VMA after the range (detach_vmas_to_be_unmapped's `vma`) grows down."""
    assert t.start is not None
    above = k.tree().next_entry(t.end - 1)
    return above is not None and isinstance(above[2], str) and k.vma(above[2]).growsdown


def _next_vma(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    assert t.start is not None
    above = v.world.mm(v.cpu.mm).tree.next_entry(t.end - 1)
    return [fp.vma(v.cpu.mm, above[2])] if above is not None and isinstance(above[2], str) else []


NEXT_VMA = Access("next vma", _next_vma, lambda s: [("vma", s.mm, None)])


def munmap_downgrade(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    # Readers may take mmap_sem from here on: a fault now finds no VMA and SIGSEGVs
    # while the zap and the shootdown are still to come.
    k.send(MMAP_SEM, Downgrade(mm=k.mm))
    return goto(t, "zap", downgraded=True)


def map_fixed_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    k.send(TREE, Unmap(addr=t.start, pages=t.pages, entry="null", mm=k.mm))
    return wait(t, "detached", TreeDone)


def map_fixed_detached(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert isinstance(msg, TreeDone) and t.request is not None
    return goto(t, "zap", old=msg.vmas, new=t.request.vma, ret=t.start)


def map_fixed_store(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.request is not None
    k.send(TREE, StoreVma(addr=t.start, pages=t.pages, request=t.request, mm=k.mm))
    return wait(t, "release", TreeDone)


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


def mremap_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    _free_unmapped(k, t)
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    k.syscall_return(goto(t, "free", frames=()), t.old)
    return EXIT


def mremap_flush_under_ptl(k: Kernel) -> bool:
    return k.knobs(MmapSemKnobs).mremap_flush_under_ptl


DOWN_WRITE = "down_write(mmap_sem); wait for the grant"
RELEASE = Phase("release", _release, (EXIT,), "up_write (munmap after its downgrade: up_read); return",
                sends=(UpWrite, UpRead), writes=RETURN_WRITES)
MREMAP_FREE = Phase("free", mremap_free, (EXIT,), "free the destination's old frames and the old VMAs; up_write; "
                    "return", sends=(UpWrite,), reads=(OLD_VMAS,), writes=(TASK_FRAMES, OLD_VMAS) + RETURN_WRITES)


def protocol(downgrade: bool) -> ProtocolTable:
    """The v5.4 protocol (`downgrade`), or the one before 4.20."""
    if downgrade:
        detached_doc = ("the VMAs are out of the tree; next, downgrade_write (not when the VMA after the range grows "
                        "down: 246c320a8cfe; mmap_sem-downgrade-next-to-stack downgrades all the same)")
        munmap_mid: tuple[Phase, ...] = (
            Phase("detached", munmap_detached, ("downgrade", "zap"), detached_doc, reads=(TREE_READ, NEXT_VMA)),
            Phase("downgrade", munmap_downgrade, ("zap",),
                  "downgrade_write: faults may take mmap_sem for read (and SIGSEGV, or grow a stack into the range) "
                  "from now on", sends=(Downgrade,)),
        )
    else:
        munmap_mid = (Phase("detached", munmap_detached, ("zap",), "the VMAs are out of the tree"),)
    return ProtocolTable((
        Path("fault", (
            Phase(START, fault_start, ("lookup",), "down_read(mmap_sem); wait for the grant", sends=(DownRead,)),
        ) + fault_under_mmap_sem()),
        mmap_path(set_prot_after_insert=True),
        Path("munmap", (
            writer_start("update", DOWN_WRITE),
            Phase("update", munmap_update, ("detached",),
                  "detach_vmas_to_be_unmapped: the tree owner stores NULL over the range (VMAs detached)",
                  sends=(Unmap,)),
        ) + munmap_mid + (
            Phase("zap", after_ptl(_unmap_region, "zap"), ("zap", "flush", "free_pgtables"),
                  "unmap_region: zap the PTEs under the page-table lock; free_pgtables reads its bounds",
                  reads=(PGTABLE_BOUNDS,), writes=ZAP_WRITES + (RANGE_PTL,)),
            free_pgtables_phase("flush"),
            _flush("free"),
            _free("release"),
            RELEASE,
        )),
        Path("mmap_fixed", (
            writer_start("update", DOWN_WRITE),
            Phase("update", map_fixed_update, ("detached",), "do_munmap: the tree owner clears the range",
                  sends=(Unmap,)),
            Phase("detached", map_fixed_detached, ("zap",), "the old VMAs are out of the tree (no downgrade)"),
            Phase("zap", after_ptl(_zap, "zap"), ("zap", "flush"), "zap the old PTEs", writes=ZAP_WRITES + (RANGE_PTL,)),
            _flush("free"),
            _free("store"),
            Phase("store", map_fixed_store, ("release",), "vma_link: the tree owner stores the new VMA",
                  sends=(StoreVma,)),
            RELEASE,
        )),
        Path("mprotect", (
            writer_start("update", DOWN_WRITE),
            Phase("update", mprotect_update, ("protect",), "the tree owner changes the VMA's protection in place",
                  sends=(Protect,)),
            Phase("protect", after_ptl(mprotect_protect, "protect"), ("protect", "flush"), "change the PTEs' protection",
                  writes=(RANGE_PTES, RANGE_PTL)),
            flush_phase("release", "local flush, shootdown, wait for every ack (still under the write lock)"),
            RELEASE,
        )),
        madvise_path(),
        fork_path(),
        mremap_path(mremap_flush_under_ptl, MREMAP_FREE, start_doc=DOWN_WRITE),
        truncate_path(),
    ))


MMAP_SEM_POLICY = Policy(
    name="mmap_sem",
    summary=("Linux v5.4's one rwsem per mm: faults read-lock it; writers write-lock it, munmap downgrades it "
             "to read before its zap, flush and frees"),
    protocol=protocol(downgrade=True),
    config=MmapSemKnobs(),
    kernel=("Linux v5.4 (December 2019): arch/x86/mm/fault.c do_user_addr_fault; mm/mmap.c __vm_munmap and "
            "__do_munmap (downgrade_write since 4.20, dd2283f2605e), mmap_region; mm/mprotect.c mprotect_fixup; "
            "mm/madvise.c madvise_dontneed_free"),
    differences=MODEL_DIFFERENCES + (
        "no anon_vma: a fault holds mmap_sem for read throughout, so preparing one is never observable",),
)

MMAP_SEM_419 = Policy(
    name="mmap_sem-4.19",
    summary="mmap_sem before Linux 4.20 (dd2283f2605e): munmap holds the write lock to the end, flush and frees included",
    protocol=protocol(downgrade=False),
    config=MmapSemKnobs(downgrade=False),
    kernel=("Linux 4.19, before dd2283f2605e (\"mm: mmap: zap pages with read mmap_sem in munmap\", 4.20): "
            "__do_munmap under the write lock to the end; otherwise as v5.4"),
    differences=MODEL_DIFFERENCES,
)

ABLATIONS = (
    MMAP_SEM_POLICY.ablation(
        "mmap_sem-downgrade-next-to-stack",
        "ablation of mmap_sem: munmap downgrades even next to a grows-down VMA, as 4.20-5.7 did before 246c320a8cfe "
        "(CVE-2020-29369; trips pgtable-uaf)",
        config=MmapSemKnobs(downgrade_next_to_stack=True)),
    MMAP_SEM_POLICY.ablation(
        "mmap_sem-mremap-flush-after-unlock",
        "ablation of mmap_sem: move_ptes drops the page-table lock before it flushes the old range, as 4.18 did before "
        "eb66ae030829 (CVE-2018-18281; trips frame-uaf)",
        config=MmapSemKnobs(mremap_flush_under_ptl=False)),
    MMAP_SEM_POLICY.ablation(
        "mmap_sem-free-before-flush",
        "ablation of mmap_sem: frames freed once the shootdown is asked for, before it completes (trips frame-uaf)",
        config=MmapSemKnobs(free_before_flush=True)),
    MMAP_SEM_POLICY.ablation(
        "mmap_sem-irqs-off-wait",
        "ablation of mmap_sem: a CPU waiting for the rwsem takes no IPIs (trips deadlock)",
        irqs_off_lock_wait=True),
)

__all__ = ["MMAP_SEM_POLICY", "MMAP_SEM_419", "ABLATIONS", "MmapSemKnobs", "protocol", "Grant"]
