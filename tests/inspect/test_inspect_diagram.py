"""`--diagram mermaid|html|ascii`: messages paired by msg_id as arrows, violations as
notes; the HTML is one self-contained page; the ASCII chart is a kernel race chart."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

MUNMAP_MERMAID = """\
sequenceDiagram
    %% vmactors: scenario munmap-stale, policy mmap_sem, seed 0
    participant cpu0
    participant cpu1
    participant cpu2
    participant tree
    participant shootdown
    participant mmap_sem
    cpu2->>mmap_sem: down_write (1..2)
    mmap_sem->>cpu2: grant (2..3)
    cpu2->>tree: store (3..4)
    tree->>cpu2: stored (4..6)
    Note right of cpu1: step 5 load 0x7efffffff008: r1 = 1 (frame 4)
    cpu2->>shootdown: flush (6..8)
    Note right of cpu2: step 6 zap PTE 0x7effffffe000 (frame 3, vma A)
    Note right of cpu2: step 6 zap PTE 0x7efffffff000 (frame 4, vma A)
    Note right of cpu2: step 6 TLB flush 0x7effffffe000 +2p (local)
    Note right of cpu0: step 7 load 0x7efffffff008: r0 = 1 (frame 4) -- stale TLB: the page table maps nothing here (zapped at step 6)
    Note over cpu0: step 7 !! coherence: cpu0's TLB maps frame 4, the page table nothing
    shootdown->>cpu0: ipi (8..9)
    shootdown->>cpu1: ipi (8..10)
    cpu0->>shootdown: ack (9..11)
    Note right of cpu0: step 9 TLB flush 0x7effffffe000 +2p (ipi)
    cpu1->>shootdown: ack (10..12)
    Note right of cpu1: step 10 TLB flush 0x7effffffe000 +2p (ipi)
    shootdown->>cpu2: done (12..13)
    cpu2->>mmap_sem: up_write (14..15)
"""

MUNMAP_ASCII = """\
CPU 0                                   CPU 1                      CPU 2
-----                                   -----                      -----
                                                                   munmap(A)
                                                                     down_write(mmap_sem)
                                                                     mas_store(NULL)
                                        load 0x7efffffff008 = 1
                                                                     ...tree: stored
                                                                     zap_pte_range()
                                                                     flush_tlb_range()
load 0x7efffffff008 = 1  (stale TLB)
!! coherence
                                                                     IPI -> cpu0 cpu1
<IPI> flush_tlb
                                        <IPI> flush_tlb
                                                                     ...shootdown: done
                                                                     free_page(frame 3)
                                                                     free_page(frame 4)
                                                                     vm_area_free(A)
                                                                     up_write(mmap_sem)
                                                                     return 0

!! step 7: coherence: cpu0's TLB maps frame 4, the page table nothing
(vmactors 0.1.0: scenario munmap-stale, policy mmap_sem, seed 0; outcome violation)
"""

MAPFIXED_ASCII = """\
CPU 0                            CPU 1                                   CPU 2
-----                            -----                                   -----
                                                                         mmap(A, fixed, kind=file, file=f2, fill=2)
                                                                           mas_store(2.0)
                                                                           zap_pte_range()
                                                                           flush_tlb_range()
do_page_fault(0x7efffffff000)
  set_pte_at(frame 5)
load 0x7efffffff000 = 2
                                 load 0x7efffffff000 = 1  (stale TLB)
                                 !! coherence
                                                                           IPI -> cpu0 cpu1
                                 <IPI> flush_tlb
<IPI> flush_tlb
                                                                           ...shootdown: done
                                                                           call_rcu(A)
                                                                           return 0x7efffffff000
                                                                         [rcu] vm_area_free(A)

