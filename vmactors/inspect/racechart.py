"""`--diagram ascii`: the race chart of kernel commit messages.

One column per CPU under `CPU 0` / `-----` headers, time running down, each line a
call-like description of what that CPU did, indented inside a syscall or a fault:

```
CPU 0                            CPU 1
-----                            -----
                                 munmap(A)
                                   down_write(mmap_sem)
do_page_fault(0x7efffffff000)
  down_read(mmap_sem)
  ... waits
                                   ...mmap_sem: grant
                                   mas_store(NULL)
                                   flush_tlb_range()
                                   IPI -> cpu0
<IPI> flush_tlb
                                   ...shootdown: flush_done
                                   vm_area_free(A)
                                   up_write(mmap_sem)
                                   return 0
  ...mmap_sem: grant
  up_read(mmap_sem)
  SIGSEGV (no vma)
```

A line `...SRC: KIND` marks where a CPU resumes: the answer to its own request arriving
after other CPUs ran. Loads and stores through a translation the page table no longer
holds are marked `(stale TLB)` or `(freed frame)`.

Work that a service actor (the tree, the shootdown coordinator, RCU) does on a CPU's
behalf is drawn in that CPU's column: the CPU whose request started the chain of
messages the actor is handling. Plain ASCII only, trailing spaces trimmed, ready to
paste into a mail to linux-mm.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

import attrs

from vmactors.inspect.causality import Messages
from vmactors.inspect.diagram import MAX_DRAWN, too_big
from vmactors.inspect.filters import EventFilter
from vmactors.inspect.history import Translations
from vmactors.inspect.labels import Event, cpu_of_actor, hex_addr, ret_text, value_text
from vmactors.inspect.reader import Record
from vmactors.log.schema import (
    FaultBegin, FaultEnd, FaultRetry, FaultSegv, FrameAlloc, FrameFree, InvariantViolated, IpiSend,
    LockAcquire, LockRelease, LockWait, MemLoad, MemStore, MsgRecv, MsgSend, NodeFree, PgtableFree, PteInstall,
    PteProtect, PteZap, RunEnd, RunStart, SyscallBegin, SyscallEnd, TlbFlush, TreeStore, TreeWalk, VmaFree,
    VmaSetProt,
)

GAP = 4  # spaces between columns

# (lock, mode) -> (acquire, release) call names; looked up with the log's values, which may be None
_LOCK_CALLS: dict[tuple[object, object], tuple[str, str]] = {
    ("mmap_sem", "read"): ("down_read(mmap_sem)", "up_read(mmap_sem)"),
    ("mmap_sem", "write"): ("down_write(mmap_sem)", "up_write(mmap_sem)"),
    ("vma", "read"): ("vma_start_read({vma})", "vma_end_read({vma})"),
    ("vma", "write"): ("vma_start_write({vma})", "vma_end_write({vma})"),
    ("rcu", "read"): ("rcu_read_lock()", "rcu_read_unlock()"),
    ("refcount", "read"): ("vma_get({vma})", "vma_put({vma})"),
    ("refcount", "write"): ("vma_get({vma})", "vma_put({vma})"),
    ("ptl", "write"): ("pte_offset_map_lock()", "pte_unmap_unlock()"),
}
# What a CPU asks another actor for, drawn where it asks (beyond the rwsem's).
_REQUEST_CALLS = {
    "expand": "expand_downwards({arg})",
    "dup_mmap": "dup_mmap()",
    "move_vma": "move_vma()",
    "wake_up_new_task": "wake_up_new_task({dst})",
}
_RWSEM_KINDS = {
    "down_read": "down_read(mmap_sem)",
    "down_write": "down_write(mmap_sem)",
    "up_read": "up_read(mmap_sem)",
    "up_write": "up_write(mmap_sem)",
}


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _lock_call(ev: Event, release: bool) -> str:
    lock, mode = ev.get("lock"), ev.get("mode")
    vma = ev.get("vma")
    calls = _LOCK_CALLS.get((lock, mode)) or _LOCK_CALLS.get((lock, "read"))
    if calls is None:
        verb = "unlock" if release else "lock"
        return f"{verb}({lock}{', ' + str(mode) if mode else ''})"
    return calls[1 if release else 0].format(vma=vma if vma is not None else "vma")


def _syscall_call(ev: Event) -> str:
    """`munmap(A)`, `mmap(A, fixed, kind=file)`, `B = mmap(2)` from the op as written."""
    text = ev.get("text")
    if isinstance(text, str) and text.strip():
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        assign = ""
        if len(words) >= 3 and words[1] == "=":
            assign, words = f"{words[0]} = ", words[2:]
        if words[:1] == ["mremap"]:
            words = [w for w in words if w != "to"]  # `mremap A to B`: mremap(A, B)
        if words:
            return f"{assign}{words[0]}({', '.join(words[1:])})"
    op = str(ev.get("op", "syscall"))
    name, fixed = ("mmap", True) if op == "mmap-fixed" else (op, False)
    arg = ev.get("vma") if ev.get("vma") is not None else hex_addr(ev.get("addr"))
    return f"{name}({arg}{', MAP_FIXED' if fixed else ''})"


def _within(addr: Any, start: Any, pages: Any) -> bool:
    """Whether `addr` is in the `pages` pages from `start` (all three from a log)."""
    return isinstance(addr, int) and isinstance(start, int) and isinstance(pages, int) \
        and start <= addr < start + pages * 4096


def _tree_entry(ev: Event) -> str:
    entry = ev.get("entry")
    if entry == "null":
        return "NULL"
    if entry == "zero":
        return "XA_ZERO_ENTRY"
    return str(ev.get("vma"))


@attrs.define
class _Row:
    step: int
    column: int | None  # CPU number; None: a line across the chart
    text: str


@attrs.define
class RaceChart:
    """The chart's rows and what it says under them."""

    cpus: list[int]
    rows: list[_Row]
    footer: list[str]


