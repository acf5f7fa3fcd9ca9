"""`--timeline`: one column per actor, one row per step.

Each cell is a compact label of what the actor did at that step (`down_write>mmap_sem`,
`zap f3`, `flush(ipi)`). An actor that is blocked — between `lock.wait` and its
`lock.acquire`, or between sending a request and receiving the reply it caused — shows
`|` in the rows where it does nothing; invariant violations go to a last column marked
`!!`.

```
step  cpu0                    cpu2                    tree                    mmap_sem
----  ----------------------  ----------------------  ----------------------  -------------------
   1                          munmap A
                              down_write>mmap_sem
   2                          |                                               <down_write
                              |                                               grant>cpu2
   3                          <grant; store>tree
   4  ld r0=1                 |                       <store; tree=NULL
```
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from typing import IO, Any

import attrs

from vmactors.inspect.causality import Messages
from vmactors.inspect.filters import EventFilter
from vmactors.inspect.labels import Event, short_label, sort_actors
from vmactors.inspect.reader import Record
from vmactors.log.schema import (
    InvariantViolated, IpiAck, IpiSend, LockAcquire, LockWait, MsgRecv, MsgSend, OpBegin, OpEnd, RcuQs,
    RunEnd, RunStart, SyscallEnd, TlbFlush,
)

#: The widest a column grows; a longer cell goes on over more lines (a longer label ends in `~`).
MAX_CELL = 22
#: Marker of a step in which a blocked actor does nothing.
BLOCKED = "|"
LEGEND = "(| blocked on a lock or waiting for a reply; !! invariant violated; <kind received, kind>sent to)"

# Events an actor may log while it waits, without having stopped waiting: interrupts
# (IPIs, RCU quiescent-state requests) are taken by a CPU blocked on a lock or a reply.
_WHILE_BLOCKED = frozenset({MsgRecv.NAME, MsgSend.NAME, IpiAck.NAME, RcuQs.NAME, LockWait.NAME})
# Events a cell leaves out when the actor did something else in the step: the op is told
# by its load, store or syscall; an IPI by its msg.* lines (logged in addition to them).
_MINOR = frozenset({OpBegin.NAME, OpEnd.NAME, IpiSend.NAME, IpiAck.NAME})
# A CPU whose op (or syscall) has ended waits for nothing it asked for during it.
_ENDS = frozenset({OpEnd.NAME, SyscallEnd.NAME})


@attrs.define
class Row:
    step: int
    cells: dict[str, list[tuple[bool, str]]] = attrs.field(factory=dict)  # (minor, label)
    notes: list[str] = attrs.field(factory=list)


@attrs.define
class Timeline:
    """What `render_timeline` draws: actors in column order, rows in step order, the
    steps in which each actor was blocked, and the run's end."""

    actors: list[str]
    rows: list[Row]
    blocked: dict[str, set[int]]
    end: str | None = None


def _is_interrupt(ev: Event) -> bool:
    name = ev["event"]
    return name in _WHILE_BLOCKED or (name == TlbFlush.NAME and ev.get("reason") == "ipi")


