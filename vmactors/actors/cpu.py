"""The CPU actor: runs its thread's ops, owns its TLB, answers IPIs and RCU.

The generic part lives here (starting an op, TLB hit / page walk / access, IPIs,
quiescent states); everything a locking design decides — the fault path and the
writer syscalls — is a task whose phase the CPU looks up in the policy's protocol
table (`vmactors.actors.phases`) and runs.

| step | what the CPU does |
|---|---|
| own step, no task | start the next op: a load or store (TLB hit, else a page walk that fills the TLB, else a fault whose `start` phase runs in the same step), or a syscall (its `start` phase runs in the same step) |
| own step, a runnable task | run the task's phase |
| `ipi` | flush its TLB for the range, `ack` (whatever it is doing: interrupts) |
| `qs_request` | report a quiescent state, or owe one until it leaves its RCU read-side section |
| `wake_up_new_task` | a fork's child thread starts (until then it has no step of its own) |
| the message its task (or tail) waits for | run that task's phase with the message |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import final

import attrs
import immutables

from ..ids import MM0, RCU, SHOOTDOWN, ActorId, cpu
from ..log.schema import FaultBegin, IpiAck, MemLoad, MemStore, OpBegin, SyscallBegin
from ..mm.layout import page_of, page_range
from ..mm.page_table import Pte
from ..mm.vma import prot_allows
from ..mm.world import World
from ..ops import Fork, Load, Madvise, Mmap, MmapFixed, Mprotect, Mremap, Munmap, Store, Truncate
from . import footprint as fp
from .base import Actor
from .effects import Effects, TlbAccess
from .footprint import EMPTY, Footprint
from .kernel import Kernel
from .messages import INTERRUPTS, Ack, Envelope, FlushDone, Ipi, MapRequest, Message, Qs, QsRequest, WakeUpNewTask
from .phases import EXIT, START, View
from .policy import Policy
from .tasks import CpuState, FaultTask, Program, SyscallTask, Task, ThreadProgram


def resolve(state: CpuState, program: Program, label: str | None, offset: int) -> int:
    """The virtual address of `LABEL+OFFSET` (or of an absolute address)."""
    if label is None:
        return offset
    if label in state.regs:
        base = state.regs[label]
        return (base if isinstance(base, int) else 0) + offset
    return program.maps[label][0] + offset


def label_range(state: CpuState, program: Program, label: str) -> tuple[int, int]:
    """(start, pages) of the mapping a label names."""
    if label in state.regs:
        base = state.regs[label]
        return (base if isinstance(base, int) else 0), program.threads[state.id].local_pages[label]
    return program.maps[label]


class RoutingError(RuntimeError):
    """A message reached a CPU that was not waiting for it, or a handler moved to a
    phase its protocol row does not list."""


@final
class CpuActor(Actor[CpuState]):
    """CPU `index` of a run under `policy`."""

    def __init__(self, index: int, policy: Policy, program: Program) -> None:
        self.id: ActorId = cpu(index)
        self.index = index
        self.policy = policy
        self.program = program
        self.thread: ThreadProgram = program.threads[index]
        self._table = policy.protocol

    def initial(self) -> CpuState:
        mm = self.thread.mm
        return CpuState(id=self.index, thread=self.thread.thread, mm=mm, born=mm == MM0)

    # --- what the scheduler asks --------------------------------------------------------------

    def runnable(self, state: CpuState) -> bool:
        if state.task is not None:
            return state.task.waiting is None
        return state.born and state.pc < len(self.thread.ops)

    def own_steps(self, state: CpuState) -> int:
        return 1 if self.runnable(state) else 0

    def rejects(self, state: CpuState) -> frozenset[str]:
        """Interrupts are always taken, except by a CPU the policy makes wait for the
        rwsem with interrupts off."""
        if self.policy.irqs_off_lock_wait and state.task is not None and state.task.waiting == "grant":
            return INTERRUPTS
        return frozenset()

    def done(self, state: CpuState) -> bool:
        return state.task is None and state.pc >= len(self.thread.ops)

    def waiting_for(self, state: CpuState) -> str | None:
        task = state.task
        if not state.born and state.pc < len(self.thread.ops):
            return "wake_up_new_task (its fork has not returned)"
        if task is None or task.waiting is None:
            return None
        what = "fault" if isinstance(task, FaultTask) else task.op
        return f"{task.waiting} ({what}, phase {task.phase})"

    # --- one step ----------------------------------------------------------------------------

    def handle(self, state: CpuState, fx: Effects, env: Envelope | None, choice: int) -> CpuState:
        k = Kernel(fx, state, self.policy, self.thread, self.program)
        if env is None:
            if state.task is None:
                self._start_op(k)
            else:
                self._run(k, state.task, None, tail=False)
            return k.cpu
        msg = env.msg
        if isinstance(msg, Ipi):
            k.flush_tlb_local(msg.addr, msg.pages, reason="ipi")
            k.send(SHOOTDOWN, Ack(addr=msg.addr, pages=msg.pages, token=msg.token))
            k.emit(IpiAck(cpu=self.index, addr=msg.addr, pages=msg.pages))
        elif isinstance(msg, QsRequest):
            if state.rcu_nesting:
                k.evolve_cpu(qs_owed=True)
            else:
                k.send(RCU, Qs())
        elif isinstance(msg, WakeUpNewTask):
            k.evolve_cpu(born=True)
        elif self._for_tail(state, msg):
            assert state.tail is not None
            self._run(k, state.tail, msg, tail=True)
        else:
            task = state.task
            if task is None or task.waiting != msg.KIND:
                raise RoutingError(f"{self.id} got {msg.KIND!r} while waiting for "
                                   f"{task.waiting if task is not None else None!r}")
            self._run(k, task, msg, tail=False)
        return k.cpu

    @staticmethod
    def _for_tail(state: CpuState, msg: Message) -> bool:
        """Whether `msg` completes the remainder of a syscall that already returned:
        the `flush_done` of that syscall's own flush."""
        tail = state.tail
        return tail is not None and isinstance(msg, FlushDone) and msg.op == tail.index

    def _run(self, k: Kernel, task: Task, msg: Message | None, *, tail: bool) -> None:
        """Run `task`'s phase (woken by `msg`, if any) and move it to the next one."""
        phase = self._table.phase(task.path, task.phase)
        if msg is not None:
            task = attrs.evolve(task, waiting=None)
            if not tail:
                k.evolve_cpu(task=task)
        out = phase.handler(k, task, msg)
        if isinstance(out, str):
            if out != EXIT or EXIT not in phase.next:
                raise RoutingError(f"{task.path}.{phase.name} returned {out!r}; its row allows {phase.next}")
            if tail:
                k.evolve_cpu(tail=None)
            return
        if out.phase not in phase.next:
            raise RoutingError(f"{task.path}.{phase.name} moved to {out.phase!r}; its row allows {phase.next}")
        k.evolve_cpu(**{"tail" if tail else "task": out})

    def _start_op(self, k: Kernel) -> None:
        state = k.cpu
        op = self.thread.ops[state.pc]
        text = self.thread.texts[state.pc]
        if not state.started:
            assert self.thread.thread is not None
            k.emit(OpBegin(cpu=self.index, thread=self.thread.thread, index=state.pc, text=text))
            k.evolve_cpu(started=True)
        if isinstance(op, Load):
            self._access(k, resolve(state, self.program, op.addr.label, op.addr.offset), "load")
            return
        if isinstance(op, Store):
            self._access(k, resolve(state, self.program, op.addr.label, op.addr.offset), "store", op.value)
            return
        task = self.syscall_task(state)
        if task.start is None:
            k.emit(SyscallBegin(cpu=self.index, op=task.op, text=text))
        else:
            k.emit(SyscallBegin(cpu=self.index, addr=task.start, pages=task.pages, op=task.op, text=text))
        k.evolve_cpu(task=task)
        self._run(k, task, None, tail=False)

    def syscall_task(self, state: CpuState) -> SyscallTask:
        """The task of the syscall op at the CPU's pc, before its `start` phase."""
        op = self.thread.ops[state.pc]
        new_vma = f"{self.thread.thread}.{state.pc}"
        if isinstance(op, Mmap):
            req = MapRequest(vma=new_vma, pages=op.pages, kind=op.kind, file=op.file, fill=op.fill, prot=op.prot,
                             at=op.at)
            return SyscallTask(op="mmap", phase=START, start=None, pages=op.pages, request=req, label=op.label,
                               index=state.pc)
        if isinstance(op, MmapFixed):
            start, _ = label_range(state, self.program, op.label)
            req = MapRequest(vma=new_vma, pages=op.pages, kind=op.kind, file=op.file, fill=op.fill, at=start)
            return SyscallTask(op="mmap-fixed", phase=START, start=start, pages=op.pages, request=req,
                               index=state.pc)
        if isinstance(op, Munmap):
            start, pages = label_range(state, self.program, op.label)
            return SyscallTask(op="munmap", phase=START, start=start, pages=pages, index=state.pc)
        if isinstance(op, Mprotect):
            start, pages = label_range(state, self.program, op.label)
            return SyscallTask(op="mprotect", phase=START, start=start, pages=pages, prot=op.prot, new=new_vma,
                               index=state.pc)
        if isinstance(op, Madvise):
            start, pages = label_range(state, self.program, op.label)
            return SyscallTask(op="madvise", phase=START, start=start, pages=pages, index=state.pc)
        if isinstance(op, Fork):
            return SyscallTask(op="fork", phase=START, start=None, pages=0, child=self.program.children[op.child],
                               index=state.pc)
        if isinstance(op, Mremap):
            start, pages = label_range(state, self.program, op.label)
            dest = op.to if isinstance(op.to, int) else label_range(state, self.program, op.to)[0]
            return SyscallTask(op="mremap", phase=START, start=start, pages=pages, dest=dest, new=new_vma,
                               index=state.pc)
        if isinstance(op, Truncate):
            return SyscallTask(op="truncate", phase=START, start=None, pages=0, file=op.file, index=state.pc)
        raise TypeError(op)  # pragma: no cover - the parser admits no other op

    def _access(self, k: Kernel, vaddr: int, kind: str, value: int = 0) -> None:
        """A load or store: TLB hit, else a page walk that fills the TLB, else a fault."""
        page = page_of(vaddr)
        entry = k.tlb_entry(page)
        if entry is None:
            pte = k.pte(page)
            if pte is not None and prot_allows(pte.prot, kind):
                k.tlb_fill(page, pte)
                entry = pte
        if entry is None or not prot_allows(entry.prot, kind):
            # The hardware's page walk found nothing (or a PTE that forbids the
            # access): a page fault. The handler's first step (its lookup) is a step
            # of its own: other CPUs may act between the walk and the lookup.
            k.emit(FaultBegin(cpu=self.index, addr=page, pages=1, vaddr=vaddr, access=kind))  # type: ignore[arg-type]
            k.evolve_cpu(task=FaultTask(phase=START, vaddr=vaddr, access=kind))  # type: ignore[arg-type]
            return
        k.note(TlbAccess(self.index, page, entry, kind == "store"))
        frame = k.frame(entry.frame)
        op = self.thread.ops[k.cpu.pc]
        if kind == "load":
            assert isinstance(op, Load)
            got = frame.read(vaddr - page)
            k.emit(MemLoad(cpu=self.index, addr=page, pages=1, frame=entry.frame, vma=entry.vma, vaddr=vaddr,
                           reg=op.reg, value=got))
            k.finish_op(got, op.reg)
            return
        k.fx.write_frame(frame.write(vaddr - page, value))
        k.emit(MemStore(cpu=self.index, addr=page, pages=1, frame=entry.frame, vma=entry.vma, vaddr=vaddr,
                        value=value))
        k.finish_op()

    # --- the declared footprint ---------------------------------------------------------------

    def footprint(self, state: CpuState, world: World, env: Envelope | None, choice: int) -> Footprint:
        if env is None:
            if state.task is not None:
                return self._phase_footprint(world, state, state.task, None)
            return self._op_footprint(state, world)
        msg = env.msg
        if isinstance(msg, Ipi):
            return Footprint.of(writes=[fp.tlb(self.index, p) for p in page_range(msg.addr, msg.pages)])
        if isinstance(msg, (QsRequest, WakeUpNewTask)):
            return EMPTY
        task = state.tail if self._for_tail(state, msg) else state.task
        assert task is not None
        return self._phase_footprint(world, state, attrs.evolve(task, waiting=None), msg)

    def _phase_footprint(self, world: World, state: CpuState, task: Task, msg: Message | None) -> Footprint:
        return self._table.phase(task.path, task.phase).footprint(View(world, state, task, msg))

    def _op_footprint(self, state: CpuState, world: World) -> Footprint:
        op = self.thread.ops[state.pc]
        if not isinstance(op, (Load, Store)):
            return self._phase_footprint(world, state, self.syscall_task(state), None)
        kind = "load" if isinstance(op, Load) else "store"
        vaddr = resolve(state, self.program, op.addr.label, op.addr.offset)
        page = page_of(vaddr)
        reads: list[fp.Obj] = [fp.tlb(self.index, page)]
        writes: list[fp.Obj] = []
        entry: Pte | None = state.tlb.get(page)
        if entry is None:
            reads.append(fp.pte(state.mm, page))
            pte = world.mm(state.mm).ptes.get(page)
            if pte is not None and prot_allows(pte.prot, kind):
                writes.append(fp.tlb(self.index, page))
                entry = pte
        if entry is None or not prot_allows(entry.prot, kind):
            return Footprint.of(reads, writes)  # a fault begins; its first phase is the next step
        (writes if kind == "store" else reads).append(fp.frame(entry.frame))
        return Footprint.of(reads, writes)

    # --- canonical states ---------------------------------------------------------------------

    def frames_of(self, state: CpuState) -> Iterable[int]:
        for page in sorted(state.tlb):
            yield state.tlb[page].frame
        for task in (state.task, state.tail):
            if isinstance(task, FaultTask):
                if task.frame is not None:
                    yield task.frame
                if task.cow_from is not None:
                    yield task.cow_from
            elif isinstance(task, SyscallTask):
                yield from task.frames

    def adopt(self, state: CpuState) -> CpuState:
        """Another CPU's state as this CPU's (symmetry reduction: the two run the same
        program, so the state reads the same on either)."""
        # The constructor, not attrs.evolve: this runs for most states a symmetric search keys.
        return CpuState(id=self.index, thread=self.thread.thread, pc=state.pc, regs=state.regs, tlb=state.tlb,
                        task=state.task, started=state.started, rcu_nesting=state.rcu_nesting,
                        qs_owed=state.qs_owed, tail=state.tail, mm=state.mm, born=state.born)

    def rename_frames(self, state: CpuState, ren: Mapping[int, int]) -> CpuState:
        # A hot path of exhaustive search (every state's key): what keeps its frame
        # ids is kept as it is, not copied.
        tlb = state.tlb
        if any(ren[e.frame] != e.frame for e in tlb.values()):
            tlb = immutables.Map({p: e if ren[e.frame] == e.frame else Pte(ren[e.frame], e.prot, e.vma, e.owner, e.cow)
                                  for p, e in tlb.items()})
        task = state.task
        if isinstance(task, FaultTask):
            task = _rename_fault_frames(task, ren)
        elif isinstance(task, SyscallTask):
            task = _rename_frames(task, ren)
        tail = _rename_frames(state.tail, ren) if state.tail is not None else None
        if tlb is state.tlb and task is state.task and tail is state.tail:
            return state
        return attrs.evolve(state, tlb=tlb, task=task, tail=tail)


def _rename_fault_frames(t: FaultTask, ren: Mapping[int, int]) -> FaultTask:
    """The fault's frame and, for a copy-on-write, the shared frame it copies."""
    frame = ren[t.frame] if t.frame is not None else None
    cow_from = ren[t.cow_from] if t.cow_from is not None else None
    if frame == t.frame and cow_from == t.cow_from:
        return t
    return attrs.evolve(t, frame=frame, cow_from=cow_from)


def _rename_frames(t: SyscallTask, ren: Mapping[int, int]) -> SyscallTask:
    if not t.frames:
        return t
    frames = tuple(ren[f] for f in t.frames)
    return t if frames == t.frames else attrs.evolve(t, frames=frames)


__all__ = ["CpuActor", "RoutingError", "resolve", "label_range"]
