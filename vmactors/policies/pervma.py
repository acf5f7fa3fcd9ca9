"""`pervma`: what Linux shipped — per-VMA locks (v6.4), as Linux 6.15+ has them.

Kernel sources modelled (torvalds/linux, v6.15):
- `mm/mmap_lock.c` `lock_vma_under_rcu()`: under `rcu_read_lock()`, find the VMA
  (`mas_walk`), then `vma_start_read()`: a write-locked VMA (`vm_lock_seq ==
  mm_lock_seq`) fails -> fall back; a VMA whose `vm_refcnt` is zero (detached, or
  freed) fails with -EAGAIN -> look it up again; else the reader holds a `vm_refcnt`
  reference, and the VMA is rechecked: another mm, or a range that no longer holds
  the address (the object was reused for another mapping) -> `vma_end_read`, fall
  back. v6.4–v6.14 used a per-VMA rw_semaphore and `call_rcu` freeing instead.
- `arch/x86/mm/fault.c` `do_user_addr_fault()`: if `lock_vma_under_rcu()` gives
  nothing, or the fault returns VM_FAULT_RETRY, fall back to
  `lock_mm_and_find_vma()` under `mmap_lock` for read, which waits for a writer; no
  VMA there -> SIGSEGV (`bad_area`).
- `mm/memory.c` `__vmf_anon_prepare()`: a write fault on an anonymous VMA without an
  `anon_vma`, under the per-VMA lock, needs `mmap_read_trylock()`; when a writer
  holds `mmap_lock` (or one waits) it returns VM_FAULT_RETRY (`vmf_anon_prepare` drops
  the VMA lock) and the fault waits on the `mmap_lock` path. A read fault maps the
  zero page and needs no `anon_vma`.
- `include/linux/mmap_lock.h` / `mm/mmap_lock.c` `vma_start_write()`: sets
  `vm_lock_seq` and waits until the VMA's current readers have drained; every VMA
  write lock is dropped when `mmap_lock` is released for write (`mmap_write_unlock`
  bumps `mm_lock_seq`).
- `mm/vma.c` `do_vmi_align_munmap()` / `vms_complete_munmap_vmas()`: VMAs are
  write-locked and detached, the tree range cleared, then `mmap_write_downgrade()`,
  and the zap (`unmap_region`), TLB flush and frees run under the read lock.
- `kernel/fork.c` `vm_area_free()`: the VMA cache is `SLAB_TYPESAFE_BY_RCU` (6.15):
  a freed VMA object goes back to the slab at once and may be reused for another
  mapping straight away; readers rely on the rechecks above, not on a grace period.
- `mm/vma.c` `__mmap_region()` / `vma_link()`: a new VMA is write-locked before it
  enters the tree ("mm: always lock new vma before inserting into vma tree", 2023).
- `mm/mmap_lock.c` `lock_mm_and_find_vma()` (6.5+, the StackRot fix merged as
  9471f1f2f502 for 6.5 and backported to 6.1.37, 6.3.11 and 6.4.1): a fault below a
  VM_GROWSDOWN VMA drops the read lock, takes `mmap_write_lock`, looks again
  (`find_vma_prev`) and expands the stack (`expand_stack_locked`), then downgrades.
  6.1-6.4 expanded under the read lock (`find_extend_vma`); the maple tree, in RCU
  mode since 3dd4432549415f (6.3, backported to 6.1.y: the fix for a syzbot report
  of such an expansion rewriting a node under readers), then replaced the node a
  concurrent `find_vma_prev` under the read lock was walking and freed it after a
  grace period that walk did not hold (CVE-2023-3269, StackRot; the ablation
  `pervma-stack-read-lock`). The model does not write-lock the stack VMA first
  (c137381f71ae): a per-VMA fault on it sees its start before or after, in one step.
- `kernel/fork.c` `dup_mmap()` (fb49c455323f "fork: lock VMAs of the parent process
  when forking", 6.5-rc1, backported to 6.4.y): `vma_start_write()` on each parent VMA
  before `copy_page_range()` write-protects its PTEs, so no parent fault runs under a
  per-VMA lock until `flush_tlb_mm()` and `mmap_write_unlock()`; without it a parent
  write fault could copy a page (`wp_page_copy`) while another parent CPU still held
  a writable TLB entry to it, whose stores the child then saw (the ablation
  `pervma-fork-no-vma-lock`).
- `mm/mmap.c` `mmap_region()` (33313a747e81 "mm: lock newly mapped VMA which can be
  modified after it becomes visible" and 1c7873e33645, 6.5-rc1, backported to 6.4.y; then "always lock
  new vma before inserting into vma tree"): the new VMA is write-locked before
  `vma_iter_store`, because `vma_set_page_prot()` and other changes follow the
  insertion; without it (the ablation `pervma-no-born-lock`) a fault under the
  per-VMA lock maps the page with the protection the VMA had before.
- `mm/mremap.c`, `kernel/fork.c`: mremap and fork take `mmap_write_lock` and
  `vma_start_write` on the VMAs they change; `mm/truncate.c` takes neither.
- `mm/vma.c` `__mmap_region()` with MAP_FIXED over a live range: the old VMAs are
  write-locked and detached and their PTEs zapped and flushed
  (`vms_clean_up_area`) while they are still in the tree; then the new VMA is
  stored. Faults on the range fall back to `mmap_lock` and wait for the writer.

This design's own records, per address space:
- `("write_locked",)`: the VMAs write-locked under the current `mmap_lock` writer
  (`vm_lock_seq == mm_lock_seq`); one record, as `mm_lock_seq` is one word;
- `("readers", object)`: `vm_refcnt` readers of a VMA object; `("drain_waiter",
  object)`: the CPU in `vma_start_write` waiting for them;
- `("anon_vma", vma)`: the VMA has an `anon_vma`;
- VMA objects: `("obj", object)` is the VMA living in an object (absent: the VMA the
  object was first allocated for, of the same name), `("obj_of", vma)` its object,
  `("free_objs",)` the freed objects, reused last-freed first.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import ClassVar

import attrs

from ..actors import footprint as fp
from ..actors.effects import Effects
from ..actors.footprint import Footprint
from ..actors.kernel import Kernel, check_access
from ..actors.messages import (
    Flush,
    PteUnlock,
    WakeUpNewTask,
    Downgrade,
    DownRead,
    DownReadTrylock,
    Expand,
    MaFreeRcu,
    Message,
    Protect,
    StoreVma,
    TreeDone,
    TreeRequest,
    TrylockDone,
    Unmap,
    UpRead,
    UpWrite,
)
from ..actors.phases import EXIT, START, Access, Path, Phase, ProtocolTable, Scope, View, goto, wait
from ..actors.policy import NoTreeHooks, Policy
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MM0, MMAP_SEM, RCU, TREE, MmId, cpu
from ..log.schema import FaultRetry, LockAcquire, LockRelease, LockWait, VmaDetach, VmaFree
from ..mm.vma import Vma
from ..mm.world import Pin, World
from .common import (
    RANGE_PTL,
    after_ptl,
    ALLOC_WRITES,
    COW_DOC,
    COW_WRITES,
    INSTALL_DOC,
    ONLY_IF_COW,
    install_or_wait,
    FRESH_FRAME,
    INSTALL_WRITES,
    PGTABLE_BOUNDS,
    PGTABLE_PINS,
    ZAP_WRITES,
    fault_under_mmap_sem,
    fork_path,
    fork_return,
    free_pgtables_phase,
    mremap_path,
    truncate_path,
    zap_then,
    OLD_VMAS,
    PAGE_PTE,
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
    MODEL_DIFFERENCES,
    find_vma_locked,
    flush_phase,
    madvise_path,
    mmap_path,
    mmap_placed,
    take_old,
    writer_start,
)


@attrs.frozen
class PerVmaKnobs:
    #: After taking a VMA object's read lock, recheck that it still maps the address
    #: (its range; its mm) — the object may have been freed and reused meanwhile.
    recheck: bool = True
    #: A fault expands a stack only under mmap_write_lock (6.5+, the StackRot fix);
    #: the ablation expands under the read lock, as 6.1-6.4.
    expand_write_lock: bool = True
    #: fork write-locks every parent VMA before it copies their page tables
    #: (fb49c455323f); the ablation does not.
    fork_vma_lock: bool = True


# --- this design's own records ---------------------------------------------------------------------

WRITE_LOCKED = ("write_locked",)
FREE_OBJS = ("free_objs",)


def readers_key(obj: str) -> tuple[str, str]:
    return ("readers", obj)


def drain_key(obj: str) -> tuple[str, str]:
    return ("drain_waiter", obj)


def anon_vma_key(vma_id: str) -> tuple[str, str]:
    return ("anon_vma", vma_id)


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


def vma_in(k: Kernel, obj: str) -> str:
    """The VMA living in object `obj` now."""
    return k.policy_get(("obj", obj), obj)


def obj_of(k: Kernel, vma_id: str) -> str:
    return k.policy_get(("obj_of", vma_id), vma_id)


def free_vma(k: Kernel, vma_id: str) -> None:
    """vm_area_free(): SLAB_TYPESAFE_BY_RCU hands the object back at once."""
    vma = k.vma(vma_id)
    k.set_vma(attrs.evolve(vma, state="freed"))
    k.emit(VmaFree(cpu=k.id, addr=vma.start, pages=vma.pages, vma=vma_id))
    k.policy_set(FREE_OBJS, k.policy_get(FREE_OBJS, ()) + (obj_of(k, vma_id),))


class BornLocked(NoTreeHooks):
    """A new VMA takes the last freed object, if any, and is write-locked before it
    enters the tree ("mm: always lock new vma before inserting into vma tree") until
    the writer's mmap_write_unlock (`lock_new` false: the ablation, not locked).

    The tree is a maple tree in RCU mode: a store that replaces a node (a stack
    expansion that consumes a gap, under the read lock in 6.1-6.4) leaves the walks
    other CPUs hold on it pointing to a dead node, freed after a grace period
    (ma_free_rcu)."""

    def __init__(self, lock_new: bool = True) -> None:
        self.lock_new = lock_new

    def node_replaced(self, fx: Effects, mm: MmId, who: int) -> None:
        held = [c for c, pin in sorted(fx.pins(mm, "node").items()) if c != who and pin.state == "live"]
        for c in held:
            fx.set_pin(mm, "node", c, Pin(None, "dead"))
        fx.send(RCU, MaFreeRcu(cpus=tuple(held), mm=mm))

    def vma_created(self, fx: Effects, mm: MmId, vma: Vma) -> None:
        free: tuple[str, ...] = fx.policy_get(mm, FREE_OBJS, ())
        if free:
            obj = free[-1]
            fx.policy_set(mm, FREE_OBJS, free[:-1] or None)
            fx.policy_set(mm, ("obj", obj), vma.id if vma.id != obj else None)
            fx.policy_set(mm, ("obj_of", vma.id), obj if obj != vma.id else None)
        if self.lock_new:
            locked: frozenset[str] = fx.policy_get(mm, WRITE_LOCKED, frozenset())
            fx.policy_set(mm, WRITE_LOCKED, locked | {vma.id})

    def tree_footprint(self, world: World, mm: MmId, msg: TreeRequest) -> Footprint:
        if isinstance(msg, Expand):
            return Footprint.of(writes=[fp.pin(mm, kind, c) for kind, c in world.mm(mm).pins if kind == "node"])
        objs = [fp.policy(mm, WRITE_LOCKED), fp.policy(mm, FREE_OBJS)]
        request = getattr(msg, "request", None)
        free: tuple[str, ...] = world.mm(mm).policy.get(FREE_OBJS, ())  # type: ignore[assignment]
        if request is not None and free:
            objs += [fp.policy(mm, ("obj", free[-1])), fp.policy(mm, ("obj_of", request.vma))]
        return Footprint.of(writes=objs)


def with_anon_vmas(world: World) -> World:
    """A scenario's anonymous maps that start with pages have an anon_vma."""
    space = world.mm(MM0)
    records = space.policy
    for vid, vma in space.vmas.items():
        if vma.kind == "anon" and any(vma.covers(p) for p in space.ptes):
            records = records.set(anon_vma_key(vid), True)
    return world.with_mm(MM0, attrs.evolve(space, policy=records))