!! step 7: coherence: cpu1's TLB maps frame 3, the page table frame 5
(vmactors 0.1.0: scenario mapfixed-stale, policy wilcox, seed 7; outcome violation)
"""


def message_count(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if json.loads(line)["event"] == "msg.send")


# --- mermaid ---------------------------------------------------------------------------


def test_mermaid_snapshot(inspect, munmap_log):
    assert inspect.ok(munmap_log, "--diagram", "mermaid") == MUNMAP_MERMAID


def test_mermaid_has_one_arrow_per_message(inspect, munmap_log, mapfixed_log):
    for log in (munmap_log, mapfixed_log):
        out = inspect.ok(log, "--diagram", "mermaid")
        assert sum("->>" in line for line in out.splitlines()) == message_count(log)


def test_mermaid_honours_filters(inspect, munmap_log):
    assert inspect.ok(munmap_log, "--diagram", "mermaid", "--actor", "cpu0") == (
        "sequenceDiagram\n"
        "    %% vmactors: scenario munmap-stale, policy mmap_sem, seed 0\n"
        "    participant cpu0\n"
        "    participant shootdown\n"
        "    Note right of cpu0: step 7 load 0x7efffffff008: r0 = 1 (frame 4) -- stale TLB: the page table maps "
        "nothing here (zapped at step 6)\n"
        "    shootdown->>cpu0: ipi (8..9)\n"
        "    cpu0->>shootdown: ack (9..11)\n"
        "    Note right of cpu0: step 9 TLB flush 0x7effffffe000 +2p (ipi)\n"
    )
    out = inspect.ok(munmap_log, "--diagram", "mermaid", "--from-step", "12")
    assert out.splitlines()[-2:] == ["    shootdown->>cpu2: done (12..13)", "    cpu2->>mmap_sem: up_write (14..15)"]
    assert "Note" not in out


def test_mermaid_unreceived_message_and_awkward_text(inspect, tmp_path, logs):
    b = logs.LogBuilder()
    b.step()
    b.send("cpu0", "mmap_sem", "down_read")
    b.add("sim", "invariant.violated", invariant="deadlock", detail="cpu0 waits; for #1 forever")
    b.end("deadlock", {}, ["deadlock"])
    out = inspect.ok(b.write(tmp_path / "d.jsonl"), "--diagram", "mermaid")
    assert "    cpu0-xmmap_sem: down_read (1..)" in out
    # no CPU named: the note spans every participant; ';' and '#' are entity codes
    assert "    Note over cpu0,mmap_sem: step 1 !! deadlock: cpu0 waits#59; for #35;1 forever" in out


# --- ascii -----------------------------------------------------------------------------


def test_ascii_race_chart_snapshots(inspect, munmap_log, mapfixed_log):
    assert inspect.ok(munmap_log, "--diagram", "ascii") == MUNMAP_ASCII
    assert inspect.ok(mapfixed_log, "--diagram", "ascii") == MAPFIXED_ASCII


def test_ascii_is_plain_and_pasteable(inspect, munmap_log, mapfixed_log, tmp_path, logs):
    b = logs.LogBuilder(scenario="caf\u00e9")
    b.step()
    b.add("cpu0", "syscall.begin", cpu=0, addr=logs.A, pages=1, vma="\u00c5", op="munmap", text="munmap \u00c5")
    b.end("ok", {}, [])
    for log in (munmap_log, mapfixed_log, b.write(tmp_path / "u.jsonl")):
        out = inspect.ok(log, "--diagram", "ascii")
        assert out.isascii()
        assert "\t" not in out
        assert all(line == line.rstrip() for line in out.splitlines())


def test_ascii_columns_are_aligned_under_their_headers(inspect, munmap_log):
    lines = inspect.ok(munmap_log, "--diagram", "ascii").splitlines()
    header = lines[0]
    starts = {name: header.index(name) for name in ("CPU 0", "CPU 1", "CPU 2")}
    assert lines[1] == "-----".ljust(starts["CPU 1"]) + "-----".ljust(starts["CPU 2"] - starts["CPU 1"]) + "-----"
    for line in lines[2:]:
        if not line or line.startswith(("!! step", "(vmactors")):
            break
        indent = len(line) - len(line.lstrip())
        assert min(starts.values()) <= indent
        assert any(indent in (s, s + 2) for s in starts.values()), line


def test_ascii_honours_the_step_window(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--diagram", "ascii", "--from-step", "5", "--to-step", "9")
    lines = out.splitlines()
    assert "munmap(A)" not in out and "return 0" not in out
    # still indented as inside munmap, which began before the window
    assert any(line.endswith("    zap_pte_range()") and "CPU" not in line for line in lines)
    assert "<IPI> flush_tlb" in out and out.count("<IPI>") == 1


# --- html ------------------------------------------------------------------------------


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def classes(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def parse_html(text: str) -> ET.Element:
    assert text.startswith("<!DOCTYPE html>\n")
    return ET.fromstring(text[len("<!DOCTYPE html>\n"):])


def test_html_structure(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--diagram", "html")
    root = parse_html(out)  # well-formed: xml.etree reads it
    svgs = root.findall(".//svg")
    assert len(svgs) == 1
    svg = svgs[0]
    arrows = [el for el in svg.iter() if "arrow" in classes(el)]
    notes = [el for el in svg.iter() if "note" in classes(el)]
    assert len(arrows) == message_count(munmap_log) == 11
    assert len(notes) == 1 and "coherence" in "".join(notes[0].itertext())
    assert [el.get("data-actor") for el in svg.iter() if "participant" in classes(el)] == [
        "cpu0", "cpu1", "cpu2", "tree", "shootdown", "mmap_sem"
    ]
    assert len([el for el in svg.iter() if "lifeline" in classes(el)]) == 6
    kinds = [a.get("data-kind") for a in arrows]
    assert kinds == ["down_write", "grant", "store", "stored", "flush", "ipi", "ipi", "ack", "ack", "done", "up_write"]
    assert all(a.find("line") is not None and a.find("text") is not None for a in arrows)
    # the step axis labels every row's step
    axis = [el for el in svg.iter() if "axis" in classes(el)][0]
    labels = [t.text for t in axis.iter("text")]
    assert labels[-1] == "step" and labels[:-1] == [str(s) for s in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)]


def test_html_arrows_slant_from_send_row_to_recv_row(inspect, munmap_log):
    svg = parse_html(inspect.ok(munmap_log, "--diagram", "html")).find(".//svg")
    lines = {a.get("data-msg-id"): a.find("line") for a in svg.iter("g") if "arrow" in classes(a)}
    flush = lines["5"]  # sent at step 6, received at step 8: down to the row of step 8's messages
    ipi = lines["6"]  # sent at step 8
    assert float(flush.get("y2")) == pytest.approx(float(ipi.get("y1")))
    assert float(flush.get("y2")) - float(flush.get("y1")) >= 60
    assert float(flush.get("x2")) > float(flush.get("x1"))  # cpu2 -> shootdown, rightwards


def test_html_is_self_contained(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--diagram", "html")
    assert "http" not in out and "//" not in out
    assert "<script" not in out and "@import" not in out and "<link" not in out
    assert "url(" not in out.replace("url(#vm-head)", "").replace("url(#vm-cross)", "")
    parser = _Collect()
    parser.feed(out)
    tags = [t for t, _ in parser.tags]
    assert tags.count("svg") == 1 and tags.count("style") == 1
    for _tag, attrs in parser.tags:
        for name in ("src", "href", "xlink:href"):
            assert name not in attrs


def test_html_honours_filters(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--diagram", "html", "--from-step", "8", "--to-step", "10")
    svg = parse_html(out).find(".//svg")
    ids = [a.get("data-msg-id") for a in svg.iter("g") if "arrow" in classes(a)]
    assert ids == ["5", "6", "7", "8", "9"]  # in flight during steps 8..10
    assert not [el for el in svg.iter() if "note" in classes(el)]
    assert "steps 8..10" in out


def test_html_pending_message_and_escaping(inspect, tmp_path, logs):
    b = logs.LogBuilder(scenario="<b>&amp</b>")
    b.step()
    b.send("cpu0", "mmap_sem", "down_read")
    b.send("cpu1", "cpu1", "self")
    b.step()
    b.recv(2)
    b.add("sim", "invariant.violated", invariant="deadlock", detail='"quoted" <and> & more')
    b.end("deadlock", {}, ["deadlock"])
    out = inspect.ok(b.write(tmp_path / "p.jsonl"), "--diagram", "html")
    svg = parse_html(out).find(".//svg")
    arrows = [a for a in svg.iter("g") if "arrow" in classes(a)]
    assert [sorted(classes(a)) for a in arrows] == [["arrow", "pending"], ["arrow"]]
    assert arrows[1].find("path") is not None  # a message to itself loops
    (note,) = [el for el in svg.iter() if "note" in classes(el)]
    assert '"quoted" <and> & more' in "".join(note.itertext())
    assert "<b>&amp;amp</b>" not in out and "&lt;b&gt;&amp;amp&lt;/b&gt;" in out


def test_html_with_nothing_to_draw(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--diagram", "html", "--event", "tlb.*")
    svg = parse_html(out).find(".//svg")
    assert svg is not None and not [el for el in svg.iter() if "arrow" in classes(el)]


# --- chromium --------------------------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium_argv(binary: str, profile: Path) -> list[str]:
    return [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
    ]


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into (width, height, raw scanlines without filters
    undone) — enough to tell a blank image from a drawn one."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        ctype = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if ctype == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif ctype == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = len(raw) // height
    return width, height, [raw[i * stride:(i + 1) * stride] for i in range(height)]


def test_chromium_renders_the_html(inspect, munmap_log, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium binary (chromium, chromium-browser) on PATH")
    page = tmp_path / "diagram.html"
    page.write_text(inspect.ok(munmap_log, "--diagram", "html"))

    dom = subprocess.run(
        [*_chromium_argv(binary, tmp_path / "profile-dom"), "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    parser = _Collect()
    parser.feed(dom)
    found = [set((attrs.get("class") or "").split()) for _tag, attrs in parser.tags]
    assert sum("arrow" in c for c in found) == 11
    assert sum("note" in c for c in found) == 1
    assert sum("participant" in c for c in found) == 6

    shot = tmp_path / "shot.png"
    subprocess.run(
        [*_chromium_argv(binary, tmp_path / "profile-shot"), f"--screenshot={shot}",
         "--window-size=1200,900", "--hide-scrollbars", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    data = shot.read_bytes()
    width, height, rows = _png_pixels(data)
    assert (width, height) == (1200, 900)
    # Not blank: scanlines differ (a blank page compresses to identical rows).
    assert len(set(rows)) > 50
