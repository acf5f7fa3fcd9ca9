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
from typing import Any

import attrs

from ..actors import footprint as fp
from ..actors.effects import NodeUseFreed
from ..actors.kernel import Kernel, check_access, file_ptes
from ..actors.messages import (
    Downgrade,
    DownRead,
    DownWrite,
    DupMmap,
    Expand,
    Flush,
    FlushDone,
    Grant,
    Message,
    Mmap,
    MoveVma,
    Placed,
    PteUnlock,
    TreeDone,
    UpRead,
    UpWrite,
    WakeUpNewTask,
)
from ..actors.phases import EXIT, START, Access, Handler, Outcome, Path, Phase, Scope, View, goto, wait
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MMAP_SEM, TREE, MmId, cpu
from ..log.schema import LockAcquire, LockRelease, LockWait, TreeWalk, VmaSetProt
from ..mm.layout import PAGE_SIZE, page_range, pgtable_range
from ..mm.page_table import Pte
from ..mm.stack import stack_to_expand
from ..mm.vma import Vma
from ..mm.world import Pin, ptl_ranges

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


def _copied_pte(v: View) -> Pte | None:
    """The faulting page's PTE, if the fault may copy the page behind it (wp_page_copy):
    a fork's shared page, or any page a write fault finds (its mapcount or its owner
    decides copy or reuse: `Kernel.wp_copies`)."""
    pte = v.world.mm(v.cpu.mm).ptes.get(v.fault.page)
    return pte if pte is not None and (pte.cow or v.fault.access == "store") else None


def _held_ptls(v: View) -> list[fp.Obj]:
    """The page-table locks held across steps in the address space."""
    return [fp.pin(v.cpu.mm, kind, c) for kind, c in v.world.mm(v.cpu.mm).pins if kind == "ptl"]


def _pte_frame(v: View) -> Iterable[fp.Obj]:
    """The page behind the faulting page's PTE, which the fault may copy."""
    pte = _copied_pte(v)
    return [fp.frame(pte.frame)] if pte is not None else []


def _pgtable(v: View) -> Iterable[fp.Obj]:
    """The page-table pages present and this CPU's pointer to one (where modelled)."""
    if v.world.mm(v.cpu.mm).pgtables is None:
        return []
    return [fp.pgtables(v.cpu.mm), fp.pin(v.cpu.mm, "pgtable", v.cpu.id)]


def _range_cow_frames(v: View) -> Iterable[fp.Obj]:
    """The copy-on-write pages behind the range's PTEs (a zap lowers their mapcount)."""
    t = v.syscall
    assert t.start is not None
    ptes = v.world.mm(v.cpu.mm).ptes
    return [fp.frame(ptes[p].frame) for p in page_range(t.start, t.pages) if p in ptes and ptes[p].cow]


def _stack_vmas(v: View) -> Iterable[fp.Obj]:
    """Where no VMA covers the faulting address: the VMA above it (a stack it may
    expand) and the entry below (the guard)."""
    t = v.fault
    tree = v.world.mm(v.cpu.mm).tree
    if tree.load(t.vaddr) is not None:
        return []
    out = []
    for found in (tree.next_entry(t.vaddr), tree.prev_entry(t.page)):
        if found is not None and isinstance(found[2], str):
            out.append(fp.vma(v.cpu.mm, found[2]))
    return out


def _task_stack(v: View) -> Iterable[fp.Obj]:
    vid = v.fault.stack
    return [fp.vma(v.cpu.mm, vid)] if vid is not None else []


def _node_pin(v: View) -> Iterable[fp.Obj]:
    """This CPU's pointer to a tree node: taken by a lookup that finds no VMA (a stack
    to expand), read by the expansion."""
    t = v.fault
    if t.stack is None and v.world.mm(v.cpu.mm).tree.load(t.vaddr) is not None:
        return []
    return [fp.pin(v.cpu.mm, "node", v.cpu.id)]


def _ptl_pins(v: View) -> Iterable[fp.Obj]:
    """The page-table locks held across steps in the address space (pte_offset_map_lock
    reads them, and a waiter registers), and this CPU's own if a write fault may copy
    the page (wp_page_copy holds it across its shootdown; `_pte_frame`)."""
    pins = set(_held_ptls(v))
    if _copied_pte(v) is not None:
        pins.add(fp.pin(v.cpu.mm, "ptl", v.cpu.id))
    return sorted(pins, key=repr)


def _cow_finish(v: View) -> Iterable[fp.Obj]:
    """finish_wp_copy: the copy, the shared page, the PTE, this CPU's lock."""
    t = v.fault
    out = [fp.pte(v.cpu.mm, t.page), fp.pin(v.cpu.mm, "ptl", v.cpu.id)]
    return out + [fp.frame(f) for f in (t.frame, t.cow_from) if f is not None]


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


def _own_pin(kind: str) -> Callable[[Scope], Iterable[fp.Pattern]]:
    """Future steps: this CPU's pin of `kind`."""
    return lambda s: [fp.pin(s.mm, kind, s.cpu)]


def _pins(kind: str) -> Callable[[Scope], Iterable[fp.Pattern]]:
    """Future steps: every CPU's pin of `kind` in the address space."""
    return lambda s: [("pin", s.mm, kind, None)]


