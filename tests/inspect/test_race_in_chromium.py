"""The HTML and Mermaid diagrams show the race itself, not only the messages: the
fault, the PTE install and zap, TLB fills and flushes and loads on each CPU's
lifeline, the stale load marked, each invariant violation with its whole text
(no hovering needed). The HTML is rendered by headless Chromium (skipped only where
there is no Chromium): its DOM and its screenshot show the stale load."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("regen_picture", ROOT / "tools" / "regen_picture.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cx(tmp_path_factory) -> Path:
    """The log of wilcox's shortest coherence counterexample of mapfixed-two-readers,
    as a user gets it: explore, then replay with --log."""
    work = tmp_path_factory.mktemp("cx")
    tool = _tool()
    tool.vmactors("explore", "mapfixed-two-readers", "--policy", "wilcox", "--no-trace", cwd=work)
    tool.vmactors("replay", tool.REPLAY, "--log", "cx.jsonl", cwd=work)
    return work / "cx.jsonl"


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def stale_load(log: Path) -> dict:
    """cpu1's load of A through the TLB entry it had from the start."""
    evs = events(log)
    a = next(e["addr"] for e in evs if e["event"] == "tree.store" and e.get("vma") == "A")
    return next(e for e in evs if e["event"] == "mem.load" and e["cpu"] == 1 and e["addr"] == a)


class _Dom(HTMLParser):
    """Each SVG group with a class, and the text inside it (tspans joined)."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: list[tuple[dict[str, str], list[str]]] = []
        self._stack: list[tuple[str, list[str] | None]] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = {k: v or "" for k, v in attrs}
        if tag == "g" and a.get("class"):
            self.groups.append((a, []))
            self._stack.append((tag, self.groups[-1][1]))
        else:
            self._stack.append((tag, None))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        while self._stack:
            t, _ = self._stack.pop()
            if t == tag:
                break
        self._in_title = False

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._in_title:
            return
        for _t, texts in reversed(self._stack):
            if texts is not None:
                texts.append(data)
                return

    def of(self, cls: str) -> list[tuple[dict[str, str], str]]:
        return [(a, "".join(t)) for a, t in self.groups if cls in a["class"].split()]


def test_the_html_draws_the_race(vmcli, cx) -> None:
    html = vmcli("inspect", cx, "--diagram", "html").stdout
    dom = _Dom()
    dom.feed(html)
    actions = dom.of("action")
    kinds = {(a["data-actor"], a["data-kind"]) for a, _ in actions}
    assert {("cpu0", "fault.begin"), ("cpu0", "pte.install"), ("cpu2", "pte.zap"), ("cpu0", "tlb.fill"),
            ("cpu1", "tlb.fill"), ("cpu1", "tlb.flush"), ("cpu0", "mem.load"), ("cpu1", "mem.load")} <= kinds
    (stale,) = dom.of("stale")
    load = stale_load(cx)
    assert stale[0]["data-actor"] == "cpu1" and stale[0]["data-step"] == str(load["step"])
    assert f"r2 = {load['value']}" in stale[1] and "stale TLB: the PTE maps frame" in stale[1]
    details = [e["detail"] for e in events(cx) if e["event"] == "invariant.violated"]
    notes = [" ".join(text.split()) for _, text in dom.of("note")]
    assert len(notes) == len(details)
    for note, detail in zip(notes, details):
        assert " ".join(detail.split()) in note  # the whole text, not cut


def test_mermaid_draws_the_race(vmcli, cx) -> None:
    text = vmcli("inspect", cx, "--diagram", "mermaid").stdout
    load = stale_load(cx)
    assert re.search(rf"Note right of cpu1: step {load['step']} load 0x[0-9a-f]+: r2 = {load['value']} "
                     r"\(frame \d+\) -- stale TLB", text)
    assert "Note right of cpu0: step" in text and "page fault (load)" in text and "zap PTE" in text
    details = [e["detail"] for e in events(cx) if e["event"] == "invariant.violated"]
    for d in details:
        assert d.replace(";", "#59;") in text


def test_a_step_window_draws_only_its_rows(vmcli, cx) -> None:
    """The caption's window is what the axis shows: a message received after it is
    drawn in flight at the window's end, not at a row past it."""
    html = vmcli("inspect", cx, "--diagram", "html", "--to-step", "12").stdout
    axis = re.search(r'<g class="axis">(.*?)</g>', html, re.S)
    assert axis is not None
    labels = [int(x) for x in re.findall(r">(\d+)</text>", axis.group(1))]
    assert labels and max(labels) <= 12
    assert "(-&gt; step" in html  # the up_write sent at its step and taken after the window


# --- in Chromium ------------------------------------------------------------------------


def png_rgb(data: bytes) -> tuple[int, int, list[list[tuple[int, int, int]]]]:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = depth = ctype = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and ctype in (2, 6), (depth, ctype)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[list[tuple[int, int, int]]] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])  # type: ignore[misc]
        prev = line
    return width, height, rows


STALE_FILL = (0xF9, 0xD6, 0xD5)  # `.action.stale rect` in vmactors.inspect.htmlpage
NOTE_FILL = (0xFF, 0xF3, 0xCD)  # `.note rect`


def _shoot(tool, binary: str, html: str, work: Path, name: str) -> tuple[str, list[list[tuple[int, int, int]]]]:
    page = work / f"{name}.html"
    page.write_text(html)
    dom = subprocess.run([*tool.chromium_argv(binary, work / f"{name}-dom"), "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    shot = work / f"{name}.png"
    tool.screenshot(html, shot, work)
    _, _, rows = png_rgb(shot.read_bytes())
    return dom, rows


def _count(rows: list[list[tuple[int, int, int]]], colour: tuple[int, int, int]) -> int:
    return sum(px == colour for row in rows for px in row)


def test_chromium_shows_the_stale_load(vmcli, cx, tmp_path) -> None:
    tool = _tool()
    binary = tool.chromium()
    if binary is None:
        pytest.skip("no Chromium on PATH (.ci/run installs it)")
    html = vmcli("inspect", cx, "--diagram", "html").stdout
    dom, rows = _shoot(tool, binary, html, tmp_path, "wilcox")
    # Chromium's DOM: the stale load is there, with its text, on cpu1's lifeline.
    parsed = _Dom()
    parsed.feed(dom)
    (stale,) = parsed.of("stale")
    assert stale[0]["data-actor"] == "cpu1" and "stale TLB" in stale[1]
    # The screenshot: the stale load's box is drawn, and so are the violation notes.
    assert _count(rows, STALE_FILL) > 40
    assert _count(rows, NOTE_FILL) > 1000
    # Negative control: glisse's run of the same scenario has no stale load to draw.
    log = tmp_path / "glisse.jsonl"
    assert vmcli("run", "mapfixed-two-readers", "--policy", "glisse", "--log", log).returncode == 0
    _, calm = _shoot(tool, binary, vmcli("inspect", log, "--diagram", "html").stdout, tmp_path, "glisse")
    assert _count(calm, STALE_FILL) == 0 and _count(calm, NOTE_FILL) == 0
    assert len({tuple(r) for r in calm}) > 50  # not blank
