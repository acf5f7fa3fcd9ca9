"""Kernel code running on one CPU for one step: the core-mm routines every locking
design shares (zap a range, set a PTE, allocate a page, flush the TLB, end an op),
over the CPU's own state and the shared world.

A `Kernel` is made fresh for each CPU step. Protocol handlers (the phases of a
policy's table) get it as `k` and call these routines; they change the CPU's state
through `k.cpu` and the world through the accessors, never directly, so a test can
record exactly what a step touched.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import attrs

from ..ids import RCU, SHOOTDOWN, ActorId, MmId
from ..log.schema import (
    Event,
    FaultEnd,
    FaultSegv,
    FrameAlloc,
    FrameFree,
    OpEnd,
    PteInstall,
    PteProtect,
    PteZap,
    SyscallEnd,
    TlbFill,
    TlbFlush,
    VmaFree,
)
from ..mm.frames import Frame
from ..mm.layout import PAGE_SIZE, page_range
from ..mm.page_table import Pte
from ..mm.tlb import flush_tlb_range
from ..mm.vma import Vma, prot_allows
from ..mm.vma_tree import VmaTree
from ..ops import Load, RegValue
from . import footprint as fp
from .effects import Effects, Note, UnmapReturned, VmaReadFreed
from .messages import Flush, Message, Qs
from .tasks import CpuState, FaultTask, SyscallTask, ThreadProgram

_C = TypeVar("_C")


class HasKnobs(Protocol):
    """What kernel code asks of the policy: its knobs (`vmactors.actors.policy.Policy`)."""

    def knobs(self, kind: type[_C]) -> _C: ...


def check_access(vma: Vma | None, access: str) -> str | None:
    """Why the fault must SIGSEGV, or None if the VMA allows the access."""
    if vma is None:
        return "no vma"
    if not prot_allows(vma.prot, access):
        return f"vma {vma.id} is {vma.prot}"
    return None


class Kernel:
    """The context of one CPU step (see the module docstring)."""

    __slots__ = ("fx", "cpu", "policy", "thread")

    def __init__(self, fx: Effects, cpu: CpuState, policy: HasKnobs, thread: ThreadProgram) -> None:
        self.fx = fx
        self.cpu = cpu
        self.policy = policy
        self.thread = thread

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
        self.cpu = attrs.evolve(self.cpu, **changes)

    # --- messages and events ------------------------------------------------------------------

    def send(self, dst: ActorId, msg: Message) -> None:
        self.fx.send(dst, msg)

    def emit(self, event: Event) -> None:
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

    def flush_tlb_range(self, start: int, pages: int, op: int) -> None:
        """flush_tlb_range: flush the local TLB and ask the coordinator to IPI every
        other CPU; the caller (syscall `op` of this CPU's thread) then waits for
        `flush_done`."""
        self.flush_tlb_local(start, pages)
        self.send(SHOOTDOWN, Flush(addr=start, pages=pages, mm=self.mm, op=op))

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

    def set_pte(self, vma: Vma, task: FaultTask) -> str:
        """Install the fault's PTE under the page-table lock, rechecking what is there.

        Returns "installed"; "spurious" when a PTE already allows the access (another
        CPU installed it first, or only this CPU's TLB entry was stale); or "upgraded"
        when a present PTE forbids the access but the VMA allows it (a write fault
        after mprotect or MAP_FIXED raced the fault): as do_wp_page reusing the page,
        the PTE takes the VMA's protection. A fresh frame the fault no longer needs
        goes back."""
        page = task.page
        pte = self.pte(page)
        if pte is not None:
            if task.fresh and task.frame is not None:
                self.free_frame(task.frame)
            if prot_allows(pte.prot, task.access):
                return "spurious"
            self.fx.set_pte(self.mm, page, attrs.evolve(pte, prot=vma.prot, vma=vma.id))
            self.emit(PteProtect(cpu=self.id, addr=page, pages=1, frame=pte.frame, vma=vma.id, prot=vma.prot))
            return "upgraded"
        frame = task.frame
        if frame is None:
            # The PTE this fault meant to upgrade was zapped meanwhile: map a page now.
            frame, _ = self.alloc_page(vma, page)
        self.fx.set_pte(self.mm, page, Pte(frame=frame, prot=vma.prot, vma=vma.id, owner=vma.frame_owner(page)))
        self.emit(PteInstall(cpu=self.id, addr=page, pages=1, frame=frame, vma=vma.id, prot=vma.prot))
        return "installed"

    def install_for_fault(self, vma: Vma, task: FaultTask) -> None:
        """set_pte through `vma`; when the PTE was already there, drop this CPU's stale
        TLB entry so the retried access walks the page table again."""
        if self.set_pte(vma, task) != "installed":
            self.drop_stale_tlb(task.page)

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
            if not pte.owner.startswith("file:"):
                frames.append(pte.frame)
        return tuple(frames)

    def change_protection(self, start: int, pages: int, prot: str, vma_id: str | None) -> None:
        """mprotect's PTE update: every PTE of the range gets `prot` (and, for a VMA
        copy, the copy's id)."""
        for page in page_range(start, pages):
            pte = self.pte(page)
            if pte is None:
                continue
            new = attrs.evolve(pte, prot=prot, vma=vma_id or pte.vma)
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
        self.emit(SyscallEnd(cpu=self.id, addr=task.start, pages=task.pages, vma=task.new, op=task.op,
                             text=self.thread.texts[self.cpu.pc], ret=ret))
        if task.op == "mmap":
            self.finish_op(ret, task.label)
        else:
            self.finish_op(None)


__all__ = ["Kernel", "check_access"]
