"""Message sequence diagrams: the model every renderer draws, and the Mermaid renderer.

A message is a `msg.send` paired with its `msg.recv` by `msg_id`; it is drawn when its
send or its receipt passes the filter (so `--actor cpu0` shows what cpu0 sent and what it
received, and a step window shows the messages in flight in it). An invariant violation
is a note over the CPU it names, or over every participant, with its full text.

Messages alone do not show a race: what makes one is what each CPU does to the
translation of a page. So the diagram also draws, on the lifeline of the CPU that
did it, each `Action`: a page fault, a PTE installed or zapped, a TLB filled or
flushed, a load or a store with its value; a load or store through a translation the
page table no longer holds is marked stale (the judgement of `--history`). The
translations a scenario sets up (step 0) are drawn too, on the lifeline of the CPU
whose TLB holds them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs

from vmactors.errors import UsageError
from vmactors.inspect.filters import EventFilter
from vmactors.inspect.history import Translations
from vmactors.inspect.labels import Event, cpu_of_actor, hex_addr, sort_actors, value_text
from vmactors.inspect.reader import Record
from vmactors.log.schema import (
    LINE_HEAD, FaultBegin, FaultSegv, InvariantViolated, MemLoad, MemStore, MsgRecv, MsgSend, PteInstall, PteZap,
    RunEnd, RunStart, TlbFill, TlbFlush, required_keys,
)


@attrs.frozen
class Message:
    """One message: sent at `send_step`, received at `recv_step` (None: never received
    in the log)."""

    msg_id: Any
    src: str
    dst: str
    kind: str
    send_step: int
    recv_step: int | None
    cause: Any = None
    payload: str = ""
    #: Received at this step, after the end of the window drawn (`--to-step`): drawn
    #: as still in flight at the window's end.
    recv_later: int | None = None

    @property
    def steps_text(self) -> str:
        """`3..5`, `3` when received in the step it was sent, `3..` when never received."""
        if self.recv_later is not None:
            return f"{self.send_step}..{self.recv_later}"
        if self.recv_step is None:
            return f"{self.send_step}.."
        if self.recv_step == self.send_step:
            return str(self.send_step)
        return f"{self.send_step}..{self.recv_step}"


@attrs.frozen
class Note:
    """An invariant violation at `step`, over `actors` (one CPU, or all participants:
    an empty tuple)."""

    step: int
    actors: tuple[str, ...]
    invariant: str
    detail: str

    @property
    def text(self) -> str:
        return f"!! {self.invariant}" + (f": {self.detail}" if self.detail else "")


@attrs.frozen
class Action:
    """What a CPU did to memory or to a translation at `step`, drawn on its lifeline:
    `kind` is the event (`fault.begin`, `pte.install`, `pte.zap`, `tlb.fill`,
    `tlb.flush`, `mem.load`, `mem.store`, `fault.segv`), `text` says it in words, and
    `stale` is what was wrong with the translation a load or store used ('' if
    nothing)."""

    step: int
    actor: str
    kind: str
    text: str
    stale: str = ""

    @property
    def label(self) -> str:
        return self.text + (f" -- {self.stale}" if self.stale else "")


@attrs.define
class Sequence:
    """What a sequence diagram draws."""

    participants: list[str]
    messages: list[Message]
    notes: list[Note]
    header: dict[str, Any]
    end: dict[str, Any] | None = None
    actions: list[Action] = attrs.field(factory=list)

    def items(self) -> list[tuple[int, Message | Note | Action]]:
        """Messages, actions and notes in drawing order: by step (a message at its
        send), then messages, then the actions, then the notes of the step (a violation
        is found after the step)."""
        keyed: list[tuple[tuple[int, int, int], Message | Note | Action]] = []
        for i, msg in enumerate(self.messages):
            keyed.append(((msg.send_step, 0, i), msg))
        for i, action in enumerate(self.actions):
            keyed.append(((action.step, 1, i), action))
        for i, note in enumerate(self.notes):
            keyed.append(((note.step, 2, i), note))
        keyed.sort(key=lambda kv: kv[0])
        return [(k[0], item) for k, item in keyed]

    def steps(self) -> list[int]:
        """Every step at which something is drawn, sorted."""
        steps: set[int] = set()
        for msg in self.messages:
            steps.add(msg.send_step)
            if msg.recv_step is not None:
                steps.add(msg.recv_step)
        steps.update(note.step for note in self.notes)
        steps.update(action.step for action in self.actions)
        return sorted(steps)

    def title(self) -> str:
        h = self.header
        parts = [f"scenario {h.get('scenario', '?')}", f"policy {h.get('policy', '?')}"]
        if h.get("seed") is not None:
            parts.append(f"seed {h.get('seed')}")
        return ", ".join(parts)


# The keys every message line has; the rest (cpu, addr, pages, arg) are its payload.
_MSG_KEYS = frozenset(LINE_HEAD + required_keys(MsgSend))


def _payload(ev: Event) -> str:
    parts = []
    for key, value in ev.items():
        if key in _MSG_KEYS:
            continue
        parts.append(f"{key}={hex_addr(value) if key == 'addr' else value_text(value)}")
    return " ".join(parts)


#: The events drawn as actions on a CPU's lifeline.
ACTION_EVENTS = frozenset({FaultBegin.NAME, FaultSegv.NAME, PteInstall.NAME, PteZap.NAME, TlbFill.NAME,
                           TlbFlush.NAME, MemLoad.NAME, MemStore.NAME})


def action_text(ev: Event) -> str:
    """An action in a few words: `load 0x7efffffff000 = 1 (frame 0)`."""
    name = ev["event"]
    addr = hex_addr(ev.get("vaddr", ev.get("addr")))
    frame = f"frame {ev.get('frame')}"
    vma = f", vma {ev.get('vma')}" if ev.get("vma") is not None else ""
    pages = ev.get("pages", 1)
    span = f" +{pages}p" if isinstance(pages, int) and pages > 1 else ""
    if name == FaultBegin.NAME:
        return f"page fault ({ev.get('access', 'access')}) at {addr}"
    if name == FaultSegv.NAME:
        return f"SIGSEGV at {addr}" + (f" ({ev.get('reason')})" if ev.get("reason") else "")
    if name == PteInstall.NAME:
        return f"set PTE {addr} -> {frame}{vma}"
    if name == PteZap.NAME:
        return f"zap PTE {addr}{span} ({frame}{vma})"
    if name == TlbFill.NAME:
        return f"TLB fill {addr} -> {frame}{vma}"
    if name == TlbFlush.NAME:
        return f"TLB flush {addr}{span}" + (f" ({ev.get('reason')})" if ev.get("reason") else "")
    reg = f"{ev.get('reg')} = " if ev.get("reg") is not None else ""
    verb = "load" if name == MemLoad.NAME else "store"
    return f"{verb} {addr}: {reg}{value_text(ev.get('value'))} ({frame})"


def _action_actor(ev: Event) -> str | None:
    """The lifeline an action belongs on: the CPU that did it (a set-up TLB fill: the
    CPU whose TLB it fills); None for work no CPU did (the set-up PTEs)."""
    actor = str(ev.get("actor"))
    if cpu_of_actor(actor) is not None:
        return actor
    cpu = ev.get("cpu")
    if ev["event"] == TlbFill.NAME and isinstance(cpu, int) and not isinstance(cpu, bool):
        return f"cpu{cpu}"
    return None


@attrs.define
class _Pending:
    ev: dict[str, Any]
    drawn: bool
    recv_step: int | None = None


#: The most a diagram draws (messages, actions and notes): beyond, the picture is
#: unreadable and its model would take memory in proportion to the log, so a bigger
#: selection is refused with a hint to choose a window (docs/inspect.md).
MAX_DRAWN = 50_000


def too_big(what: str, limit: int) -> UsageError:
    return UsageError(f"the {what} would draw more than {limit:,} items: choose a window (--from-step N "
                      f"--to-step M) or a filter (--cpu, --actor, --event, --addr)")


def collect_sequence(records: Iterable[Record], filt: EventFilter | None = None,
                     limit: int | None = MAX_DRAWN) -> Sequence:
    """Read the records once and keep the messages and violations to draw (a message
    received and not drawn is forgotten at once, so memory follows what is drawn, at
    most `limit` items, else `UsageError`)."""
    filt = filt or EventFilter()
    drawn = 0
    header: dict[str, Any] = {}
    end = None
    sends: dict[Any, _Pending] = {}  # in log order: drawn, or not yet received
    notes: list[Note] = []
    actions: list[Action] = []
    tr = Translations()
    for rec in records:
        ev = rec.event
        name = ev["event"]
        verdict = tr.judge(ev)
        tr.observe(ev)
        if name in ACTION_EVENTS:
            where = _action_actor(ev)
            if where is not None and filt.matches(ev):
                actions.append(Action(ev["step"], where, name, action_text(ev), verdict or ""))
                drawn += 1
                if limit is not None and drawn > limit:
                    raise too_big("diagram", limit)
            continue
        if name == RunStart.NAME:
            header = ev
        elif name == RunEnd.NAME:
            end = ev
        elif name == MsgSend.NAME and "msg_id" in ev:
            sent = sends[ev["msg_id"]] = _Pending(ev, filt.matches(ev))
            drawn += sent.drawn
        elif name == MsgRecv.NAME and "msg_id" in ev:
            pending = sends.get(ev["msg_id"])
            if pending is None:  # received but its send is not in the log: draw from here
                pending = sends[ev["msg_id"]] = _Pending(ev, False)
            pending.recv_step = ev["step"]
            if not pending.drawn and filt.matches(ev):
                pending.drawn = True
                drawn += 1
            if not pending.drawn:
                del sends[ev["msg_id"]]  # received, not drawn: nothing more to know
        elif name == InvariantViolated.NAME and filt.matches(ev):
            drawn += 1
            cpu = ev.get("cpu")
            note_actors: tuple[str, ...] = (f"cpu{cpu}",) if isinstance(cpu, int) and not isinstance(cpu, bool) else ()
            notes.append(Note(ev["step"], note_actors, str(ev.get("invariant", "?")), str(ev.get("detail", "") or "")))
        if limit is not None and drawn > limit:
            raise too_big("diagram", limit)
    messages = []
    for msg_id in sends:
        p = sends[msg_id]
        if not p.drawn:
            continue
        ev = p.ev
        recv, later = p.recv_step, None
        if recv is not None and filt.to_step is not None and recv > filt.to_step:
            recv, later = None, recv  # the window ends while it is in flight
        messages.append(
            Message(
                msg_id=msg_id,
                src=str(ev.get("src", ev.get("actor"))),
                dst=str(ev.get("dst", "?")),
                kind=str(ev.get("kind", "?")),
                send_step=ev["step"],
                recv_step=recv,
                cause=ev.get("cause"),
                payload=_payload(ev),
                recv_later=later,
            )
        )
    actors = {a for m in messages for a in (m.src, m.dst)}
    actors.update(a for n in notes for a in n.actors)
    actors.update(a.actor for a in actions)
    return Sequence(sort_actors(actors), messages, notes, header, end, actions)


# --- Mermaid -------------------------------------------------------------------------

_MERMAID_SPECIAL = re.compile(r"[#;<]")
_MERMAID_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MERMAID_RESERVED = frozenset(
    {"end", "loop", "alt", "else", "opt", "par", "and", "rect", "note", "participant", "actor",
     "activate", "deactivate", "title", "critical", "break", "box", "autonumber", "create", "destroy"}
)


def _mermaid_text(text: str) -> str:
    """Message or note text: one line, without Mermaid's `;` (statement end), `#`
    (entity) and `<` (which starts HTML in a label) characters, which are written as
    entity codes."""
    text = " ".join(text.split())
    return _MERMAID_SPECIAL.sub(lambda m: f"#{ord(m.group())};", text)


def render_mermaid(seq: Sequence) -> str:
    """A Mermaid `sequenceDiagram`: participants in column order, one arrow per message
    labelled `kind (send step..recv step)` (`-x` for one never received), each CPU's
    actions as a note right of its lifeline, violations as notes over the CPUs (all
    with their full text)."""
    ids: dict[str, str] = {}
    lines = ["sequenceDiagram", f"    %% vmactors: {_mermaid_text(seq.title())}"]
    for i, actor in enumerate(seq.participants):
        if _MERMAID_ID.fullmatch(actor) and actor.lower() not in _MERMAID_RESERVED:
            ids[actor] = actor
            lines.append(f"    participant {actor}")
        else:
            ids[actor] = f"p{i}"
            lines.append(f"    participant p{i} as {_mermaid_text(actor)}")
    for _step, item in seq.items():
        if isinstance(item, Message):
            arrow = "->>" if item.recv_step is not None or item.recv_later is not None else "-x"
            label = _mermaid_text(f"{item.kind} ({item.steps_text})")
            lines.append(f"    {ids[item.src]}{arrow}{ids[item.dst]}: {label}")
        elif isinstance(item, Action):
            lines.append(f"    Note right of {ids[item.actor]}: step {item.step} {_mermaid_text(item.label)}")
        else:
            if item.actors:
                over = ",".join(ids[a] for a in item.actors)
            elif len(seq.participants) > 1:
                over = f"{ids[seq.participants[0]]},{ids[seq.participants[-1]]}"
            elif seq.participants:
                over = ids[seq.participants[0]]
            else:
                lines.append(f"    %% step {item.step}: {_mermaid_text(item.text)}")
                continue
            lines.append(f"    Note over {over}: step {item.step} {_mermaid_text(item.text)}")
    return "\n".join(lines) + "\n"
