"""What the designs share: the words their footprints are declared in, the phases
every design runs the same way (the writers' lock, the shootdown, `mmap`, the fault
under `mmap_sem`), and small steps their handlers call.

A phase's footprint is declared with the `Access` words below, each resolved against
the state before the step: `pte@page` is the faulting page's PTE, `tlb@range` this
CPU's TLB entries over the syscall's range, and so on. `vmactors policies --protocols`
prints them by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from ..actors import footprint as fp
from ..actors.kernel import Kernel, check_access
from ..actors.messages import (
    DownRead,
    DownWrite,
    Flush,
    FlushDone,
    Grant,
    Message,
    Mmap,
    Placed,
    TreeDone,
    UpRead,
    UpWrite,
)
from ..actors.phases import EXIT, START, Access, Path, Phase, Scope, View, goto, wait
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MMAP_SEM, TREE
from ..mm.layout import PAGE_SIZE, page_range

# --- footprint words -------------------------------------------------------------------------


def _tree(v: View) -> Iterable[fp.Obj]:
    return [fp.tree(v.cpu.mm)]


def _vma_at_addr(v: View) -> Iterable[fp.Obj]:
    vid = v.world.mm(v.cpu.mm).tree.find_vma(v.fault.vaddr)
    return [fp.vma(v.cpu.mm, vid)] if vid is not None else []


def _task_vma(v: View) -> Iterable[fp.Obj]:
    vid = v.task.vma if isinstance(v.task, FaultTask) else None
    return [fp.vma(v.cpu.mm, vid)] if vid is not None else []


def _page_pte(v: View) -> Iterable[fp.Obj]:
    return [fp.pte(v.cpu.mm, v.fault.page)]


def _page_tlb(v: View) -> Iterable[fp.Obj]:
    return [fp.tlb(v.cpu.id, v.fault.page)]


def _fresh_frame(v: View) -> Iterable[fp.Obj]:
    """The frame an allocation now would take (LIFO), or the page-cache slot of a
    file page."""
    t = v.fault
    space = v.world.mm(v.cpu.mm)
    vid = t.vma if t.vma is not None else space.tree.find_vma(t.vaddr)
    vma = space.vmas.get(vid) if vid is not None else None
    if vma is not None and vma.kind == "file":
        assert vma.file is not None
        return [fp.cache(vma.file, (t.page - vma.start) // PAGE_SIZE)]
    frames = v.world.frames
    return [fp.FREELIST, fp.frame(frames.free[-1] if frames.free else frames.next_id)]


def _task_frame(v: View) -> Iterable[fp.Obj]:
    t = v.fault
    return [fp.frame(t.frame), fp.FREELIST] if t.frame is not None else []


def _range_ptes(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    assert t.start is not None
    return [fp.pte(v.cpu.mm, p) for p in page_range(t.start, t.pages)]


def _range_tlb(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    assert t.start is not None
    return [fp.tlb(v.cpu.id, p) for p in page_range(t.start, t.pages)]


def _task_frames(v: View) -> Iterable[fp.Obj]:
    frames = v.syscall.frames
    return [fp.FREELIST] + [fp.frame(f) for f in frames] if frames else []


def _range_pte_frames(v: View) -> Iterable[fp.Obj]:
    """The anonymous frames behind the range's PTEs (a zap that frees them at once)."""
    t = v.syscall
    assert t.start is not None
    ptes = v.world.mm(v.cpu.mm).ptes
    frames = [ptes[p].frame for p in page_range(t.start, t.pages) if p in ptes]
    return [fp.FREELIST] + [fp.frame(f) for f in frames] if frames else []