class _Builder:
    def __init__(self, filt: EventFilter) -> None:
        self.filt = filt
        self.limit: int | None = None
        self.rows: list[_Row] = []
        self.depth: dict[int, int] = {}  # cpu -> indent level
        self.origin: dict[Any, int | None] = {}  # msg_id -> CPU whose request started it
        self.serving: dict[str, int | None] = {}  # service actor -> CPU it works for now
        self.waiting_since: dict[int, int] = {}  # cpu -> len(rows) when it last drew
        # (cpu, call) drawn from a CPU's message to the rwsem, before the rwsem's own
        # lock.acquire / lock.release for it, which then need no line of their own
        self.requested: set[tuple[int, str]] = set()
        self.released: set[tuple[int, str]] = set()
        self.waited: set[int] = set()  # cpus whose request is queued (lock.wait seen)
        self.messages = Messages()
        self.drawing = False  # whether the event being fed passes the filter
        self.tr = Translations()
        self.header: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.violations: list[str] = []
        self.cpu_mm: dict[int, Any] = {}  # cpu -> the address space its faults and syscalls are in
        self.syscall: dict[int, tuple[Any, Any, Any]] = {}  # cpu -> (op, addr, pages) of its syscall

    def add(self, step: int, cpu: int | None, text: str, indent: bool = True) -> None:
        if not self.drawing:
            return
        if cpu is not None and indent:
            text = "  " * self.depth.get(cpu, 0) + text
        # One call drawn once per step, however many events say it (the rwsem request
        # and its lock.acquire, one zap per page).
        for row in reversed(self.rows):
            if row.step != step:
                break
            if row.column == cpu and row.text == text:
                return
        if self.limit is not None and len(self.rows) >= self.limit:
            raise too_big("race chart", self.limit)
        self.rows.append(_Row(step, cpu, _ascii(text)))
        if cpu is not None:
            self.waiting_since[cpu] = len(self.rows)

    def others_drew_since(self, cpu: int) -> bool:
        since = self.waiting_since.get(cpu)
        return since is not None and any(r.column != cpu for r in self.rows[since:])

    def feed(self, ev: Event) -> None:
        name, actor, step = ev["event"], ev["actor"], ev["step"]
        verdict = self.tr.judge(ev)
        self.tr.observe(ev)
        self.messages.observe(ev)
        cpu = cpu_of_actor(actor)
        if name == MsgSend.NAME and "msg_id" in ev:
            origin = cpu if cpu is not None else self.origin.get(ev.get("cause"))
            self.origin[ev["msg_id"]] = origin
        if name == MsgRecv.NAME and cpu is None and "msg_id" in ev:
            self.serving[actor] = self.origin.get(ev["msg_id"])
        if name == RunStart.NAME:
            self.header = dict(ev)
            return
        if name == RunEnd.NAME:
            self.end = dict(ev)
            return
        # Every event updates what each CPU is in the middle of (indentation, pending
        # requests); only those that pass the filter are drawn.
        self.drawing = self.filt.matches(ev)
        if name == InvariantViolated.NAME:
            if not self.drawing:
                return
            target = ev.get("cpu") if isinstance(ev.get("cpu"), int) else None
            text = f"!! {ev.get('invariant')}" if target is not None else f"!! step {step}: {ev.get('invariant')}"
            self.add(step, target, text, indent=False)
            detail = f": {ev.get('detail')}" if ev.get("detail") else ""
            self.violations.append(f"!! step {step}: {ev.get('invariant')}{detail}")
            return
        if name.startswith("lock.") and isinstance(ev.get("cpu"), int):
            # The waiter's or holder's column, whichever actor logged it (the rwsem
            # actor logs the CPUs queued on it).
            self._lock_event(ev["cpu"], ev)
        elif cpu is not None:
            self._cpu_event(cpu, ev, verdict)
        else:
            self._service_event(actor, ev)

    def _lock_event(self, cpu: int, ev: Event) -> None:
        name, step = ev["event"], ev["step"]
        call = _lock_call(ev, release=name == LockRelease.NAME)
        if name == LockWait.NAME:
            # drawn already when the CPU sent its request: only say that it waits
            self.add(step, cpu, "... waits" if (cpu, call) in self.requested else f"{call} ... waits")
            self.waited.add(cpu)
        elif name == LockAcquire.NAME:
            waited = cpu in self.waited
            self.waited.discard(cpu)
            if (cpu, call) not in self.requested:
                self.add(step, cpu, call)
            elif waited and ev["actor"] == f"cpu{cpu}":
                # (a lock actor's grant shows where the CPU resumes: its delivery)
                self.add(step, cpu, f"... got {ev.get('lock')}")
            self.requested.discard((cpu, call))
        elif name == LockRelease.NAME:
            if (cpu, call) in self.released:
                self.released.discard((cpu, call))
            else:
                self.add(step, cpu, call)

    def _cpu_event(self, cpu: int, ev: Event, verdict: str | None) -> None:
        name, step = ev["event"], ev["step"]
        add = lambda text, indent=True: self.add(step, cpu, text, indent)  # noqa: E731
        mark = ""
        if verdict:
            mark = "  (stale TLB)" if "stale" in verdict else "  (freed frame)"
            if "stale" in verdict and "freed" in verdict:
                mark = "  (stale TLB, freed frame)"
        if name in (SyscallBegin.NAME, FaultBegin.NAME, MemLoad.NAME, MemStore.NAME):
            self.cpu_mm[cpu] = ev.get("mm")
        op, start, pages = self.syscall.get(cpu, (None, None, None))
        if name == SyscallBegin.NAME:
            add(_syscall_call(ev))
            self.depth[cpu] = 1
            self.syscall[cpu] = (ev.get("op"), ev.get("addr"), ev.get("pages"))
        elif name == SyscallEnd.NAME:
            add(f"return {ret_text(ev.get('ret'))}")
            self.depth[cpu] = 0
            self.syscall.pop(cpu, None)
        elif name == FaultBegin.NAME:
            add(f"do_page_fault({hex_addr(ev.get('vaddr', ev.get('addr')))})")
            self.depth[cpu] = self.depth.get(cpu, 0) + 1
        elif name == FaultRetry.NAME:
            add(f"retry ({ev.get('reason', '?')})")
        elif name == FaultSegv.NAME:
            add(f"SIGSEGV ({ev.get('reason', '?')})")
            self.depth[cpu] = max(0, self.depth.get(cpu, 0) - 1)
        elif name == FaultEnd.NAME:
            self.depth[cpu] = max(0, self.depth.get(cpu, 0) - 1)
        elif name == MemLoad.NAME:
            add(f"load {hex_addr(ev.get('vaddr', ev.get('addr')))} = {value_text(ev.get('value'))}{mark}")
        elif name == MemStore.NAME:
            add(f"store {hex_addr(ev.get('vaddr', ev.get('addr')))} = {value_text(ev.get('value'))}{mark}")
        elif name == TlbFlush.NAME:
            if ev.get("reason") == "ipi":
                add("<IPI> flush_tlb", indent=False)
            else:
                add("flush_tlb_range()")
        elif name == PteZap.NAME and op == "mremap" and _within(ev.get("addr"), start, pages):
            pass  # move_ptes clears the old PTE: drawn with the new one
        elif name == PteZap.NAME:
            add("zap_pte_range()")
        elif name == PteInstall.NAME and ev.get("mm") != self.cpu_mm.get(cpu):
            add(f"copy_present_pte(frame {ev.get('frame')}) into mm {ev.get('mm')}")
        elif name == PteInstall.NAME and op == "mremap":
            add(f"move_ptes(frame {ev.get('frame')} to {hex_addr(ev.get('addr'))})")
        elif name == PteInstall.NAME:
            add(f"set_pte_at(frame {ev.get('frame')})")
        elif name == PteProtect.NAME and op == "fork":
            add(f"ptep_set_wrprotect(frame {ev.get('frame')})")
        elif name == PteProtect.NAME:
            add(f"change_protection({ev.get('prot', '?')})")
        elif name == FrameAlloc.NAME:
            add(f"alloc_page() = frame {ev.get('frame')}")
        elif name == FrameFree.NAME:
            add(f"free_page(frame {ev.get('frame')})")
        elif name == VmaFree.NAME:
            add(f"vm_area_free({ev.get('vma')})")
        elif name == TreeWalk.NAME:
            node = ev.get("node")
            add("find_vma_prev()  (holds the tree node)" if ev.get("call") == "find_vma_prev"
                else f"mas_prev()  (node {'freed' if node == 'freed' else 'replaced' if node == 'dead' else 'intact'})")
        elif name == PgtableFree.NAME:
            add(f"free_pgtables(): unlink page table {hex_addr(ev.get('addr'))}")
        elif name == VmaSetProt.NAME:
            add(f"vma_set_page_prot({ev.get('vma')}, {ev.get('prot')})")
        elif name.startswith("lock."):
            self._lock_event(cpu, ev)
        elif name == MsgSend.NAME:
            kind = ev.get("kind")
            if kind in _RWSEM_KINDS:
                call = _RWSEM_KINDS[str(kind)]
                add(call)
                if self.drawing:
                    (self.requested if str(kind).startswith("down_") else self.released).add((cpu, call))
            elif kind == "downgrade":
                # One call: the rwsem's release of the write lock and grant of the read
                # lock that follow are this, not calls of their own.
                add("downgrade_write(mmap_sem)")
                if self.drawing:
                    self.released.add((cpu, _RWSEM_KINDS["up_write"]))
                    self.requested.add((cpu, _RWSEM_KINDS["down_read"]))
            elif kind == "call_rcu":
                what = ev.get("vma", ev.get("arg"))
                add(f"call_rcu({what if isinstance(what, str) else ''})")
            elif kind in _REQUEST_CALLS:
                arg = ev.get("arg")
                add(_REQUEST_CALLS[str(kind)].format(arg=arg if isinstance(arg, str) else "", dst=ev.get("dst")))
        elif name == MsgRecv.NAME:
            # The answer to this CPU's own request, after other CPUs ran: say where it
            # resumes. (IPIs and RCU's quiescent-state requests are not answers.)
            if (
                "msg_id" in ev
                and self.messages.request_answered(ev["msg_id"], ev["actor"]) is not None
                and self.others_drew_since(cpu)
            ):
                add(f"...{ev.get('src')}: {ev.get('kind')}")

    def _service_event(self, actor: str, ev: Event) -> None:
        name, step = ev["event"], ev["step"]
        cpu = self.serving.get(actor)
        if cpu is None:
            return
        if name == TreeStore.NAME:
            self.add(step, cpu, f"mas_store({_tree_entry(ev)})")
        elif name == IpiSend.NAME:
            target = f"cpu{ev.get('cpu')}"
            last = self.rows[-1] if self.rows else None
            prefix = "  " * self.depth.get(cpu, 0) + "IPI -> "
            if (
                self.drawing
                and last is not None
                and last.step == step
                and last.column == cpu
                and last.text.startswith(prefix)
            ):
                last.text += f" {target}"
            else:
                self.add(step, cpu, f"IPI -> {target}")
        elif name == VmaFree.NAME:
            self.add(step, cpu, f"[{actor}] vm_area_free({ev.get('vma')})")
        elif name == MsgSend.NAME and ev.get("kind") == "ma_free_rcu":
            self.add(step, cpu, f"[{actor}] ma_free_rcu(old node)")
        elif name == NodeFree.NAME:
            self.add(step, cpu, f"[{actor}] mt_free_rcu(old node)")
        elif name == FrameFree.NAME:
            self.add(step, cpu, f"[{actor}] free_page(frame {ev.get('frame')})")


