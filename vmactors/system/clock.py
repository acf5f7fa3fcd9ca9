"""The cost model: how long every actor step takes, in virtual nanoseconds (docs/performance-model.md).

One home for every cost rule and every parameter. `Machine.actor_step` asks it for
each step's end; `vmactors bench` runs workloads under it with the timed scheduler
(`vmactors.perf.timed`); `vmactors bench costs` prints the parameter table.

**When a step runs.** Each actor has its own clock. A step starts when both the actor
and the message it handles are ready: `max(actor clock, message sent_at)`; the actor's
clock is then the step's end, and the messages it sent leave at that end. So a CPU
blocked on a message (a lock grant, a flush completion) burns the time until the
message arrives: waiting costs the waiter.

**How long it takes.** A step costs, in this order:

1. on a CPU, `cpu_step_ns`: the kernel code between two interleaving points;
2. one cache-line access per shared object the step touched (in the order it first
   touched each: what `Effects` recorded), with the contention rule below;
3. each event it logged, from the `EVENTS` table (a page fault's exception, zeroing a
   page, a page walk, an IPI sent or taken, a tree store, a grace period...).

**Cache lines.** Shared kernel data lives in cache lines, derived from the objects of
a step's footprint (`line_of`): a PTE's line (8 PTEs per 64-byte line) and, for a
write, the page-table lock of its page-table page (one per 512 PTEs); the VMA tree
(one line: the root of a small maple tree); each VMA; each record of the locking
design (a VMA's reference count, its `vm_refcnt`, the fences; `("policy", mm, key)`);
a page-cache slot. The service actors have words of their own, written by the CPU
step that sends them a request, as the kernel's atomic on them runs on the requesting
CPU: the rwsem's count word (`mmap_sem`, one per mm; a grant to a waiter touches it
again, for the woken CPU), the shootdown's flush/ack word per initiating CPU, RCU's
quiescent-state mask. Frames (page contents: their zeroing is an event cost), the
free list (per-CPU page lists in Linux), TLBs (not memory) and the invariant
checkers' bookkeeping are not lines.

Each line remembers which CPU holds it modified (if any), which CPUs share it, and
when its last transfer ends (`World.caches`, history, not part of a state). The
contention rule, MESI reduced to what costs time:

- a read of a line this CPU holds or shares: free; of a line nobody holds modified:
  `llc_ns` once, then the CPU shares it (so a line that nobody writes is cheap);
- a read of a line another CPU holds modified, or a write to a line another CPU holds
  or shares: a transfer, `line_transfer_ns` (`remote_line_transfer_ns` when the
  other CPU is on the other socket, `cpus_per_socket`); transfers of one line are
  serialised: one starts when the previous one has ended, so N CPUs hammering one
  line queue behind each other (the time queued is the step's, and `vmactors bench`
  reports it as wait time on that line);
- a write to a lock word or counter (the rwsem, a design's record, a page-table lock,
  the shootdown and RCU words) costs `atomic_ns` more: a locked instruction.

Service actors (tree owner, shootdown, RCU, rwsem) stand for work the kernel does on
some CPU: the lines they touch are accessed as the CPU that asked (the sender of the
message they handle); they pay no `cpu_step_ns`.

Virtual time follows this model exactly only under the timed scheduler, which runs
steps in the order of their virtual start. Other strategies run steps in any order,
so a step may queue behind a line transfer stamped later in virtual time.

>>> costs = Costs()
>>> costs.line_transfer_ns, costs.remote_line_transfer_ns
(51, 108)
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import immutables

from ..actors.effects import Effects, RecordingEffects
from ..actors.footprint import Obj
from ..actors.messages import Ack, Envelope, Flush, Message, Qs
from ..errors import UsageError
from ..ids import MM0, ActorId, ActorKind
from ..log.schema import Event
from ..mm.world import World

_CORE2CORE = ("nviennot/core-to-core-latency (README, median of a CAS ping-pong between two pinned threads): "
              "Intel Xeon Platinum 8375C, 32 cores, Ice Lake, AWS c6i.metal")


def _param(default: int, unit: str, doc: str, source: str) -> Any:
    return attrs.field(default=default, metadata={"unit": unit, "doc": doc, "source": source})


@attrs.frozen
class Costs:
    """Every parameter of the cost model, with its default and the default's source.
    The defaults describe one recent x86 server (an Ice Lake Xeon socket, 64 CPUs) and
    are the same for every workload; a TOML file overrides any of them (`load_costs`).

    With more CPUs than `cpus_per_socket`, a line's transfers alternate between local
    and remote in whatever pattern the CPUs' lockstep falls into (every CPU runs at
    exactly the modelled speed), and that pattern, not the design, can then decide a
    comparison: read two-socket figures with care."""

    cpu_step_ns: int = _param(
        30, "ns", "a CPU step: the kernel code between two interleaving points of a protocol",
        "estimate: ~100 instructions at ~3 per ns")
    line_transfer_ns: int = _param(
        51, "ns", "a cache line moving between two cores of one socket", f"{_CORE2CORE}: 51 ns on one socket")
    remote_line_transfer_ns: int = _param(
        108, "ns", "a cache line moving between the two sockets", f"{_CORE2CORE}: 108 ns between two sockets")
    cpus_per_socket: int = _param(
        64, "CPUs", "CPUs per socket (CPU i is on socket i // cpus_per_socket)",
        "one Ice Lake socket with 32 cores / 64 threads, the machine of the per-VMA lock measurement "
        "(hyper-thread siblings are not told apart)")
    llc_ns: int = _param(
        20, "ns", "reading a line no core holds modified (served by the last-level cache)",
        "estimate: an L3 hit, ~60 cycles at 2.9 GHz")
    atomic_ns: int = _param(
        6, "ns", "a locked read-modify-write (lock word, counter) on a line the core holds",
        "Agner Fog, instruction tables: LOCK XADD/CMPXCHG ~18 cycles on recent Intel cores, at 2.9 GHz")
    fault_entry_ns: int = _param(
        300, "ns", "a page fault's exception entry, dispatch and exit (`fault.begin`)",
        "estimate: ~1,000 cycles for the exception round trip without page-table isolation")
    syscall_ns: int = _param(
        100, "ns", "a system call's entry and exit (`syscall.begin`)", "estimate: ~300 cycles")
    page_walk_ns: int = _param(
        30, "ns", "a TLB miss that walks cached page tables (`tlb.fill`)", "estimate: ~4 cached loads")
    page_alloc_ns: int = _param(
        400, "ns", "allocating a page from the per-CPU lists and clearing its 4 KiB (`frame.alloc`)",
        "estimate: clear_page at ~15 GB/s (~270 ns) plus the allocator")
    pte_set_ns: int = _param(
        50, "ns", "setting a PTE and its accounting (`pte.install`, `pte.protect`)", "estimate")
    pte_zap_ns: int = _param(40, "ns", "clearing a PTE (`pte.zap`)", "estimate")
    tlb_flush_ns: int = _param(
        150, "ns", "flushing a range from the local TLB (`tlb.flush`)", "estimate: INVLPG, a few hundred cycles")
    ipi_send_ns: int = _param(
        200, "ns", "sending one IPI, paid by the shootdown per target (`ipi.send`)",
        "estimate: one x2APIC ICR write per target in flush_tlb_multi's loop")
    ipi_receive_ns: int = _param(
        1200, "ns", "taking an IPI on the target: interrupt entry, the flush handler, exit (`ipi.ack`)",
        "Amit, Tai, Wei, \"Don't shoot down TLB shootdowns!\", EuroSys 2020: a remote core's acknowledgement "
        "takes over 1,000 cycles, more with page-table isolation; taken as ~3,500 cycles")
    tree_store_ns: int = _param(
        200, "ns", "storing a range in the VMA tree (`tree.store`)", "estimate: a maple-tree store with new nodes")
    frame_free_ns: int = _param(80, "ns", "freeing a page (`frame.free`)", "estimate")
    vma_free_ns: int = _param(80, "ns", "freeing a VMA (`vma.free`)", "estimate")
    rcu_grace_ns: int = _param(
        1_000_000, "ns", "an RCU grace period, paid by the RCU actor when one starts (`rcu.gp.start`)",
        "estimate: at least one scheduler tick at HZ=1000")
    access_ns: int = _param(1, "ns", "a load or store through the TLB (`mem.load`, `mem.store`)", "an L1 hit")

    def rows(self) -> list[tuple[str, int, str, str, str]]:
        """(name, value, unit, meaning, source) of every parameter, in table order."""
        return [(f.name, getattr(self, f.name), f.metadata["unit"], f.metadata["doc"], f.metadata["source"])
                for f in attrs.fields(Costs)]

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in attrs.fields(Costs)}


#: event name -> the `Costs` field it costs.
EVENTS: dict[str, str] = {
    "fault.begin": "fault_entry_ns",
    "syscall.begin": "syscall_ns",
    "tlb.fill": "page_walk_ns",
    "frame.alloc": "page_alloc_ns",
    "pte.install": "pte_set_ns",
    "pte.protect": "pte_set_ns",
    "pte.zap": "pte_zap_ns",
    "tlb.flush": "tlb_flush_ns",
    "ipi.send": "ipi_send_ns",
    "ipi.ack": "ipi_receive_ns",
    "tree.store": "tree_store_ns",
    "frame.free": "frame_free_ns",
    "vma.free": "vma_free_ns",
    "rcu.gp.start": "rcu_grace_ns",
    "mem.load": "access_ns",
    "mem.store": "access_ns",
}


def load_costs(path: str | Path) -> Costs:
    """`Costs` with the defaults overridden by a TOML file of `name = nanoseconds`
    lines (bad input is a `UsageError`, naming the key)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: {e}") from None
    names = [f.name for f in attrs.fields(Costs)]
    changes: dict[str, int] = {}
    for key, value in doc.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(names)})"
            raise UsageError(f"{path}: unknown cost parameter {key!r}{hint}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UsageError(f"{path}: {key} must be a non-negative integer, not {value!r}")
        changes[key] = value
    if changes.get("cpus_per_socket", 1) < 1:
        raise UsageError(f"{path}: cpus_per_socket must be at least 1")
    return attrs.evolve(Costs(), **changes)


# --- cache lines ------------------------------------------------------------------------------

Line = tuple[Hashable, ...]
#: A line's state: (CPU holding it modified or -1, bitmask of CPUs sharing it, end of
#: its last transfer).
LineState = tuple[int, int, int]
_NOBODY: LineState = (-1, 0, 0)

#: 8 PTEs per 64-byte line; a page-table page (and its lock) covers 512 PTEs.
_PTE_LINE_SHIFT = 15
_PT_PAGE_SHIFT = 21
#: Line kinds whose writes are locked instructions.
ATOMIC = frozenset({"ptl", "policy", "mmap_sem", "flush", "rcu"})


def line_of(obj: Obj) -> Line | None:
    """The cache line a shared object lives in (None: not a shared line)."""
    kind = obj[0]
    if kind == "pte":
        page = obj[2]
        assert isinstance(page, int)
        return ("pte", obj[1], page >> _PTE_LINE_SHIFT)
    if kind in ("tree", "vma", "policy", "cache"):
        return obj
    return None  # frames, the free list, TLBs, the checkers' bookkeeping


def page_table_lock(obj: Obj) -> Line:
    """The lock of the page-table page holding PTE object `obj`."""
    page = obj[2]
    assert isinstance(page, int)
    return ("ptl", obj[1], page >> _PT_PAGE_SHIFT)


def service_word(dst: ActorId, msg: Message, cpu: int) -> Line | None:
    """The service actor's word a CPU's request to it writes (an atomic on the
    requesting CPU, as in the kernel: the rwsem count, the flush/ack word of a
    shootdown, RCU's quiescent-state mask), or None."""
    if dst.kind is ActorKind.MMAP_SEM:
        return ("mmap_sem", getattr(msg, "mm", MM0))
    if isinstance(msg, Flush):
        return ("flush", cpu)
    if isinstance(msg, Ack):
        return ("flush", msg.token.initiator)
    if isinstance(msg, Qs):
        return ("rcu",)
    return None


#: What `vmactors bench` calls each kind of line when it reports waits.
_POLICY_NAMES = {"ref": "vma refcount", "readers": "vm_refcnt", "drain_waiter": "vm_refcnt",
                 "write_locked": "vma write lock", "fences": "fence"}
_LINE_NAMES = {"ptl": "page-table lock", "pte": "page table", "tree": "vma tree", "vma": "vma", "cache": "page cache",
               "mmap_sem": "mmap_sem", "flush": "shootdown", "rcu": "rcu"}


def line_name(line: Line) -> str:
    """The lock or structure a line belongs to, as reports name it."""
    if line[0] == "policy":
        key = line[2]
        first = key[0] if isinstance(key, tuple) and key else key
        return _POLICY_NAMES.get(str(first), str(first))
    return _LINE_NAMES.get(str(line[0]), str(line[0]))


# --- effects that remember the order of touches --------------------------------------------


class TracedEffects(Effects):
    """`Effects` that keep, in the order first touched, every shared object the step
    touches and whether it wrote it."""

    __slots__ = ("accesses",)

    def __init__(self, world: World, actor: ActorId) -> None:
        super().__init__(world, actor)
        self.accesses: dict[Obj, bool] = {}

    def record_read(self, obj: Obj) -> None:
        if obj not in self.accesses:
            self.accesses[obj] = False

    def record_write(self, obj: Obj) -> None:
        self.accesses[obj] = True


class TracedRecordingEffects(RecordingEffects):
    """`RecordingEffects` (tests) that also keep the order of touches."""

    __slots__ = ("accesses",)

    def __init__(self, world: World, actor: ActorId) -> None:
        super().__init__(world, actor)
        self.accesses: dict[Obj, bool] = {}

    def record_read(self, obj: Obj) -> None:
        super().record_read(obj)
        if obj not in self.accesses:
            self.accesses[obj] = False

    def record_write(self, obj: Obj) -> None:
        super().record_write(obj)
        self.accesses[obj] = True


def traced(effects: type[Effects]) -> type[Effects]:
    """The effects class to run a step with, so that the model sees what it touched."""
    if effects is Effects:
        return TracedEffects
    if effects is RecordingEffects:
        return TracedRecordingEffects
    return effects


# --- one step's cost -----------------------------------------------------------------------------


@attrs.frozen
class StepCost:
    """What the model says about one step."""

    end: int
    caches: immutables.Map[Hashable, Hashable]
    #: (line name, ns) for each access that had to move a line here: the transfer and
    #: the time queued behind the line's previous transfer.
    waits: tuple[tuple[str, int], ...] = ()


class CostModel:
    """The rules above, for one set of `Costs`."""

    def __init__(self, costs: Costs | None = None) -> None:
        self.costs = costs if costs is not None else Costs()
        c = self.costs
        self._event_ns = {name: getattr(c, field) for name, field in EVENTS.items()}
        self._socket = max(c.cpus_per_socket, 1)
        self._dirty = False

    def step(self, actor: ActorId, accesses: Mapping[Obj, bool], events: Iterable[Event | int],
             env: Envelope | None, start: int, caches: immutables.Map[Hashable, Hashable],
             sent: Iterable[tuple[ActorId, Message]] = ()) -> StepCost:
        """The end of a step of `actor` that began at `start`, touched `accesses`
        (object -> wrote it, in order), logged `events` and sent `sent`; and the
        caches after it."""
        c = self.costs
        t = start
        on_behalf: int
        lines: list[tuple[Line, bool]] = []
        cpu = actor.kind is ActorKind.CPU
        if cpu:
            t += c.cpu_step_ns
            on_behalf = actor.index
        else:
            on_behalf = self._on_behalf(actor, env, events)
            if actor.kind is ActorKind.MMAP_SEM and env is None:
                # A grant: the woken CPU takes the count word.
                lines.append((("mmap_sem", MM0), True))
        for obj, wrote in accesses.items():
            line = line_of(obj)
            if line is None:
                continue
            if wrote and line[0] == "pte":
                lines.append((page_table_lock(obj), True))
            lines.append((line, wrote))
        if cpu:
            for dst, msg in sent:
                word = service_word(dst, msg, on_behalf)
                if word is not None:
                    lines.append((word, True))
        waits: list[tuple[str, int]] = []
        if lines:
            self._dirty = False
            with caches.mutate() as m:
                for line, wrote in lines:
                    t = self._access(m, line, wrote, on_behalf, t, waits)
                if self._dirty:  # unchanged caches stay the same object
                    caches = m.finish()
        ns = self._event_ns
        for ev in events:
            if not isinstance(ev, int):
                t += ns.get(ev.NAME, 0)
        return StepCost(t, caches, tuple(waits))

    @staticmethod
    def _on_behalf(actor: ActorId, env: Envelope | None, events: Iterable[Event | int]) -> int:
        """The CPU a service actor's step works for: the sender, or the CPU a grant goes to."""
        if env is not None and env.src.kind is ActorKind.CPU:
            return env.src.index
        for ev in events:
            who = getattr(ev, "cpu", None)
            if isinstance(who, int):
                return who
        return 0

    def _transfer_ns(self, cpu: int, holder: int, sharers: int) -> int:
        """A transfer to `cpu` from the holder, or invalidating the sharers."""
        c = self.costs
        sock = cpu // self._socket
        if holder >= 0:
            return c.line_transfer_ns if holder // self._socket == sock else c.remote_line_transfer_ns
        lo = sock * self._socket
        local = ((1 << self._socket) - 1) << lo
        return c.line_transfer_ns if not sharers & ~local else c.remote_line_transfer_ns

    def _access(self, m: Any, line: Line, wrote: bool, cpu: int, t: int, waits: list[tuple[str, int]]) -> int:
        """One access by `cpu` at time `t` to `line` in the caches `m` (mutated);
        returns the time after it."""
        state: LineState = m.get(line, _NOBODY)
        holder, sharers, free_at = state
        me = 1 << cpu
        c = self.costs
        extra = c.atomic_ns if wrote and line[0] in ATOMIC else 0
        if wrote:
            if holder == cpu or (holder < 0 and sharers == me):
                if holder != cpu:
                    self._set(m, line, (cpu, me, free_at))
                return t + extra
            if holder < 0 and not sharers:  # first touch
                self._set(m, line, (cpu, me, free_at))
                return t + c.llc_ns + extra
            begin = max(t, free_at)
            end = begin + self._transfer_ns(cpu, holder, sharers & ~me)
            self._set(m, line, (cpu, me, end))
            waits.append((line_name(line), end - t))
            return end + extra
        if holder == cpu or sharers & me:
            return t
        if holder < 0:  # shared by others, or first touch: the last-level cache
            self._set(m, line, (-1, sharers | me, free_at))
            return max(t, free_at) + c.llc_ns
        begin = max(t, free_at)
        end = begin + self._transfer_ns(cpu, holder, 0)
        self._set(m, line, (-1, sharers | me | (1 << holder), end))
        waits.append((line_name(line), end - t))
        return end

    def _set(self, m: Any, line: Line, state: LineState) -> None:
        m[line] = state
        self._dirty = True


#: The model with the default costs (what logs' `vtime_ns` use).
DEFAULT = CostModel()

__all__ = ["Costs", "CostModel", "StepCost", "EVENTS", "DEFAULT", "load_costs", "line_of", "line_name",
           "page_table_lock", "traced", "TracedEffects", "TracedRecordingEffects", "ATOMIC"]
