"""The log schema: every event the simulator logs, as a frozen class, in one place.

The log writer renders these classes, `vmactors inspect` takes its event names and
keys from here, `docs/log-schema.md` prints the table `event_table()` makes (a test
compares them), and the tests validate logs against `EVENTS`.

Each line starts with `step`, `vtime_ns`, `actor`, `event`, then the head keys
(`cpu`, `addr`, `pages`, `frame`, `vma`, `msg_id`, `src`, `dst`, `kind`, `cause`) that
the event has, then its own keys in the order its class declares them. A key whose
value is None is left out, except `result` (an op without a result) and `cause` (a
message sent from a spontaneous step).

>>> render_fields(TlbFlush(cpu=1, addr=0x7efffffff000, pages=1, reason="ipi"))
{'cpu': 1, 'addr': 139637976723456, 'pages': 1, 'reason': 'ipi'}
>>> EVENTS["tlb.flush"] is TlbFlush
True
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar, Literal

import attrs

FORMAT = 1

#: The four keys every line starts with.
LINE_HEAD: tuple[str, ...] = ("step", "vtime_ns", "actor", "event")
#: Keys shared by many events, always in this order right after the line head.
HEAD: tuple[str, ...] = ("cpu", "addr", "pages", "frame", "vma", "msg_id", "src", "dst", "kind", "cause")
#: Keys kept when their value is None.
KEEP_NONE: frozenset[str] = frozenset({"result", "cause"})

LOCKS: tuple[str, ...] = ("mmap_sem", "vma", "rcu", "refcount", "fence", "ptl")
#: The invariants (the `invariant` of `invariant.violated`), with what violates each.
INVARIANTS: dict[str, str] = {
    "coherence": "two CPUs can reach different frames for the same virtual page at the same instant",
    "frame-uaf": "a CPU reads or writes, through its TLB, a frame that was freed or given to another owner",
    "vma-uaf": "a fault path reads a VMA that was freed and may hold anything now (not where VMA objects are "
               "type-safe, as in pervma: there a freed VMA object is still a VMA object)",
    "wrong-vma": "a fault installs a PTE through a VMA object that no longer maps the faulting address",
    "orphan-pte": "outside a writer operation on that page, a PTE that no live VMA covers, or installed through a "
                  "VMA no longer live",
    "munmap-incomplete": "munmap (or MAP_FIXED's unmap) has returned while a translation through the unmapped VMA "
                         "still exists",
    "cow-isolation": "after a fork, a store by one address space reaches a page it no longer maps there (its "
                     "copy-on-write copy is another page) while another address space still maps it",
    "tree-uaf": "a CPU walking the VMA tree without RCU used a tree node after its RCU-delayed free (a store replaced "
                "the node under the walk, and the grace period did not wait for it)",
    "permissive-pte": "outside a writer operation on that page, a PTE allows an access that the live VMA covering it "
                      "forbids",
    "pgtable-uaf": "a fault wrote a PTE into a page-table page free_pgtables had unlinked or freed, or free_pgtables "
                   "unlinked one that still held a PTE",
    "deadlock": "no step is enabled and a thread is unfinished",
}
MODES: tuple[str, ...] = ("read", "write")
TREE_ENTRIES: tuple[str, ...] = ("vma", "zero", "null")
SYSCALLS: tuple[str, ...] = ("mmap", "mmap-fixed", "munmap", "mprotect", "madvise", "fork", "mremap", "truncate")
#: `interrupted`: the run was stopped by SIGINT or SIGTERM (`vmactors.log.sink`).
OUTCOMES: tuple[str, ...] = ("ok", "violation", "deadlock", "step-limit", "interrupted")
#: Who may log an event: `cpuN` is any CPU, `sim` the driver, `any` any actor.
Who = str


@attrs.frozen
class Event:
    """Base of every event. `NAME` is the `event` key; `WHO` who logs it; `DOC` one
    line for the schema page."""

    NAME: ClassVar[str] = ""
    WHO: ClassVar[Who] = ""
    DOC: ClassVar[str] = ""


# --- memory accesses and translations ---------------------------------------------------


@attrs.frozen
class MemLoad(Event):
    NAME: ClassVar[str] = "mem.load"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a load through the TLB: the frame and value read; `vaddr` is the exact address"
    cpu: int
    addr: int
    pages: int
    frame: int
    vma: str
    vaddr: int
    reg: str
    value: int
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class MemStore(Event):
    NAME: ClassVar[str] = "mem.store"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a store through the TLB"
    cpu: int
    addr: int
    pages: int
    frame: int
    vma: str
    vaddr: int
    value: int
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class TlbFill(Event):
    NAME: ClassVar[str] = "tlb.fill"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a page walk found a PTE and cached it in this CPU's TLB (step 0: a prefaulted entry, logged by sim)"
    cpu: int
    addr: int
    pages: int
    frame: int
    vma: str
    prot: str
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class TlbFlush(Event):
    NAME: ClassVar[str] = "tlb.flush"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "this CPU dropped its TLB entries for the range: `reason` `local` (its own syscall or a stale entry) or `ipi`"
    cpu: int
    addr: int
    pages: int
    reason: Literal["local", "ipi"]
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class PteInstall(Event):
    NAME: ClassVar[str] = "pte.install"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a fault set a PTE under the page-table lock (step 0: a prefaulted page, logged by sim)"
    addr: int
    pages: int
    frame: int
    vma: str
    prot: str
    cpu: int | None = None
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class PteZap(Event):
    NAME: ClassVar[str] = "pte.zap"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a writer cleared a PTE"
    cpu: int
    addr: int
    pages: int
    frame: int
    vma: str
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class PteProtect(Event):
    NAME: ClassVar[str] = "pte.protect"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a PTE's protection changed (mprotect, or a write fault upgrading it)"
    cpu: int
    addr: int
    pages: int
    frame: int
    vma: str
    prot: str
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


# --- faults -------------------------------------------------------------------------------


@attrs.frozen
class FaultBegin(Event):
    NAME: ClassVar[str] = "fault.begin"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a load or store missed the TLB and the page table: a page fault"
    cpu: int
    addr: int
    pages: int
    vaddr: int
    access: Literal["load", "store"]
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class FaultRetry(Event):
    NAME: ClassVar[str] = "fault.retry"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "the fault starts over (or falls back to `mmap_lock`), with the reason"
    cpu: int
    addr: int
    pages: int
    reason: str
    vma: str | None = None
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class FaultSegv(Event):
    NAME: ClassVar[str] = "fault.segv"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "SIGSEGV: the register gets `segv` and the thread goes on"
    cpu: int
    addr: int
    pages: int
    reason: str
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class FaultEnd(Event):
    NAME: ClassVar[str] = "fault.end"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "the fault is over; the access restarts from the TLB"
    cpu: int
    addr: int
    pages: int
    vma: str
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


# --- locks ----------------------------------------------------------------------------------


@attrs.frozen
class _LockEvent(Event):
    WHO: ClassVar[Who] = "cpuN|mmap_sem"
    cpu: int
    lock: str
    mode: Literal["read", "write"]
    vma: str | None = None
    addr: int | None = None
    pages: int | None = None


@attrs.frozen
class LockWait(_LockEvent):
    NAME: ClassVar[str] = "lock.wait"
    DOC: ClassVar[str] = "a CPU waits for a lock (`mmap_sem` logs the rwsem's own waits)"


@attrs.frozen
class LockAcquire(_LockEvent):
    NAME: ClassVar[str] = "lock.acquire"
    DOC: ClassVar[str] = "a CPU holds a lock, a VMA reference or an RCU read-side section"


@attrs.frozen
class LockRelease(_LockEvent):
    NAME: ClassVar[str] = "lock.release"
    DOC: ClassVar[str] = "a CPU let go of it"


# --- the address space ------------------------------------------------------------------------


@attrs.frozen
class TreeStore(Event):
    NAME: ClassVar[str] = "tree.store"
    WHO: ClassVar[Who] = "tree"
    DOC: ClassVar[str] = "the tree owner published a new tree version with the range set to `entry` (step 0: a `[[map]]`, logged by sim)"
    addr: int
    pages: int
    entry: Literal["vma", "zero", "null"]
    vma: str | None = None
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class VmaFree(Event):
    NAME: ClassVar[str] = "vma.free"
    WHO: ClassVar[Who] = "cpuN|rcu"
    DOC: ClassVar[str] = "a VMA object was freed: `addr`/`pages` are its range; `cpu` when a CPU freed it"
    addr: int
    pages: int
    vma: str
    cpu: int | None = None
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class VmaDetach(Event):
    NAME: ClassVar[str] = "vma.detach"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = ("a writer detached a VMA that is still in the tree (pervma MAP_FIXED): `addr`/`pages` "
                          "are its range")
    cpu: int
    addr: int
    pages: int
    vma: str
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class TreeWalk(Event):
    NAME: ClassVar[str] = "tree.walk"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = ("a walk of the VMA tree outside RCU (under mmap_lock) across steps: `call` `find_vma_prev` "
                          "takes a pointer to the tree's node, `mas_prev` reads it again; `node` is what became of "
                          "it meanwhile (`live`, `dead`: replaced, `freed`: after a grace period)")
    cpu: int
    call: Literal["find_vma_prev", "mas_prev"]
    node: Literal["live", "dead", "freed"]
    mm: int | None = None


@attrs.frozen
class NodeFree(Event):
    NAME: ClassVar[str] = "tree.node.free"
    WHO: ClassVar[Who] = "rcu"
    DOC: ClassVar[str] = ("the grace period after a maple node was replaced ended: the node is freed (mt_free_rcu); "
                          "`cpus` are the walks still pointing to it")
    cpus: list[int]
    mm: int | None = None


@attrs.frozen
class VmaSetProt(Event):
    NAME: ClassVar[str] = "vma.prot"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = ("vma_set_page_prot: a new VMA, in the tree since its insertion, gets the protection it was "
                          "mapped with (`mmap ... prot=`)")
    cpu: int
    addr: int
    pages: int
    vma: str
    prot: str
    mm: int | None = None


@attrs.frozen
class PgtableFree(Event):
    NAME: ClassVar[str] = "pgtable.free"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = ("free_pgtables unlinked the page-table page that maps `pages` pages from `addr` (it is freed "
                          "once the flush is done); only in scenarios with `free_pgtables = true`")
    cpu: int
    addr: int
    pages: int
    mm: int | None = None


@attrs.frozen
class FrameAlloc(Event):
    NAME: ClassVar[str] = "frame.alloc"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a fault allocated a fresh anonymous frame for a page"
    cpu: int
    addr: int
    pages: int
    frame: int
    vma: str
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class FrameFree(Event):
    NAME: ClassVar[str] = "frame.free"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a frame went back to the free list (reused LIFO)"
    cpu: int
    frame: int


# --- RCU and shootdowns -----------------------------------------------------------------------


@attrs.frozen
class RcuGpStart(Event):
    NAME: ClassVar[str] = "rcu.gp.start"
    WHO: ClassVar[Who] = "rcu"
    DOC: ClassVar[str] = "a grace period started"
    gp: int


@attrs.frozen
class RcuQs(Event):
    NAME: ClassVar[str] = "rcu.qs"
    WHO: ClassVar[Who] = "rcu"
    DOC: ClassVar[str] = "a CPU reported a quiescent state for grace period `gp`"
    cpu: int
    gp: int


@attrs.frozen
class RcuGpEnd(Event):
    NAME: ClassVar[str] = "rcu.gp.end"
    WHO: ClassVar[Who] = "rcu"
    DOC: ClassVar[str] = "the grace period ended; its callbacks (VMA frees) run now"
    gp: int


@attrs.frozen
class IpiSend(Event):
    NAME: ClassVar[str] = "ipi.send"
    WHO: ClassVar[Who] = "shootdown"
    DOC: ClassVar[str] = "a flush IPI to `cpu`; follows the `msg.send` of that IPI"
    cpu: int
    addr: int
    pages: int


@attrs.frozen
class IpiAck(Event):
    NAME: ClassVar[str] = "ipi.ack"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "the CPU flushed and acked the IPI; follows the `msg.send` of the ack"
    cpu: int
    addr: int
    pages: int


# --- threads ------------------------------------------------------------------------------------


@attrs.frozen
class OpBegin(Event):
    NAME: ClassVar[str] = "op.begin"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "a thread starts an op (`index` in its `ops`, `text` as written)"
    cpu: int
    thread: int
    index: int
    text: str


@attrs.frozen
class OpEnd(Event):
    NAME: ClassVar[str] = "op.end"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "the op is done; `result` is what it wrote to its register (null: nothing)"
    cpu: int
    thread: int
    index: int
    text: str
    #: Always written, null when the op wrote no register.
    result: int | str | None


@attrs.frozen
class SyscallBegin(Event):
    NAME: ClassVar[str] = "syscall.begin"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = ("a writer syscall starts (`addr`/`pages` unless it is an mmap, whose place is not known "
                          "yet, or a fork or truncate, which have no range)")
    cpu: int
    op: str
    text: str
    addr: int | None = None
    pages: int | None = None
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


@attrs.frozen
class SyscallEnd(Event):
    NAME: ClassVar[str] = "syscall.end"
    WHO: ClassVar[Who] = "cpuN"
    DOC: ClassVar[str] = "the syscall returns `ret` (mmap: the address, or `segv` when nothing fits)"
    cpu: int
    op: str
    text: str
    ret: int | str
    addr: int | None = None
    pages: int | None = None
    vma: str | None = None
    #: The address space, when it is not the scenario's own (a fork's child).
    mm: int | None = None


# --- messages (rendered from the envelopes in flight) ---------------------------------------------


@attrs.frozen
class _MsgEvent(Event):
    WHO: ClassVar[Who] = "any"
    msg_id: int
    src: str
    dst: str
    kind: str
    cause: int | None
    cpu: int | None = None
    addr: int | None = None
    pages: int | None = None
    #: The payload, when the message carries more than its range.
    arg: Any = None


@attrs.frozen
class MsgSend(_MsgEvent):
    NAME: ClassVar[str] = "msg.send"
    DOC: ClassVar[str] = "an actor sent a message; `cpu` is the CPU end of it (sender or receiver) when there is one"


@attrs.frozen
class MsgRecv(_MsgEvent):
    NAME: ClassVar[str] = "msg.recv"
    DOC: ClassVar[str] = "an actor took the oldest message of a channel (one sender, one receiver)"


# --- the run ------------------------------------------------------------------------------------------


@attrs.frozen
class RunStart(Event):
    NAME: ClassVar[str] = "run.start"
    WHO: ClassVar[Who] = "sim"
    DOC: ClassVar[str] = "the first line: log `format`, `vmactors` version, the scenario and its digest, policy, strategy, seed"
    format: int
    vmactors: str
    scenario: str
    scenario_sha256: str
    policy: str
    strategy: str
    seed: int


@attrs.frozen
class RunEnd(Event):
    NAME: ClassVar[str] = "run.end"
    WHO: ClassVar[Who] = "sim"
    DOC: ClassVar[str] = "the last line: `outcome`, final `regs` (`\"T:REG\"` -> int or `\"segv\"`), `violations` (sorted); `waiting` on deadlock; `interrupted`: `regs` empty, `violations` those logged before the signal"
    outcome: str
    regs: dict[str, int | str]
    violations: list[str]
    waiting: dict[str, str] | None = None


@attrs.frozen
class InvariantViolated(Event):
    NAME: ClassVar[str] = "invariant.violated"
    WHO: ClassVar[Who] = "sim"
    DOC: ClassVar[str] = "a step broke an invariant; `cpu`/`addr`/`pages`/`frame`/`vma` where known"
    invariant: str
    detail: str
    cpu: int | None = None
    addr: int | None = None
    pages: int | None = None
    frame: int | None = None
    vma: str | None = None


#: Every event class, in the order the schema page lists them.
EVENT_CLASSES: tuple[type[Event], ...] = (
    RunStart, RunEnd, MsgSend, MsgRecv, IpiSend, IpiAck, MemLoad, MemStore, TlbFill, TlbFlush, PteInstall, PteZap,
    PteProtect, FaultBegin, FaultRetry, FaultSegv, FaultEnd, LockWait, LockAcquire, LockRelease, TreeStore, VmaFree,
    VmaDetach, VmaSetProt, PgtableFree, TreeWalk, NodeFree, RcuGpStart, RcuGpEnd, RcuQs, FrameAlloc, FrameFree, SyscallBegin, SyscallEnd, OpBegin, OpEnd,
    InvariantViolated,
)
EVENTS: dict[str, type[Event]] = {cls.NAME: cls for cls in EVENT_CLASSES}
EVENT_NAMES: tuple[str, ...] = tuple(EVENTS)
#: Events about memory: `addr` (page-aligned) and `pages` are always there.
MEMORY_EVENTS: frozenset[str] = frozenset(
    cls.NAME for cls in EVENT_CLASSES
    if {"addr", "pages"} <= {f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING})
#: Events that always cover exactly one page.
SINGLE_PAGE: frozenset[str] = frozenset({"mem.load", "mem.store", "tlb.fill", "pte.install", "pte.zap",
                                         "pte.protect", "fault.begin", "frame.alloc"})


def _key_order(cls: type[Event]) -> tuple[str, ...]:
    names = [f.name for f in attrs.fields(cls)]
    return tuple(k for k in HEAD if k in names) + tuple(k for k in names if k not in HEAD)


_ORDER: dict[type[Event], tuple[str, ...]] = {cls: _key_order(cls) for cls in EVENT_CLASSES}


def key_order(cls: type[Event]) -> tuple[str, ...]:
    """The keys of `cls` in the order a log line carries them (after the line head)."""
    order = _ORDER.get(cls)
    if order is None:
        order = _ORDER[cls] = _key_order(cls)
    return order


def required_keys(cls: type[Event]) -> tuple[str, ...]:
    """The keys a line of this event always has."""
    return tuple(f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING)


def render_fields(ev: Event) -> dict[str, Any]:
    """The event's own keys, in log order, None values left out (but `result`, `cause`)."""
    out: dict[str, Any] = {}
    for k in key_order(type(ev)):
        v = getattr(ev, k)
        if v is not None or k in KEEP_NONE:
            out[k] = v
    return out


