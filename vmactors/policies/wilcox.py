"""`wilcox`: Matthew Wilcox's December 2019 proposal for splitting the mmap_sem.

- Faults look the VMA up in the tree under RCU, with no lock.
- File faults take the `map_pages` path (`rcu_map_pages`): the page is in the page
  cache, so the PTE is installed under RCU with no reference on the VMA.
- Anonymous faults take the `fault` path: a VMA reference (inc-not-zero), leave RCU,
  allocate, install.
- Every install rechecks, under the page-table lock, that the VMA is still attached,
  and retries from the lookup if not.
- Writers are serialised (the `mmap_sem` actor in write mode), but release that after
  the tree update and the zap; the shootdown, the frees and the tree clean-up happen
  outside it. munmap leaves a ZERO entry so the allocator cannot reuse the range until
  the flush is done; MAP_FIXED replaces the VMA in one store and never blocks faults.
- VMA references are this design's own records (`("ref", vma)`: absent means the
  tree's one reference): the tree holds one, each `fault`-path fault one; whoever
  drops the last hands the VMA to `call_rcu`.

Beyond the proposal (it says nothing of them): a fault below a grows-down VMA takes
the writers' lock and lets the tree owner expand the stack, then retries; fork and
mremap run under the writers' lock to the end, and fork's parent faults, which take
no lock, race its copy-on-write setup (`fork-vs-per-vma-locks`: what Linux met with
per-VMA locks, fb49c455323f); munmap frees page-table pages in its zap step.

Seed message: "While one thread is calling mmap(MAP_FIXED), two other threads which
are accessing the same address may see different data from each other ... I believe
this is OK" — the `coherence` invariant is what Glisse objects to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import attrs

from ..actors import footprint as fp
from ..actors.kernel import Kernel, check_access
from ..actors.messages import (
    CallRcu,
    ClearZero,
    DownWrite,
    Expand,
    Flush,
    FlushDone,
    Grant,
    MapFixed,
    Message,
    Protect,
    PteUnlock,
    TreeDone,
    Unmap,
    UpWrite,
)
from ..actors.phases import EXIT, START, Access, Path, Phase, ProtocolTable, Scope, View, goto, wait
from ..actors.policy import Policy
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MMAP_SEM, RCU, TREE
from ..log.schema import FaultRetry, LockAcquire, LockRelease
from ..mm.vma import Vma
from .common import (
    RANGE_PTL,
    after_ptl,
    COW_DOC,
    COW_WRITES,
    INSTALL_DOC,
    ONLY_IF_COW,
    install_or_wait,
    ALLOC_WRITES,
    FREE_PGTABLES_NOW,
    PGTABLE_PINS,
    STACK_VMAS,
    TASK_STACK,
    ZAP_WRITES,
    fork_path,
    grew,
    mremap_path,
    pgtable_bounds,
    request_expand,
    stack_below,
    truncate_path,
    FRESH_FRAME,
    INSTALL_WRITES,
    OLD_VMAS,
    PAGE_PTE,
    RANGE_PTES,
    RANGE_TLB,
    RETURN_WRITES,
    TASK_FRAME,
    TASK_FRAMES,
    TASK_VMA,
    TREE_READ,
    VMA_AT_ADDR,
    alloc_for_fault,
    flush_and_wait,
    MODEL_DIFFERENCES,
    flush_phase,
    madvise_path,
    mmap_path,
    take_old,
    writer_start,
)


@attrs.frozen
class WilcoxKnobs:
    """The safeguards, each removed by one ablation."""

    #: munmap leaves ZERO (not NULL) until its flush is done.
    zero_entry: bool = True
    free_before_flush: bool = False
    #: The last reference hands the VMA to call_rcu (not freed at once).
    grace_period: bool = True
    #: Installs recheck, under the page-table lock, that the VMA is attached.
    recheck: bool = True
    #: munmap returns once its IPIs are sent (its remainder runs on the acks).
    early_return: bool = False


# --- this design's own records: VMA references ---------------------------------------------------


def ref_key(vma_id: str) -> tuple[str, str]:
    return ("ref", vma_id)


def refcount(k: Kernel, vma_id: str) -> int:
    return k.policy_get(ref_key(vma_id), 1)


def set_refcount(k: Kernel, vma_id: str, n: int) -> None:
    k.policy_set(ref_key(vma_id), n if n != 1 else None)


def put_vma(k: Kernel, vma_id: str) -> None:
    """Drop one reference; the last one hands the VMA to call_rcu (or, without a
    grace period, frees it at once)."""
    n = refcount(k, vma_id) - 1
    set_refcount(k, vma_id, n)
    k.emit(LockRelease(cpu=k.id, vma=vma_id, lock="refcount", mode="read"))
    if n == 0:
        if k.knobs(WilcoxKnobs).grace_period:
            k.send(RCU, CallRcu(vma=vma_id, mm=k.mm))
        else:
            k.free_vma_now(vma_id)


def _task_ref(v: View) -> Iterable[fp.Obj]:
    vid = v.fault.vma
    return [fp.policy(v.cpu.mm, ref_key(vid))] if vid is not None else []


def _old_refs(v: View) -> Iterable[fp.Obj]:
    return [fp.policy(v.cpu.mm, ref_key(vid)) for vid in v.syscall.old]


def _any_ref(s: Scope) -> Iterable[fp.Pattern]:
    return [("policy", s.mm, ("ref", None))]


TASK_REF = Access("ref", _task_ref, _any_ref)
OLD_REFS = Access("old refs", _old_refs, _any_ref)

# --- fault ---------------------------------------------------------------------------------------


def leave_rcu(k: Kernel) -> None:
    k.emit(LockRelease(cpu=k.id, lock="rcu", mode="read"))
    k.rcu_read_unlock()


def retry(k: Kernel, t: FaultTask, reason: str) -> FaultTask:
    k.emit(FaultRetry(cpu=k.id, addr=t.page, pages=1, vma=t.vma, reason=reason))
    return goto(t, START, vma=None, frame=None, fresh=False, holds=(), cow_from=None)


def attached(k: Kernel, vma_id: str) -> bool:
    return not k.knobs(WilcoxKnobs).recheck or k.vma(vma_id).state == "live"


def rcu_lookup(k: Kernel, t: FaultTask) -> Vma | FaultTask | None:
    """rcu_read_lock; find_vma in the published tree. NULL, ZERO or a VMA that forbids
    the access: leave RCU and SIGSEGV (None) — unless a grows-down VMA above can expand
    down to the address: then leave RCU and take the writers' lock to expand it (the
    task, waiting for the grant)."""
    if not k.cpu.rcu_nesting:
        k.rcu_read_lock()
        k.emit(LockAcquire(cpu=k.id, lock="rcu", mode="read"))
    vma = k.find_vma(t.vaddr)
    if vma is None:
        stack = stack_below(k, t)
        if stack is not None:
            leave_rcu(k)
            k.send(MMAP_SEM, DownWrite(mm=k.mm))
            return wait(t, "stack", Grant, stack=stack.id, holds=())
    why = check_access(vma, t.access)
    if why is not None:
        leave_rcu(k)
        k.segv(t, why)
        return None
    return vma


def fault_stack(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    """Under the writers' lock: the tree owner expands the stack (rechecking the gap)."""
    return request_expand(k, t, "expanded")


