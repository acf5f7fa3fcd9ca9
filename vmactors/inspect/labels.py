"""Words for events: actor order, addresses, and the short labels every view shares.

One home for how an event is named on screen, so the table, the timeline, the history
and the diagrams call the same thing by the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from vmactors.log.schema import (
    LINE_HEAD, FaultBegin, FaultEnd, FaultRetry, FaultSegv, FrameAlloc, FrameFree, InvariantViolated, IpiAck,
    IpiSend, LockAcquire, LockRelease, LockWait, MemLoad, MemStore, MsgRecv, MsgSend, OpBegin, OpEnd,
    PteInstall, PteProtect, PteZap, RcuGpEnd, RcuGpStart, RcuQs, SyscallBegin, SyscallEnd, TlbFill, TlbFlush,
    TreeStore, VmaFree,
)

PAGE_SIZE = 4096

# Actors that are not CPUs, in the order their columns appear (after cpu0, cpu1, ...).
_SERVICE_ACTORS = ("tree", "shootdown", "rcu", "mmap_sem")

Event = Mapping[str, Any]


def actor_sort_key(actor: str) -> tuple[int, int, str]:
    """cpu0, cpu1, ..., cpu10, then tree, shootdown, rcu, mmap_sem, then others, sim last.

    >>> sorted(["rcu", "cpu10", "sim", "tree", "cpu2"], key=actor_sort_key)
    ['cpu2', 'cpu10', 'tree', 'rcu', 'sim']
    """
    if actor.startswith("cpu") and actor[3:].isdigit():
        return (0, int(actor[3:]), "")
    if actor in _SERVICE_ACTORS:
        return (1, _SERVICE_ACTORS.index(actor), "")
    if actor == "sim":
        return (3, 0, "")
    return (2, 0, actor)


def sort_actors(actors: Iterable[str]) -> list[str]:
    return sorted(set(actors), key=actor_sort_key)


def cpu_of_actor(actor: str) -> int | None:
    """The CPU number of `cpuN`, else None."""
    if actor.startswith("cpu") and actor[3:].isdigit():
        return int(actor[3:])
    return None


def hex_addr(addr: Any) -> str:
    """0x-prefixed lower-case hex for an int; anything else as it is."""
    if isinstance(addr, int) and not isinstance(addr, bool):
        return f"{addr:#x}"
    return "-" if addr is None else str(addr)


def page_range(ev: Event) -> tuple[int, int] | None:
    """[start, end) byte range an event covers, or None when it has no address."""
    addr = ev.get("addr")
    if not isinstance(addr, int) or isinstance(addr, bool):
        return None
    pages = ev.get("pages", 1)
    if not isinstance(pages, int) or isinstance(pages, bool) or pages < 1:
        pages = 1
    return addr, addr + pages * PAGE_SIZE


def covers(ev: Event, addr: int) -> bool:
    """Whether the event's page range holds byte address `addr`."""
    rng = page_range(ev)
    return rng is not None and rng[0] <= addr < rng[1]


def range_text(ev: Event) -> str:
    """`0x7efffffff000` for one page, `0x7effffffc000+4p` for several."""
    rng = page_range(ev)
    if rng is None:
        return "-"
    pages = (rng[1] - rng[0]) // PAGE_SIZE
    return hex_addr(rng[0]) if pages == 1 else f"{hex_addr(rng[0])}+{pages}p"


def value_text(value: Any) -> str:
    """A scalar as a person writes it; containers as compact JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


# Keys shown in their own table column, or implied by the event name.
_COLUMN_KEYS = frozenset(LINE_HEAD + ("cpu", "addr"))
_HEX_KEYS = frozenset({"vaddr"})


def ret_text(value: Any) -> str:
    """A syscall's return value: an address (mmap) in hex, anything else as it is."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0x10000:
        return hex_addr(value)
    return value_text(value)


