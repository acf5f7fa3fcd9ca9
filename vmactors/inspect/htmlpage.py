"""`--diagram html`: one self-contained HTML page with the sequence diagram as inline SVG.

Nothing is fetched: the CSS is inline, fonts are the system's, there is no script and
no URL (the SVG needs no `xmlns` inside HTML). Lifelines run down from each participant;
time runs down a step axis on the left, one row per step at which something happens
(steps where nothing is drawn are skipped, so the axis labels say which step a row is);
each message is an arrow slanted from the row of its send to the row of its receipt,
labelled with its kind; a message never received ends in a cross. What each CPU did
to a page's translation — a fault, a PTE installed or zapped, a TLB filled or flushed,
a load or a store with its value — is a box on that CPU's lifeline with its text
beside it (a load through a stale TLB entry in red, saying why). Each invariant
violation is a note on its own row with its whole text, wrapped, never cut: nothing
needs hovering to be read (the SVG `<title>`s repeat the details for a tooltip).
Elements carry the classes `participant`, `lifeline`, `arrow`, `action` (`action
stale` for a stale access) and `note`.

The markup is also well-formed XML, so it parses with `xml.etree` as well as with an
HTML parser.
"""

from __future__ import annotations

from html import escape

import textwrap

from vmactors.inspect.diagram import Action, Message, Note, Sequence

COL_W = 160  # distance between lifelines
LEFT = 70  # room for the step axis
BOX_W, BOX_H = 120, 30  # participant box
TOP = 10
ROW_H = 30
CHAR_W = 7.2  # width of a 12px monospace character, for sizing note boxes
NOTE_WRAP = 110  # a note's lines are wrapped at this many characters, never cut
LINE_H = 15  # a wrapped note's line height