def build_race_chart(records: Iterable[Record], filt: EventFilter | None = None,
                     limit: int | None = MAX_DRAWN) -> RaceChart:
    """Read the records once and keep the chart's lines (at most `limit`, else
    `UsageError`: see `vmactors.inspect.diagram.MAX_DRAWN`)."""
    b = _Builder(filt or EventFilter())
    b.limit = limit
    for rec in records:
        b.feed(rec.event)
    cpus = sorted({r.column for r in b.rows if r.column is not None})
    footer = list(b.violations)
    h = b.header
    about = f"vmactors {h.get('vmactors', '?')}: scenario {h.get('scenario', '?')}, policy {h.get('policy', '?')}"
    if h.get("seed") is not None:
        about += f", seed {h.get('seed')}"
    if b.end is not None:
        about += f"; outcome {b.end.get('outcome', '?')}"
    footer.append(_ascii(f"({about})"))
    return RaceChart(cpus, b.rows, [_ascii(line) for line in footer])


def render_race_chart(chart: RaceChart) -> str:
    """The chart as plain ASCII text ending with a newline."""
    if not chart.cpus and not chart.rows:
        return "(no event matches)\n" + "\n".join(chart.footer) + "\n"
    pos: dict[int, int] = {}
    x = 0
    for cpu in chart.cpus:
        pos[cpu] = x
        width = max([len(f"CPU {cpu}")] + [len(r.text) for r in chart.rows if r.column == cpu])
        x += width + GAP

    def line(cells: dict[int, str]) -> str:
        out = ""
        for cpu in chart.cpus:
            if cpu in cells:
                out = out.ljust(pos[cpu]) + cells[cpu]
        return out.rstrip()

    lines = [line({c: f"CPU {c}" for c in chart.cpus}), line({c: "-" * len(f"CPU {c}") for c in chart.cpus})]
    for row in chart.rows:
        lines.append(row.text if row.column is None else line({row.column: row.text}))
    lines.append("")
    lines.extend(chart.footer)
    return "\n".join(lines) + "\n"