def details_text(ev: Event) -> str:
    """Every key the table has no column for, as `key=value`, in log order (`pages`
    only without an `addr`: the addr column shows it)."""
    parts = []
    for key, value in ev.items():
        if key in _COLUMN_KEYS:
            continue
        if key == "pages" and (value == 1 or "addr" in ev):
            continue
        if key in _HEX_KEYS:
            shown = hex_addr(value)
        elif isinstance(value, str) and (not value or any(c in value for c in ' "=\t\n')):
            shown = orjson.dumps(value).decode()  # `text="r0 = load A"`: one token
        else:
            shown = value_text(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def entry_text(ev: Event) -> str:
    """What a tree.store put in the tree: the VMA's name, ZERO or NULL."""
    entry = ev.get("entry")
    if entry == "vma":
        return f"vma {ev.get('vma')}"
    if entry == "zero":
        return "ZERO"
    if entry == "null":
        return "NULL"
    return value_text(entry)


def op_target(ev: Event) -> str | None:
    """The mapping a syscall is about: its `vma`, else the label in the op's text
    (`munmap A` -> `A`, `mmap A fixed ...` -> `A`, `B = mmap 2` -> `B`)."""
    if ev.get("vma") is not None:
        return str(ev["vma"])
    words = str(ev.get("text") or "").split()
    if len(words) >= 2 and words[1] == "=":
        return words[0]
    return words[1] if len(words) >= 2 else None


def lock_name(ev: Event) -> str:
    """`mmap_sem(w)`, `vma A(r)`, `rcu`: the lock an event is about, briefly."""
    lock = ev.get("lock", "?")
    mode = ev.get("mode")
    name = f"vma {ev['vma']}" if lock == "vma" and ev.get("vma") is not None else str(lock)
    if mode in ("read", "write"):
        return f"{name}({mode[0]})"
    return name


# lock event -> (what a CPU does, what the lock's own actor says it did for a CPU)
_LOCK_VERBS = {LockWait.NAME: ("wait", "waits"), LockAcquire.NAME: ("lock", "takes"),
               LockRelease.NAME: ("unlock", "drops")}


def short_label(ev: Event) -> str:
    """A few words for one event, for a narrow timeline cell.

    >>> short_label({"event": "msg.send", "dst": "mmap_sem", "kind": "down_write"})
    'down_write>mmap_sem'
    >>> short_label({"event": "msg.recv", "src": "mmap_sem", "kind": "grant"})
    '<grant'
    >>> short_label({"event": "tlb.flush", "reason": "ipi"})
    'flush(ipi)'
    """
    name = ev.get("event", "?")
    frame = ev.get("frame")
    if name == MsgSend.NAME:
        return f"{ev.get('kind')}>{ev.get('dst')}"
    if name == MsgRecv.NAME:
        return f"<{ev.get('kind')}"
    if name == IpiSend.NAME:
        return f"ipi>cpu{ev.get('cpu')}"
    if name == IpiAck.NAME:
        return "ipi ack"
    if name == MemLoad.NAME:
        reg = ev.get("reg")
        value = value_text(ev.get("value"))
        return f"ld {reg}={value}" if reg is not None else f"ld ={value}"
    if name == MemStore.NAME:
        return f"st {value_text(ev.get('value'))}"
    if name == TlbFill.NAME:
        return f"tlb+f{frame}"
    if name == TlbFlush.NAME:
        return f"flush({ev.get('reason', '?')})"
    if name == PteInstall.NAME:
        return f"pte+f{frame}"
    if name == PteZap.NAME:
        return f"zap f{frame}"
    if name == PteProtect.NAME:
        return f"prot {ev.get('prot')}"
    if name == FaultBegin.NAME:
        return f"fault({ev.get('access', '?')})"
    if name == FaultRetry.NAME:
        return "retry"
    if name == FaultSegv.NAME:
        return "SEGV"
    if name == FaultEnd.NAME:
        return "fault ok"
    if name in _LOCK_VERBS:
        cpu = ev.get("cpu")
        if isinstance(cpu, int) and ev.get("actor") not in (None, f"cpu{cpu}"):
            # the lock's own actor (the rwsem) telling what it did for a CPU
            verb = _LOCK_VERBS[name][1]
            return f"cpu{cpu} {verb} {lock_name(ev)}"
        verb = _LOCK_VERBS[name][0]
        return f"{verb} {lock_name(ev)}"
    if name == TreeStore.NAME:
        return f"tree={entry_text(ev)}"
    if name == VmaFree.NAME:
        return f"free vma {ev.get('vma')}"
    if name == FrameAlloc.NAME:
        return f"alloc f{frame}"
    if name == FrameFree.NAME:
        return f"free f{frame}"
    if name == RcuGpStart.NAME:
        return f"gp{ev.get('gp')} start"
    if name == RcuGpEnd.NAME:
        return f"gp{ev.get('gp')} end"
    if name == RcuQs.NAME:
        return f"qs cpu{ev.get('cpu')}"
    if name == SyscallBegin.NAME:
        return f"{ev.get('op', 'syscall')} {op_target(ev) or range_text(ev)}"
    if name == SyscallEnd.NAME:
        return f"ret={ret_text(ev.get('ret'))}"
    if name == OpBegin.NAME:
        return f"op {ev.get('text', '')}".rstrip()
    if name == OpEnd.NAME:
        return f"op end={value_text(ev.get('result'))}"
    if name == InvariantViolated.NAME:
        return f"!! {ev.get('invariant')}"
    return name