PTE_FRAME = Access("cow frame@page", _pte_frame, _any_frame)
PGTABLE = Access("pgtable", _pgtable, lambda s: [fp.pgtables(s.mm), fp.pin(s.mm, "pgtable", s.cpu)])
RANGE_COW_FRAMES = Access("cow frames@range", _range_cow_frames, _any_frame)
STACK_VMAS = Access("stack vmas@addr", _stack_vmas, _any_vma)
TASK_STACK = Access("stack", _task_stack, _any_vma)
NODE_PIN = Access("node pin", _node_pin, _own_pin("node"))
PTL_PINS = Access("ptl", _ptl_pins, _pins("ptl"))
#: A writer's walk over its range (`after_ptl`): the page-table locks held across a
#: shootdown in the address space, one of which it may wait for.
RANGE_PTL = Access("ptl@range", _held_ptls, _pins("ptl"))
COW_FINISH = Access("cow copy", _cow_finish,
                    lambda s: list(pages_of("pte")(s)) + [fp.pin(s.mm, "ptl", s.cpu), ("frame", None)])

#: What installing a fault's PTE may touch: the PTE, a frame to give back or to take
#: (the PTE it meant to upgrade was zapped, or a copy-on-write copy), the shared page
#: it copies, this CPU's stale TLB entry, and the page-table page (where modelled).
INSTALL_WRITES = (PAGE_PTE, TASK_FRAME, FRESH_FRAME, PAGE_TLB, PTE_FRAME, PGTABLE, PTL_PINS)
#: What a fault's allocation step may touch: the frame it takes (or the copy of a
#: copy-on-write page it makes), the page-table page its walk allocates and holds.
ALLOC_WRITES = (FRESH_FRAME, PGTABLE, PTE_FRAME)
#: What finishing a copy-on-write fault touches (the `cow` rows).
COW_WRITES = (COW_FINISH,)
#: What zapping a syscall's range touches.
ZAP_WRITES = (RANGE_PTES, RANGE_COW_FRAMES)
#: What a syscall's return touches.
RETURN_WRITES = (WRITERS, UNMAPPED)

