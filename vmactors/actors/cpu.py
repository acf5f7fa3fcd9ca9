"""The CPU actor: runs its thread's ops, owns its TLB, answers IPIs and RCU.

The generic part lives here (op dispatch, TLB hit / page walk / access, IPIs,
quiescent states); everything a locking design decides — the fault path and the
writer syscalls — is delegated to the policy object, phase by phase. A CPU halfway
through a fault or a syscall is an explicit `FaultTask` / `SyscallTask` value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Union

import attrs
import immutables

from ..mm.layout import page_of
from ..mm.page_table import TlbEntry
from ..mm.tlb import flush_tlb_range
from ..mm.vma import prot_allows
from ..scenario.model import Load, Mmap, MmapFixed, Mprotect, Munmap, Op, RegValue, Store
from .messages import Effects, Message

if TYPE_CHECKING:
    from ..policies.base import Policy


@attrs.frozen(cache_hash=True)
class FaultTask:
    """A page fault in progress. `phase` names the next protocol step; `waiting` the
    message kind it is blocked on (None: runnable)."""

    phase: str
    vaddr: int
    access: Literal["load", "store"]
    waiting: str | None = None
    vma: str | None = None
    #: The frame this fault will map (a fresh anon frame, or the page-cache frame).
    frame: int | None = None
    fresh: bool = False
    #: What the fault holds: "mmap_sem", "rcu", "ref", "vma_read".
    holds: tuple[str, ...] = ()

    @property
    def page(self) -> int:
        return page_of(self.vaddr)


@attrs.frozen(cache_hash=True)
class MapRequest:
    """What a new mapping should be: the tree owner builds the VMA from it."""

    vma: str
    pages: int
    kind: Literal["anon", "file"]
    file: str | None
    fill: int
    prot: str = "rw"
    at: int | None = None
    #: pervma: the VMA is write-locked from the moment it enters the tree until the
    #: writer's mmap_write_unlock ("always lock new vma before inserting").
    write_locked: bool = False


@attrs.frozen(cache_hash=True)
class SyscallTask:
    """A writer syscall (mmap, MAP_FIXED, munmap, mprotect) in progress."""

    op: Literal["mmap", "mmap-fixed", "munmap", "mprotect"]
    phase: str
    start: int | None
    pages: int
    waiting: str | None = None
    request: MapRequest | None = None
    prot: str | None = None
    label: str | None = None
    #: VMAs the operation removed or replaced.
    old: tuple[str, ...] = ()
    #: The VMA it created (mmap, MAP_FIXED, an mprotect copy).
    new: str | None = None
    #: Frames to free once the shootdown is done.
    frames: tuple[int, ...] = ()
    #: Return value once known (an address, or 0).
    ret: RegValue | None = None


Task = Union[FaultTask, SyscallTask]


@attrs.frozen(cache_hash=True)
class CpuState:
    id: int
    thread: int | None = None
    pc: int = 0
    #: Register name -> value.
    regs: immutables.Map[str, RegValue] = immutables.Map()
    tlb: immutables.Map[int, TlbEntry] = immutables.Map()
    task: Task | None = None
    #: Whether the current op has logged `op.begin` (a faulting access restarts).
    started: bool = False
    #: rcu_read_lock() nesting.
    rcu_nesting: int = 0
    #: A quiescent-state request arrived inside a read-side section.
    qs_owed: bool = False
    #: wilcox-early-return: a returned munmap's remaining work, run on its completion.
    tail: SyscallTask | None = None

    @property
    def name(self) -> str:
        return f"cpu{self.id}"


@attrs.frozen
class Program:
    """What the CPUs run: constant for a run, not part of the state."""

    #: per CPU: the thread index (or None) and its ops and op texts.
    threads: tuple[tuple[int | None, tuple[Op, ...], tuple[str, ...]], ...]
    #: global label -> (address, pages).
    maps: immutables.Map[str, tuple[int, int]]
    #: per thread: local label -> pages its mmap asked for.
    local_pages: tuple[immutables.Map[str, int], ...]
    ncpus: int

    def ops(self, cpu: int) -> tuple[Op, ...]:
        return self.threads[cpu][1]


def runnable(cpu: CpuState, program: Program) -> bool:
    """Whether the CPU has a step of its own to take (not waiting for a message)."""
    if cpu.task is not None:
        return cpu.task.waiting is None
    return cpu.pc < len(program.ops(cpu.id))


def finished(cpu: CpuState, program: Program) -> bool:
    return cpu.task is None and cpu.pc >= len(program.ops(cpu.id))


def accepts(cpu: CpuState, msg: Message, policy: "Policy") -> bool:
    """Whether a message can be delivered now. Interrupts are always taken, except
    by a CPU the policy makes wait for a lock with interrupts off."""
    if msg.kind in ("ipi", "qs_request") and policy.irqs_off_lock_wait:
        task = cpu.task
        if task is not None and task.waiting == "grant":
            return False
    return True


def waiting_for(cpu: CpuState) -> str | None:
    task = cpu.task
    if task is None or task.waiting is None:
        return None
    what = "fault" if isinstance(task, FaultTask) else task.op
    return f"{task.waiting} ({what}, phase {task.phase})"


# --- addresses and registers --------------------------------------------------


def resolve(cpu: CpuState, program: Program, label: str | None, offset: int) -> int:
    """The virtual address of `LABEL+OFFSET` (or of an absolute address)."""
    if label is None:
        return offset
    if label in cpu.regs:
        base = cpu.regs[label]
        return (base if isinstance(base, int) else 0) + offset
    return program.maps[label][0] + offset


def label_range(cpu: CpuState, program: Program, label: str) -> tuple[int, int]:
    """(start, pages) of the mapping a label names."""
    if label in cpu.regs:
        base = cpu.regs[label]
        thread = program.threads[cpu.id][0]
        assert thread is not None
        return (base if isinstance(base, int) else 0), program.local_pages[thread][label]
    return program.maps[label]


def finish_op(fx: Effects, cpu: CpuState, program: Program, result: RegValue | None = None, reg: str | None = None) -> CpuState:
    """End the current op: set its register, log `op.end`, move to the next op."""
    regs = cpu.regs if reg is None or result is None else cpu.regs.set(reg, result)
    thread = program.threads[cpu.id][0]
    fx.emit("op.end", cpu=cpu.id, thread=thread, index=cpu.pc, text=program.threads[cpu.id][2][cpu.pc], result=result)
    return attrs.evolve(cpu, regs=regs, pc=cpu.pc + 1, task=None, started=False)


def segv(fx: Effects, cpu: CpuState, program: Program, task: FaultTask, reason: str) -> CpuState:
    """SIGSEGV: the register gets `segv` (a store's `fault` register) and the thread
    goes on, as a program that catches SIGSEGV would."""
    fx.emit("fault.segv", cpu=cpu.id, addr=task.page, pages=1, reason=reason)
    op = program.ops(cpu.id)[cpu.pc]
    reg = op.reg if isinstance(op, Load) else "fault"
    return finish_op(fx, cpu, program, "segv", reg)


# --- the actor ------------------------------------------------------------------


def handle(cpu: CpuState, fx: Effects, msg: Message | None, program: Program, policy: "Policy") -> CpuState:
    """One step of a CPU: its own next step (msg None) or the delivery of `msg`."""
    if msg is None:
        if cpu.task is None:
            return _start_op(cpu, fx, program, policy)
        return policy.step(fx, cpu, program, None)
    if msg.kind == "ipi":
        return _ipi(cpu, fx, msg)
    if msg.kind == "qs_request":
        if cpu.rcu_nesting:
            return attrs.evolve(cpu, qs_owed=True)
        fx.send("rcu", "qs", arg=msg.arg)
        return cpu
    if cpu.tail is not None and msg.kind == "flush_done" and msg.addr == cpu.tail.start:
        return policy.finish_tail(fx, cpu, program, msg)
    return policy.step(fx, cpu, program, msg)


def _ipi(cpu: CpuState, fx: Effects, msg: Message) -> CpuState:
    assert msg.addr is not None and msg.pages is not None
    fx.emit("tlb.flush", cpu=cpu.id, addr=msg.addr, pages=msg.pages, reason="ipi")
    fx.send("shootdown", "ack", msg.addr, msg.pages, arg=msg.arg)
    fx.emit("ipi.ack", cpu=cpu.id, addr=msg.addr, pages=msg.pages)
    return attrs.evolve(cpu, tlb=flush_tlb_range(cpu.tlb, msg.addr, msg.pages))


def _start_op(cpu: CpuState, fx: Effects, program: Program, policy: "Policy") -> CpuState:
    op = program.ops(cpu.id)[cpu.pc]
    if not cpu.started:
        thread = program.threads[cpu.id][0]
        fx.emit("op.begin", cpu=cpu.id, thread=thread, index=cpu.pc, text=program.threads[cpu.id][2][cpu.pc])
        cpu = attrs.evolve(cpu, started=True)
    if isinstance(op, Load):
        return access(fx, cpu, program, policy, resolve(cpu, program, op.addr.label, op.addr.offset), "load")
    if isinstance(op, Store):
        return access(fx, cpu, program, policy, resolve(cpu, program, op.addr.label, op.addr.offset), "store", op.value)
    if isinstance(op, Mmap):
        req = MapRequest(vma=f"{program.threads[cpu.id][0]}.{cpu.pc}", pages=op.pages, kind=op.kind,
                         file=op.file, fill=op.fill, at=op.at)
        task = SyscallTask(op="mmap", phase="start", start=None, pages=op.pages, request=req, label=op.label)
        fx.emit("syscall.begin", cpu=cpu.id, op="mmap", text=program.threads[cpu.id][2][cpu.pc])
        return policy.begin_syscall(fx, attrs.evolve(cpu, task=task), program)
    if isinstance(op, MmapFixed):
        start, _ = label_range(cpu, program, op.label)
        req = MapRequest(vma=f"{program.threads[cpu.id][0]}.{cpu.pc}", pages=op.pages, kind=op.kind,
                         file=op.file, fill=op.fill, at=start)
        task = SyscallTask(op="mmap-fixed", phase="start", start=start, pages=op.pages, request=req)
    elif isinstance(op, Munmap):
        start, pages = label_range(cpu, program, op.label)
        task = SyscallTask(op="munmap", phase="start", start=start, pages=pages)
    elif isinstance(op, Mprotect):
        start, pages = label_range(cpu, program, op.label)
        task = SyscallTask(op="mprotect", phase="start", start=start, pages=pages, prot=op.prot,
                           new=f"{program.threads[cpu.id][0]}.{cpu.pc}")
    else:  # pragma: no cover - the parser admits no other op
        raise TypeError(op)
    fx.emit("syscall.begin", cpu=cpu.id, addr=task.start, pages=task.pages, op=task.op,
            text=program.threads[cpu.id][2][cpu.pc])
    return policy.begin_syscall(fx, attrs.evolve(cpu, task=task), program)


def access(fx: Effects, cpu: CpuState, program: Program, policy: "Policy", vaddr: int, kind: Literal["load", "store"], value: int = 0) -> CpuState:
    """A load or store: TLB hit, else a page walk that fills the TLB, else a fault."""
    page = page_of(vaddr)
    entry = cpu.tlb.get(page)
    if entry is None:
        pte = fx.world.ptes.get(page)
        if pte is not None and prot_allows(pte.prot, kind):
            fx.emit("tlb.fill", cpu=cpu.id, addr=page, pages=1, frame=pte.frame, vma=pte.vma, prot=pte.prot)
            cpu = attrs.evolve(cpu, tlb=cpu.tlb.set(page, pte))
            entry = pte
    if entry is None or not prot_allows(entry.prot, kind):
        fx.emit("fault.begin", cpu=cpu.id, addr=page, pages=1, vaddr=vaddr, access=kind)
        return policy.begin_fault(fx, attrs.evolve(cpu, task=FaultTask(phase="start", vaddr=vaddr, access=kind)), program)
    fx.note("access", (cpu.id, page, entry))
    frame = fx.world.frames[entry.frame]
    offset = vaddr - page
    op = program.ops(cpu.id)[cpu.pc]
    if kind == "load":
        got = frame.read(offset)
        assert isinstance(op, Load)
        fx.emit("mem.load", cpu=cpu.id, addr=page, pages=1, frame=entry.frame, vma=entry.vma, vaddr=vaddr, reg=op.reg, value=got)
        return finish_op(fx, cpu, program, got, op.reg)
    fx.world = attrs.evolve(fx.world, frames=fx.world.frames.update(frame.write(offset, value)))
    fx.emit("mem.store", cpu=cpu.id, addr=page, pages=1, frame=entry.frame, vma=entry.vma, vaddr=vaddr, value=value)
    return finish_op(fx, cpu, program)


__all__ = [
    "CpuState", "FaultTask", "SyscallTask", "MapRequest", "Program", "handle", "access", "segv",
    "finish_op", "runnable", "finished", "accepts", "waiting_for", "resolve", "label_range",
]