def fault_expanded(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    """Release the writers' lock and take the fault again from the lookup (grown or not:
    a stack that could not grow leaves the lookup nothing but SIGSEGV)."""
    grew(msg)
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    return goto(t, START, stack=None)


def after_lookup(t: FaultTask, vma: Vma) -> FaultTask:
    """File pages take the map_pages path, anonymous ones the refcounted one."""
    return goto(t, "map_pages" if vma.kind == "file" else "get_ref", vma=vma.id, holds=("rcu",))


def fault_start(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    vma = rcu_lookup(k, t)
    if vma is None:
        return EXIT
    return vma if isinstance(vma, FaultTask) else after_lookup(t, vma)


def fault_map_pages(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    assert t.vma is not None
    frame, _ = k.alloc_page(k.read_vma(t.vma), t.page)
    return goto(t, "install_rcu", frame=frame, fresh=False)


def fault_install_rcu(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    assert t.vma is not None
    vma = k.read_vma(t.vma)
    if not attached(k, t.vma):
        leave_rcu(k)
        return retry(k, t, f"vma {t.vma} detached")
    waiting = k.ptl_wait(t)
    if waiting is not None:
        return waiting  # a page-table lock held across a shootdown (mremap's), still under RCU
    k.install_for_fault(vma, t)  # a file page: never copy-on-write
    leave_rcu(k)
    k.fault_done(t)
    return EXIT


def fault_get_ref(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    assert t.vma is not None
    vma = k.read_vma(t.vma)
    n = refcount(k, t.vma)
    if n == 0:  # inc-not-zero failed: the VMA is on its way out
        leave_rcu(k)
        return retry(k, t, f"vma {t.vma} refcount is zero")
    set_refcount(k, t.vma, n + 1)
    k.emit(LockAcquire(cpu=k.id, vma=vma.id, lock="refcount", mode="read"))
    leave_rcu(k)
    return goto(t, "alloc", holds=("ref",))


def fault_alloc(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    return alloc_for_fault(k, t, "install")


def fault_install(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    assert t.vma is not None
    vma = k.read_vma(t.vma)
    if not attached(k, t.vma):
        if t.fresh and t.frame is not None:
            k.free_frame(t.frame)
        put_vma(k, t.vma)
        return retry(k, t, f"vma {t.vma} detached")
    waiting = install_or_wait(k, t, vma, "cow")
    if waiting is not None:
        return waiting
    put_vma(k, t.vma)
    k.fault_done(t)
    return EXIT


def fault_cow(k: Kernel, t: FaultTask, msg: Message | None) -> str:
    assert t.vma is not None
    k.finish_wp_copy(k.read_vma(t.vma), t)
    put_vma(k, t.vma)
    k.fault_done(t)
    return EXIT


# --- writers -------------------------------------------------------------------------------------


def zap_and_release(k: Kernel, t: SyscallTask, free_pgtables: bool = False) -> SyscallTask:
    """Zap the PTEs (munmap: free_pgtables too, in the same step, where page-table
    pages are modelled), then release the writers' lock: the flush and the frees run
    outside the writers' serialisation."""
    assert t.start is not None
    frames = k.zap_range(t.start, t.pages)
    unlinked: tuple[int, ...] = ()
    if free_pgtables and k.fx.pgtables(k.mm) is not None:
        unlinked = k.free_pgtables(t.start, t.pages, *pgtable_bounds(k, t))
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    return goto(t, "flush", frames=frames, pgtables=unlinked)


def flush(k: Kernel, t: SyscallTask, next_phase: str) -> SyscallTask:
    """The shootdown; wilcox-free-before-flush frees the frames as soon as it is
    asked for, before the acks are in."""
    t = flush_and_wait(k, t, next_phase)
    if k.knobs(WilcoxKnobs).free_before_flush:
        k.free_frames(t.frames)
        t = attrs.evolve(t, frames=())
    return t


def munmap_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    entry: Literal["null", "zero"] = "zero" if k.knobs(WilcoxKnobs).zero_entry else "null"
    k.send(TREE, Unmap(addr=t.start, pages=t.pages, entry=entry, mm=k.mm))
    return wait(t, "zap", TreeDone)


def munmap_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    return take_old(t, msg, "zap") or zap_and_release(k, t, free_pgtables=True)


def munmap_flush(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask | str:
    if k.knobs(WilcoxKnobs).early_return and k.cpu.tail is None:
        # The ablation: return once the IPIs are on their way; the remainder (`tail`)
        # runs when the acks are in.
        assert t.start is not None
        k.flush_tlb_range(t.start, t.pages, t.index)
        k.syscall_return(t, t.old)
        k.evolve_cpu(tail=wait(t, "tail", FlushDone))
        return EXIT
    return flush(k, t, "free")


def munmap_tail(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.free_frames(t.frames)
    if k.knobs(WilcoxKnobs).zero_entry:
        assert t.start is not None
        k.send(TREE, ClearZero(addr=t.start, pages=t.pages, reply=False, mm=k.mm))
    for vid in t.old:
        put_vma(k, vid)
    return EXIT


def munmap_free(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    k.free_frames(t.frames)
    k.free_pgtable_pages(t.pgtables)
    return goto(t, "clear" if k.knobs(WilcoxKnobs).zero_entry else "put", frames=())


def munmap_clear(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    k.send(TREE, ClearZero(addr=t.start, pages=t.pages, reply=True, mm=k.mm))
    return wait(t, "put", TreeDone)


def munmap_put(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    for vid in t.old:
        put_vma(k, vid)
    k.syscall_return(t, t.old)
    return EXIT


def map_fixed_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.request is not None
    k.send(TREE, MapFixed(addr=t.start, pages=t.pages, request=t.request, mm=k.mm))
    return wait(t, "zap", TreeDone)


def map_fixed_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    if msg is not None:
        assert isinstance(msg, TreeDone) and t.request is not None
        return goto(t, "zap", old=msg.vmas, new=t.request.vma, ret=t.start)
    return zap_and_release(k, t)


def map_fixed_flush(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    return flush(k, t, "free")


def map_fixed_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.free_frames(t.frames)
    for vid in t.old:
        put_vma(k, vid)
    k.syscall_return(goto(t, "free", frames=()), t.old)
    return EXIT


def mprotect_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.prot is not None
    # RCU readers never see a VMA change under them: the tree gets a copy.
    k.send(TREE, Protect(addr=t.start, pages=t.pages, prot=t.prot, copy=t.new, mm=k.mm))
    return wait(t, "protect", TreeDone)


def mprotect_protect(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    woken = take_old(t, msg, "protect")
    if woken is not None:
        return woken
    assert t.start is not None and t.prot is not None
    new_id = k.tree().find_vma(t.start) if t.old else None
    k.change_protection(t.start, t.pages, t.prot, new_id)
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    return goto(t, "flush")


def mprotect_put(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    for vid in t.old:
        put_vma(k, vid)
    k.syscall_return(t)
    return EXIT


def mremap_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.free_frames(t.frames)
    for vid in t.old:
        put_vma(k, vid)
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    k.syscall_return(goto(t, "free", frames=()), t.old)
    return EXIT


#: A dropped reference may free the VMA at once (the wilcox-no-grace ablation).
PUT_WRITES = (OLD_REFS, OLD_VMAS)
FAULT_PUT_WRITES = (TASK_REF, TASK_VMA)

FAULT = Path("fault", (
    Phase(START, fault_start, ("map_pages", "get_ref", "stack", EXIT),
          "rcu_read_lock; find_vma in the published tree (NULL or ZERO: SIGSEGV, unless a grows-down VMA above can "
          "expand: rcu_read_unlock, take the writers' lock); file -> map_pages, anon -> get_ref",
          sends=(DownWrite,), reads=(TREE_READ, VMA_AT_ADDR, STACK_VMAS), only=(("stack", (DownWrite,)),)),
    Phase("stack", fault_stack, ("expanded",), "with the writers' lock: the tree owner expands the stack",
          sends=(Expand,), reads=(TASK_STACK,), feature="stack"),
    Phase("expanded", fault_expanded, (START,), "release the writers' lock; take the fault again",
          sends=(UpWrite,), feature="stack"),
    Phase("map_pages", fault_map_pages, ("install_rcu",),
          "rcu_map_pages: look the page up in the page cache, still under RCU, no reference",
          reads=(TASK_VMA,), writes=(FRESH_FRAME,)),
    Phase("install_rcu", fault_install_rcu, ("install_rcu", START, EXIT),
          "page-table lock (waiting while another CPU holds it across a shootdown): recheck the VMA is attached "
          "(else retry), set the PTE; rcu_read_unlock", reads=(TASK_VMA,), writes=INSTALL_WRITES),
    Phase("get_ref", fault_get_ref, (START, "alloc"),
          "take a VMA reference (inc-not-zero, else retry); rcu_read_unlock", reads=(TASK_VMA,), writes=(TASK_REF,)),
    Phase("alloc", fault_alloc, ("install",), "allocate a zeroed page", reads=(PAGE_PTE, TASK_VMA),
          writes=ALLOC_WRITES),
    Phase("install", fault_install, ("install", "cow", START, EXIT),
          "recheck the VMA is attached (else free the page, retry); " + INSTALL_DOC + "; drop the reference",
          sends=(CallRcu, Flush), reads=(TASK_VMA,), writes=INSTALL_WRITES + FAULT_PUT_WRITES, only=ONLY_IF_COW),
    Phase("cow", fault_cow, (EXIT,), COW_DOC + "; drop the reference", sends=(CallRcu, PteUnlock),
          reads=(TASK_VMA,), writes=COW_WRITES + FAULT_PUT_WRITES, feature="cow"),
))

ZAP_RELEASE_WRITES = ZAP_WRITES + (FREE_PGTABLES_NOW,)

PROTOCOL = ProtocolTable((
    FAULT,
    Path("munmap", (
        writer_start("update"),
        Phase("update", munmap_update, ("zap",), "tree owner stores ZERO over the range; VMAs detached",
              sends=(Unmap,)),
        Phase("zap", after_ptl(munmap_zap, "zap"), ("zap", "flush"), "zap the PTEs (free_pgtables in the same step, "
              "where modelled); release the writers' lock", sends=(UpWrite,), writes=ZAP_RELEASE_WRITES + (RANGE_PTL,),
              only=(("pgtables", (FREE_PGTABLES_NOW,)),)),
        Phase("flush", munmap_flush, ("free", EXIT), "local flush and shootdown; wait for every ack "
              "(wilcox-early-return: return now, the rest runs as the `tail` on the acks; "
              "wilcox-free-before-flush: free the frames now)", sends=(Flush,),
              writes=(RANGE_TLB, TASK_FRAMES) + RETURN_WRITES),
        Phase("free", munmap_free, ("clear", "put"), "free the frames and the unlinked page-table pages",
              writes=(TASK_FRAMES, PGTABLE_PINS)),
        Phase("clear", munmap_clear, ("put",), "tree owner turns ZERO into NULL", sends=(ClearZero,)),
        Phase("put", munmap_put, (EXIT,), "drop the tree's VMA references (the last one: call_rcu); return",
              sends=(CallRcu,), writes=PUT_WRITES + RETURN_WRITES),
        Phase("tail", munmap_tail, (EXIT,),
              "(wilcox-early-return) once the acks are in: free the frames, ZERO -> NULL, drop the references",
              sends=(ClearZero, CallRcu), writes=(TASK_FRAMES,) + PUT_WRITES),
    )),
    Path("mmap_fixed", (
        writer_start("update"),
        Phase("update", map_fixed_update, ("zap",),
              "tree owner stores the new VMA over the range in one store; old VMAs detached", sends=(MapFixed,)),
        Phase("zap", after_ptl(map_fixed_zap, "zap"), ("zap", "flush"), "zap the old PTEs; release the writers' lock",
              sends=(UpWrite,), writes=ZAP_WRITES + (RANGE_PTL,)),
        Phase("flush", map_fixed_flush, ("free",), "local flush and shootdown; wait for every ack "
              "(wilcox-free-before-flush: free the frames now)", sends=(Flush,), writes=(RANGE_TLB, TASK_FRAMES)),
        Phase("free", map_fixed_free, (EXIT,), "free the old frames; drop the old VMAs' tree references; return",
              sends=(CallRcu,), writes=(TASK_FRAMES,) + PUT_WRITES + RETURN_WRITES),
    )),
    Path("mprotect", (
        writer_start("update"),
        Phase("update", mprotect_update, ("protect",), "tree owner stores a copy of the VMA with the new protection",
              sends=(Protect,)),
        Phase("protect", after_ptl(mprotect_protect, "protect"), ("protect", "flush"),
              "change the PTEs; release the writers' lock", sends=(UpWrite,), reads=(TREE_READ,),
              writes=(RANGE_PTES, RANGE_PTL)),
        flush_phase("put"),
        Phase("put", mprotect_put, (EXIT,), "drop the old VMA's tree reference; return", sends=(CallRcu,),
              writes=PUT_WRITES + RETURN_WRITES),
    )),
    mmap_path(insert_doc="tree owner places the VMA (ZERO ranges are taken) and stores it"),
    madvise_path(),
    fork_path(),
    mremap_path(lambda k: True, Phase("free", mremap_free, (EXIT,), "free the destination's old frames; drop the old "
                                      "VMAs' tree references; release the writers' lock; return",
                                      sends=(CallRcu, UpWrite), writes=(TASK_FRAMES,) + PUT_WRITES + RETURN_WRITES)),
    truncate_path(),
))

WILCOX = Policy(
    name="wilcox",
    summary=("Wilcox 2019: RCU tree lookup, rcu_map_pages for file faults, refcounted anon faults, ZERO entry "
             "while munmap flushes, MAP_FIXED never blocks faults"),
    protocol=PROTOCOL,
    config=WilcoxKnobs(),
    kernel=("none: Matthew Wilcox's proposal on linux-mm, \"Splitting the mmap_sem\" (December 2019). Its maple "
            "tree, read under RCU, was merged in 6.1; per-VMA references, rcu_map_pages and munmap's ZERO entry "
            "never were"),
    differences=MODEL_DIFFERENCES + (
        "the proposal leaves the writers' side open: here writers are serialised by mmap_sem for write, released "
        "after the tree update and the zap",
        "no anon_vma: how a first anonymous write would get one under RCU is not part of the proposal",
    ),
)

ABLATIONS = (
    WILCOX.ablation("wilcox-no-zero", "ablation of wilcox: munmap stores NULL, not ZERO, so a new mmap can reuse "
                    "the range before the flush (trips coherence)", config=WilcoxKnobs(zero_entry=False)),
    WILCOX.ablation("wilcox-free-before-flush", "ablation of wilcox: frames freed once the shootdown is asked for, "
                    "before it completes (trips frame-uaf)", config=WilcoxKnobs(free_before_flush=True)),
    WILCOX.ablation("wilcox-no-grace", "ablation of wilcox: the last reference frees the VMA at once, without an "
                    "RCU grace period (trips vma-uaf)", config=WilcoxKnobs(grace_period=False)),
    WILCOX.ablation("wilcox-no-recheck", "ablation of wilcox: no recheck under the page-table lock that the VMA is "
                    "still attached (trips orphan-pte)", config=WilcoxKnobs(recheck=False)),
    WILCOX.ablation("wilcox-early-return", "ablation of wilcox: munmap returns once its IPIs are sent; frees and "
                    "ZERO -> NULL still wait for the acks (trips munmap-incomplete)",
                    config=WilcoxKnobs(early_return=True)),
)

__all__ = ["WILCOX", "ABLATIONS", "WilcoxKnobs", "PROTOCOL", "FAULT", "put_vma", "refcount", "leave_rcu", "retry",
           "rcu_lookup", "after_lookup", "TASK_REF", "OLD_REFS", "PUT_WRITES"]