#: Where every design here differs from a kernel, on purpose.
MODEL_DIFFERENCES: tuple[str, ...] = (
    "one TLB shootdown per syscall, where the kernel flushes per mmu_gather batch (and when a batch fills up)",
    "mprotect always shoots down; x86 skips the flush when it only adds permissions",
    "an untouched anonymous page reads as its map's `fill`, where Linux maps the zero page on a read fault "
    "and a zeroed page on a write",
    "syscalls take whole mappings: no VMA splits or merges, no partial munmap or mprotect",
    "page-table pages are freed (free_pgtables) only in scenarios with `free_pgtables = true`, and only by munmap",
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
    k.walk_to_pgtable(t.page)
    if k.pte(t.page) is not None:
        return goto(k.prepare_wp_copy(k.vma(t.vma), t), next_phase)
    frame, fresh = k.alloc_page(k.vma(t.vma), t.page)
    return goto(t, next_phase, frame=frame, fresh=fresh)


def install_or_wait(k: Kernel, t: FaultTask, vma: Vma, cow_phase: str) -> FaultTask | None:
    """pte_offset_map_lock, then set_pte through `vma`: the task to return while it
    waits — for a page-table lock held across a shootdown (this phase runs again on
    `pte_unlock`), or for its copy-on-write's flush (`cow_phase` runs on
    `flush_done`) — or None: done."""
    waiting = k.ptl_wait(t)
    if waiting is not None:
        return waiting
    started = k.install_for_fault(vma, t)
    return None if started is None else wait(started, cow_phase, FlushDone)


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


def mmap_insert_then_set_prot(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    """mmap_region: the VMA enters the tree with the page protection its flags give
    (here `rw`); vma_set_page_prot makes it final after the insertion."""
    assert t.request is not None
    k.send(TREE, Mmap(request=attrs.evolve(t.request, prot="rw"), mm=k.mm))
    return wait(t, "done", Placed)


def mmap_placed(t: SyscallTask, msg: Message | None) -> SyscallTask:
    """The task once the tree owner said where the VMA went (`ret` is `segv` when
    nothing fits)."""
    assert isinstance(msg, Placed) and t.request is not None
    placed = msg.addr is not None
    return goto(t, "done", ret=msg.addr if placed else "segv", start=msg.addr,
                new=t.request.vma if placed else None)


def set_page_prot(k: Kernel, t: SyscallTask) -> None:
    """vma_set_page_prot: the new VMA's protection becomes the one asked for (the
    model's stand-in for a page protection write-notify lowers after insertion)."""
    assert t.new is not None and t.request is not None
    vma = k.vma(t.new)
    if vma.prot != t.request.prot:
        k.set_vma(attrs.evolve(vma, prot=t.request.prot))
        k.emit(VmaSetProt(cpu=k.id, addr=vma.start, pages=vma.pages, vma=vma.id, prot=t.request.prot))


def mmap_done(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    t = mmap_placed(t, msg)
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    k.syscall_return(t)
    return EXIT


def _new_vma(v: View) -> Iterable[fp.Obj]:
    """The VMA an mmap just placed (the `placed` reply names where; its id is known)."""
    t = v.syscall
    return [fp.vma(v.cpu.mm, t.request.vma)] if t.request is not None else []


NEW_VMA = Access("new vma", _new_vma, _any_vma)


def mmap_path(done: Phase | None = None, insert_doc: str = "tree owner places the VMA and stores it", *,
              set_prot_after_insert: bool = False) -> Path:
    """`mmap` (a new mapping): take the writers' lock, let the tree owner place and
    store the VMA, release, return the address. A design may replace `done`.

    With `set_prot_after_insert` (Linux's mmap_region), the VMA is visible with the
    protection its flags give before vma_set_page_prot makes it final: `done` does that
    first. Designs that publish only finished VMAs (under RCU) store the final one."""
    if not set_prot_after_insert:
        return Path("mmap", (
            _write_lock_then("insert"),
            Phase("insert", mmap_insert, ("done",), insert_doc, sends=(Mmap,)),
            done or Phase("done", mmap_done, (EXIT,), "release the writers' lock; return the address",
                          sends=(UpWrite,), writes=RETURN_WRITES),
        ))
    final = done or Phase("done", mmap_done, (EXIT,), "release the writers' lock; return the address",
                          sends=(UpWrite,), writes=RETURN_WRITES)

    def placed(k: Kernel, t: SyscallTask, msg: Message | None) -> Outcome:
        """A mapping asked for with another protection than its flags' gets it in a
        step of its own (vma_set_page_prot); the others are done."""
        assert isinstance(msg, Placed) and t.request is not None
        if t.request.prot != "rw" and msg.addr is not None:
            return goto(mmap_placed(t, msg), "page_prot")
        return final.handler(k, t, msg)

    def prot_done(k: Kernel, t: SyscallTask, msg: Message | None) -> Outcome:
        """vma_set_page_prot, then what `done` does once the VMA is placed."""
        set_page_prot(k, t)
        assert t.start is not None
        return final.handler(k, t, Placed(addr=t.start, pages=t.pages))

    return Path("mmap", (
        _write_lock_then("insert"),
        Phase("insert", mmap_insert_then_set_prot, ("done",), insert_doc + " (with the protection its flags give)",
              sends=(Mmap,)),
        final.replace(handler=placed, next=final.next + ("page_prot",),
                      doc=final.doc + "; a mapping asked for with prot= gets it first, in a step of its own"),
        Phase("page_prot", prot_done, final.next,
              "vma_set_page_prot: the VMA's protection becomes final (the VMA has been in the tree since the "
              "insertion); then as `done`", sends=final.sends, reads=final.reads,
              writes=(NEW_VMA,) + final.writes),
    ))


def writer_start(next_phase: str, doc: str = "take the writers' lock (mmap_sem for write)") -> Phase:
    """The `start` row of a writer syscall: down_write, then `next_phase` on the grant."""
    return _write_lock_then(next_phase, doc)


def flush_phase(next_phase: str, doc: str = "local flush and shootdown; wait for every ack") -> Phase:
    def flush(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        return flush_and_wait(k, t, next_phase)

    return Phase("flush", flush, (next_phase,), doc, sends=(Flush,), writes=(RANGE_TLB,))


# --- stack expansion -----------------------------------------------------------------------------


def stack_below(k: Kernel, t: FaultTask) -> Vma | None:
    """The grows-down VMA a fault that found no VMA expands (`mm.stack`), or None."""
    return stack_to_expand(k.tree(), k.vma, t.vaddr)


def request_expand(k: Kernel, t: FaultTask, next_phase: str) -> FaultTask:
    """expand_downwards(vma, address): ask the tree owner to grow the stack down to the
    fault's page; `next_phase` runs on its answer."""
    assert t.stack is not None
    stack = k.vma(t.stack)
    k.send(TREE, Expand(addr=t.page, pages=1, vma=stack.id, mm=k.mm))
    return wait(t, next_phase, TreeDone)


def grew(msg: Message | None) -> bool:
    """Whether the tree owner's answer to `expand` says the stack covers the page."""
    assert isinstance(msg, TreeDone)
    return msg.addr is not None


def walk_node(k: Kernel) -> None:
    """find_vma_prev outside RCU: the walk now holds a pointer to the tree's node."""
    k.fx.set_pin(k.mm, "node", k.id, Pin(None))
    k.emit(TreeWalk(cpu=k.id, call="find_vma_prev", node="live"))


def node_still_there(k: Kernel) -> bool:
    """mas_prev on the node the walk holds: a node replaced since (dead) makes the walk
    start over (False); one freed after its grace period is a use after free (noted
    for `tree-uaf`; the walk reads it all the same)."""
    pin = k.fx.pin(k.mm, "node", k.id)
    k.fx.set_pin(k.mm, "node", k.id, None)
    if pin is not None:
        k.emit(TreeWalk(cpu=k.id, call="mas_prev", node=pin.state))
    if pin is None or pin.state == "live":
        return True
    if pin.state == "freed":
        k.note(NodeUseFreed(k.id, k.mm))
        return True
    return False


#: What an install row sends only where a write fault may copy a page: the shootdown
#: of a copy-on-write.
ONLY_IF_COW: tuple[tuple[str, tuple[Any, ...]], ...] = (("cow", (Flush,)),)

#: The install rows' words, one text for every design.
INSTALL_DOC = ("page-table lock (waiting while another CPU holds it across a shootdown): set the PTE unless one "
               "is there; a write to a page a fork shared copy-on-write, or to a page-cache page under an anonymous "
               "VMA: ptep_clear_flush, its copy mapped on the acks")
COW_DOC = ("wp_page_copy, the flush done: map the copy, unlock the page-table lock (a store that reached the shared "
           "page after the copy was taken is lost here: cow-isolation)")


def fault_under_mmap_sem(prefix: str = "", expand_locked: Callable[[Kernel], bool] | None = None,
                         walks_nodes: bool = False) -> tuple[Phase, ...]:
    """The fault with mmap_sem held for read (the `mmap_sem` design, and `pervma`'s
    fallback, `lock_mm_and_find_vma`): look up, allocate, install, up_read. `prefix`
    names the phases (`mm_` for the fallback).

    A fault below a grows-down VMA expands it first: under the read lock
    (`expand_locked` false: Linux before 6.5), or after trading the read lock for the
    write lock (true: 6.5's lock_mm_and_find_vma, the StackRot fix). With `walks_nodes`
    (a maple tree), find_vma_prev's walk holds the tree node from the lookup to the
    expansion (`walk_node`). Without `expand_locked` there is no `stack` row."""
    upgrades = expand_locked is not None
    locked: Callable[[Kernel], bool] = expand_locked if expand_locked is not None else (lambda k: False)
    lookup, alloc, install = f"{prefix}lookup", f"{prefix}alloc", f"{prefix}install"
    stack, expand, expanded, cow = f"{prefix}stack", f"{prefix}expand", f"{prefix}expanded", f"{prefix}cow"

    def do_lookup(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
        vma = k.find_vma(t.vaddr)
        if vma is None:
            grows = stack_below(k, t)
            if grows is not None:
                if locked(k):
                    # Upgrade: drop the read lock, take the write lock, look again.
                    k.send(MMAP_SEM, UpRead(mm=k.mm))
                    k.send(MMAP_SEM, DownWrite(mm=k.mm))
                    return wait(t, stack, Grant, stack=grows.id)
                if walks_nodes:
                    walk_node(k)
                return goto(t, expand, stack=grows.id)
        return find_vma_locked(k, t, alloc)

    def do_stack(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
        """Under the write lock: find_vma_prev again (another fault may have grown it)."""
        vma = k.find_vma(t.vaddr)
        if vma is not None:
            k.send(MMAP_SEM, Downgrade(mm=k.mm))
            return find_vma_locked(k, t, alloc)
        grows = stack_below(k, t)
        if grows is None:
            k.send(MMAP_SEM, UpWrite(mm=k.mm))
            k.segv(t, "no vma")
            return EXIT
        if walks_nodes:
            walk_node(k)
        return goto(t, expand, stack=grows.id)

    def do_expand(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
        if walks_nodes and not node_still_there(k):
            return goto(t, stack if locked(k) else lookup, stack=None)
        return request_expand(k, t, expanded)

    def do_expanded(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
        upgraded = locked(k)
        if not grew(msg):
            k.send(MMAP_SEM, UpWrite(mm=k.mm) if upgraded else UpRead(mm=k.mm))
            k.segv(t, f"stack {t.stack} cannot grow down to {t.page:#x}")
            return EXIT
        if upgraded:
            k.send(MMAP_SEM, Downgrade(mm=k.mm))
        return goto(t, alloc, vma=t.stack, stack=None)

    def do_alloc(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
        return alloc_for_fault(k, t, install)

    def do_install(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
        assert t.vma is not None
        waiting = install_or_wait(k, t, k.vma(t.vma), cow)
        if waiting is not None:
            return waiting
        k.send(MMAP_SEM, UpRead(mm=k.mm))
        k.fault_done(t)
        return EXIT

    def do_cow(k: Kernel, t: FaultTask, msg: Message | None) -> str:
        assert t.vma is not None
        k.finish_wp_copy(k.vma(t.vma), t)
        k.send(MMAP_SEM, UpRead(mm=k.mm))
        k.fault_done(t)
        return EXIT

    where = "lock_mm_and_find_vma under mmap_lock for read (waits for a writer)" if prefix else \
        "find_vma under the read lock"
    node = ", holding the tree node (find_vma_prev)" if walks_nodes else ""
    upgrade = ("; with the StackRot fix, up_read and down_write first" if upgrades else "")
    rows: tuple[Phase, ...] = (
        Phase(lookup, do_lookup, (alloc, expand) + ((stack,) if upgrades else ()) + (EXIT,),
              f"{where}; none or forbidden: up_read, SIGSEGV; none but a grows-down VMA above: expand it (under "
              f"the read lock{node}{upgrade})",
              sends=(UpRead, DownWrite) if upgrades else (UpRead,), reads=(TREE_READ, VMA_AT_ADDR, STACK_VMAS),
              writes=(NODE_PIN,) if walks_nodes else (), only=(("stack", (DownWrite,)),)),
    )
    if upgrades:
        rows += (Phase(stack, do_stack, (alloc, expand, EXIT),
                       f"under the write lock, find_vma_prev again{node}: covered now -> downgrade, go on; else expand",
                       sends=(Downgrade, UpWrite), reads=(TREE_READ, VMA_AT_ADDR, STACK_VMAS),
                       writes=(NODE_PIN,) if walks_nodes else (), feature="stack"),)
    return rows + (
        Phase(expand, do_expand, (expanded, lookup) + ((stack,) if upgrades else ()),
              "expand_downwards: " + ("read the node the walk holds (replaced: walk again); " if walks_nodes else "")
              + "the tree owner grows the stack", sends=(Expand,), reads=(TASK_STACK,),
              writes=(NODE_PIN,) if walks_nodes else (), feature="stack"),
        Phase(expanded, do_expanded, (alloc, EXIT),
              "grown: go on with the stack" + (" (downgrade the write lock if upgraded)" if upgrades else "")
              + "; not: release, SIGSEGV", sends=(UpRead, UpWrite, Downgrade) if upgrades else (UpRead,),
              feature="stack"),
        Phase(alloc, do_alloc, (install,), "page-cache lookup (file) or page allocation (anon)",
              reads=(PAGE_PTE, TASK_VMA), writes=ALLOC_WRITES),
        Phase(install, do_install, (install, cow, EXIT), INSTALL_DOC + "; up_read; retry the access",
              sends=(UpRead, Flush), reads=(TASK_VMA,), writes=INSTALL_WRITES, only=ONLY_IF_COW),
        Phase(cow, do_cow, (EXIT,), COW_DOC + "; up_read", sends=(UpRead, PteUnlock), reads=(TASK_VMA,),
              writes=COW_WRITES, feature="cow"),
    )


# --- page-table pages (scenarios with free_pgtables = true) ---------------------------------------


def pgtable_bounds(k: Kernel, t: SyscallTask) -> tuple[int, int]:
    """free_pgtables' floor and ceiling for the range: the end of the mapping below
    and the start of the one above (prev->vm_end, next->vm_start), as they are now."""
    assert t.start is not None
    tree = k.tree()
    below, above = tree.prev_entry(t.start), tree.next_entry(t.end - 1)
    return (below[1] if below is not None else 0), (above[0] if above is not None else 1 << 64)


def after_ptl(handler: Handler, phase: str) -> Handler:
    """`handler`, a writer's row that walks its range's PTEs (zap, change_protection,
    move_ptes), behind pte_offset_map_lock: a page-table lock another CPU holds across
    a shootdown there is waited for first (`Kernel.ptl_wait_range`), and the row
    (`phase`) runs again on the `pte_unlock`, as the kernel's walk would block on the
    lock. A row woken by `tree_done` only takes the message and runs again later."""

    def run(k: Kernel, t: SyscallTask, msg: Message | None) -> Outcome:
        if isinstance(msg, PteUnlock):
            msg = None
        if not isinstance(msg, TreeDone) and t.start is not None and k.ptl_wait_range(t.start, t.pages):
            return wait(t, phase, PteUnlock)
        return handler(k, t, msg)

    run.__doc__ = handler.__doc__
    return run


def zap_then(k: Kernel, t: SyscallTask, next_phase: str) -> SyscallTask:
    """unmap_region's zap; where page-table pages are modelled, free_pgtables reads its
    bounds now and unlinks the pages in a step of its own (`free_pgtables_phase`),
    before `next_phase`."""
    assert t.start is not None
    frames = k.zap_range(t.start, t.pages)
    if k.fx.pgtables(k.mm) is None:
        return goto(t, next_phase, frames=frames)
    return goto(t, "free_pgtables", frames=frames, bounds=pgtable_bounds(k, t))


def free_pgtables_objs(v: View, bounds: tuple[int, int] | None) -> list[fp.Obj]:
    """What free_pgtables over the syscall's range with `bounds` touches: the
    page-table records, the PTEs of the pages it unlinks, the page-table pins."""
    t = v.syscall
    space = v.world.mm(v.cpu.mm)
    if space.pgtables is None or t.start is None:
        return []
    floor, ceiling = bounds if bounds is not None else (0, 0)
    out: list[fp.Obj] = [fp.pgtables(v.cpu.mm)]
    for index in space.pgtables:
        lo, hi = pgtable_range(index)
        if lo < t.end and t.start < hi and floor <= lo and hi <= ceiling:
            out += [fp.pte(v.cpu.mm, p) for p in space.ptes if lo <= p < hi]
    out += [fp.pin(v.cpu.mm, kind, c) for kind, c in space.pins if kind == "pgtable"]
    return out


def tree_bounds(v: View) -> tuple[int, int]:
    """`pgtable_bounds` from the state before the step."""
    t = v.syscall
    assert t.start is not None
    tree = v.world.mm(v.cpu.mm).tree
    below, above = tree.prev_entry(t.start), tree.next_entry(t.end - 1)
    return (below[1] if below is not None else 0), (above[0] if above is not None else 1 << 64)


def _bounds_ptes(v: View) -> Iterable[fp.Obj]:
    return free_pgtables_objs(v, v.syscall.bounds)


def _bounds_now(v: View) -> Iterable[fp.Obj]:
    if v.world.mm(v.cpu.mm).pgtables is None:
        return []
    return [fp.tree(v.cpu.mm)] + free_pgtables_objs(v, tree_bounds(v))


def _bounds_read(v: View) -> Iterable[fp.Obj]:
    """zap_then: the tree (the neighbours' bounds) and the page-table records, where
    page-table pages are modelled."""
    if v.world.mm(v.cpu.mm).pgtables is None:
        return []
    return [fp.tree(v.cpu.mm), fp.pgtables(v.cpu.mm)]


def _pgtable_pins(v: View) -> Iterable[fp.Obj]:
    space = v.world.mm(v.cpu.mm)
    return [fp.pin(v.cpu.mm, kind, c) for kind, c in space.pins if kind == "pgtable"] if v.syscall.pgtables else []


PGTABLE_BOUNDS = Access("pgtable bounds", _bounds_read, lambda s: [fp.tree(s.mm), fp.pgtables(s.mm)])
FREE_PGTABLES = Access("pgtables@bounds", _bounds_ptes,
                       lambda s: [fp.pgtables(s.mm), ("pte", s.mm, None), ("pin", s.mm, "pgtable", None)])
PGTABLE_PINS = Access("pgtable pins", _pgtable_pins, _pins("pgtable"))
#: free_pgtables in the zap's own step (designs with no reason to split them).
FREE_PGTABLES_NOW = Access("pgtables@neighbours", _bounds_now,
                           lambda s: [fp.tree(s.mm), fp.pgtables(s.mm), ("pte", s.mm, None),
                                      ("pin", s.mm, "pgtable", None)])


def free_pgtables_phase(next_phase: str) -> Phase:
    def free(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        assert t.start is not None and t.bounds is not None
        return goto(t, next_phase, pgtables=k.free_pgtables(t.start, t.pages, *t.bounds))

    return Phase("free_pgtables", free, (next_phase,),
                 "free_pgtables (scenarios with free_pgtables = true): unlink the page-table pages wholly between "
                 "the bounds read at the zap", writes=(FREE_PGTABLES,), feature="pgtables")


# --- fork ------------------------------------------------------------------------------------------


def _parent_vmas(v: View) -> Iterable[fp.Obj]:
    return [fp.tree(v.cpu.mm)] + [fp.vma(v.cpu.mm, e) for _, _, e in v.world.mm(v.cpu.mm).tree.items()
                                  if isinstance(e, str)]


def _fork_copy(v: View) -> Iterable[fp.Obj]:
    """copy_page_range: the parent's anonymous PTEs, the child's, the pages they share."""
    t = v.syscall
    assert t.child is not None
    ids = v.msg.vmas if isinstance(v.msg, TreeDone) else t.old
    space = v.world.mm(v.cpu.mm)
    child = MmId(t.child)
    out: list[fp.Obj] = [fp.pgtables(child)] if v.world.mm(child).pgtables is not None else []
    for vid in ids:
        vma = space.vmas[vid]
        out.append(fp.vma(v.cpu.mm, vid))
        if vma.kind != "anon":
            continue
        for p in page_range(vma.start, vma.pages):
            if p in space.ptes:
                out += [fp.pte(v.cpu.mm, p), fp.pte(child, p), fp.frame(space.ptes[p].frame)]
    return out


PARENT_VMAS = Access("parent vmas", _parent_vmas, lambda s: [fp.tree(s.mm), ("vma", s.mm, None)])
#: (the child's address space is not the scope's: any)
FORK_COPY = Access("cow pages", _fork_copy,
                   lambda s: [("pgtables", None), ("vma", s.mm, None), ("pte", None, None), ("frame", None)])


def fork_dup(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.child is not None
    k.send(TREE, DupMmap(child=MmId(t.child), mm=k.mm))
    return wait(t, "copy", TreeDone)


def fork_copy(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    """The child's tree holds copies of the VMAs: share their anonymous pages."""
    assert isinstance(msg, TreeDone) and t.child is not None
    k.copy_page_range(MmId(t.child), msg.vmas)
    if msg.addr is None:
        return goto(t, "release", old=msg.vmas)
    return goto(t, "flush", old=msg.vmas, start=msg.addr, pages=msg.pages)


def fork_release(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    return fork_return(k, t)


def fork_return(k: Kernel, t: SyscallTask) -> str:
    """wake_up_new_task for the child's threads; fork returns."""
    assert t.child is not None
    k.wake_up_new_task(MmId(t.child))
    k.syscall_return(t)
    return EXIT


def fork_path(lock: tuple[Phase, ...] = (), release: Phase | None = None) -> Path:
    """`fork` (kernel/fork.c dup_mmap): with the writers' lock (and what `lock` adds),
    the tree owner copies every VMA into the child's tree, copy_page_range shares the
    anonymous pages copy-on-write (write-protecting the parent's PTEs), flush_tlb_mm
    drops the writable entries the parent's CPUs may still hold, the lock goes, the
    child's threads start."""
    first = lock[0].name if lock else "dup"
    return Path("fork", (
        writer_start(first, "down_write(mmap_sem) of the parent (mmap_write_lock_killable in dup_mmap)"),
        *lock,
        Phase("dup", fork_dup, ("copy",), "the tree owner copies every VMA into the child's tree",
              sends=(DupMmap,)),
        Phase("copy", fork_copy, ("flush", "release"),
              "copy_page_range: each anonymous page is shared copy-on-write (copy_present_pte write-protects the "
              "parent's PTE; the child's maps the same page read-only)", writes=(FORK_COPY,)),
        flush_phase("release", "flush_tlb_mm: the parent's CPUs drop the entries that were writable; wait for "
                               "every ack"),
        release or Phase("release", fork_release, (EXIT,), "up_write; wake_up_new_task (the child's threads "
                         "start); return", sends=(UpWrite, WakeUpNewTask), writes=RETURN_WRITES),
    ))


# --- mremap ----------------------------------------------------------------------------------------


def _ptl_ranges(t: SyscallTask) -> tuple[tuple[int, int], ...]:
    assert t.start is not None and t.dest is not None
    return ((t.start, t.end), (t.dest, t.dest_end))


def _unmap_dest(v: View) -> Iterable[fp.Obj]:
    """The destination's unmap: its PTEs, the shared pages a zap touches, this CPU's
    TLB over it."""
    t = v.syscall
    assert t.dest is not None
    mm = v.cpu.mm
    ptes = v.world.mm(mm).ptes
    out: list[fp.Obj] = [fp.pte(mm, p) for p in page_range(t.dest, t.pages)]
    out += [fp.frame(ptes[p].frame) for p in page_range(t.dest, t.pages) if p in ptes and ptes[p].cow]
    return out + [fp.tlb(v.cpu.id, p) for p in page_range(t.dest, t.pages)]


def _move(v: View) -> Iterable[fp.Obj]:
    """move_ptes: the PTEs of both ranges, the page-table records, this CPU's TLB over
    the old range, its lock pin."""
    t = v.syscall
    assert t.start is not None and t.dest is not None
    mm = v.cpu.mm
    space = v.world.mm(mm)
    out: list[fp.Obj] = [fp.pte(mm, p) for p in page_range(t.start, t.pages)]
    out += [fp.pte(mm, p) for p in page_range(t.dest, t.pages)]
    out += [fp.tlb(v.cpu.id, p) for p in page_range(t.start, t.pages)]
    out.append(fp.pin(mm, "ptl", v.cpu.id))
    if space.pgtables is not None:
        out.append(fp.pgtables(mm))
    return out


def _ptl_pin(v: View) -> Iterable[fp.Obj]:
    return [fp.pin(v.cpu.mm, "ptl", v.cpu.id)]


#: (the destination is not in the scope, which has the old range: any page)
UNMAP_DEST = Access("ptes, tlb@dest", _unmap_dest,
                    lambda s: [("pte", s.mm, None), ("frame", None), ("tlb", s.cpu, None)])
MOVE = Access("ptes@both ranges", _move,
              lambda s: [("pte", s.mm, None), ("tlb", s.cpu, None), fp.pin(s.mm, "ptl", s.cpu), fp.pgtables(s.mm)])
PTL_PIN = Access("ptl", _ptl_pin, _own_pin("ptl"))


def mremap_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.dest is not None and t.new is not None
    k.send(TREE, MoveVma(addr=t.start, pages=t.pages, dest=t.dest, vma=t.new, mm=k.mm))
    return wait(t, "unmap", TreeDone)


def mremap_path(flush_under_ptl: Callable[[Kernel], bool], free: Phase, lock: tuple[Phase, ...] = (),
                start_doc: str = "down_write(mmap_sem)") -> Path:
    """`mremap L to D` (mm/mremap.c mremap_to and move_vma, MREMAP_FIXED): the tree
    owner moves the VMA (what was at D is detached); what D mapped is zapped and shot
    down (do_munmap); move_ptes moves each PTE under the page-table lock and flushes
    the old range — before dropping the lock (`flush_under_ptl`, eb66ae030829, 4.19)
    or after (4.18, CVE-2018-18281); then `free` frees D's old pages and the old VMAs
    and returns. A range that is not one whole VMA is left alone (-EFAULT)."""

    def unmap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        """mremap_to's do_munmap of the destination: zap what it mapped and, if it
        mapped anything, shoot it down before a PTE moves there (no CPU may still reach
        the old page at an address that now maps the moved one). Its pages are freed
        at the end."""
        assert isinstance(msg, TreeDone) and t.dest is not None
        if not msg.vmas:
            return goto(t, "free", old=(), ret=None)
        had = any(k.pte(p) is not None for p in page_range(t.dest, t.pages))
        dest = t.dest
        t = goto(t, "move", old=msg.vmas, frames=k.zap_range(dest, t.pages))
        if not had:
            return t
        k.flush_tlb_range(dest, t.pages, t.index)
        return wait(t, "move", FlushDone)

    def move(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        assert t.start is not None and t.dest is not None and t.new is not None
        k.move_ptes(t.start, t.pages, t.dest, t.new)
        if flush_under_ptl(k):
            # The lock stays held until the old range is flushed: whoever takes it
            # next (truncate's zap) finds no CPU reaching the page through the old
            # address (eb66ae030829).
            k.fx.set_pin(k.mm, "ptl", k.id, Pin(_ptl_ranges(t)))
            k.emit(LockAcquire(cpu=k.id, lock="ptl", mode="write", addr=t.start, pages=t.pages))
        return flush_and_wait(k, t, "moved")

    def moved(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
        pin = k.fx.pin(k.mm, "ptl", k.id)
        if pin is not None:
            k.fx.set_pin(k.mm, "ptl", k.id, None)
            assert t.start is not None
            k.emit(LockRelease(cpu=k.id, lock="ptl", mode="write", addr=t.start, pages=t.pages))
            for w in sorted(pin.waiters):
                k.send(cpu(w), PteUnlock())
        return goto(t, "free")

    first = lock[0].name if lock else "update"
    return Path("mremap", (
        writer_start(first, start_doc),
        *lock,
        Phase("update", mremap_update, ("unmap",), "move_vma: the tree owner stores the VMA at its new address "
              "(detaching what was there) and clears the old range", sends=(MoveVma,)),
        Phase("unmap", unmap, ("move", "free"),
              "do_munmap of the destination: zap what it mapped; if anything, shoot it down and wait for the acks",
              sends=(Flush,), writes=(UNMAP_DEST,)),
        Phase("move", after_ptl(move, "move"), ("move", "moved"),
              "move_ptes under the page-table locks: move each PTE; flush the old range (holding the lock until the "
              "acks are in: eb66ae030829; mmap_sem-mremap-flush-after-unlock drops it first)", sends=(Flush,),
              writes=(MOVE, RANGE_PTL)),
        Phase("moved", moved, ("free",),
              "the old range is flushed: drop the page-table lock (waking a CPU waiting for it)", sends=(PteUnlock,),
              writes=(PTL_PIN,)),
        free,
    ))


# --- truncate ----------------------------------------------------------------------------------------


def _truncate(v: View) -> Iterable[fp.Obj]:
    """unmap_mapping_range and truncate_inode_pages: every PTE of the file in every
    address space, the locks held across steps there, the file's cache slots, and
    the frames its fresh pages take."""
    t = v.syscall
    assert t.file is not None
    out: list[fp.Obj] = []
    for m, space in enumerate(v.world.mms):
        mm = MmId(m)
        out += [fp.pte(mm, p) for p in file_ptes(v.world, mm, t.file)]
        out += [fp.pin(mm, kind, c) for kind, c in space.pins if kind == "ptl"]
    slots = sorted(i for f, i in v.world.page_cache if f == t.file)
    out += [fp.cache(t.file, i) for i in slots]
    free, next_id = list(v.world.frames.free), v.world.frames.next_id
    for _ in slots:
        if free:
            out.append(fp.frame(free.pop()))
        else:
            out.append(fp.frame(next_id))
            next_id += 1
    if slots:
        out.append(fp.FREELIST)
    return out


def _truncate_tlb(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    if not t.flushes:
        return []
    mm, start, pages = t.flushes[0]
    return [fp.tlb(v.cpu.id, p) for p in page_range(start, pages)] if mm == v.cpu.mm else []


#: (every address space's PTEs of the file)
TRUNCATE = Access("file ptes, cache", _truncate,
                  lambda s: [("pte", None, None), ("pin", None, "ptl", None), ("cache", None, None), ("frame", None),
                             fp.FREELIST])
NEXT_FLUSH_TLB = Access("tlb@next flush", _truncate_tlb, lambda s: [("tlb", s.cpu, None)])


def truncate_start(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    """unmap_mapping_range, then truncate_inode_pages; a page-table lock another CPU
    holds across a shootdown (mremap's) is waited for first."""
    assert t.file is not None
    for m in range(k.fx.spaces()):
        mm = MmId(m)
        pages = file_ptes(k.fx.world, mm, t.file)
        for holder, pin in sorted(k.fx.pins(mm, "ptl").items()):
            if holder == k.id or not any(s <= p < e for p in pages for s, e in ptl_ranges(pin)):
                continue
            k.fx.set_pin(mm, "ptl", holder, attrs.evolve(pin, waiters=pin.waiters | {k.id}))
            k.emit(LockWait(cpu=k.id, lock="ptl", mode="write", addr=pages[0], pages=1))
            return wait(t, START, PteUnlock)
    flushes = k.unmap_mapping_range(t.file)
    frames = k.truncate_inode_pages(t.file)
    return goto(t, "flush" if flushes else "free", frames=frames, flushes=flushes)


def truncate_flush(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    """Shoot down each range the file was mapped at, one after another."""
    if not t.flushes:
        return goto(t, "free")
    mm, start, pages = t.flushes[0]
    k.flush_tlb_range(start, pages, t.index, MmId(mm))
    return wait(t, "flush", FlushDone, flushes=t.flushes[1:])


def truncate_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.free_frames(t.frames)
    k.syscall_return(goto(t, "free", frames=()))
    return EXIT


def truncate_path() -> Path:
    """`truncate FILE`, the same in every design (mm/truncate.c truncate_pagecache:
    unmap_mapping_range, truncate_inode_pages): no mmap_sem; the file's i_mmap is
    walked, every PTE of its pages zapped under the page-table locks, the pages leave
    the cache and are freed once every range is shot down."""
    return Path("truncate", (
        Phase(START, truncate_start, (START, "flush", "free"),
              "unmap_mapping_range: zap every PTE of the file's pages in every address space (a page-table lock "
              "held across a shootdown is waited for); truncate_inode_pages: fresh pages in the cache",
              sends=(PteUnlock,), writes=(TRUNCATE,)),
        Phase("flush", truncate_flush, ("flush", "free"), "shoot down each range the file was mapped at",
              sends=(Flush,), writes=(NEXT_FLUSH_TLB,)),
        Phase("free", truncate_free, (EXIT,), "free the old pages; return", writes=(TASK_FRAMES,) + RETURN_WRITES),
    ))


# --- madvise -------------------------------------------------------------------------------------------


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
    k.free_frames(t.frames)
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
        Phase("zap", after_ptl(madvise_zap, "zap"), ("zap", "flush"),
              "zap the PTEs; the VMA's anonymous pages come back zeroed on the next fault",
              reads=(TREE_READ,), writes=(RANGE_VMAS, RANGE_PTL) + ZAP_WRITES),
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
    "INSTALL_WRITES", "ALLOC_WRITES", "COW_WRITES", "INSTALL_DOC", "COW_DOC", "ONLY_IF_COW", "install_or_wait", "PTL_PINS",
    "ZAP_WRITES", "RETURN_WRITES", "PTE_FRAME", "RANGE_PTL", "after_ptl", "PGTABLE", "RANGE_COW_FRAMES",
    "STACK_VMAS", "TASK_STACK", "NODE_PIN", "PARENT_VMAS", "PGTABLE_BOUNDS", "PGTABLE_PINS", "NEW_VMA",
    "FREE_PGTABLES_NOW",
    "lock_for_write", "flush_and_wait", "find_vma_locked", "alloc_for_fault",
    "take_old", "mmap_path", "mmap_insert", "mmap_placed", "mmap_done", "writer_start", "flush_phase",
    "fault_under_mmap_sem", "down_read_then", "madvise_path", "MODEL_DIFFERENCES", "stack_below", "request_expand",
    "grew", "walk_node", "node_still_there", "zap_then", "free_pgtables_phase", "pgtable_bounds", "fork_path",
    "fork_release", "fork_return", "mremap_path", "truncate_path", "set_page_prot",
]
