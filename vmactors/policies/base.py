"""What every policy provides, and the building blocks their protocols share.

A policy is a set of phase handlers. A CPU in a fault or a syscall holds a task whose
`phase` names the next step; `Policy.step` calls the method `<path>_<phase>` (the
path is `fault` or the syscall: `mmap`, `mmap_fixed`, `munmap`, `mprotect`). Each
policy class also lists its paths as data (`PROTOCOLS`), which `vmactors policies`
and the docs print — the same names the code dispatches on.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from ..actors.cpu import CpuState, FaultTask, MapRequest, Program, SyscallTask, finish_op, segv
from ..actors.messages import Effects, Message
from ..mm.layout import PAGE_SIZE
from ..mm.page_table import Pte
from ..mm.tlb import flush_tlb_range
from ..mm.vma import Vma, prot_allows

#: path -> ((phase, what the step does), ...)
Protocols = dict[str, tuple[tuple[str, str], ...]]


def _path(task: FaultTask | SyscallTask) -> str:
    return "fault" if isinstance(task, FaultTask) else task.op.replace("-", "_")


class Policy:
    """Base class. Subclasses set `name`, `summary`, `PROTOCOLS` and the handlers."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    PROTOCOLS: ClassVar[Protocols] = {}
    #: Ablation knob: a CPU waiting for the rwsem takes no interrupts.
    irqs_off_lock_wait: ClassVar[bool] = False

    def begin_fault(self, fx: Effects, cpu: CpuState, program: Program) -> CpuState:
        return self.step(fx, cpu, program, None)

    def begin_syscall(self, fx: Effects, cpu: CpuState, program: Program) -> CpuState:
        return self.step(fx, cpu, program, None)

    def step(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        task = cpu.task
        assert task is not None
        if msg is not None:
            if task.waiting != msg.kind:
                raise RuntimeError(f"{cpu.name} got {msg.kind!r} while waiting for {task.waiting!r}")
            cpu = attrs.evolve(cpu, task=attrs.evolve(task, waiting=None))
        handler = getattr(self, f"{_path(task)}_{task.phase}")
        return handler(fx, cpu, program, msg)  # type: ignore[no-any-return]

    def finish_tail(self, fx: Effects, cpu: CpuState, program: Program, msg: Message) -> CpuState:
        raise RuntimeError(f"{self.name} has no deferred munmap work")

    # mmap (a new mapping) has the same shape in every policy: take the writers'
    # lock, let the tree owner place and store the VMA, release, return the address.

    def map_request(self, request: MapRequest) -> MapRequest:
        """The VMA the tree owner should build (pervma: born write-locked)."""
        return request

    def release_writer(self, fx: Effects, cpu: CpuState) -> None:
        """Release the writers' lock (pervma: with every VMA write lock)."""
        fx.send("mmap_sem", "up_write")

    def mmap_start(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        return lock_for_write(fx, cpu, "insert")

    def mmap_insert(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        request = syscall_task(cpu).request
        assert request is not None
        fx.send("tree", "mmap", arg=self.map_request(request))
        return wait(cpu, "done", "tree_done")

    def mmap_done(self, fx: Effects, cpu: CpuState, program: Program, msg: Message | None) -> CpuState:
        assert msg is not None
        request = syscall_task(cpu).request
        assert request is not None
        placed = bool(msg.arg)  # () when no gap fits
        cpu = goto(cpu, "done", ret=msg.arg[0] if placed else "segv", start=msg.addr,  # type: ignore[index]
                   new=request.vma if placed else None)
        self.release_writer(fx, cpu)
        return writer_done(fx, cpu, program)


# --- building blocks -------------------------------------------------------------


def wait(cpu: CpuState, phase: str, waiting: str, **changes: Any) -> CpuState:
    """Block the CPU's task until a `waiting` message arrives, then run `phase`."""
    assert cpu.task is not None
    return attrs.evolve(cpu, task=attrs.evolve(cpu.task, phase=phase, waiting=waiting, **changes))


def goto(cpu: CpuState, phase: str, **changes: Any) -> CpuState:
    """Make `phase` the task's next step (runnable)."""
    assert cpu.task is not None
    return attrs.evolve(cpu, task=attrs.evolve(cpu.task, phase=phase, waiting=None, **changes))


def lock_for_write(fx: Effects, cpu: CpuState, next_phase: str) -> CpuState:
    """down_write(mmap_sem) — the writers' lock in every policy; `next_phase` runs
    on the grant."""
    fx.send("mmap_sem", "down_write")
    return wait(cpu, next_phase, "grant")


def fault_task(cpu: CpuState) -> FaultTask:
    assert isinstance(cpu.task, FaultTask)
    return cpu.task


def syscall_task(cpu: CpuState) -> SyscallTask:
    assert isinstance(cpu.task, SyscallTask)
    return cpu.task


def read_vma(fx: Effects, cpu: CpuState, vma_id: str) -> Vma:
    """A fault path reading a VMA it found earlier; reading a freed one is a
    use-after-free, reported to the `vma-uaf` checker."""
    vma = fx.world.vma(vma_id)
    if vma.state == "freed":
        fx.note("vma-read-freed", (cpu.id, vma_id))
    return vma


def rcu_read_lock(cpu: CpuState) -> CpuState:
    return attrs.evolve(cpu, rcu_nesting=cpu.rcu_nesting + 1)


def rcu_read_unlock(fx: Effects, cpu: CpuState) -> CpuState:
    """Leave a read-side section; a quiescent state owed to RCU is reported now."""
    nesting = cpu.rcu_nesting - 1
    if nesting == 0 and cpu.qs_owed:
        fx.send("rcu", "qs")
        return attrs.evolve(cpu, rcu_nesting=0, qs_owed=False)
    return attrs.evolve(cpu, rcu_nesting=nesting)


def fault_done(fx: Effects, cpu: CpuState) -> CpuState:
    """The fault is over: the access restarts from the TLB on the CPU's next step."""
    task = fault_task(cpu)
    fx.emit("fault.end", cpu=cpu.id, addr=task.page, pages=1, vma=task.vma)
    return attrs.evolve(cpu, task=None)


def fault_segv(fx: Effects, cpu: CpuState, program: Program, reason: str) -> CpuState:
    return segv(fx, cpu, program, fault_task(cpu), reason)


def find_vma_under_mmap_sem(fx: Effects, cpu: CpuState, program: Program, next_phase: str) -> CpuState:
    """find_vma with mmap_sem held for read: no VMA, or one that forbids the access,
    is up_read and SIGSEGV; else `next_phase` with the VMA."""
    task = fault_task(cpu)
    vma = fx.world.find_vma(task.vaddr)
    why = check_access(vma, task.access)
    if why is not None:
        fx.send("mmap_sem", "up_read")
        return fault_segv(fx, cpu, program, why)
    assert vma is not None
    return goto(cpu, next_phase, vma=vma.id)


def alloc_for_fault(fx: Effects, cpu: CpuState, next_phase: str) -> CpuState:
    """The allocation step: a page-cache or fresh frame for the fault's VMA, unless a
    PTE is already there (the install step then rechecks it)."""
    task = fault_task(cpu)
    assert task.vma is not None
    if task.page in fx.world.ptes:
        return goto(cpu, next_phase)
    frame, fresh = alloc_page(fx, cpu, fx.world.vma(task.vma), task.page)
    return goto(cpu, next_phase, frame=frame, fresh=fresh)


def check_access(vma: Vma | None, access: str) -> str | None:
    """Why the fault must SIGSEGV, or None if the VMA allows the access."""
    if vma is None:
        return "no vma"
    if not prot_allows(vma.prot, access):
        return f"vma {vma.id} is {vma.prot}"
    return None


def alloc_page(fx: Effects, cpu: CpuState, vma: Vma, page: int) -> tuple[int, bool]:
    """The frame to map at `page`: the page-cache frame of a file, or a fresh anon
    frame (already-mapped anon pages are left to the install step's check)."""
    if vma.kind == "file":
        index = (page - vma.start) // PAGE_SIZE
        assert vma.file is not None
        return fx.world.page_cache[(vma.file, index)], False
    frames, fid = fx.world.frames.alloc(vma.frame_owner(page), vma.fill)
    fx.world = attrs.evolve(fx.world, frames=frames)
    fx.emit("frame.alloc", cpu=cpu.id, addr=page, pages=1, frame=fid, vma=vma.id)
    return fid, True


def free_frame(fx: Effects, cpu: CpuState, fid: int) -> None:
    fx.world = attrs.evolve(fx.world, frames=fx.world.frames.release(fid))
    fx.emit("frame.free", cpu=cpu.id, frame=fid)


def set_pte(fx: Effects, cpu: CpuState, vma: Vma, task: FaultTask) -> str:
    """Install the fault's PTE under the page-table lock, rechecking what is there.

    Returns "installed"; "spurious" when a PTE already allows the access (another
    CPU installed it first, or only this CPU's TLB entry was stale: the caller drops
    it so the access walks again); or "upgraded" when a present PTE forbids the access
    but the VMA allows it (a write fault after mprotect or MAP_FIXED raced the
    fault): as do_wp_page reusing the page, the PTE takes the VMA's protection. A
    fresh frame the fault no longer needs goes back."""
    page = task.page
    pte = fx.world.ptes.get(page)
    if pte is not None:
        if task.fresh and task.frame is not None:
            free_frame(fx, cpu, task.frame)
        if prot_allows(pte.prot, task.access):
            return "spurious"
        new = attrs.evolve(pte, prot=vma.prot, vma=vma.id)
        fx.world = fx.world.install_pte(page, new)
        fx.emit("pte.protect", cpu=cpu.id, addr=page, pages=1, frame=pte.frame, vma=vma.id, prot=vma.prot)
        return "upgraded"
    frame = task.frame
    if frame is None:
        # The PTE this fault meant to upgrade was zapped meanwhile: map a page now.
        frame, _ = alloc_page(fx, cpu, vma, page)
    new = Pte(frame=frame, prot=vma.prot, vma=vma.id, owner=vma.frame_owner(page))
    fx.world = fx.world.install_pte(page, new)
    fx.emit("pte.install", cpu=cpu.id, addr=page, pages=1, frame=frame, vma=vma.id, prot=vma.prot)
    return "installed"


def install_for_fault(fx: Effects, cpu: CpuState, vma: Vma) -> CpuState:
    """set_pte through `vma`; when the PTE was already there, drop this CPU's stale
    TLB entry so the retried access walks the page table again."""
    task = fault_task(cpu)
    if set_pte(fx, cpu, vma, task) != "installed":
        return drop_stale_tlb(fx, cpu, task.page)
    return cpu


def drop_stale_tlb(fx: Effects, cpu: CpuState, page: int) -> CpuState:
    if page in cpu.tlb:
        fx.emit("tlb.flush", cpu=cpu.id, addr=page, pages=1, reason="local")
        return attrs.evolve(cpu, tlb=flush_tlb_range(cpu.tlb, page, 1))
    return cpu


def zap_range(fx: Effects, cpu: CpuState, start: int, pages: int) -> tuple[int, ...]:
    """zap_page_range: clear the PTEs; returns the anon frames to free after the flush
    (page-cache frames stay with the file)."""
    fx.world, zapped = fx.world.zap_range(start, pages)
    frames = []
    for page, pte in zapped:
        fx.emit("pte.zap", cpu=cpu.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma)
        if not pte.owner.startswith("file:"):
            frames.append(pte.frame)
    return tuple(frames)


def change_protection(fx: Effects, cpu: CpuState, start: int, pages: int, prot: str, vma_id: str | None) -> None:
    """mprotect's PTE update: every PTE of the range gets `prot` (and, for a VMA copy,
    the copy's id)."""
    for page in range(start, start + pages * PAGE_SIZE, PAGE_SIZE):
        pte = fx.world.ptes.get(page)
        if pte is None:
            continue
        new = attrs.evolve(pte, prot=prot, vma=vma_id or pte.vma)
        fx.world = fx.world.install_pte(page, new)
        fx.emit("pte.protect", cpu=cpu.id, addr=page, pages=1, frame=pte.frame, vma=new.vma, prot=prot)


def flush_tlb_range_and_shootdown(fx: Effects, cpu: CpuState, start: int, pages: int) -> CpuState:
    """flush_tlb_range: the initiator flushes its own TLB and asks the coordinator to
    IPI every other CPU; the caller then waits for `flush_done`."""
    fx.emit("tlb.flush", cpu=cpu.id, addr=start, pages=pages, reason="local")
    fx.send("shootdown", "flush", start, pages)
    return attrs.evolve(cpu, tlb=flush_tlb_range(cpu.tlb, start, pages))


def flush_and_wait(fx: Effects, cpu: CpuState, next_phase: str) -> CpuState:
    """The syscall's shootdown over its range; `next_phase` runs on `flush_done`."""
    task = syscall_task(cpu)
    assert task.start is not None
    cpu = flush_tlb_range_and_shootdown(fx, cpu, task.start, task.pages)
    return wait(cpu, next_phase, "flush_done")


def writer_done(fx: Effects, cpu: CpuState, program: Program, unmapped: tuple[str, ...] = ()) -> CpuState:
    """A writer syscall returns: its range leaves the writer set, the VMAs it
    unmapped are recorded for `munmap-incomplete`, the label register is set."""
    task = syscall_task(cpu)
    world = fx.world
    writers = frozenset(w for w in world.writers if w[0] != cpu.id)
    fx.world = attrs.evolve(world, writers=writers, unmapped=world.unmapped | frozenset(unmapped))
    if unmapped:
        fx.note("munmap-returned", (cpu.id, unmapped))
    ret = task.ret if task.ret is not None else 0
    fx.emit("syscall.end", cpu=cpu.id, addr=task.start, pages=task.pages, vma=task.new, op=task.op,
            text=program.threads[cpu.id][2][cpu.pc], ret=ret)
    if task.op == "mmap":
        return finish_op(fx, cpu, program, ret, task.label)
    return finish_op(fx, cpu, program, None)


def free_vma_now(fx: Effects, cpu: CpuState, vma_id: str) -> None:
    vma = fx.world.vma(vma_id)
    fx.world = fx.world.set_vma(attrs.evolve(vma, state="freed"))
    fx.emit("vma.free", cpu=cpu.id, addr=vma.start, pages=vma.pages, vma=vma_id)