def build_timeline(records: Iterable[Record], filt: EventFilter | None = None) -> Timeline:
    """Read the records once; keep the rows that pass `filt` and what is needed to know
    when each actor was blocked (computed over every event, filtered or not)."""
    filt = filt or EventFilter()
    rows: dict[int, Row] = {}
    actors: set[str] = set()
    end = None
    messages = Messages()
    # (actor, lock key) -> step of the lock.wait not yet followed by lock.acquire
    lock_waits: dict[tuple[str, Any], int] = {}
    # (actor, after step, before step, is a lock wait)
    intervals: list[tuple[str, int, int, bool]] = []
    own_work: dict[str, list[int]] = {}  # actor -> steps where it did its own work
    ends: dict[str, list[int]] = {}  # actor -> steps where one of its ops ended
    steps: list[int] = []  # every step in the window at which anything happened

    for rec in records:
        ev = rec.event
        step, actor, name = ev["step"], ev["actor"], ev["event"]
        # --- blocking, over every event ---
        messages.observe(ev)
        if name == MsgRecv.NAME and "msg_id" in ev:
            request = messages.request_answered(ev["msg_id"], actor)
            if request is not None:
                intervals.append((actor, request.step, step, False))
        elif name == LockWait.NAME:
            lock_waits[(_waiter(ev), _lock_key(ev))] = step
        elif name == LockAcquire.NAME:
            started = lock_waits.pop((_waiter(ev), _lock_key(ev)), None)
            if started is not None:
                intervals.append((_waiter(ev), started, step, True))
        if actor != "sim" and not _is_interrupt(ev):
            work = own_work.setdefault(actor, [])
            if not work or work[-1] != step:
                work.append(step)
        if name in _ENDS:
            ends.setdefault(actor, []).append(step)
        # --- what is drawn ---
        if name == RunEnd.NAME:
            end = _end_text(ev)
        if name != RunStart.NAME and name != RunEnd.NAME and filt.in_steps(step):
            if not steps or steps[-1] != step:
                steps.append(step)
        if not filt.matches(ev) or name == RunStart.NAME or name == RunEnd.NAME:
            continue
        row = rows.get(step)
        if row is None:
            row = rows[step] = Row(step)
        if name == InvariantViolated.NAME or actor == "sim":
            row.notes.append(_note(ev))
            continue
        actors.add(actor)
        row.cells.setdefault(actor, []).append((name in _MINOR, short_label(ev)))

    last = steps[-1] if steps else 0
    for (actor, _key), started in lock_waits.items():
        intervals.append((actor, started, last + 1, True))
    blocked: dict[str, set[int]] = {}
    for actor, after, before, is_lock in intervals:
        # A request whose reply came only after the actor went on with other work was
        # not a wait: the actor did not block on it. A lock wait always is one.
        if not is_lock and (
            _any_between(own_work.get(actor, []), after, before)
            or _any_between(ends.get(actor, []), after - 1, before)
        ):
            # went on with other work, or finished its op (call_rcu is fire-and-forget)
            continue
        lo, hi = bisect.bisect_right(steps, after), bisect.bisect_left(steps, before)
        if lo < hi:
            blocked.setdefault(actor, set()).update(steps[lo:hi])
    if filt.without_steps().is_empty:
        # A step window shows every actor at work or waiting in it; a selection by
        # actor, CPU, event or address shows the selected actors only.
        actors.update(blocked)
    # A shown actor's waits get their rows too, so `--actor cpu2` shows how long it
    # waited, not only what it did.
    for actor in actors:
        for step in blocked.get(actor, ()):
            if step not in rows:
                rows[step] = Row(step)
    return Timeline(sort_actors(actors), [rows[s] for s in sorted(rows)], blocked, end)


def _any_between(steps: list[int], after: int, before: int) -> bool:
    """Whether the sorted `steps` hold one strictly between `after` and `before`."""
    i = bisect.bisect_right(steps, after)
    return i < len(steps) and steps[i] < before


def _waiter(ev: Event) -> str:
    """Who waits for a lock: the CPU the event names (the rwsem actor logs the waits of
    the CPUs queued on it), else the actor."""
    cpu = ev.get("cpu")
    if isinstance(cpu, int) and not isinstance(cpu, bool):
        return f"cpu{cpu}"
    return str(ev["actor"])


def _lock_key(ev: Event) -> tuple[Any, Any]:
    return (ev.get("lock"), ev.get("vma"))


def _note(ev: Event) -> str:
    if ev["event"] == InvariantViolated.NAME:
        detail = ev.get("detail")
        return f"!! {ev.get('invariant')}" + (f": {detail}" if detail else "")
    return short_label(ev)


def _end_text(ev: Event) -> str:
    text = f"run.end at step {ev['step']}: {ev.get('outcome', '?')}"
    violations = ev.get("violations")
    if violations:
        text += " (" + ", ".join(map(str, violations)) + ")"
    return text


def cell_labels(labels: list[tuple[bool, str]]) -> list[str]:
    """One cell's labels: minor ones dropped when the actor did more in the step, repeats
    dropped, and runs like `zap f3`, `zap f4` merged into `zap f3 f4`."""
    major = [text for minor, text in labels if not minor]
    texts = major or [text for _minor, text in labels]
    merged: list[str] = []
    for text in texts:
        if merged and text == merged[-1]:
            continue
        head, _, tail = text.partition(" ")
        prev_head, _, prev_tail = merged[-1].partition(" ") if merged else ("", "", "")
        if merged and tail and prev_tail and head == prev_head and " " not in tail:
            merged[-1] = f"{merged[-1]} {tail}"
        else:
            merged.append(text)
    return merged


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _wrap(labels: list[str], width: int) -> list[str]:
    """Pack labels into lines of at most `width`, `; ` between labels on a line."""
    lines: list[str] = []
    for label in labels:
        label = _fit(label, width)
        if lines and len(lines[-1]) + 2 + len(label) <= width:
            lines[-1] += f"; {label}"
        else:
            lines.append(label)
    return lines


