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
- VMAs: the tree holds one reference, each `fault`-path fault one; whoever drops the
  last hands the VMA to `call_rcu`.

Seed message: "While one thread is calling mmap(MAP_FIXED), two other threads which
are accessing the same address may see different data from each other ... I believe
this is OK" — the `coherence` invariant is what Glisse objects to.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..actors.cpu import CpuState, Program
from ..actors.messages import Effects, Message
from .base import (
    Policy,
    Protocols,
    alloc_for_fault,
    alloc_page,
    change_protection,
    check_access,
    fault_done,
    fault_segv,
    fault_task,
    flush_and_wait,
    flush_tlb_range_and_shootdown,
    free_frame,
    free_vma_now,
    goto,
    install_for_fault,
    lock_for_write,
    rcu_read_lock,
    rcu_read_unlock,
    read_vma,
    syscall_task,
    wait,
    writer_done,
    zap_range,
)


def put_vma(fx: Effects, cpu: CpuState, vma_id: str, grace_period: bool) -> None:
    """Drop one reference; the last one hands the VMA to call_rcu (or, without a
    grace period, frees it at once)."""
    vma = fx.world.vma(vma_id)
    fx.world = fx.world.set_vma(attrs.evolve(vma, refcount=vma.refcount - 1))
    fx.emit("lock.release", cpu=cpu.id, vma=vma_id, lock="refcount", mode="read")
    if vma.refcount - 1 == 0:
        if grace_period:
            fx.send("rcu", "call_rcu", arg=vma_id)
        else:
            free_vma_now(fx, cpu, vma_id)


