"""Every view on logs the simulator really writes (skipped while it cannot run).

The other tests build logs by hand from docs/log-schema.md; these check that what
`vmactors run --log` produces reads the same way.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "mapfixed-two-readers.toml"


@pytest.fixture(params=[("mmap_sem", 0), ("wilcox", 1), ("wilcox", 3), ("glisse", 2), ("pervma", 5)],
                ids=lambda p: f"{p[0]}-seed{p[1]}")
def real_log(request, tmp_path, capsys) -> Path:
    cli = pytest.importorskip("vmactors.cli")
    if not SCENARIO.exists():
        pytest.skip(f"{SCENARIO} not there")
    policy, seed = request.param
    path = tmp_path / f"{policy}-{seed}.jsonl"
    try:
        status = cli.main(["run", str(SCENARIO), "--policy", policy, "--seed", str(seed), "--log", str(path)])
    except SystemExit as exc:  # an unknown policy, say
        pytest.skip(f"vmactors run exited {exc.code}")
    capsys.readouterr()
    if status not in (0, 1) or not path.exists():
        pytest.skip(f"vmactors run gave {status}")
    return path


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_view_reads_a_real_log(inspect, real_log):
    evs = events(real_log)
    assert inspect.ok(real_log) == real_log.read_text()
    for cpu in (0, 1, 2):
        want = "".join(line + "\n" for line in real_log.read_text().splitlines()
                       if json.loads(line).get("cpu") == cpu)
        assert inspect.ok(real_log, "--cpu", cpu) == want
    addr = next(e["addr"] for e in evs if e["event"] == "mem.load")
    history = inspect.ok(real_log, "--history", hex(addr))
    assert history.startswith(f"history of page {hex(addr - addr % 4096)}\n")
    assert "load" in history
    timeline = inspect.ok(real_log, "--timeline")
    assert timeline.splitlines()[0].split()[:2] == ["step", "cpu0"]
    table = inspect.ok(real_log, "--table")
    assert len(table.splitlines()) == len(evs) + 2
    sends = sum(e["event"] == "msg.send" for e in evs)
    mermaid = inspect.ok(real_log, "--diagram", "mermaid")
    assert sum(("->>" in line or "-x" in line) for line in mermaid.splitlines()) == sends
    html = inspect.ok(real_log, "--diagram", "html")
    root = ET.fromstring(html.removeprefix("<!DOCTYPE html>\n"))
    arrows = [g for g in root.iter("g") if "arrow" in (g.get("class") or "").split()]
    notes = [g for g in root.iter("g") if (g.get("class") or "") == "note"]
    assert len(arrows) == sends
    assert len(notes) == sum(e["event"] == "invariant.violated" for e in evs)
    assert "http" not in html
    chart = inspect.ok(real_log, "--diagram", "ascii")
    assert chart.isascii() and chart.startswith("CPU ")


def test_addresses_may_be_map_labels(inspect, real_log):
    """`--addr A`, `--addr A+8` and `--history A` mean the address of map A, as the
    scenario names it; a label the run does not have is one line naming its maps."""
    evs = events(real_log)
    a = next(e["addr"] for e in evs if e["event"] == "tree.store" and e.get("vma") == "A")
    assert inspect.ok(real_log, "--addr", "A") == inspect.ok(real_log, "--addr", hex(a))
    assert inspect.ok(real_log, "--addr", "A+0x8", "--table") == inspect.ok(real_log, "--addr", hex(a + 8), "--table")
    assert inspect.ok(real_log, "--history", "A") == inspect.ok(real_log, "--history", hex(a))
    status, out, err = inspect(real_log, "--addr", "AA")
    assert (status, out) == (2, "")
    assert err == ("--addr: 'AA' is neither an address (decimal or 0x hex) nor a map label of this run; "
                   "did you mean 'A'? (its maps: A, F)\n")


def test_the_race_chart_names_a_downgrade_and_an_mremap(inspect, tmp_path, capsys):
    """munmap's downgrade_write is one call (not the rwsem's release and grant drawn as
    up_write and down_read); `mremap A to B` is mremap(A, B), its PTE moves are
    move_ptes (not a zap and a new PTE)."""
    cli = pytest.importorskip("vmactors.cli")
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "s"\n[[map]]\nname = "A"\nprefault = []\n[[map]]\nname = "B"\n'
                        '[[thread]]\nops = ["mremap A to B", "munmap B"]\n')
    log = tmp_path / "s.jsonl"
    assert cli.main(["run", str(scenario), "--policy", "mmap_sem", "--log", str(log)]) == 0
    capsys.readouterr()
    chart = [line.strip() for line in inspect.ok(log, "--diagram", "ascii").splitlines()]
    assert chart[2:4] == ["mremap(A, B)", "down_write(mmap_sem)"]
    mremap = chart[:chart.index("munmap(B)")]
    assert "move_ptes(frame 0 to 0x7effffffe000)" in mremap and "zap_pte_range()" not in mremap
    munmap = chart[chart.index("munmap(B)"):]
    assert "downgrade_write(mmap_sem)" in munmap and "up_read(mmap_sem)" in munmap
    assert "up_write(mmap_sem)" not in munmap and "down_read(mmap_sem)" not in munmap
