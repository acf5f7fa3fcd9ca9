"""A CPU's state as a value: its thread's progress, its TLB, and the kernel work in
progress (`FaultTask`, `SyscallTask`), whose `phase` names the next step of the
policy's protocol and whose `waiting` names the message kind it blocks on.

So a CPU halfway through a fault is an explicit, hashable value, never the locals of
a suspended coroutine: exhaustive search can snapshot, hash and compare it.
"""

from __future__ import annotations

from typing import Literal

import attrs
import immutables

from ..ids import MM0, MmId
from ..mm.layout import page_of
from ..mm.page_table import TlbEntry
from ..ops import Op, RegValue
from .messages import MapRequest

Access = Literal["load", "store"]
SyscallOp = Literal["mmap", "mmap-fixed", "munmap", "mprotect", "madvise", "fork", "mremap", "truncate"]


@attrs.frozen(cache_hash=True)
class FaultTask:
    """A page fault in progress."""

    phase: str
    vaddr: int
    access: Access
    #: The message kind it is blocked on (None: runnable).
    waiting: str | None = None
    vma: str | None = None
    #: The frame this fault will map (a fresh anon frame, or the page-cache frame).
    frame: int | None = None
    fresh: bool = False
    #: What the fault holds: "mmap_sem", "rcu", "ref", "vma_read".
    holds: tuple[str, ...] = ()
    #: The VMA object the fault found (a design whose VMA objects may be reused for
    #: another mapping tells them from the mapping; others leave it None).
    obj: str | None = None
    #: A grows-down VMA the fault expands down to its page (expand_stack).
    stack: str | None = None
    #: A write fault on a page shared copy-on-write: the shared frame its copy (`frame`)
    #: was taken from (wp_page_copy copies before it takes the page-table lock).
    cow_from: int | None = None

    path = "fault"

    @property
    def page(self) -> int:
        return page_of(self.vaddr)


@attrs.frozen(cache_hash=True)
class SyscallTask:
    """A writer syscall (mmap, MAP_FIXED, munmap, mprotect, madvise) in progress."""

    op: SyscallOp
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
    #: The index of the syscall's op in its thread.
    index: int = 0
    #: munmap with free_pgtables: the [floor, ceiling) page-table pages may be freed
    #: in (the neighbours' bounds, read once the zap is done), then the ones it cleared.
    bounds: tuple[int, int] | None = None
    pgtables: tuple[int, ...] = ()
    #: mremap: where the mapping moves; fork: the child's address space; truncate:
    #: the file.
    dest: int | None = None
    child: int | None = None
    file: str | None = None
    #: Ranges still to shoot down, (mm, start, pages), in order (truncate, mremap).
    flushes: tuple[tuple[int, int, int], ...] = ()
    #: munmap downgraded mmap_sem to read (it releases it with up_read).
    downgraded: bool = False

    @property
    def path(self) -> str:
        return self.op.replace("-", "_")

    @property
    def end(self) -> int:
        assert self.start is not None
        return self.start + self.pages * 4096

    @property
    def dest_end(self) -> int:
        assert self.dest is not None
        return self.dest + self.pages * 4096


Task = FaultTask | SyscallTask


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
    #: A syscall's remainder that runs after it returned (wilcox-early-return).
    tail: SyscallTask | None = None
    #: The address space of the thread this CPU runs.
    mm: MmId = MM0
    #: Whether its thread has started: a fork's child thread starts when the fork
    #: returns (wake_up_new_task).
    born: bool = True

    @property
    def name(self) -> str:
        return f"cpu{self.id}"


@attrs.frozen
class ThreadProgram:
    """What one CPU runs: constant for a run, not part of the state."""

    thread: int | None
    ops: tuple[Op, ...] = ()
    texts: tuple[str, ...] = ()
    #: local label -> pages its mmap asked for.
    local_pages: immutables.Map[str, int] = immutables.Map()
    #: The address space it runs in (a fork's child: 1, 2, …).
    mm: MmId = MM0


@attrs.frozen
class Program:
    """Every CPU's thread and the scenario's map labels: constant for a run."""

    threads: tuple[ThreadProgram, ...]
    #: global label -> (address, pages).
    maps: immutables.Map[str, tuple[int, int]]
    #: fork child name -> its address space.
    children: immutables.Map[str, MmId] = immutables.Map()

    @property
    def ncpus(self) -> int:
        return len(self.threads)

    def ops(self, cpu: int) -> tuple[Op, ...]:
        return self.threads[cpu].ops


__all__ = ["FaultTask", "SyscallTask", "Task", "CpuState", "ThreadProgram", "Program", "Access", "SyscallOp"]
