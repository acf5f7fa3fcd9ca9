"""`mmap_sem`: the baseline — one rwsem per mm (Linux before 6.4).

Faults take the rwsem for read; mmap, munmap, MAP_FIXED and mprotect take it for
write and hold it to the end, TLB flush and frees included. So a fault concurrent
with munmap waits and then SIGSEGVs, a fault on a range being replaced by MAP_FIXED
waits and then sees the new mapping, and no CPU can reach a new page while another
still caches the old one.
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
    change_protection,
    fault_done,
    fault_task,
    find_vma_under_mmap_sem,
    flush_and_wait,
    free_frame,
    free_vma_now,
    goto,
    install_for_fault,
    lock_for_write,
    syscall_task,
    wait,
    writer_done,
    zap_range,
)


class MmapSemPolicy(Policy):
    name: ClassVar[str] = "mmap_sem"
    summary: ClassVar[str] = "one rwsem per mm: faults read-lock it, writers write-lock it to the end (flush and frees included)"
    #: Ablation knob: free the zapped frames before the shootdown completes.
    free_before_flush: ClassVar[bool] = False

    PROTOCOLS: ClassVar[Protocols] = {
        "fault": (
            ("start", "down_read(mmap_sem); wait for the grant"),
            ("lookup", "find_vma under the read lock; none or forbidden: up_read, SIGSEGV"),
            ("alloc", "page-cache lookup (file) or page allocation (anon)"),
            ("install", "under the page-table lock: set the PTE unless one is there; up_read; retry the access"),
        ),
        "mmap": (
            ("start", "down_write(mmap_sem); wait for the grant"),
            ("insert", "ask the tree owner to place and store the new VMA"),
            ("done", "up_write; return the address"),
        ),
        "munmap": (
            ("start", "down_write(mmap_sem); wait for the grant"),
            ("update", "ask the tree owner to store NULL over the range (VMAs detached)"),
            ("zap", "zap the PTEs under the page-table lock"),
            ("flush", "flush the local TLB, ask for the shootdown, wait for every ack"),
            ("free", "free the frames and the VMAs, still under the write lock"),
            ("release", "up_write; return"),
        ),
        "mmap_fixed": (
            ("start", "down_write(mmap_sem); wait for the grant"),
            ("update", "ask the tree owner to store the new VMA over the range"),
            ("zap", "zap the old PTEs"),
            ("flush", "local flush, shootdown, wait for every ack"),
            ("free", "free the old frames and VMAs"),
            ("release", "up_write; return"),
        ),
        "mprotect": (
            ("start", "down_write(mmap_sem); wait for the grant"),
            ("update", "ask the tree owner to change the VMA's protection in place"),
            ("protect", "change the PTEs' protection"),
            ("flush", "local flush, shootdown, wait for every ack"),
            ("release", "up_write; return"),
        ),
    }

    # --- fault ----------------------------------------------------------------

    def fault_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        fx.send("mmap_sem", "down_read")
        return wait(cpu, "lookup", "grant", holds=("mmap_sem",))

    def fault_lookup(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return find_vma_under_mmap_sem(fx, cpu, program, "alloc")

    def fault_alloc(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return alloc_for_fault(fx, cpu, "install")

    def fault_install(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        cpu = install_for_fault(fx, cpu, fx.world.vma(task.vma))
        fx.send("mmap_sem", "up_read")
        return fault_done(fx, cpu)

    # --- writers: shared shape --------------------------------------------------

    def _zap(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        assert task.start is not None
        frames = zap_range(fx, cpu, task.start, task.pages)
        if self.free_before_flush:
            for fid in frames:
                free_frame(fx, cpu, fid)
            frames = ()
        return goto(cpu, "flush", frames=frames)

    def _flush(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return flush_and_wait(fx, cpu, "free" if syscall_task(cpu).op != "mprotect" else "release")

    def _free(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for fid in task.frames:
            free_frame(fx, cpu, fid)
        for vid in task.old:
            if fx.world.vma(vid).state == "detached":
                free_vma_now(fx, cpu, vid)
        return goto(cpu, "release", frames=())

    def _release(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("mmap_sem", "up_write")
        return writer_done(fx, cpu, program, task.old if task.op != "mprotect" else ())

    # --- munmap -----------------------------------------------------------------

    def munmap_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "update")

    def munmap_update(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("tree", "unmap", task.start, task.pages, arg=("null", False))
        return wait(cpu, "zap", "tree_done")

    def munmap_zap(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        if msg is not None:
            return goto(cpu, "zap", old=msg.arg)
        return self._zap(fx, cpu, program, msg)

    munmap_flush = _flush
    munmap_free = _free
    munmap_release = _release

    # --- MAP_FIXED ----------------------------------------------------------------

    def mmap_fixed_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "update")

    def mmap_fixed_update(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("tree", "map_fixed", task.start, task.pages, arg=(task.request, False))
        return wait(cpu, "zap", "tree_done")

    def mmap_fixed_zap(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        if msg is not None:
            task = syscall_task(cpu)
            return goto(cpu, "zap", old=msg.arg, new=task.request.vma, ret=task.start)  # type: ignore[union-attr]
        return self._zap(fx, cpu, program, msg)

    mmap_fixed_flush = _flush
    mmap_fixed_free = _free
    mmap_fixed_release = _release

    # --- mprotect -----------------------------------------------------------------

    def mprotect_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "update")

    def mprotect_update(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("tree", "protect", task.start, task.pages, arg=(task.prot, None))
        return wait(cpu, "protect", "tree_done")

    def mprotect_protect(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        if msg is not None:
            return goto(cpu, "protect", old=msg.arg, new=None)
        assert task.start is not None and task.prot is not None
        change_protection(fx, cpu, task.start, task.pages, task.prot, None)
        return goto(cpu, "flush")

    mprotect_flush = _flush
    mprotect_release = _release


class MmapSemFreeBeforeFlush(MmapSemPolicy):
    name: ClassVar[str] = "mmap_sem-free-before-flush"
    summary: ClassVar[str] = "ablation of mmap_sem: frames freed at the zap, before the shootdown completes (trips frame-uaf)"
    free_before_flush: ClassVar[bool] = True


class MmapSemIrqsOffWait(MmapSemPolicy):
    name: ClassVar[str] = "mmap_sem-irqs-off-wait"
    summary: ClassVar[str] = "ablation of mmap_sem: a CPU waiting for the rwsem takes no IPIs (trips deadlock)"
    irqs_off_lock_wait: ClassVar[bool] = True


__all__ = ["MmapSemPolicy", "MmapSemFreeBeforeFlush", "MmapSemIrqsOffWait", "attrs"]
