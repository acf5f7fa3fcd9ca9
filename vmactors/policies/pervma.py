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
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from ..actors.cpu import CpuState, MapRequest, Program
from ..actors.messages import Effects, Message
from .base import (
    Policy,
    Protocols,
    alloc_for_fault,
    change_protection,
    check_access,
    fault_done,
    fault_segv,
    fault_task,
    find_vma_under_mmap_sem,
    flush_and_wait,
    free_frame,
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


class PerVmaPolicy(Policy):
    name: ClassVar[str] = "pervma"
    summary: ClassVar[str] = ("Linux 6.4+ per-VMA locks: lock_vma_under_rcu, fallback to mmap_lock; writers "
                              "write-lock VMAs (waiting for readers), MAP_FIXED blocks faults")

    PROTOCOLS: ClassVar[Protocols] = {
        "fault": (
            ("start", "rcu_read_lock; mas_walk for the VMA (none: rcu_read_unlock, fall back)"),
            ("vma_lock", "vma_start_read: write-locked or detached -> rcu_read_unlock, fall back; else take a vm_refcnt reader reference; rcu_read_unlock"),
            ("alloc", "page-cache lookup or page allocation"),
            ("install", "page-table lock: set the PTE; vma_end_read (the last reader wakes a waiting writer)"),
            ("mm_lookup", "fallback: lock_mm_and_find_vma under mmap_lock for read (waits for a writer); none or forbidden: SIGSEGV"),
            ("mm_alloc", "page-cache lookup or page allocation"),
            ("mm_install", "page-table lock: set the PTE; mmap_read_unlock"),
        ),
        "munmap": (
            ("start", "mmap_write_lock"),
            ("write_lock", "vma_start_write on each VMA (wait for its readers to drain)"),
            ("update", "tree owner clears the range (NULL); VMAs detached"),
            ("zap", "mmap_write_downgrade; zap the PTEs"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("free", "free the frames; VMAs freed RCU-safely (call_rcu); mmap_read_unlock; return"),
        ),
        "mmap_fixed": (
            ("start", "mmap_write_lock"),
            ("write_lock", "vma_start_write on each old VMA (wait for its readers to drain)"),
            ("detach", "detach the old VMAs, still in the tree"),
            ("zap", "zap the old PTEs"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("store", "free the old frames; tree owner stores the new VMA"),
            ("done", "old VMAs freed RCU-safely; mmap_write_unlock (drops every VMA write lock); return"),
        ),
        "mprotect": (
            ("start", "mmap_write_lock"),
            ("write_lock", "vma_start_write (wait for readers to drain)"),
            ("update", "tree owner changes the VMA's protection in place"),
            ("protect", "change the PTEs"),
            ("flush", "local flush and shootdown; wait for every ack"),
            ("release", "mmap_write_unlock; return"),
        ),
        "mmap": (
            ("start", "mmap_write_lock"),
            ("insert", "tree owner places and stores the new VMA"),
            ("done", "mmap_write_unlock; return the address"),
        ),
    }

    # --- fault: lock_vma_under_rcu ------------------------------------------------

    def fault_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        cpu = rcu_read_lock(cpu)
        vma = fx.world.find_vma(task.vaddr)
        if vma is None:
            cpu = rcu_read_unlock(fx, cpu)
            return self._fallback(fx, cpu, "no vma under RCU")
        return goto(cpu, "vma_lock", vma=vma.id, holds=("rcu",))

    def fault_vma_lock(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        vma = read_vma(fx, cpu, task.vma)
        if vma.write_locked or vma.state != "live":
            cpu = rcu_read_unlock(fx, cpu)
            why = "write-locked" if vma.write_locked else vma.state
            return self._fallback(fx, cpu, f"vma {vma.id} is {why}")
        fx.world = fx.world.set_vma(attrs.evolve(vma, readers=vma.readers + 1))
        fx.emit("lock.acquire", cpu=cpu.id, vma=vma.id, lock="vma", mode="read")
        cpu = rcu_read_unlock(fx, cpu)
        if check_access(vma, task.access) is not None:
            self._vma_end_read(fx, cpu, vma.id)
            return fault_segv(fx, cpu, program, check_access(vma, task.access) or "")
        return goto(cpu, "alloc", holds=("vma_read",))

    def _fallback(self, fx: Effects, cpu: CpuState, reason: str) -> CpuState:
        task = fault_task(cpu)
        fx.emit("fault.retry", cpu=cpu.id, addr=task.page, pages=1, vma=task.vma, reason=f"{reason}: lock_mm_and_find_vma")
        fx.send("mmap_sem", "down_read")
        return wait(cpu, "mm_lookup", "grant", vma=None, holds=("mmap_sem",))

    def _vma_end_read(self, fx: Effects, cpu: CpuState, vma_id: str) -> None:
        vma = fx.world.vma(vma_id)
        readers = vma.readers - 1
        fx.emit("lock.release", cpu=cpu.id, vma=vma_id, lock="vma", mode="read")
        if readers == 0 and vma.drain_waiter is not None:
            fx.send(f"cpu{vma.drain_waiter}", "drained", arg=vma_id)
            vma = attrs.evolve(vma, drain_waiter=None)
        fx.world = fx.world.set_vma(attrs.evolve(vma, readers=readers))

    def fault_alloc(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return alloc_for_fault(fx, cpu, "install")

    def fault_install(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        cpu = install_for_fault(fx, cpu, fx.world.vma(task.vma))
        self._vma_end_read(fx, cpu, task.vma)
        return fault_done(fx, cpu)

    def fault_mm_lookup(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return find_vma_under_mmap_sem(fx, cpu, program, "mm_alloc")

    def fault_mm_alloc(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return alloc_for_fault(fx, cpu, "mm_install")

    def fault_mm_install(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = fault_task(cpu)
        assert task.vma is not None
        cpu = install_for_fault(fx, cpu, fx.world.vma(task.vma))
        fx.send("mmap_sem", "up_read")
        return fault_done(fx, cpu)

    # --- writers ---------------------------------------------------------------------

    def _vma_start_write(self, fx: Effects, cpu: CpuState, next_phase: str) -> CpuState:
        """Write-lock every VMA in the range; wait for the first one with readers to
        drain (re-entered after each `drained`)."""
        task = syscall_task(cpu)
        assert task.start is not None
        end = task.start + task.pages * 4096
        for vid in fx.world.tree.vma_ids(task.start, end):
            vma = fx.world.vma(vid)
            if not vma.write_locked:
                vma = attrs.evolve(vma, write_locked=True)
                fx.emit("lock.acquire", cpu=cpu.id, vma=vid, lock="vma", mode="write")
            if vma.readers:
                fx.world = fx.world.set_vma(attrs.evolve(vma, drain_waiter=cpu.id))
                fx.emit("lock.wait", cpu=cpu.id, vma=vid, lock="vma", mode="write")
                return wait(cpu, "write_lock", "drained")
            fx.world = fx.world.set_vma(vma)
        return goto(cpu, next_phase)

    def _write_unlock(self, fx: Effects, cpu: CpuState) -> None:
        """mmap_write_unlock: every VMA write lock taken under it goes too."""
        for vid, vma in sorted(fx.world.vmas.items()):
            if vma.write_locked:
                fx.world = fx.world.set_vma(attrs.evolve(vma, write_locked=False))
        fx.send("mmap_sem", "up_write")

    def _write_lock_phase(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return self._vma_start_write(fx, cpu, self._after_write_lock[syscall_task(cpu).op])

    _after_write_lock = {"munmap": "update", "mmap-fixed": "detach", "mprotect": "update"}

    # mmap: the base class's path, with the new VMA born write-locked

    def map_request(self, request: MapRequest) -> MapRequest:
        return attrs.evolve(request, write_locked=True)

    def release_writer(self, fx: Effects, cpu: CpuState) -> None:
        self._write_unlock(fx, cpu)

    # munmap

    def munmap_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "write_lock")

    munmap_write_lock = _write_lock_phase

    def munmap_update(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        fx.send("tree", "unmap", task.start, task.pages, arg=("null", False))
        return wait(cpu, "zap", "tree_done")

    def munmap_zap(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        if msg is not None:
            return goto(cpu, "zap", old=msg.arg)
        task = syscall_task(cpu)
        assert task.start is not None
        # Readers may take mmap_lock again while the zap, flush and frees run.
        fx.send("mmap_sem", "downgrade")
        frames = zap_range(fx, cpu, task.start, task.pages)
        return goto(cpu, "flush", frames=frames)

    def munmap_flush(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return flush_and_wait(fx, cpu, "free")

    def munmap_free(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for fid in task.frames:
            free_frame(fx, cpu, fid)
        for vid in task.old:
            fx.world = fx.world.set_vma(attrs.evolve(fx.world.vma(vid), write_locked=False))
            fx.send("rcu", "call_rcu", arg=vid)
        fx.send("mmap_sem", "up_read")
        return writer_done(fx, goto(cpu, "free", frames=()), program, task.old)

    # MAP_FIXED

    def mmap_fixed_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "write_lock")

    mmap_fixed_write_lock = _write_lock_phase

    def mmap_fixed_detach(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        assert task.start is not None and task.request is not None
        end = task.start + task.pages * 4096
        old = fx.world.tree.vma_ids(task.start, end)
        fx.world = attrs.evolve(fx.world, writers=fx.world.writers | {(cpu.id, task.start, end)})
        for vid in old:
            fx.world = fx.world.set_vma(attrs.evolve(fx.world.vma(vid), state="detached"))
            fx.emit("vma.detach", cpu=cpu.id, vma=vid)
        return goto(cpu, "zap", old=old, new=task.request.vma, ret=task.start)

    def mmap_fixed_zap(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        assert task.start is not None
        frames = zap_range(fx, cpu, task.start, task.pages)
        return goto(cpu, "flush", frames=frames)

    def mmap_fixed_flush(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return flush_and_wait(fx, cpu, "store")

    def mmap_fixed_store(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for fid in task.frames:
            free_frame(fx, cpu, fid)
        assert task.request is not None
        fx.send("tree", "store_vma", task.start, task.pages, arg=attrs.evolve(task.request, write_locked=True))
        return wait(cpu, "done", "tree_done", frames=())

    def mmap_fixed_done(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = syscall_task(cpu)
        for vid in task.old:
            fx.send("rcu", "call_rcu", arg=vid)
        self._write_unlock(fx, cpu)
        return writer_done(fx, cpu, program, task.old)

    # mprotect

    def mprotect_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "write_lock")

    mprotect_write_lock = _write_lock_phase

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

    def mprotect_flush(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return flush_and_wait(fx, cpu, "release")

    def mprotect_release(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        self._write_unlock(fx, cpu)
        return writer_done(fx, cpu, program)