def _obj_at_addr(v: View) -> Iterable[fp.Obj]:
    """The object of the VMA a lookup finds at the faulting address."""
    vid = v.world.mm(v.cpu.mm).tree.find_vma(v.fault.vaddr)
    return [fp.policy(v.cpu.mm, ("obj_of", vid))] if vid is not None else []


def _write_locked(v: View) -> Iterable[fp.Obj]:
    return [fp.policy(v.cpu.mm, WRITE_LOCKED)]


def _obj(v: View) -> Iterable[fp.Obj]:
    """The fault's VMA object: which VMA lives in it, and that VMA."""
    t = v.fault
    if t.obj is None:
        return []
    space = v.world.mm(v.cpu.mm)
    vid = space.policy.get(("obj", t.obj), t.obj)
    assert isinstance(vid, str)
    return [fp.policy(v.cpu.mm, ("obj", t.obj)), fp.vma(v.cpu.mm, vid), fp.policy(v.cpu.mm, anon_vma_key(vid))]


def _obj_readers(v: View) -> Iterable[fp.Obj]:
    obj = v.fault.obj
    return [fp.policy(v.cpu.mm, readers_key(obj)), fp.policy(v.cpu.mm, drain_key(obj))] if obj is not None else []


def _anon_vma(v: View) -> Iterable[fp.Obj]:
    vid = v.fault.vma
    return [fp.policy(v.cpu.mm, anon_vma_key(vid))] if vid is not None else []