_CSS = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 18px; margin: 0 0 4px 0; }
p.meta { margin: 0 0 12px 0; color: #555; font-size: 13px; }
svg { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; background: #fff; }
.participant rect { fill: #eef3fb; stroke: #4a6fa5; stroke-width: 1.2; }
.participant text { fill: #1b2f4d; font-weight: bold; text-anchor: middle; }
.lifeline { stroke: #9aa5b4; stroke-width: 1; stroke-dasharray: 4 4; }
.axis line { stroke: #ccc; stroke-width: 1; }
.axis text { fill: #777; text-anchor: end; }
.arrow line, .arrow path { stroke: #1f4e8c; stroke-width: 1.4; fill: none; }
.arrow text { fill: #1f4e8c; text-anchor: middle; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.arrow.pending line, .arrow.pending path { stroke: #a33; stroke-dasharray: 5 3; }
.arrow.pending text { fill: #a33; }
.note rect { fill: #fff3cd; stroke: #c0392b; stroke-width: 1.2; }
.note text { fill: #8b1a1a; font-weight: bold; }
.action rect { fill: #e8f1e4; stroke: #3d7a32; stroke-width: 1; }
.action text { fill: #24501d; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.action.stale rect { fill: #f9d6d5; stroke: #c0392b; stroke-width: 2; }
.action.stale text { fill: #b0201a; font-weight: bold; }
""".strip()


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


class _Layout:
    def __init__(self, seq: Sequence) -> None:
        self.seq = seq
        self.col = {actor: i for i, actor in enumerate(seq.participants)}
        # Rows, in order: (step, 0, 0) where a message starts or ends; (step, 1, i) for
        # the i-th action of the step; (step, 2, i) for its i-th violation. A row is as
        # tall as its longest note.
        rows: set[tuple[int, int, int]] = set()
        for msg in seq.messages:
            rows.add((msg.send_step, 0, 0))
            if msg.recv_step is not None:
                rows.add((msg.recv_step, 0, 0))
        self.item_row: dict[int, tuple[int, int, int]] = {}
        per_step: dict[tuple[int, int], int] = {}
        for kind, items in ((1, seq.actions), (2, seq.notes)):
            for item in items:
                n = per_step[(item.step, kind)] = per_step.get((item.step, kind), 0) + 1
                self.item_row[id(item)] = (item.step, kind, n)
                rows.add((item.step, kind, n))
        self.rows = sorted(rows)
        heights = {row: ROW_H for row in self.rows}
        for note in seq.notes:
            row = self.item_row[id(note)]
            heights[row] = max(ROW_H, len(_note_lines(note)) * LINE_H + 12)
        self.axis_top = TOP + BOX_H + 24
        self.top: dict[tuple[int, int, int], float] = {}
        y = float(self.axis_top)
        for row in self.rows:
            self.top[row] = y
            y += heights[row]
        self.heights = heights
        self.width = LEFT + max(1, len(seq.participants)) * COL_W + 20
        for note in seq.notes:
            x0, w = _note_box(self, note)
            self.width = max(self.width, int(x0 + w) + 10)
        for action in seq.actions:
            x = self.x(action.actor) + 10 + len(action.label) * CHAR_W
            self.width = max(self.width, int(x) + 10)
        self.height = int(y) + 20

    def x(self, actor: str) -> float:
        return LEFT + self.col[actor] * COL_W + COL_W / 2

    def y(self, row: tuple[int, int, int]) -> float:
        return self.top[row] + self.heights[row] / 2

    def msg_y(self, step: int) -> float:
        return self.y((step, 0, 0))


def _arrow(lay: _Layout, msg: Message) -> str:
    x1, y1 = lay.x(msg.src), lay.msg_y(msg.send_step)
    pending = msg.recv_step is None
    y2 = y1 + ROW_H * 0.6 if pending else lay.msg_y(msg.recv_step)  # type: ignore[arg-type]
    cls = "arrow pending" if pending else "arrow"
    marker = "url(#vm-cross)" if pending else "url(#vm-head)"
    if msg.src == msg.dst:
        loop = 40
        shape = (
            f'<path d="M{_fmt(x1)},{_fmt(y1)} C{_fmt(x1 + loop)},{_fmt(y1)} '
            f'{_fmt(x1 + loop)},{_fmt(max(y2, y1 + ROW_H / 2))} {_fmt(x1)},{_fmt(max(y2, y1 + ROW_H / 2))}" '
            f'marker-end="{marker}"/>'
        )
        lx, ly = x1 + loop + 4, (y1 + max(y2, y1 + ROW_H / 2)) / 2
        anchor = ' style="text-anchor: start"'
    else:
        x2 = lay.x(msg.dst)
        if pending:
            x2 = x1 + (x2 - x1) * 0.6
        shape = (
            f'<line x1="{_fmt(x1)}" y1="{_fmt(y1)}" x2="{_fmt(x2)}" y2="{_fmt(y2)}" marker-end="{marker}"/>'
        )
        lx, ly = (x1 + x2) / 2, (y1 + y2) / 2 - 5
        anchor = ""
    received = ("never received" if msg.recv_later is None else f"received at step {msg.recv_later}, after the "
                "window drawn") if pending else f"received at step {msg.recv_step}"
    cause = f", caused by message {msg.cause}" if msg.cause is not None else ""
    payload = f"; {msg.payload}" if msg.payload else ""
    title = f"message {msg.msg_id}: {msg.src} -> {msg.dst} {msg.kind}, sent at step {msg.send_step}, {received}{cause}{payload}"
    label = msg.kind if msg.recv_later is None else f"{msg.kind} (-> step {msg.recv_later})"
    return (
        f'<g class="{cls}" data-msg-id="{_e(msg.msg_id)}" data-kind="{_e(msg.kind)}">'
        f"<title>{_e(title)}</title>{shape}"
        f'<text x="{_fmt(lx)}" y="{_fmt(ly)}"{anchor}>{_e(label)}</text></g>'
    )


def _note_lines(note: Note) -> list[str]:
    """A note's whole text (`step N: !! invariant: detail`), wrapped, never cut."""
    return textwrap.wrap(f"step {note.step}: {note.text}", NOTE_WRAP, subsequent_indent="  ") or [""]


def _note_box(lay: _Layout, note: Note) -> tuple[float, float]:
    """(left x, width) of a note: centred under the lifelines it is about, never over
    the step axis."""
    w = max(len(line) for line in _note_lines(note)) * CHAR_W + 16
    actors = [a for a in note.actors if a in lay.col] or list(lay.seq.participants)
    if actors:
        left = min(lay.x(a) for a in actors)
        right = max(lay.x(a) for a in actors)
    else:
        left = right = LEFT + COL_W / 2
    w = max(w, right - left + 60)
    x0 = max(float(LEFT), (left + right) / 2 - w / 2)
    return x0, w


def _note(lay: _Layout, note: Note) -> str:
    row = lay.item_row[id(note)]
    top, h = lay.top[row], lay.heights[row]
    lines = _note_lines(note)
    x0, w = _note_box(lay, note)
    title = f"step {note.step}: {note.invariant}" + (f": {note.detail}" if note.detail else "")
    text = "".join(f'<tspan x="{_fmt(x0 + 8)}" dy="{LINE_H if i else 0}">{_e(line)}</tspan>'
                   for i, line in enumerate(lines))
    first = top + (h - len(lines) * LINE_H) / 2 + LINE_H - 3
    return (
        f'<g class="note" data-step="{note.step}" data-invariant="{_e(note.invariant)}">'
        f"<title>{_e(title)}</title>"
        f'<rect x="{_fmt(x0)}" y="{_fmt(top + 3)}" width="{_fmt(w)}" height="{_fmt(h - 6)}" rx="3"/>'
        f'<text x="{_fmt(x0 + 8)}" y="{_fmt(first)}">{text}</text></g>'
    )


def _action(lay: _Layout, action: Action) -> str:
    y = lay.y(lay.item_row[id(action)])
    x = lay.x(action.actor)
    cls = "action stale" if action.stale else "action"
    title = f"step {action.step}: {action.actor} {action.kind}: {action.label}"
    return (
        f'<g class="{cls}" data-step="{action.step}" data-actor="{_e(action.actor)}" data-kind="{_e(action.kind)}">'
        f"<title>{_e(title)}</title>"
        f'<rect x="{_fmt(x - 5)}" y="{_fmt(y - 8)}" width="10" height="16" rx="2"/>'
        f'<text x="{_fmt(x + 10)}" y="{_fmt(y + 4)}">{_e(action.label)}</text></g>'
    )


def render_svg(seq: Sequence) -> str:
    """The diagram as an `<svg>` element (no `xmlns`: meant to sit inside HTML)."""
    lay = _Layout(seq)
    right = lay.width - 10
    bottom = lay.height - 10
    out = [
        f'<svg width="{lay.width}" height="{lay.height}" viewBox="0 0 {lay.width} {lay.height}" '
        f'role="img" aria-label="message sequence diagram">',
        "<defs>"
        '<marker id="vm-head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#1f4e8c"/></marker>'
        '<marker id="vm-cross" viewBox="0 0 10 10" refX="5" refY="5" markerWidth="9" markerHeight="9" orient="auto">'
        '<path d="M1,1 L9,9 M9,1 L1,9" stroke="#a33" stroke-width="2"/></marker>'
        "</defs>",
    ]
    # Step axis: a faint rule and the step number of every row that starts a step.
    out.append('<g class="axis">')
    labelled = set()
    for row in lay.rows:
        y = lay.y(row)
        out.append(f'<line x1="{LEFT - 4}" y1="{_fmt(y)}" x2="{right}" y2="{_fmt(y)}"/>')
        if row[0] not in labelled:
            labelled.add(row[0])
            out.append(f'<text x="{LEFT - 10}" y="{_fmt(y + 4)}">{row[0]}</text>')
    out.append(f'<text x="{LEFT - 10}" y="{lay.axis_top - 8}">step</text>')
    out.append("</g>")
    for actor in seq.participants:
        x = lay.x(actor)
        out.append(
            f'<line class="lifeline" data-actor="{_e(actor)}" x1="{_fmt(x)}" y1="{TOP + BOX_H}" '
            f'x2="{_fmt(x)}" y2="{bottom}"/>'
        )
    for actor in seq.participants:
        x = lay.x(actor)
        out.append(
            f'<g class="participant" data-actor="{_e(actor)}">'
            f'<rect x="{_fmt(x - BOX_W / 2)}" y="{TOP}" width="{BOX_W}" height="{BOX_H}" rx="4"/>'
            f'<text x="{_fmt(x)}" y="{TOP + BOX_H / 2 + 4}">{_e(actor)}</text></g>'
        )
    for _step, item in seq.items():
        if isinstance(item, Message):
            out.append(_arrow(lay, item))
        elif isinstance(item, Action):
            out.append(_action(lay, item))
        else:
            out.append(_note(lay, item))
    out.append("</svg>")
    return "\n".join(out)


def render_html(seq: Sequence, subtitle: str = "") -> str:
    """A complete, self-contained HTML document holding the diagram."""
    title = f"vmactors: {seq.title()}"
    meta = []
    if seq.end is not None:
        outcome = seq.end.get("outcome", "?")
        violations = seq.end.get("violations") or []
        meta.append(f"outcome {outcome}" + (f" ({', '.join(map(str, violations))})" if violations else ""))
    n, v, a = len(seq.messages), len(seq.notes), len(seq.actions)
    stale = sum(1 for x in seq.actions if x.stale)
    meta.append(f"{n} message{'s' * (n != 1)}, {a} action{'s' * (a != 1)}"
                + (f" ({stale} stale)" if stale else "") + f", {v} violation{'s' * (v != 1)} drawn")
    if subtitle:
        meta.append(subtitle)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8"/>\n'
        f"<title>{_e(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n"
        f'<p class="meta">{_e("; ".join(meta))}</p>\n'
        f"{render_svg(seq)}\n</body>\n</html>\n"
    )