def render_timeline(tl: Timeline, max_cell: int = MAX_CELL) -> str:
    """The timeline as fixed-width text ending with a newline. A row whose cells hold
    more than fits the column goes on over more lines; its step number is on the first,
    and a blocked actor's `|` runs down all of them."""
    labels = {(row.step, actor): cell_labels(ls) for row in tl.rows for actor, ls in row.cells.items()}
    widths = {}
    for actor in tl.actors:
        longest = max((len("; ".join(labels.get((row.step, actor), []))) for row in tl.rows), default=0)
        widths[actor] = max(len(actor), min(longest, max_cell))
    step_w = max(4, *(len(str(row.step)) for row in tl.rows)) if tl.rows else 4
    has_notes = any(row.notes for row in tl.rows)

    def line(first: str, cells: list[str], notes: str = "") -> str:
        parts = [first.rjust(step_w)]
        parts += [cell.ljust(widths[a]) for a, cell in zip(tl.actors, cells)]
        if notes:
            parts.append(notes)
        return "  ".join(parts).rstrip()

    out = [line("step", list(tl.actors), "notes" if has_notes else "")]
    out.append(line("-" * step_w, ["-" * widths[a] for a in tl.actors], "-----" if has_notes else ""))
    for row in tl.rows:
        columns = []
        for actor in tl.actors:
            cell = labels.get((row.step, actor))
            if cell is None:
                columns.append([BLOCKED] if row.step in tl.blocked.get(actor, ()) else [""])
            else:
                columns.append(_wrap(cell, widths[actor]))
        height = max(len(c) for c in columns) if columns else 1
        for i in range(height):
            cells = []
            for actor, col in zip(tl.actors, columns):
                if i < len(col):
                    cells.append(col[i])
                else:
                    cells.append(BLOCKED if col == [BLOCKED] else "")
            out.append(line(str(row.step) if i == 0 else "", cells, "; ".join(row.notes) if i == 0 else ""))
    if not tl.rows:
        out.append("(no event matches)")
    if tl.end is not None:
        out.append(tl.end)
    if tl.rows:
        out.append(LEGEND)
    return "\n".join(out) + "\n"


# --- streaming: the same text, in bounded memory ----------------------------------------


@attrs.define
class _Plan:
    """What the first pass over a log finds, so that the second can write the timeline
    row by row: the columns and their widths, and each wait (actor, after, before)
    that blocks at some step drawn."""

    actors: list[str]
    widths: dict[str, int]
    waits: list[tuple[str, int, int]]
    has_notes: bool
    step_w: int
    end: str | None


class _Last2:
    """The last two distinct steps at which something happened to an actor: enough to
    ask whether anything happened strictly between two steps, the later one being now."""

    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = self.b = -(1 << 62)  # b: the latest, a: the one before

    def add(self, step: int) -> None:
        if step != self.b:
            self.a, self.b = self.b, step

    def between(self, after: int, before: int) -> bool:
        latest = self.b if self.b < before else self.a
        return after < latest < before


def _plan(records: Iterable[Record], filt: EventFilter, max_cell: int) -> _Plan:
    """The first pass: `build_timeline`'s bookkeeping without keeping any row."""
    messages = Messages()
    lock_waits: dict[tuple[str, Any], int] = {}
    waits: list[tuple[str, int, int, int]] = []  # (actor, after, before, last step drawn inside)
    own_work: dict[str, _Last2] = {}
    ends: dict[str, _Last2] = {}
    longest: dict[str, int] = {}
    cells: dict[str, list[tuple[bool, str]]] = {}
    has_notes, end = False, None
    last_row = -1  # the last step with a cell or a note
    prev_step, last_step = -1, -1  # the window steps: the one before the current, and the current

    def close_step() -> None:
        for actor, labels in cells.items():
            longest[actor] = max(longest.get(actor, 0), len("; ".join(cell_labels(labels))))
        cells.clear()

    current = None
    for rec in records:
        ev = rec.event
        step, actor, name = ev["step"], ev["actor"], ev["event"]
        if step != current:
            close_step()
            current = step
        messages.observe(ev)
        if name == MsgRecv.NAME and "msg_id" in ev:
            request = messages.request_answered(ev["msg_id"], actor)
            if request is not None:
                inside = prev_step if last_step == step else last_step
                if not (own_work.get(actor, _Last2()).between(request.step, step)
                        or ends.get(actor, _Last2()).between(request.step - 1, step)) and inside > request.step:
                    waits.append((actor, request.step, step, inside))
        elif name == LockWait.NAME:
            lock_waits[(_waiter(ev), _lock_key(ev))] = step
        elif name == LockAcquire.NAME:
            started = lock_waits.pop((_waiter(ev), _lock_key(ev)), None)
            if started is not None:
                inside = prev_step if last_step == step else last_step
                if inside > started:
                    waits.append((_waiter(ev), started, step, inside))
        if actor != "sim" and not _is_interrupt(ev):
            own_work.setdefault(actor, _Last2()).add(step)
        if name in _ENDS:
            ends.setdefault(actor, _Last2()).add(step)
        if name == RunEnd.NAME:
            end = _end_text(ev)
        if name != RunStart.NAME and name != RunEnd.NAME and filt.in_steps(step) and step != last_step:
            prev_step, last_step = last_step, step
        if not filt.matches(ev) or name == RunStart.NAME or name == RunEnd.NAME:
            continue
        last_row = max(last_row, step)
        if name == InvariantViolated.NAME or actor == "sim":
            has_notes = True
            continue
        cells.setdefault(actor, []).append((name in _MINOR, short_label(ev)))
    close_step()
    for (actor, _key), started in lock_waits.items():
        if last_step > started:
            waits.append((actor, started, last_step + 1, last_step))
    shown = set(longest)
    if filt.without_steps().is_empty:
        shown.update(w[0] for w in waits)
    waits = [w for w in waits if w[0] in shown]
    last_row = max([last_row] + [w[3] for w in waits])
    actors = sort_actors(shown)
    widths = {a: max(len(a), min(longest.get(a, 0), max_cell)) for a in actors}
    step_w = max(4, len(str(last_row))) if last_row >= 0 else 4
    return _Plan(actors, widths, sorted((a, lo, hi) for a, lo, hi, _ in waits), has_notes, step_w, end)


