"""Kernel code running on one CPU for one step: the core-mm routines every locking
design shares (zap a range, set a PTE, allocate a page, flush the TLB, end an op),
over the CPU's own state and the shared world.

A `Kernel` is made fresh for each CPU step. Protocol handlers (the phases of a
policy's table) get it as `k` and call these routines; they change the CPU's state
through `k.cpu` and the world through the accessors, never directly, so a test can
record exactly what a step touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import attrs

from ..ids import MM0, RCU, SHOOTDOWN, ActorId, MmId
from ..ids import cpu as _cpu_id
from ..log.schema import (
    Event,
    FaultEnd,
    FaultSegv,
    FrameAlloc,
    FrameFree,
    OpEnd,
    LockAcquire,
    LockRelease,
    LockWait,
    PgtableFree,
    PteInstall,
    PteProtect,
    PteZap,
    SyscallEnd,
    TlbFill,
    TlbFlush,
    VmaFree,
)
from ..mm.frames import Frame
from ..mm.layout import PAGE_SIZE, PTRS_PER_PTE, page_range, pgtable_of, pgtable_range
from ..mm.page_table import Pte
from ..mm.tlb import flush_tlb_range
from ..mm.vma import Vma, is_page_cache, prot_allows
from ..mm.vma_tree import VmaTree
from ..mm.world import Pin, World, ptl_ranges
from ..ops import Load, RegValue
from . import footprint as fp
from .effects import CowStoreLost, Effects, Note, PgtableUseFreed, UnmapReturned, VmaReadFreed
from .messages import Flush, Message, PteUnlock, Qs, WakeUpNewTask
from .tasks import CpuState, FaultTask, Program, SyscallTask, ThreadProgram

_C = TypeVar("_C")


class HasKnobs(Protocol):
    """What kernel code asks of the policy: its knobs (`vmactors.actors.policy.Policy`)."""

    def knobs(self, kind: type[_C]) -> _C: ...


_HAS_MM: dict[type[Event], bool] = {}

#: The fields `Kernel.evolve_cpu` passes to CpuState's constructor: all of them.
_CPU_FIELDS = frozenset(("id", "thread", "pc", "regs", "tlb", "task", "started", "rcu_nesting", "qs_owed", "tail",
                         "mm", "born"))
assert _CPU_FIELDS == {a.name for a in attrs.fields(CpuState)}, "Kernel.evolve_cpu: CpuState's fields changed"


def _has_mm(cls: type[Event]) -> bool:
    has = _HAS_MM.get(cls)
    if has is None:
        has = _HAS_MM[cls] = "mm" in attrs.fields_dict(cls)
    return has


def file_ptes(world: "World", mm: MmId, file: str) -> list[int]:
    """The pages of address space `mm` whose PTE maps a page of `file`, in order."""
    prefix = f"file:{file}:"
    return sorted(p for p, pte in world.mm(mm).ptes.items() if pte.owner.startswith(prefix))


def check_access(vma: Vma | None, access: str) -> str | None:
    """Why the fault must SIGSEGV, or None if the VMA allows the access."""
    if vma is None:
        return "no vma"
    if not prot_allows(vma.prot, access):
        return f"vma {vma.id} is {vma.prot}"
    return None


class Kernel:
    """The context of one CPU step (see the module docstring)."""

    __slots__ = ("fx", "cpu", "policy", "thread", "program")

    def __init__(self, fx: Effects, cpu: CpuState, policy: HasKnobs, thread: ThreadProgram,
                 program: Program | None = None) -> None:
        self.fx = fx
        self.cpu = cpu
        self.policy = policy
        self.thread = thread
        self.program = program

    # --- who and where ----------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self.cpu.id

    @property
    def mm(self) -> MmId:
        return self.cpu.mm

    def knobs(self, kind: type[_C]) -> _C:
        """The policy's knobs, of the design's own type."""
        return self.policy.knobs(kind)

    def evolve_cpu(self, **changes: Any) -> None:
        # The constructor, not attrs.evolve: most steps of an exhaustive search change
        # a CPU's state, some twice. (A misspelt field is caught by the check below.)
        c, get = self.cpu, changes.get
        assert changes.keys() <= _CPU_FIELDS, changes.keys() - _CPU_FIELDS
        self.cpu = CpuState(id=get("id", c.id), thread=get("thread", c.thread), pc=get("pc", c.pc),
                            regs=get("regs", c.regs), tlb=get("tlb", c.tlb), task=get("task", c.task),
                            started=get("started", c.started), rcu_nesting=get("rcu_nesting", c.rcu_nesting),
                            qs_owed=get("qs_owed", c.qs_owed), tail=get("tail", c.tail), mm=get("mm", c.mm),
                            born=get("born", c.born))

    # --- messages and events ------------------------------------------------------------------

    def send(self, dst: ActorId, msg: Message) -> None:
        self.fx.send(dst, msg)

    def emit(self, event: Event) -> None:
        """Log `event`; an event about memory of a fork's child says which address space."""
        if self.cpu.mm != MM0 and _has_mm(type(event)) and getattr(event, "mm") is None:
            event = attrs.evolve(event, **{"mm": int(self.cpu.mm)})
        self.fx.emit(event)

    def note(self, note: Note) -> None:
        self.fx.note(note)

    # --- the address space ----------------------------------------------------------------------

    def tree(self) -> VmaTree:
        return self.fx.tree(self.mm)

    def find_vma(self, addr: int) -> Vma | None:
        return self.fx.find_vma(self.mm, addr)

    def vma(self, vma_id: str) -> Vma:
        return self.fx.vma(self.mm, vma_id)

    def set_vma(self, vma: Vma) -> None:
        self.fx.set_vma(self.mm, vma)

    def read_vma(self, vma_id: str) -> Vma:
        """A fault path reading a VMA it found earlier; reading a freed one is a
        use-after-free, reported to the `vma-uaf` checker. (A design whose freed VMA
        objects stay VMA objects, SLAB_TYPESAFE_BY_RCU, reads them with `vma`.)"""
        vma = self.vma(vma_id)
        if vma.state == "freed":
            self.note(VmaReadFreed(self.id, vma_id))
        return vma

    def pte(self, page: int) -> Pte | None:
        return self.fx.pte(self.mm, page)

    def policy_get(self, key: Any, default: _C) -> _C:
        return self.fx.policy_get(self.mm, key, default)

    def policy_set(self, key: Any, value: Any) -> None:
        self.fx.policy_set(self.mm, key, value)

    def frame(self, fid: int) -> Frame:
        return self.fx.frame(fid)

    # --- this CPU's TLB --------------------------------------------------------------------------

    def tlb_entry(self, page: int) -> Pte | None:
        self.fx.record_read(fp.tlb(self.id, page))
        return self.cpu.tlb.get(page)

    def tlb_fill(self, page: int, pte: Pte) -> None:
        self.fx.record_write(fp.tlb(self.id, page))
        self.emit(TlbFill(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma, prot=pte.prot))
        self.evolve_cpu(tlb=self.cpu.tlb.set(page, pte))

    def flush_tlb_local(self, start: int, pages: int, reason: str = "local") -> None:
        """Drop this CPU's entries for the range (`tlb.flush`)."""
        for page in page_range(start, pages):
            self.fx.record_write(fp.tlb(self.id, page))
        self.emit(TlbFlush(cpu=self.id, addr=start, pages=pages, reason=reason))  # type: ignore[arg-type]
        self.evolve_cpu(tlb=flush_tlb_range(self.cpu.tlb, start, pages))

    def drop_stale_tlb(self, page: int) -> None:
        """Drop this CPU's entry for `page`, if it has one, so the access walks again."""
        if self.tlb_entry(page) is not None:
            self.flush_tlb_local(page, 1)

    def flush_tlb_range(self, start: int, pages: int, op: int, mm: MmId | None = None) -> None:
        """flush_tlb_range: flush the local TLB and ask the coordinator to IPI every
        other CPU of the address space (`mm`, default this CPU's); the caller
        (syscall `op` of this CPU's thread) then waits for `flush_done`. A CPU running
        another address space has nothing of `mm` in its TLB to flush."""
        mm = self.mm if mm is None else mm
        if mm == self.mm:
            self.flush_tlb_local(start, pages)
        self.send(SHOOTDOWN, Flush(addr=start, pages=pages, mm=mm, op=op))

    # --- RCU read side ------------------------------------------------------------------------------

    def rcu_read_lock(self) -> None:
        self.evolve_cpu(rcu_nesting=self.cpu.rcu_nesting + 1)

    def rcu_read_unlock(self) -> None:
        """Leave a read-side section; a quiescent state owed to RCU is reported now."""
        nesting = self.cpu.rcu_nesting - 1
        if nesting == 0 and self.cpu.qs_owed:
            self.send(RCU, Qs())
            self.evolve_cpu(rcu_nesting=0, qs_owed=False)
        else:
            self.evolve_cpu(rcu_nesting=nesting)

    # --- frames and PTEs ------------------------------------------------------------------------------

    def alloc_page(self, vma: Vma, page: int) -> tuple[int, bool]:
        """The frame to map at `page`: the page-cache frame of a file, or a fresh anon
        frame; and whether it is fresh."""
        if vma.kind == "file":
            assert vma.file is not None
            return self.fx.page_cache(vma.file, (page - vma.start) // PAGE_SIZE), False
        fid = self.fx.alloc_frame(vma.frame_owner(page), vma.fill)
        self.emit(FrameAlloc(cpu=self.id, addr=page, pages=1, frame=fid, vma=vma.id))
        return fid, True

    def free_frame(self, fid: int) -> None:
        self.fx.release_frame(fid)
        self.emit(FrameFree(cpu=self.id, frame=fid))

    def free_frames(self, fids: Iterable[int]) -> None:
        """`free_frame` of each, in order (a task's frames, after the flush)."""
        for fid in fids:
            self.free_frame(fid)

    def set_pte(self, vma: Vma, task: FaultTask) -> str:
        """Install the fault's PTE under the page-table lock, rechecking what is there.

        Returns "installed"; "spurious" when a PTE already allows the access (another
        CPU installed it first, or only this CPU's TLB entry was stale); "changed" when
        the page a copy-on-write copy was taken from is no longer mapped there
        (wp_page_copy's pte_same fails: the copy goes back, the access is retried and
        faults again); "cow" when a
        write fault finds an anonymous page a fork shared copy-on-write that another
        address space still maps: do_wp_page's wp_page_copy maps a copy
        (`begin_wp_copy`); or "upgraded" when a present PTE forbids the access but
        the VMA allows it (a write fault after mprotect or MAP_FIXED raced the fault, or
        the last sharer of a copy-on-write page): as do_wp_page reusing the page, the
        PTE takes the VMA's protection. A fresh frame the fault no longer needs goes
        back."""
        page = task.page
        pte = self.pte(page)
        self.pte_alloc(page)
        if pte is not None:
            if prot_allows(pte.prot, task.access):
                if task.fresh and task.frame is not None:
                    self.free_frame(task.frame)
                return "spurious"
            if task.access == "store" and self.wp_copies(vma, pte):
                return "cow"
            if task.fresh and task.frame is not None:
                self.free_frame(task.frame)
            self.fx.set_pte(self.mm, page, attrs.evolve(pte, prot=vma.prot, vma=vma.id, cow=False))
            self.emit(PteProtect(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=vma.id, prot=vma.prot))
            return "upgraded"
        if task.cow_from is not None:
            # The copy is of a page a zap (munmap, madvise, MAP_FIXED) has taken away:
            # mapping it would bring the old contents back.
            if task.fresh and task.frame is not None:
                self.free_frame(task.frame)
            return "changed"
        frame = task.frame
        if vma.kind == "file":
            # The page-cache page, as it is now: one truncated since the lookup is gone
            # (the kernel's fault finds it no longer in the mapping and looks again).
            frame = self.page_cache_page(vma, page)
        elif frame is None:
            # The PTE this fault meant to upgrade was zapped meanwhile: map a page now.
            frame, _ = self.alloc_page(vma, page)
        self.fx.set_pte(self.mm, page, Pte(frame=frame, prot=vma.prot, vma=vma.id, owner=vma.frame_owner(page)))
        self.emit(PteInstall(cpu=self.id, addr=page, pages=1, frame=frame, vma=vma.id, prot=vma.prot))
        return "installed"

    def wp_copies(self, vma: Vma, pte: Pte) -> bool:
        """Whether do_wp_page copies the page a write fault finds read-only
        (wp_page_copy) rather than reusing it: a page a fork shared that another
        address space still maps (the last one mapping it reuses it), or a page-cache
        page under a private, anonymous VMA — one that MAP_FIXED put over a file
        mapping whose PTEs were not zapped yet (only `wilcox` stores the new VMA
        first). A shared file VMA writes to its page, whatever file it is."""
        old = self.frame(pte.frame)
        if pte.cow:
            return old.mapcount > 1
        return vma.kind == "anon" and is_page_cache(old.owner)

    def prepare_wp_copy(self, vma: Vma, task: FaultTask) -> FaultTask:
        """wp_page_copy's copy, before it takes the page-table lock (`wp_copies`): a
        new anonymous page of `vma` holding what the old one holds."""
        pte = self.pte(task.page)
        if task.access != "store" or pte is None or prot_allows(pte.prot, "store") or not self.wp_copies(vma, pte):
            return task
        old = self.frame(pte.frame)
        # A fork's copy keeps the shared page's owner (the same anonymous page of each
        # address space); a page-cache page's copy is the VMA's own anonymous page.
        owner = vma.frame_owner(task.page) if is_page_cache(old.owner) else old.owner
        fid = self.fx.alloc_frame(owner, old.fill)
        self.emit(FrameAlloc(cpu=self.id, addr=task.page, pages=1, frame=fid, vma=vma.id))
        self.fx.write_frame(attrs.evolve(old.copy(fid), owner=owner))
        return attrs.evolve(task, frame=fid, fresh=True, cow_from=pte.frame)

    def begin_wp_copy(self, vma: Vma, task: FaultTask) -> FaultTask:
        """Under the page-table lock, the PTE still maps the shared page:
        ptep_clear_flush clears it and flushes it from every CPU of the mm, the lock held
        until the acks are in (a fault on the page meanwhile waits for the lock); the
        fault waits for `flush_done`, then `finish_wp_copy` maps the copy."""
        pte = self.pte(task.page)
        assert pte is not None
        if task.cow_from != pte.frame or task.frame is None:
            # The copy was not taken from this page (the PTE changed since): copy now.
            if task.fresh and task.frame is not None:
                self.free_frame(task.frame)
            task = self.prepare_wp_copy(vma, attrs.evolve(task, frame=None, fresh=False, cow_from=None))
        self.fx.set_pin(self.mm, "ptl", self.id, Pin(((task.page, task.page + PAGE_SIZE),)))
        self.emit(LockAcquire(cpu=self.id, lock="ptl", mode="write", addr=task.page, pages=1))
        self.fx.set_pte(self.mm, task.page, None)
        self.emit(PteZap(cpu=self.id, addr=task.page, pages=1, frame=pte.frame, vma=pte.vma))
        self.flush_tlb_range(task.page, 1, self.cpu.pc)
        return task

    def finish_wp_copy(self, vma: Vma, task: FaultTask) -> None:
        """The page is flushed everywhere: map the copy, drop the shared page's mapcount,
        let go of the page-table lock. A shared page that changed since the copy was
        taken lost a store to the other address space (`cow-isolation`)."""
        assert task.frame is not None and task.cow_from is not None
        page = task.page
        old, copy = self.frame(task.cow_from), self.frame(task.frame)
        if not is_page_cache(old.owner):  # a fork's shared page (a page-cache page's copy is private)
            if (old.words, old.fill) != (copy.words, copy.fill):
                self.note(CowStoreLost(self.id, page, old.id, copy.id))
            self.fx.write_frame(attrs.evolve(old, mapcount=old.mapcount - 1))
        self.fx.set_pte(self.mm, page, Pte(frame=task.frame, prot=vma.prot, vma=vma.id, owner=copy.owner))
        self.emit(PteInstall(cpu=self.id, addr=page, pages=1, frame=task.frame, vma=vma.id, prot=vma.prot))
        self.pte_unlock()

    def pte_unlock(self) -> None:
        """Release the page-table lock this CPU held across steps; wake its waiters."""
        pin = self.fx.pin(self.mm, "ptl", self.id)
        if pin is None:
            return
        self.fx.set_pin(self.mm, "ptl", self.id, None)
        for lo, hi in ptl_ranges(pin):
            self.emit(LockRelease(cpu=self.id, lock="ptl", mode="write", addr=lo, pages=(hi - lo) // PAGE_SIZE))
        for w in sorted(pin.waiters):
            self.send(_cpu_id(w), PteUnlock())

    def ptl_wait_range(self, start: int, pages: int) -> bool:
        """pte_offset_map_lock over [start, start + pages) (a fault's page, a writer's
        walk): when another CPU holds a page-table lock there across a shootdown (a
        copy-on-write fault between ptep_clear_flush and mapping its copy, mremap's
        move), register as its waiter and return True: the caller runs again on its
        `pte_unlock`."""
        end = start + pages * PAGE_SIZE
        for holder, pin in sorted(self.fx.pins(self.mm, "ptl").items()):
            if holder == self.id:
                continue
            for lo, hi in ptl_ranges(pin):
                if lo < end and start < hi:
                    self.fx.set_pin(self.mm, "ptl", holder, attrs.evolve(pin, waiters=pin.waiters | {self.id}))
                    self.emit(LockWait(cpu=self.id, lock="ptl", mode="write", addr=max(lo, start),
                                       pages=(min(hi, end) - max(lo, start)) // PAGE_SIZE))
                    return True
        return False

    def ptl_wait(self, task: FaultTask) -> FaultTask | None:
        """pte_offset_map_lock: the page's page-table lock is held across a shootdown
        (mremap's move, another fault's copy-on-write): wait for it, then run this
        phase again. None: the lock is free."""
        return attrs.evolve(task, waiting=PteUnlock.KIND) if self.ptl_wait_range(task.page, 1) else None

    def page_cache_page(self, vma: Vma, page: int) -> int:
        assert vma.file is not None
        return self.fx.page_cache(vma.file, (page - vma.start) // PAGE_SIZE)

    def install_for_fault(self, vma: Vma, task: FaultTask) -> FaultTask | None:
        """set_pte through `vma`; when the PTE was already there, drop this CPU's stale
        TLB entry so the retried access walks the page table again. A fault that walked
        to a page-table page free_pgtables has unlinked since writes its PTE into that
        page, where nothing maps it: the retried access faults again.

        A write fault on a page shared copy-on-write starts mapping its copy instead:
        the task is returned, to wait for `flush_done` (then `finish_wp_copy`)."""
        if not self.pgtable_still_linked(task):
            return None
        out = self.set_pte(vma, task)
        if out == "cow":
            return self.begin_wp_copy(vma, task)
        if out != "installed":
            self.drop_stale_tlb(task.page)
        return None

    # --- page-table pages (scenarios with free_pgtables = true) ---------------------------------

    def pte_alloc(self, page: int) -> int | None:
        """pte_alloc: the page-table page for `page`, allocated if there is none;
        None where page-table pages are not modelled."""
        tables = self.fx.pgtables(self.mm)
        if tables is None:
            return None
        index = pgtable_of(page)
        if index not in tables:
            self.fx.set_pgtables(self.mm, tables | {index})
        return index

    def walk_to_pgtable(self, page: int) -> None:
        """The fault's page walk: it now holds a pointer to the page-table page for
        `page` (allocated if there was none) until it installs its PTE."""
        index = self.pte_alloc(page)
        if index is not None:
            self.fx.set_pin(self.mm, "pgtable", self.id, Pin(index))

    def pgtable_still_linked(self, task: FaultTask) -> bool:
        """Drop the fault's page-table pin; False (and a note for `pgtable-uaf`) when
        free_pgtables unlinked or freed that page meanwhile."""
        if not self.fx.models_pgtables(self.mm):
            return True
        pin = self.fx.pin(self.mm, "pgtable", self.id)
        if pin is None:
            return True
        self.fx.set_pin(self.mm, "pgtable", self.id, None)
        if pin.state == "live":
            return True
        assert isinstance(pin.obj, int)
        self.note(PgtableUseFreed(self.id, self.mm, pin.obj, pin.state))
        if task.fresh and task.frame is not None:
            self.free_frame(task.frame)
        return False

    def free_pgtables(self, start: int, pages: int, floor: int, ceiling: int) -> tuple[int, ...]:
        """free_pgtables over [start, start + pages): every page-table page wholly inside
        [floor, ceiling) is unlinked (its pmd cleared); a PTE still in it goes with it.
        Faults holding a pointer to it see it dead; it is freed after the flush
        (`free_pgtable_pages`). Returns the pages unlinked."""
        tables = self.fx.pgtables(self.mm)
        if tables is None:
            return ()
        end = start + pages * PAGE_SIZE
        unlinked = []
        for index in sorted(tables):
            lo, hi = pgtable_range(index)
            if not (lo < end and start < hi and floor <= lo and hi <= ceiling):
                continue
            unlinked.append(index)
            for p in sorted(self._ptes_of(lo, hi)):
                # A PTE installed after the zap (a stack grew into the range): it goes
                # with the page it is in.
                self.note(PgtableUseFreed(self.id, self.mm, index, "mapped"))
                self.fx.set_pte(self.mm, p, None)
            for c, pin in self.fx.pins(self.mm, "pgtable").items():
                if pin.obj == index and pin.state == "live":
                    self.fx.set_pin(self.mm, "pgtable", c, Pin(index, "dead"))
            self.emit(PgtableFree(cpu=self.id, addr=lo, pages=PTRS_PER_PTE))
        if unlinked:
            self.fx.set_pgtables(self.mm, tables - set(unlinked))
        return tuple(unlinked)

    def _ptes_of(self, lo: int, hi: int) -> frozenset[int]:
        """The pages in [lo, hi) that have a PTE (the page table's own index; reading it
        reads no PTE)."""
        return frozenset(p for p in self.fx.world.mm(self.mm).ptes.keys() if lo <= p < hi)

    def free_pgtable_pages(self, indexes: tuple[int, ...]) -> None:
        """The unlinked page-table pages are freed (tlb_finish_mmu): a fault still
        holding one now holds freed memory."""
        if not indexes:
            return
        for c, pin in self.fx.pins(self.mm, "pgtable").items():
            if pin.obj in indexes and pin.state == "dead":
                self.fx.set_pin(self.mm, "pgtable", c, Pin(pin.obj, "freed"))

    def zap_range(self, start: int, pages: int) -> tuple[int, ...]:
        """zap_page_range: clear the PTEs; returns the anon frames to free after the
        flush (page-cache frames stay with the file)."""
        frames = []
        for page in page_range(start, pages):
            pte = self.pte(page)
            if pte is None:
                continue
            self.fx.set_pte(self.mm, page, None)
            self.emit(PteZap(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma))
            if is_page_cache(pte.owner):
                continue
            if pte.cow:
                # A page a fork shared: only the last address space to map it frees it.
                frame = self.frame(pte.frame)
                if frame.mapcount > 1:
                    self.fx.write_frame(attrs.evolve(frame, mapcount=frame.mapcount - 1))
                    continue
            frames.append(pte.frame)
        return tuple(frames)

    # --- fork, mremap, truncate ---------------------------------------------------------------------

    def copy_page_range(self, child: MmId, vma_ids: tuple[str, ...]) -> None:
        """fork's copy_page_range for the VMAs copied: every anonymous page is shared
        copy-on-write (copy_present_pte: the parent's PTE is write-protected, the child
        gets the same read-only page, the page's mapcount goes up). Shared file pages
        are not copied: the child faults them in (vma_needs_copy)."""
        for vid in vma_ids:
            vma = self.vma(vid)
            if vma.kind != "anon":
                continue
            for page in page_range(vma.start, vma.pages):
                pte = self.pte(page)
                if pte is None:
                    continue
                frame = self.frame(pte.frame)
                self.fx.write_frame(attrs.evolve(frame, mapcount=frame.mapcount + 1))
                prot = "r" if pte.prot == "rw" else pte.prot
                shared = attrs.evolve(pte, prot=prot, cow=True)
                if shared != pte:
                    self.fx.set_pte(self.mm, page, shared)
                    if prot != pte.prot:
                        self.emit(PteProtect(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma, prot=prot))
                if self.fx.pgtables(child) is not None:
                    self.fx.set_pgtables(child, self.fx.pgtables(child) | {pgtable_of(page)})  # type: ignore[operator]
                self.fx.set_pte(child, page, shared)
                self.emit(PteInstall(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma, prot=prot, mm=child))

    def wake_up_new_task(self, child: MmId) -> None:
        """The child's threads may start."""
        assert self.program is not None
        for c, thread in enumerate(self.program.threads):
            if thread.mm == child and thread.thread is not None:
                self.send(_cpu_id(c), WakeUpNewTask())

    def move_ptes(self, start: int, pages: int, dest: int, vma_id: str) -> None:
        """mremap's move_ptes under both page-table locks: each PTE moves from the old
        range to the same offset in `dest`, through the moved VMA `vma_id`."""
        for i, page in enumerate(page_range(start, pages)):
            pte = self.pte(page)
            if pte is None:
                continue
            to = dest + i * PAGE_SIZE
            self.fx.set_pte(self.mm, page, None)
            self.emit(PteZap(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma))
            self.pte_alloc(to)
            self.fx.set_pte(self.mm, to, attrs.evolve(pte, vma=vma_id))
            self.emit(PteInstall(cpu=self.id, addr=to, pages=1, frame=pte.frame, vma=vma_id, prot=pte.prot))

    def unmap_mapping_range(self, file: str) -> tuple[tuple[int, int, int], ...]:
        """truncate's unmap_mapping_range: every PTE of the file's pages, in every
        address space (the VMAs on the file's i_mmap, detached ones not yet unlinked
        included), is zapped. Returns the ranges to shoot down, (mm, start, pages)."""
        ranges = []
        for m in range(self.fx.spaces()):
            mm = MmId(m)
            pages = file_ptes(self.fx.world, mm, file)
            for page in pages:
                pte = self.fx.pte(mm, page)
                assert pte is not None
                self.fx.set_pte(mm, page, None)
                self.emit(PteZap(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma, mm=mm or None))
            if pages:
                ranges.append((int(mm), pages[0], (pages[-1] - pages[0]) // PAGE_SIZE + 1))
        return tuple(ranges)

    def truncate_inode_pages(self, file: str) -> tuple[int, ...]:
        """The file's pages leave the page cache: later faults map fresh zeroed pages.
        Returns the old frames, to free once the TLBs are shot down."""
        old = []
        for index in self.fx.file_pages(file):
            old.append(self.fx.page_cache(file, index))
            fid = self.fx.alloc_frame(f"file:{file}:{index}", 0)
            self.fx.set_page_cache(file, index, fid)
        return tuple(old)

    def change_protection(self, start: int, pages: int, prot: str, vma_id: str | None) -> None:
        """mprotect's PTE update: every PTE of the range gets `prot` (and, for a VMA
        copy, the copy's id)."""
        for page in page_range(start, pages):
            pte = self.pte(page)
            if pte is None:
                continue
            # A copy-on-write page stays read-only: its write fault decides copy or reuse.
            new = attrs.evolve(pte, prot="r" if pte.cow and prot == "rw" else prot, vma=vma_id or pte.vma)
            self.fx.set_pte(self.mm, page, new)
            self.emit(PteProtect(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=new.vma, prot=prot))

    def free_vma_now(self, vma_id: str) -> None:
        vma = self.vma(vma_id)
        self.set_vma(attrs.evolve(vma, state="freed"))
        self.emit(VmaFree(cpu=self.id, addr=vma.start, pages=vma.pages, vma=vma_id))

    def add_writer(self, start: int, end: int) -> None:
        """The invariant checkers' bookkeeping: this CPU is a writer of [start, end)."""
        self.fx.add_writer(self.mm, (self.id, start, end))

    # --- ending an op ------------------------------------------------------------------------------------

    def finish_op(self, result: RegValue | None = None, reg: str | None = None) -> None:
        """End the current op: set its register, log `op.end`, move to the next op."""
        cpu = self.cpu
        regs = cpu.regs if reg is None or result is None else cpu.regs.set(reg, result)
        assert self.thread.thread is not None
        self.emit(OpEnd(cpu=cpu.id, thread=self.thread.thread, index=cpu.pc, text=self.thread.texts[cpu.pc],
                        result=result))
        self.evolve_cpu(regs=regs, pc=cpu.pc + 1, task=None, started=False)

    def segv(self, task: FaultTask, reason: str) -> None:
        """SIGSEGV: the register gets `segv` (a store's `fault` register) and the thread
        goes on, as a program that catches SIGSEGV would."""
        self.emit(FaultSegv(cpu=self.id, addr=task.page, pages=1, reason=reason))
        op = self.thread.ops[self.cpu.pc]
        self.finish_op("segv", op.reg if isinstance(op, Load) else "fault")

    def fault_done(self, task: FaultTask) -> None:
        """The fault is over: the access restarts from the TLB on the CPU's next step."""
        assert task.vma is not None, "a fault ends only once it found its VMA"
        self.emit(FaultEnd(cpu=self.id, addr=task.page, pages=1, vma=task.vma))
        self.evolve_cpu(task=None)

    def syscall_return(self, task: SyscallTask, unmapped: tuple[str, ...] = ()) -> None:
        """A writer syscall returns: its range leaves the writer set, the VMAs it
        unmapped are recorded for `munmap-incomplete`, the label register is set."""
        self.fx.end_writer(self.mm, self.id, unmapped)
        if unmapped:
            self.note(UnmapReturned(self.id, unmapped))
        ret = task.ret if task.ret is not None else 0
        ranged = task.op not in ("fork", "truncate")
        self.emit(SyscallEnd(cpu=self.id, addr=task.start if ranged else None, pages=task.pages if ranged else None,
                             vma=task.new, op=task.op, text=self.thread.texts[self.cpu.pc], ret=ret))
        if task.op == "mmap":
            self.finish_op(ret, task.label)
        else:
            self.finish_op(None)


__all__ = ["Kernel", "check_access"]