def _range_vmas(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    assert t.start is not None
    tree = v.world.mm(v.cpu.mm).tree
    return [fp.vma(v.cpu.mm, vid) for vid in tree.vma_ids(t.start, t.end)]


def _old_vmas(v: View) -> Iterable[fp.Obj]:
    return [fp.vma(v.cpu.mm, vid) for vid in v.syscall.old]


def _writers(v: View) -> Iterable[fp.Obj]:
    return [fp.writers(v.cpu.mm)]


def _unmapped(v: View) -> Iterable[fp.Obj]:
    return [fp.unmapped(v.cpu.mm)]


# What a word may stand for in a step not yet taken (partial-order reduction): the
# pages of the op when they are known, any VMA, any frame.


def pages_of(kind: str) -> Callable[[Scope], Iterable[fp.Pattern]]:
    """`kind` ("pte" or "tlb") objects of the scope's pages (any page if unknown)."""

    def future(s: Scope) -> Iterable[fp.Pattern]:
        owner = s.mm if kind == "pte" else s.cpu
        if s.pages is None:
            return [(kind, owner, None)]
        return [(kind, owner, p) for p in s.pages]

    return future


def _any_vma(s: Scope) -> Iterable[fp.Pattern]:
    return [("vma", s.mm, None)]


def _any_frame(s: Scope) -> Iterable[fp.Pattern]:
    return [("frame", None), fp.FREELIST]


def _new_frame(s: Scope) -> Iterable[fp.Pattern]:
    return [("frame", None), fp.FREELIST, ("cache", None, None)]


TREE_READ = Access("tree", _tree, lambda s: [fp.tree(s.mm)])
VMA_AT_ADDR = Access("vma@addr", _vma_at_addr, _any_vma)
TASK_VMA = Access("vma", _task_vma, _any_vma)
PAGE_PTE = Access("pte@page", _page_pte, pages_of("pte"))
PAGE_TLB = Access("tlb@page", _page_tlb, pages_of("tlb"))
FRESH_FRAME = Access("new frame", _fresh_frame, _new_frame)
TASK_FRAME = Access("frame", _task_frame, _any_frame)
RANGE_PTES = Access("pte@range", _range_ptes, pages_of("pte"))
RANGE_TLB = Access("tlb@range", _range_tlb, pages_of("tlb"))
TASK_FRAMES = Access("frames", _task_frames, _any_frame)
RANGE_PTE_FRAMES = Access("frames@range", _range_pte_frames, _any_frame)
RANGE_VMAS = Access("vmas@range", _range_vmas, _any_vma)
OLD_VMAS = Access("old vmas", _old_vmas, _any_vma)
WRITERS = Access("writers", _writers, lambda s: [fp.writers(s.mm)])
UNMAPPED = Access("unmapped", _unmapped, lambda s: [fp.unmapped(s.mm)])

#: What installing a fault's PTE may touch: the PTE, a frame to give back or to take
#: (the PTE it meant to upgrade was zapped), this CPU's stale TLB entry.
INSTALL_WRITES = (PAGE_PTE, TASK_FRAME, FRESH_FRAME, PAGE_TLB)
#: What a syscall's return touches.
RETURN_WRITES = (WRITERS, UNMAPPED)

#: Where every design here differs from a kernel, on purpose.
MODEL_DIFFERENCES: tuple[str, ...] = (
    "one TLB shootdown per syscall, where the kernel flushes per mmu_gather batch (and when a batch fills up)",
    "mprotect always shoots down; x86 skips the flush when it only adds permissions",
    "an untouched anonymous page reads as its map's `fill`, where Linux maps the zero page on a read fault "
    "and a zeroed page on a write",
    "syscalls take whole mappings: no VMA splits or merges, no partial munmap or mprotect",
    "page-table pages are never freed (no free_pgtables)",
    "file pages are always in the page cache: no I/O, no VM_FAULT_RETRY waiting for a locked page",
    "the rwsem is not fair: a waiting reader or writer may be overtaken (Linux queues them and hands off)",
)

# --- shared steps ---------------------------------------------------------------------------


def lock_for_write(k: Kernel, t: SyscallTask, next_phase: str) -> SyscallTask:
    """down_write(mmap_sem): the writers' lock in every policy; `next_phase` runs on the grant."""
    k.send(MMAP_SEM, DownWrite(mm=k.mm))
    return wait(t, next_phase, Grant)


def flush_and_wait(k: Kernel, t: SyscallTask, next_phase: str) -> SyscallTask:
    """The syscall's shootdown over its range; `next_phase` runs on `flush_done`."""
    assert t.start is not None
    k.flush_tlb_range(t.start, t.pages, t.index)
    return wait(t, next_phase, FlushDone)


def find_vma_locked(k: Kernel, t: FaultTask, next_phase: str) -> FaultTask | str:
    """find_vma with mmap_sem held for read: no VMA, or one that forbids the access,
    is up_read and SIGSEGV; else `next_phase` with the VMA."""
    vma = k.find_vma(t.vaddr)
    why = check_access(vma, t.access)
    if why is not None:
        k.send(MMAP_SEM, UpRead(mm=k.mm))
        k.segv(t, why)
        return EXIT
    assert vma is not None
    return goto(t, next_phase, vma=vma.id)


def alloc_for_fault(k: Kernel, t: FaultTask, next_phase: str) -> FaultTask:
    """The allocation step: a page-cache or fresh frame for the fault's VMA, unless a
    PTE is already there (the install step then rechecks it)."""
    assert t.vma is not None
    if k.pte(t.page) is not None:
        return goto(t, next_phase)
    frame, fresh = k.alloc_page(k.vma(t.vma), t.page)
    return goto(t, next_phase, frame=frame, fresh=fresh)


def take_old(t: SyscallTask, msg: Message | None, phase: str) -> SyscallTask | None:
    """A `tree_done` woke the writer: remember the VMAs it removed, and run `phase`
    in a later step; None when no message woke it."""
    if msg is None:
        return None
    assert isinstance(msg, TreeDone)
    return goto(t, phase, old=msg.vmas)


# --- phases every design shares --------------------------------------------------------------


def _write_lock_then(next_phase: str, doc: str = "take the writers' lock (mmap_sem for write)") -> Phase:
    def start(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        return lock_for_write(k, t, next_phase)

    return Phase(START, start, (next_phase,), doc, sends=(DownWrite,))


def mmap_insert(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.request is not None
    k.send(TREE, Mmap(request=t.request, mm=k.mm))
    return wait(t, "done", Placed)


def mmap_placed(t: SyscallTask, msg: Message | None) -> SyscallTask:
    """The task once the tree owner said where the VMA went (`ret` is `segv` when
    nothing fits)."""
    assert isinstance(msg, Placed) and t.request is not None
    placed = msg.addr is not None
    return goto(t, "done", ret=msg.addr if placed else "segv", start=msg.addr,
                new=t.request.vma if placed else None)


def mmap_done(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    t = mmap_placed(t, msg)
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    k.syscall_return(t)
    return EXIT


def mmap_path(done: Phase | None = None, insert_doc: str = "tree owner places the VMA and stores it") -> Path:
    """`mmap` (a new mapping): take the writers' lock, let the tree owner place and
    store the VMA, release, return the address. A design may replace `done`."""
    return Path("mmap", (
        _write_lock_then("insert"),
        Phase("insert", mmap_insert, ("done",), insert_doc, sends=(Mmap,)),
        done or Phase("done", mmap_done, (EXIT,), "release the writers' lock; return the address",
                      sends=(UpWrite,), writes=RETURN_WRITES),
    ))


def writer_start(next_phase: str, doc: str = "take the writers' lock (mmap_sem for write)") -> Phase:
    """The `start` row of a writer syscall: down_write, then `next_phase` on the grant."""
    return _write_lock_then(next_phase, doc)


def flush_phase(next_phase: str, doc: str = "local flush and shootdown; wait for every ack") -> Phase:
    def flush(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        return flush_and_wait(k, t, next_phase)

    return Phase("flush", flush, (next_phase,), doc, sends=(Flush,), writes=(RANGE_TLB,))


def fault_under_mmap_sem(prefix: str = "") -> tuple[Phase, ...]:
    """The fault with mmap_sem held for read (the `mmap_sem` design, and `pervma`'s
    fallback, `lock_mm_and_find_vma`): look up, allocate, install, up_read. `prefix`
    names the phases (`mm_` for the fallback)."""
    lookup, alloc, install = f"{prefix}lookup", f"{prefix}alloc", f"{prefix}install"

    def do_lookup(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
        return find_vma_locked(k, t, alloc)

    def do_alloc(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
        return alloc_for_fault(k, t, install)

    def do_install(k: Kernel, t: FaultTask, msg: Message | None) -> str:
        assert t.vma is not None
        k.install_for_fault(k.vma(t.vma), t)
        k.send(MMAP_SEM, UpRead(mm=k.mm))
        k.fault_done(t)
        return EXIT

    where = "lock_mm_and_find_vma under mmap_lock for read (waits for a writer)" if prefix else \
        "find_vma under the read lock"
    return (
        Phase(lookup, do_lookup, (alloc, EXIT), f"{where}; none or forbidden: up_read, SIGSEGV",
              sends=(UpRead,), reads=(TREE_READ, VMA_AT_ADDR)),
        Phase(alloc, do_alloc, (install,), "page-cache lookup (file) or page allocation (anon)",
              reads=(PAGE_PTE, TASK_VMA), writes=(FRESH_FRAME,)),
        Phase(install, do_install, (EXIT,),
              "page-table lock: set the PTE unless one is there; up_read; retry the access",
              sends=(UpRead,), reads=(TASK_VMA,), writes=INSTALL_WRITES),
    )


def madvise_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    """MADV_DONTNEED: the range's pages are discarded: its anonymous VMAs give zeroed
    pages from now on, and the PTEs are zapped (the frames go after the flush)."""
    assert t.start is not None
    for vid in k.tree().vma_ids(t.start, t.end):
        vma = k.vma(vid)
        if vma.kind == "anon" and vma.fill != 0:
            k.set_vma(attrs.evolve(vma, fill=0))
    return goto(t, "flush", frames=k.zap_range(t.start, t.pages))


def madvise_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    for fid in t.frames:
        k.free_frame(fid)
    k.send(MMAP_SEM, UpRead(mm=k.mm))
    k.syscall_return(goto(t, "free", frames=()))
    return EXIT


def madvise_path() -> Path:
    """`madvise LABEL dontneed`, the same in every design: as Linux's MADV_DONTNEED
    (`madvise_dontneed_free` under `mmap_read_lock`): the writers are kept out, faults
    are not (under `mmap_sem` they take the read lock too); zap, shoot down, free."""

    def start(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        k.send(MMAP_SEM, DownRead(mm=k.mm))
        return wait(t, "zap", Grant)

    return Path("madvise", (
        Phase(START, start, ("zap",), "down_read(mmap_sem): keeps writers out, not faults", sends=(DownRead,)),
        Phase("zap", madvise_zap, ("flush",),
              "zap the PTEs; the VMA's anonymous pages come back zeroed on the next fault",
              reads=(TREE_READ,), writes=(RANGE_VMAS, RANGE_PTES)),
        flush_phase("free"),
        Phase("free", madvise_free, (EXIT,), "free the frames; up_read; return", sends=(UpRead,),
              writes=(TASK_FRAMES,) + RETURN_WRITES),
    ))


def down_read_then(next_phase: str, t: FaultTask, k: Kernel, **changes: object) -> FaultTask:
    """down_read(mmap_sem); `next_phase` runs on the grant."""
    k.send(MMAP_SEM, DownRead(mm=k.mm))
    return wait(t, next_phase, Grant, **changes)


__all__ = [
    "TREE_READ", "VMA_AT_ADDR", "TASK_VMA", "PAGE_PTE", "PAGE_TLB", "FRESH_FRAME", "TASK_FRAME", "RANGE_PTES",
    "RANGE_TLB", "TASK_FRAMES", "RANGE_PTE_FRAMES", "RANGE_VMAS", "OLD_VMAS", "WRITERS", "UNMAPPED",
    "INSTALL_WRITES", "RETURN_WRITES", "lock_for_write", "flush_and_wait", "find_vma_locked", "alloc_for_fault",
    "take_old", "mmap_path", "mmap_insert", "mmap_placed", "mmap_done", "writer_start", "flush_phase",
    "fault_under_mmap_sem", "down_read_then", "madvise_path", "MODEL_DIFFERENCES",
]