def stream_timeline(first: Iterable[Record], second: Iterable[Record], out: IO[str],
                    filt: EventFilter | None = None, max_cell: int = MAX_CELL) -> None:
    """Write `render_timeline(build_timeline(records, filt))` to `out` from two passes
    over the same records, keeping only one step's cells and the list of waits (not
    every row): a million-event log takes tens of megabytes, not gigabytes."""
    filt = filt or EventFilter()
    plan = _plan(first, filt, max_cell)
    actors, widths, step_w = plan.actors, plan.widths, plan.step_w

    def line(first_cell: str, cells: list[str], notes: str = "") -> str:
        parts = [first_cell.rjust(step_w)]
        parts += [cell.ljust(widths[a]) for a, cell in zip(actors, cells)]
        if notes:
            parts.append(notes)
        return "  ".join(parts).rstrip()

    out.write(line("step", list(actors), "notes" if plan.has_notes else "") + "\n")
    out.write(line("-" * step_w, ["-" * widths[a] for a in actors], "-----" if plan.has_notes else "") + "\n")
    waits = plan.waits
    waits.sort(key=lambda w: w[1])
    next_wait = 0
    active: list[tuple[int, str]] = []  # (before, actor), a heap
    rows = 0

    def write_row(step: int, cells: dict[str, list[tuple[bool, str]]], notes: list[str]) -> None:
        nonlocal next_wait, rows
        while next_wait < len(waits) and waits[next_wait][1] < step:
            heapq.heappush(active, (waits[next_wait][2], waits[next_wait][0]))
            next_wait += 1
        while active and active[0][0] <= step:
            heapq.heappop(active)
        blocked = {a for before, a in active if before > step}
        if not cells and not notes and not blocked:
            return
        rows += 1
        columns = []
        for actor in actors:
            labels = cells.get(actor)
            if labels is None:
                columns.append([BLOCKED] if actor in blocked else [""])
            else:
                columns.append(_wrap(cell_labels(labels), widths[actor]))
        height = max(len(c) for c in columns) if columns else 1
        for i in range(height):
            row_cells = [col[i] if i < len(col) else (BLOCKED if col == [BLOCKED] else "") for col in columns]
            out.write(line(str(step) if i == 0 else "", row_cells, "; ".join(notes) if i == 0 else "") + "\n")

    shown = set(actors)
    current: int | None = None
    in_window = False
    cells: dict[str, list[tuple[bool, str]]] = {}
    notes: list[str] = []
    for rec in second:
        ev = rec.event
        step, actor, name = ev["step"], ev["actor"], ev["event"]
        if step != current:
            if current is not None and in_window:
                write_row(current, cells, notes)
            current, in_window, cells, notes = step, False, {}, []
        if name != RunStart.NAME and name != RunEnd.NAME and filt.in_steps(step):
            in_window = True
        if not filt.matches(ev) or name == RunStart.NAME or name == RunEnd.NAME:
            continue
        if name == InvariantViolated.NAME or actor == "sim":
            notes.append(_note(ev))
        elif actor in shown:
            cells.setdefault(actor, []).append((name in _MINOR, short_label(ev)))
    if current is not None and in_window:
        write_row(current, cells, notes)
    if not rows:
        out.write("(no event matches)\n")
    if plan.end is not None:
        out.write(plan.end + "\n")
    if rows:
        out.write(LEGEND + "\n")