class WilcoxPolicy(Policy):
    name: ClassVar[str] = "wilcox"
    summary: ClassVar[str] = ("Wilcox 2019: RCU tree lookup, rcu_map_pages for file faults, refcounted anon "
                              "faults, ZERO entry while munmap flushes, MAP_FIXED never blocks faults")
    # Safeguards, each removed by one ablation.
    zero_entry: ClassVar[bool] = True
    free_before_flush: ClassVar[bool] = False
    grace_period: ClassVar[bool] = True
    recheck: ClassVar[bool] = True
    early_return: ClassVar[bool] = False
    #: glisse: writers fence the range so faults that find a VMA there wait.
    fences: ClassVar[bool] = False

    PROTOCOLS: ClassVar[Protocols] = {
        "fault": (
            ("start", "rcu_read_lock; find_vma in the published tree (NULL or ZERO: SIGSEGV); file -> map_pages, anon -> get_ref"),
            ("map_pages", "rcu_map_pages: look the page up in the page cache, still under RCU, no reference"),
            ("install_rcu", "page-table lock: recheck the VMA is attached (else retry), set the PTE; rcu_read_unlock"),
            ("get_ref", "take a VMA reference (inc-not-zero, else retry); rcu_read_unlock"),
            ("alloc", "allocate a zeroed page"),
            ("install", "page-table lock: recheck the VMA is attached (else free the page, retry), set the PTE; drop the reference"),
        ),
        "munmap": (
            ("start", "take the writers' lock (mmap_sem for write)"),
            ("update", "tree owner stores ZERO over the range; VMAs detached"),
            ("zap", "zap the PTEs; release the writers' lock"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("free", "free the frames"),
            ("clear", "tree owner turns ZERO into NULL"),
            ("put", "drop the tree's VMA references (the last one: call_rcu); return"),
        ),
        "mmap_fixed": (
            ("start", "take the writers' lock"),
            ("update", "tree owner stores the new VMA over the range in one store; old VMAs detached"),
            ("zap", "zap the old PTEs; release the writers' lock"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("free", "free the old frames; drop the old VMAs' tree references; return"),
        ),
        "mprotect": (
            ("start", "take the writers' lock"),
            ("update", "tree owner stores a copy of the VMA with the new protection"),
            ("protect", "change the PTEs; release the writers' lock"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("put", "drop the old VMA's tree reference; return"),
        ),
        "mmap": (
            ("start", "take the writers' lock"),
            ("insert", "tree owner places the VMA (ZERO ranges are taken) and stores it"),
            ("done", "release the writers' lock; return the address"),
        ),
    }

    # --- fault ----------------------------------------------------------------

    def fault_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        if not cpu.rcu_nesting:
            cpu = rcu_read_lock(cpu)
            fx.emit("lock.acquire", cpu=cpu.id, lock="rcu", mode="read")
        vma = fx.world.find_vma(task.vaddr)
        why = check_access(vma, task.access)
        if why is not None:
            cpu = self._leave_rcu(fx, cpu)
            return fault_segv(fx, cpu, program, why)
        assert vma is not None
        blocked = self.fault_must_wait(fx, cpu, vma.id)
        if blocked is not None:
            return blocked
        if vma.kind == "file":
            return goto(cpu, "map_pages", vma=vma.id, holds=("rcu",))
        return goto(cpu, "get_ref", vma=vma.id, holds=("rcu",))

    def fault_must_wait(self, fx: Effects, cpu: CpuState, vma_id: str) -> CpuState | None:
        """Hook for `glisse`: wait instead of faulting in this VMA now."""
        return None

    def _leave_rcu(self, fx: Effects, cpu: CpuState) -> CpuState:
        fx.emit("lock.release", cpu=cpu.id, lock="rcu", mode="read")
        return rcu_read_unlock(fx, cpu)

    def _retry(self, fx: Effects, cpu: CpuState, reason: str) -> CpuState:
        task = fault_task(cpu)
        fx.emit("fault.retry", cpu=cpu.id, addr=task.page, pages=1, vma=task.vma, reason=reason)
        return goto(cpu, "start", vma=None, frame=None, fresh=False, holds=())

    def _attached(self, fx: Effects, vma_id: str) -> bool:
        return not self.recheck or fx.world.vma(vma_id).state == "live"

    def fault_map_pages(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        vma = read_vma(fx, cpu, task.vma)
        frame, _ = alloc_page(fx, cpu, vma, task.page)
        return goto(cpu, "install_rcu", frame=frame, fresh=False)

    def fault_install_rcu(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        vma = read_vma(fx, cpu, task.vma)
        if not self._attached(fx, task.vma):
            cpu = self._leave_rcu(fx, cpu)
            return self._retry(fx, cpu, f"vma {task.vma} detached")
        cpu = install_for_fault(fx, cpu, vma)
        cpu = self._leave_rcu(fx, cpu)
        return fault_done(fx, cpu)

    def fault_get_ref(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        vma = read_vma(fx, cpu, task.vma)
        if vma.refcount == 0:  # inc-not-zero failed: the VMA is on its way out
            cpu = self._leave_rcu(fx, cpu)
            return self._retry(fx, cpu, f"vma {task.vma} refcount is zero")
        fx.world = fx.world.set_vma(attrs.evolve(vma, refcount=vma.refcount + 1))
        fx.emit("lock.acquire", cpu=cpu.id, vma=vma.id, lock="refcount", mode="read")
        cpu = self._leave_rcu(fx, cpu)
        return goto(cpu, "alloc", holds=("ref",))

    def fault_alloc(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return alloc_for_fault(fx, cpu, "install")

    def fault_install(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        vma = read_vma(fx, cpu, task.vma)
        if not self._attached(fx, task.vma):
            if task.fresh and task.frame is not None:
                free_frame(fx, cpu, task.frame)
            put_vma(fx, cpu, task.vma, self.grace_period)
            return self._retry(fx, cpu, f"vma {task.vma} detached")
        cpu = install_for_fault(fx, cpu, vma)
        put_vma(fx, cpu, task.vma, self.grace_period)
        return fault_done(fx, cpu)

    # --- writers -----------------------------------------------------------------

    def _zap_and_release(self, fx: Effects, cpu: CpuState) -> CpuState:
        task = syscall_task(cpu)
        assert task.start is not None
        frames = zap_range(fx, cpu, task.start, task.pages)
        if self.free_before_flush:
            for fid in frames:
                free_frame(fx, cpu, fid)
            frames = ()
        # The writers' serialisation ends here: the flush and frees run outside it.
        fx.send("mmap_sem", "up_write")
        return goto(cpu, "flush", frames=frames)

    # munmap

    def munmap_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "update")

    def munmap_entry(self) -> str:
        """What munmap leaves in the tree until its flush is done."""
        return "zero" if self.zero_entry else "null"

    def munmap_update(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("tree", "unmap", task.start, task.pages, arg=(self.munmap_entry(), self.fences))
        return wait(cpu, "zap", "tree_done")

    def munmap_zap(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        if msg is not None:
            return goto(cpu, "zap", old=msg.arg)
        return self._zap_and_release(fx, cpu)

    def munmap_flush(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        if self.early_return and cpu.tail is None:
            # The ablation: return once the IPIs are on their way; the rest of the
            # munmap runs when the acks are in.
            task = syscall_task(cpu)
            assert task.start is not None
            cpu = flush_tlb_range_and_shootdown(fx, cpu, task.start, task.pages)
            tail = attrs.evolve(task, phase="free", waiting="flush_done")
            cpu = writer_done(fx, cpu, program, task.old)
            return attrs.evolve(cpu, tail=tail)
        return flush_and_wait(fx, cpu, "free")

    def finish_tail(self, fx: Effects, cpu: CpuState, program: Program, msg: Message) -> CpuState:
        tail = cpu.tail
        assert tail is not None
        for fid in tail.frames:
            free_frame(fx, cpu, fid)
        if self.zero_entry:
            fx.send("tree", "clear_zero", tail.start, tail.pages, arg=False)
        for vid in tail.old:
            put_vma(fx, cpu, vid, self.grace_period)
        return attrs.evolve(cpu, tail=None)

    def munmap_free(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for fid in task.frames:
            free_frame(fx, cpu, fid)
        cpu = self.flush_done_hook(fx, cpu)
        return goto(cpu, "clear" if self.munmap_entry() == "zero" else "put", frames=())

    def flush_done_hook(self, fx: Effects, cpu: CpuState) -> CpuState:
        """Hook for `glisse`: open the fence once the old range's flush is done."""
        return cpu

    def munmap_clear(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("tree", "clear_zero", task.start, task.pages, arg=True)
        return wait(cpu, "put", "tree_done")

    def munmap_put(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for vid in task.old:
            put_vma(fx, cpu, vid, self.grace_period)
        return writer_done(fx, cpu, program, task.old)

    # MAP_FIXED

    def mmap_fixed_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "update")

    def mmap_fixed_update(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("tree", "map_fixed", task.start, task.pages, arg=(task.request, self.fences))
        return wait(cpu, "zap", "tree_done")

    def mmap_fixed_zap(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        if msg is not None:
            task = syscall_task(cpu)
            assert task.request is not None
            return goto(cpu, "zap", old=msg.arg, new=task.request.vma, ret=task.start)
        return self._zap_and_release(fx, cpu)

    def mmap_fixed_flush(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return flush_and_wait(fx, cpu, "free")

    def mmap_fixed_free(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for fid in task.frames:
            free_frame(fx, cpu, fid)
        for vid in task.old:
            put_vma(fx, cpu, vid, self.grace_period)
        cpu = self.map_fixed_done_hook(fx, cpu)
        return writer_done(fx, goto(cpu, "free", frames=()), program, task.old)

    def map_fixed_done_hook(self, fx: Effects, cpu: CpuState) -> CpuState:
        """Hook for `glisse`: the whole MAP_FIXED is done."""
        return cpu

    # mprotect

    def mprotect_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "update")

    def mprotect_update(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        # RCU readers never see a VMA change under them: the tree gets a copy.
        fx.send("tree", "protect", task.start, task.pages, arg=(task.prot, task.new))
        return wait(cpu, "protect", "tree_done")

    def mprotect_protect(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        if msg is not None:
            return goto(cpu, "protect", old=msg.arg)
        assert task.start is not None and task.prot is not None
        new_id = fx.world.tree.find_vma(task.start) if task.old else None
        change_protection(fx, cpu, task.start, task.pages, task.prot, new_id)
        fx.send("mmap_sem", "up_write")
        return goto(cpu, "flush")

    def mprotect_flush(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return flush_and_wait(fx, cpu, "put")

    def mprotect_put(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for vid in task.old:
            put_vma(fx, cpu, vid, self.grace_period)
        return writer_done(fx, cpu, program)


class WilcoxNoZero(WilcoxPolicy):
    name: ClassVar[str] = "wilcox-no-zero"
    summary: ClassVar[str] = "ablation of wilcox: munmap stores NULL, not ZERO, so a new mmap can reuse the range before the flush (trips coherence)"
    zero_entry: ClassVar[bool] = False


class WilcoxFreeBeforeFlush(WilcoxPolicy):
    name: ClassVar[str] = "wilcox-free-before-flush"
    summary: ClassVar[str] = "ablation of wilcox: frames freed at the zap, before the shootdown completes (trips frame-uaf)"
    free_before_flush: ClassVar[bool] = True


class WilcoxNoGrace(WilcoxPolicy):
    name: ClassVar[str] = "wilcox-no-grace"
    summary: ClassVar[str] = "ablation of wilcox: the last reference frees the VMA at once, without an RCU grace period (trips vma-uaf)"
    grace_period: ClassVar[bool] = False


class WilcoxNoRecheck(WilcoxPolicy):
    name: ClassVar[str] = "wilcox-no-recheck"
    summary: ClassVar[str] = "ablation of wilcox: no recheck under the page-table lock that the VMA is still attached (trips orphan-pte)"
    recheck: ClassVar[bool] = False


class WilcoxEarlyReturn(WilcoxPolicy):
    name: ClassVar[str] = "wilcox-early-return"
    summary: ClassVar[str] = "ablation of wilcox: munmap returns once its IPIs are sent; frees and ZERO -> NULL still wait for the acks (trips munmap-incomplete)"
    early_return: ClassVar[bool] = True