def lock_ranges(t: SyscallTask) -> tuple[tuple[int, int], ...]:
    """The ranges whose VMAs a writer write-locks: fork, every VMA; mremap, the old
    range and the destination's; others, their range."""
    if t.op == "fork":
        return ((0, 1 << 64),)
    assert t.start is not None
    if t.dest is not None:
        return ((t.start, t.end), (t.dest, t.dest_end))
    return ((t.start, t.end),)


def _range_readers(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    space = v.world.mm(v.cpu.mm)
    out: list[fp.Obj] = []
    for vid in (vid for s, e in lock_ranges(t) for vid in space.tree.vma_ids(s, e)):
        obj = space.policy.get(("obj_of", vid), vid)
        out += [fp.policy(v.cpu.mm, ("obj_of", vid)), fp.policy(v.cpu.mm, readers_key(obj)),  # type: ignore[arg-type]
                fp.policy(v.cpu.mm, drain_key(obj))]  # type: ignore[arg-type]
    return out


def _freed_objs(v: View) -> Iterable[fp.Obj]:
    mm = v.cpu.mm
    return [fp.policy(mm, FREE_OBJS)] + [fp.policy(mm, ("obj_of", vid)) for vid in v.syscall.old]


def _records(*keys: fp.Pattern) -> Callable[[Scope], Iterable[fp.Pattern]]:
    """Future steps: this design's records of those key shapes (None: any value)."""
    return lambda s: [("policy", s.mm, k) for k in keys]


OBJ_AT_ADDR = Access("vma object@addr", _obj_at_addr, _records(("obj_of", None)))
WRITE_LOCKS = Access("vma write locks", _write_locked, _records(WRITE_LOCKED))
OBJ = Access("vma object", _obj,
             lambda s: [("policy", s.mm, ("obj", None)), ("vma", s.mm, None), ("policy", s.mm, ("anon_vma", None))])
OBJ_READERS = Access("object readers", _obj_readers, _records(("readers", None), ("drain_waiter", None)))
ANON_VMA = Access("anon_vma", _anon_vma, _records(("anon_vma", None)))
RANGE_READERS = Access("readers@range", _range_readers,
                       _records(("obj_of", None), ("readers", None), ("drain_waiter", None)))
FREED_OBJS = Access("freed objects", _freed_objs, _records(FREE_OBJS, ("obj_of", None)))

# --- fault: lock_vma_under_rcu ------------------------------------------------------------------------


def fallback(k: Kernel, t: FaultTask, reason: str) -> FaultTask:
    k.emit(FaultRetry(cpu=k.id, addr=t.page, pages=1, vma=t.vma, reason=f"{reason}: lock_mm_and_find_vma"))
    return down_read_then("mm_lookup", t, k, vma=None, obj=None, holds=("mmap_sem",))


def vma_end_read(k: Kernel, obj: str) -> None:
    """Drop the per-VMA read lock; the last reader wakes a writer waiting to drain them."""
    vid = vma_in(k, obj)
    readers = k.policy_get(readers_key(obj), 0) - 1
    k.emit(LockRelease(cpu=k.id, vma=vid, lock="vma", mode="read"))
    if readers == 0:
        waiter: int | None = k.policy_get(drain_key(obj), None)
        if waiter is not None:
            k.send(cpu(waiter), Drained(vma=vid))
            k.policy_set(drain_key(obj), None)
    k.policy_set(readers_key(obj), readers or None)


def needs_anon_vma(k: Kernel, t: FaultTask, vma: Vma) -> bool:
    """A write fault on an anonymous VMA that has no anon_vma yet."""
    return t.access == "store" and vma.kind == "anon" and not k.policy_get(anon_vma_key(vma.id), False)


def fault_start(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    k.rcu_read_lock()
    vma = k.find_vma(t.vaddr)
    if vma is None:
        k.rcu_read_unlock()
        return fallback(k, t, "no vma under RCU")
    return goto(t, "vma_lock", vma=vma.id, obj=obj_of(k, vma.id), holds=("rcu",))


def fault_vma_lock(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    """vma_start_read on the object the lookup found, then lock_vma_under_rcu's rechecks."""
    assert t.obj is not None
    vid = vma_in(k, t.obj)
    vma = k.vma(vid)  # SLAB_TYPESAFE_BY_RCU: the object is a VMA object, freed or not
    if vid in write_locked(k):
        k.rcu_read_unlock()
        return fallback(k, t, f"vma {vid} is write-locked")
    if vma.state != "live":  # vm_refcnt is zero: -EAGAIN, the area was replaced
        k.rcu_read_unlock()
        k.emit(FaultRetry(cpu=k.id, addr=t.page, pages=1, vma=vid, reason=f"vma {vid} is {vma.state}: look it up again"))
        return goto(t, START, vma=None, obj=None, holds=())
    k.policy_set(readers_key(t.obj), k.policy_get(readers_key(t.obj), 0) + 1)
    k.emit(LockAcquire(cpu=k.id, vma=vid, lock="vma", mode="read"))
    k.rcu_read_unlock()
    if k.knobs(PerVmaKnobs).recheck and not vma.covers(t.vaddr):
        vma_end_read(k, t.obj)
        return fallback(k, t, f"vma object {t.obj} now holds vma {vid}, which does not map the address")
    why = check_access(vma, t.access)
    if why is not None:
        vma_end_read(k, t.obj)
        k.segv(t, why)
        return EXIT
    if needs_anon_vma(k, t, vma):
        k.send(MMAP_SEM, DownReadTrylock(mm=k.mm))
        return wait(t, "anon_vma", TrylockDone, vma=vid, holds=("vma_read",))
    return goto(t, "alloc", vma=vid, holds=("vma_read",))


def fault_anon_vma(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    """__vmf_anon_prepare under the per-VMA lock: with mmap_lock taken by trylock,
    prepare the anon_vma; without it, VM_FAULT_RETRY on the mmap_lock path."""
    assert isinstance(msg, TrylockDone) and t.obj is not None and t.vma is not None
    if msg.ok:
        k.policy_set(anon_vma_key(t.vma), True)
        k.send(MMAP_SEM, UpRead(mm=k.mm))
        return goto(t, "alloc")
    vma_end_read(k, t.obj)
    return fallback(k, t, f"vma {t.vma} has no anon_vma and mmap_lock is taken")


def fault_alloc(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    return alloc_for_fault(k, t, "install")


def fault_install(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    assert t.vma is not None and t.obj is not None
    waiting = install_or_wait(k, t, k.vma(t.vma), "cow")
    if waiting is not None:
        return waiting
    vma_end_read(k, t.obj)
    k.fault_done(t)
    return EXIT


def fault_cow(k: Kernel, t: FaultTask, msg: Message | None) -> str:
    assert t.vma is not None and t.obj is not None
    k.finish_wp_copy(k.vma(t.vma), t)
    vma_end_read(k, t.obj)
    k.fault_done(t)
    return EXIT




def mm_alloc(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    """Under mmap_lock the anon_vma can be prepared at once."""
    assert t.vma is not None
    if needs_anon_vma(k, t, k.vma(t.vma)):
        k.policy_set(anon_vma_key(t.vma), True)
    return alloc_for_fault(k, t, "mm_install")




# --- writers ------------------------------------------------------------------------------------------


def vma_start_write(k: Kernel, t: SyscallTask, next_phase: str) -> SyscallTask:
    """Write-lock every VMA in the range (`lock_ranges`); wait for the first one with
    readers to drain (re-entered after each `drained`)."""
    locked = write_locked(k)
    tree = k.tree()
    for vid in (vid for s, e in lock_ranges(t) for vid in tree.vma_ids(s, e)):
        if vid not in locked:
            locked = locked | {vid}
            set_write_locked(k, locked)
            k.emit(LockAcquire(cpu=k.id, vma=vid, lock="vma", mode="write"))
        obj = obj_of(k, vid)
        if k.policy_get(readers_key(obj), 0):
            k.policy_set(drain_key(obj), k.id)
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
    return wait(t, "detached", TreeDone)


def munmap_detached(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    return take_old(t, msg, "downgrade") or t


def munmap_downgrade(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    # Readers may take mmap_lock again from here on, before the zap, flush and frees.
    k.send(MMAP_SEM, Downgrade(mm=k.mm))
    return goto(t, "zap")


def munmap_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    return zap_then(k, t, "flush")


def munmap_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.free_frames(t.frames)
    k.free_pgtable_pages(t.pgtables)
    for vid in t.old:
        set_write_locked(k, write_locked(k) - {vid})
        free_vma(k, vid)
    k.send(MMAP_SEM, UpRead(mm=k.mm))
    k.syscall_return(goto(t, "free", frames=()), t.old)
    return EXIT


def map_fixed_detach(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.request is not None
    old = k.tree().vma_ids(t.start, t.end)
    k.add_writer(t.start, t.end)
    for vid in old:
        vma = k.vma(vid)
        k.set_vma(attrs.evolve(vma, state="detached"))
        k.emit(VmaDetach(cpu=k.id, addr=vma.start, pages=vma.pages, vma=vid))
    return goto(t, "zap", old=old, new=t.request.vma, ret=t.start)


def map_fixed_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    return goto(t, "flush", frames=k.zap_range(t.start, t.pages))


def map_fixed_store(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    k.free_frames(t.frames)
    assert t.start is not None and t.request is not None
    k.send(TREE, StoreVma(addr=t.start, pages=t.pages, request=t.request, mm=k.mm))
    return wait(t, "done", TreeDone, frames=())


def map_fixed_done(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    # vms_complete_munmap_vmas, once the new VMA is in the tree: the old ones go.
    for vid in t.old:
        free_vma(k, vid)
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


def _fork_write_lock(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    """fb49c455323f: every parent VMA is write-locked before its PTEs are
    write-protected (pervma-fork-no-vma-lock: none is)."""
    if not k.knobs(PerVmaKnobs).fork_vma_lock:
        return goto(t, "dup")
    return vma_start_write(k, t, "dup")


def fork_release(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    """mmap_write_unlock of the parent (its VMA write locks go) and of the child (the
    copies were born write-locked); the child's threads start."""
    assert t.child is not None
    write_unlock(k)
    k.fx.policy_set(MmId(t.child), WRITE_LOCKED, None)
    return fork_return(k, t)


def _child_locks(v: View) -> Iterable[fp.Obj]:
    t = v.syscall
    return [fp.policy(MmId(t.child), WRITE_LOCKED)] if t.child is not None else []


CHILD_LOCKS = Access("child's vma write locks", _child_locks, lambda s: [("policy", None, WRITE_LOCKED)])


def mremap_free(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.free_frames(t.frames)
    for vid in t.old:
        set_write_locked(k, write_locked(k) - {vid})
        free_vma(k, vid)
    write_unlock(k)
    k.syscall_return(goto(t, "free", frames=()), t.old)
    return EXIT




def expand_write_lock(k: Kernel) -> bool:
    return k.knobs(PerVmaKnobs).expand_write_lock


def _mm_path() -> tuple[Phase, ...]:
    """lock_mm_and_find_vma and the fault under mmap_lock (common), its allocation
    step preparing the anon_vma."""
    out = []
    for ph in fault_under_mmap_sem("mm_", expand_write_lock, walks_nodes=True):
        if ph.name == "mm_alloc":
            ph = ph.replace(handler=mm_alloc, writes=ph.writes + (ANON_VMA,),
                            doc="prepare the anon_vma if a first write needs it; page-cache lookup or page allocation")
        out.append(ph)
    return tuple(out)


FREE_WRITES = (TASK_FRAMES, OLD_VMAS, FREED_OBJS)

PROTOCOL = ProtocolTable((
    Path("fault", (
        Phase(START, fault_start, ("vma_lock", "mm_lookup"),
              "rcu_read_lock; mas_walk for the VMA (none: rcu_read_unlock, fall back)", sends=(DownRead,),
              reads=(TREE_READ, VMA_AT_ADDR, OBJ_AT_ADDR)),
        Phase("vma_lock", fault_vma_lock, ("alloc", "anon_vma", START, "mm_lookup", EXIT),
              "vma_start_read on the object found: write-locked -> fall back; vm_refcnt zero (detached, freed) -> "
              "look it up again; else a reader reference, rcu_read_unlock, and the recheck: the object no longer "
              "maps the address -> vma_end_read, fall back; a first write to an anonymous VMA needs its anon_vma: "
              "mmap_read_trylock", sends=(DownRead, DownReadTrylock, Drained),
              reads=(OBJ, WRITE_LOCKS), writes=(OBJ_READERS,)),
        Phase("anon_vma", fault_anon_vma, ("alloc", "mm_lookup"),
              "__vmf_anon_prepare: trylock got mmap_lock: prepare the anon_vma, mmap_read_unlock; it did not: "
              "VM_FAULT_RETRY (vma_end_read), fall back", sends=(UpRead, DownRead, Drained),
              reads=(OBJ,), writes=(ANON_VMA, OBJ_READERS)),
        Phase("alloc", fault_alloc, ("install",), "page-cache lookup or page allocation",
              reads=(PAGE_PTE, TASK_VMA), writes=ALLOC_WRITES),
        Phase("install", fault_install, ("install", "cow", EXIT),
              INSTALL_DOC + "; vma_end_read (the last reader wakes a waiting writer)",
              sends=(Drained, Flush), reads=(TASK_VMA, OBJ), writes=INSTALL_WRITES + (OBJ_READERS,),
              only=ONLY_IF_COW),
        Phase("cow", fault_cow, (EXIT,), COW_DOC + "; vma_end_read", sends=(Drained, PteUnlock),
              reads=(TASK_VMA, OBJ), writes=COW_WRITES + (OBJ_READERS,), feature="cow"),
    ) + _mm_path()),
    Path("munmap", (
        writer_start("write_lock", "mmap_write_lock"),
        _write_lock_phase("update"),
        Phase("update", munmap_update, ("detached",), "tree owner clears the range (NULL); VMAs detached",
              sends=(Unmap,)),
        Phase("detached", munmap_detached, ("downgrade",), "the VMAs are out of the tree; next, downgrade"),
        Phase("downgrade", munmap_downgrade, ("zap",),
              "mmap_write_downgrade: faults may take mmap_lock for read (and SIGSEGV) from now on",
              sends=(Downgrade,)),
        Phase("zap", after_ptl(munmap_zap, "zap"), ("zap", "flush", "free_pgtables"),
              "zap the PTEs; free_pgtables reads its bounds", reads=(PGTABLE_BOUNDS,), writes=ZAP_WRITES + (RANGE_PTL,)),
        free_pgtables_phase("flush"),
        flush_phase("free"),
        Phase("free", munmap_free, (EXIT,),
              "free the frames, the unlinked page-table pages, then the VMAs (their objects back to the slab at "
              "once); mmap_read_unlock; return",
              sends=(UpRead,), writes=FREE_WRITES + (WRITE_LOCKS, PGTABLE_PINS) + RETURN_WRITES),
    )),
    Path("mmap_fixed", (
        writer_start("write_lock", "mmap_write_lock"),
        _write_lock_phase("detach"),
        Phase("detach", map_fixed_detach, ("zap",), "detach the old VMAs, still in the tree",
              reads=(TREE_READ,), writes=(RANGE_VMAS, WRITERS)),
        Phase("zap", after_ptl(map_fixed_zap, "zap"), ("zap", "flush"), "zap the old PTEs",
              writes=ZAP_WRITES + (RANGE_PTL,)),
        flush_phase("store"),
        Phase("store", map_fixed_store, ("done",), "free the old frames; tree owner stores the new VMA",
              sends=(StoreVma,), writes=(TASK_FRAMES,)),
        Phase("done", map_fixed_done, (EXIT,), "free the old VMAs (their objects back to the slab at once); "
              "mmap_write_unlock (drops every VMA write lock); return",
              sends=(UpWrite,), writes=(OLD_VMAS, FREED_OBJS, WRITE_LOCKS) + RETURN_WRITES),
    )),
    Path("mprotect", (
        writer_start("write_lock", "mmap_write_lock"),
        _write_lock_phase("update"),
        Phase("update", mprotect_update, ("protect",), "tree owner changes the VMA's protection in place",
              sends=(Protect,)),
        Phase("protect", after_ptl(mprotect_protect, "protect"), ("protect", "flush"), "change the PTEs",
              writes=(RANGE_PTES, RANGE_PTL)),
        flush_phase("release"),
        Phase("release", mprotect_release, (EXIT,), "mmap_write_unlock; return", sends=(UpWrite,),
              writes=(WRITE_LOCKS,) + RETURN_WRITES),
    )),
    mmap_path(
        done=Phase("done", mmap_unlock_done, (EXIT,), "mmap_write_unlock (the new VMA's write lock goes too); "
                   "return the address", sends=(UpWrite,), writes=(WRITE_LOCKS,) + RETURN_WRITES),
        insert_doc="tree owner places and stores the new VMA, write-locked, in the last freed VMA object",
        set_prot_after_insert=True),
    madvise_path(),
    fork_path(
        lock=(Phase("write_lock", _fork_write_lock, ("write_lock", "dup"),
                    "vma_start_write on every parent VMA, waiting for its readers (fb49c455323f; "
                    "pervma-fork-no-vma-lock: none)", reads=(TREE_READ, RANGE_READERS),
                    writes=(WRITE_LOCKS, RANGE_READERS)),),
        release=Phase("release", fork_release, (EXIT,), "mmap_write_unlock of the parent and of the child (every "
                      "VMA write lock goes); wake_up_new_task; return", sends=(UpWrite, WakeUpNewTask),
                      writes=(WRITE_LOCKS, CHILD_LOCKS) + RETURN_WRITES)),
    mremap_path(lambda k: True,
                Phase("free", mremap_free, (EXIT,), "free the destination's old frames and the old VMAs (objects back "
                      "to the slab); mmap_write_unlock; return", sends=(UpWrite,),
                      writes=FREE_WRITES + (WRITE_LOCKS,) + RETURN_WRITES),
                lock=(_write_lock_phase("update"),), start_doc="mmap_write_lock"),
    truncate_path(),
))

def rename_record(key: Hashable, record: Hashable, ren: Mapping[int, int]) -> Hashable:
    """A record with every CPU index read through `ren` (symmetry reduction): only
    `("drain_waiter", object)` names one, the writer waiting for readers."""
    if isinstance(key, tuple) and key and key[0] == "drain_waiter":
        assert isinstance(record, int)
        return ren[record]
    return record


PERVMA = Policy(
    name="pervma",
    summary=("Linux 6.15+ per-VMA locks: lock_vma_under_rcu with its rechecks, fallback to mmap_lock; writers "
             "write-lock VMAs (waiting for readers); a first anonymous write needs mmap_lock; VMA objects reused "
             "at once"),
    protocol=PROTOCOL,
    config=PerVmaKnobs(),
    hooks=BornLocked(),
    setup=with_anon_vmas,
    rename_record=rename_record,
    kernel=("Linux 6.15+: mm/mmap_lock.c lock_vma_under_rcu, vma_start_read, vma_start_write; "
            "arch/x86/mm/fault.c do_user_addr_fault; mm/memory.c __vmf_anon_prepare; mm/vma.c do_vmi_align_munmap, "
            "__mmap_region; kernel/fork.c vm_area_free (SLAB_TYPESAFE_BY_RCU). v6.4-v6.14 had a per-VMA "
            "rw_semaphore and freed VMAs with call_rcu"),
    differences=MODEL_DIFFERENCES + (
        "MADV_DONTNEED takes mmap_lock for read, as in 6.15 (later kernels may use the per-VMA lock)",
        "a VMA object is reused only within the same address space (each mm has its own free objects)",
        "stack expansion does not write-lock the stack VMA first (c137381f71ae): the VMA's new start is one step",
    ),
)

ABLATIONS = (
    PERVMA.ablation("pervma-stack-read-lock", "ablation of pervma: a fault expands a stack under mmap_read_lock, as "
                    "6.1-6.4 did before the StackRot fix; a walk of the maple tree under the read lock can use a node "
                    "freed after a grace period (CVE-2023-3269; trips tree-uaf)",
                    config=PerVmaKnobs(expand_write_lock=False)),
    PERVMA.ablation("pervma-fork-no-vma-lock", "ablation of pervma: fork does not write-lock the parent's VMAs, as 6.4.0 "
                    "before fb49c455323f; a parent write fault copies a page while another CPU still writes it "
                    "through a stale TLB entry (trips cow-isolation)", config=PerVmaKnobs(fork_vma_lock=False)),
    PERVMA.ablation("pervma-no-born-lock", "ablation of pervma: a new VMA enters the tree unlocked, as before 33313a747e81; "
                    "a per-VMA fault maps it before vma_set_page_prot made its protection final (trips permissive-pte)",
                    hooks=BornLocked(lock_new=False)),
    PERVMA.ablation("pervma-no-vma-recheck", "ablation of pervma: after taking a VMA object's read lock, no recheck "
                    "that it still maps the address, though the object may have been reused (trips wrong-vma)",
                    config=PerVmaKnobs(recheck=False)),
)

__all__ = ["PERVMA", "ABLATIONS", "PROTOCOL", "PerVmaKnobs", "Drained", "BornLocked", "vma_start_write",
           "write_unlock", "vma_end_read", "WRITE_LOCKED", "FREE_OBJS"]