def event_table() -> str:
    """The Markdown table of docs/log-schema.md's "Events" section."""
    lines = ["| event | logged by | keys (required; *optional*) | meaning |", "|---|---|---|---|"]
    for cls in EVENT_CLASSES:
        req = set(required_keys(cls))
        keys = ", ".join(f"`{k}`" if k in req else f"*`{k}`*" for k in key_order(cls))
        lines.append(f"| `{cls.NAME}` | {cls.WHO.replace('|', ' or ')} | {keys} | {cls.DOC} |")
    return "\n".join(lines)


#: Keys typed `str` whose values are nevertheless one of a few (the `Literal` fields
#: say theirs in their type).
_VALUE_SETS: dict[str, tuple[str, ...]] = {"lock": LOCKS, "op": SYSCALLS, "outcome": OUTCOMES}
_CHOICES: dict[type[Event], dict[str, tuple[Any, ...]]] = {}


def _literal_args(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _literal_args(args[0])
    return None


def choices(cls: type[Event]) -> dict[str, tuple[Any, ...]]:
    """The keys of `cls` that take one of a few values, with those values, in log order:
    its `Literal` fields, and `lock`, `op`, `outcome` (`LOCKS`, `SYSCALLS`, `OUTCOMES`).

    >>> choices(TlbFlush)
    {'reason': ('local', 'ipi')}
    >>> choices(LockWait)
    {'lock': ('mmap_sem', 'vma', 'rcu', 'refcount', 'fence', 'ptl'), 'mode': ('read', 'write')}
    """
    out = _CHOICES.get(cls)
    if out is None:
        hints = typing.get_type_hints(cls)
        out = {}
        for k in key_order(cls):
            values = _literal_args(hints[k]) or _VALUE_SETS.get(k)
            if values is not None:
                out[k] = values
        _CHOICES[cls] = out
    return out


__all__ = ["FORMAT", "HEAD", "LINE_HEAD", "EVENTS", "EVENT_NAMES", "EVENT_CLASSES", "Event", "render_fields",
           "key_order", "required_keys", "choices", "event_table", "MEMORY_EVENTS", "SINGLE_PAGE", "KEEP_NONE",
           "LOCKS", "MODES", "TREE_ENTRIES", "SYSCALLS", "OUTCOMES", "INVARIANTS"] + [
    cls.__name__ for cls in EVENT_CLASSES]
