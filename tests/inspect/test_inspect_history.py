"""`--history ADDR`: one page's story, enough to see why a CPU read the old value."""

from __future__ import annotations

import pytest

B = 0x7EFFFFFFF000  # the MAP_FIXED story's page (conftest.B)

MAPFIXED_HISTORY = """\
history of page 0x7efffffff000
     1  cpu2      mmap-fixed begins: mmap A fixed kind=file file=f2 fill=2
     2  tree      tree stores vma 2.0
     3  cpu2      zaps PTE -> frame 3 (vma A)
     3  cpu2      TLB flush (local)
     4  cpu0      page fault on load at 0x7efffffff000
     5  cpu0      installs PTE -> frame 5 (vma 2.0, rw)
     5  cpu0      fault done (vma 2.0)
     6  cpu0      TLB fill -> frame 5 (vma 2.0, rw)
     6  cpu0      load 0x7efffffff000 -> r0 = 2 (frame 5, vma 2.0)
     7  cpu1      load 0x7efffffff000 -> r1 = 1 (frame 3, vma A)  << stale TLB: the PTE maps frame 5 (since step 5)
     7  sim       !! coherence: cpu1's TLB maps frame 3, the page table frame 5
     8  shootdown sends IPI to cpu0 (flush)
     8  shootdown sends IPI to cpu1 (flush)
     9  cpu1      TLB flush (ipi): drops frame 3
     9  cpu1      acks the IPI
    10  cpu0      TLB flush (ipi): drops frame 5
    10  cpu0      acks the IPI
    13  cpu2      mmap-fixed returns 0x7efffffff000
    15  rcu       frees vma A
state at the end of the log: tree: vma 2.0; PTE -> frame 5 (vma 2.0)
"""


def test_why_did_cpu1_read_the_old_value(inspect, mapfixed_log):
    assert inspect.ok(mapfixed_log, "--history", hex(B)) == MAPFIXED_HISTORY


def test_any_address_in_the_page_gives_its_history(inspect, mapfixed_log):
    assert inspect.ok(mapfixed_log, "--history", str(B + 4095)) == MAPFIXED_HISTORY
    assert inspect.ok(mapfixed_log, "--history", hex(B + 8)) == MAPFIXED_HISTORY


def test_lines_are_in_step_order_and_prefixed_by_step(inspect, mapfixed_log):
    lines = inspect.ok(mapfixed_log, "--history", hex(B)).splitlines()[1:-1]
    steps = [int(line.split()[0]) for line in lines]
    assert steps == sorted(steps)


def test_only_the_stale_load_is_marked(inspect, mapfixed_log):
    out = inspect.ok(mapfixed_log, "--history", hex(B))
    stale = [line for line in out.splitlines() if "stale TLB" in line]
    assert len(stale) == 1 and "cpu1" in stale[0] and "r1 = 1" in stale[0]


def test_filters_choose_lines_but_state_comes_from_every_event(inspect, mapfixed_log):
    # Only cpu1's lines, yet its load is judged against the PTE cpu0 installed.
    out = inspect.ok(mapfixed_log, "--history", hex(B), "--cpu", "1")
    lines = out.splitlines()
    assert lines[1:-1] == [
        "     7  cpu1      load 0x7efffffff000 -> r1 = 1 (frame 3, vma A)  << stale TLB: the PTE maps frame 5 (since step 5)",
        "     7  sim       !! coherence: cpu1's TLB maps frame 3, the page table frame 5",
        "     8  shootdown sends IPI to cpu1 (flush)",
        "     9  cpu1      TLB flush (ipi): drops frame 3",
        "     9  cpu1      acks the IPI",
    ]


def test_state_at_a_step_shows_the_stale_entry(inspect, mapfixed_log):
    out = inspect.ok(mapfixed_log, "--history", hex(B), "--to-step", "7")
    assert out.splitlines()[-1] == (
        "state at step 7: tree: vma 2.0; PTE -> frame 5 (vma 2.0); "
        "cpu0 TLB -> frame 5; cpu1 TLB -> frame 3 (stale)"
    )
    out = inspect.ok(mapfixed_log, "--history", hex(B), "--from-step", "7", "--event", "mem.*")
    assert len(out.splitlines()) == 3  # header, the load, the state


def test_zapped_page_and_two_page_ranges(inspect, munmap_log, logs):
    # Second page of the munmap story: the 2-page tree store, flushes and IPIs cover it.
    out = inspect.ok(munmap_log, "--history", hex(logs.A + logs.PAGE))
    assert "     4  tree      tree stores NULL" in out
    assert "zaps PTE -> frame 4 (vma A)" in out and "frame 3" not in out
    assert "<< stale TLB: the page table maps nothing here (zapped at step 6)" in out
    assert "frees frame 4 (it backed this page)" in out
    assert out.splitlines()[-1] == "state at the end of the log: tree: NULL; PTE: none"
    # The first page has its own frame and no loads.
    first = inspect.ok(munmap_log, "--history", hex(logs.A))
    assert "frame 3" in first and "frame 4" not in first and "load" not in first


def test_use_after_free_is_named(inspect, tmp_path, logs):
    b = logs.LogBuilder()
    a = logs.A
    b.step()
    b.add("cpu1", "pte.zap", cpu=1, addr=a, pages=1, frame=9, vma="A")
    b.add("cpu1", "frame.free", cpu=1, frame=9)
    b.step()
    b.add("cpu0", "mem.store", cpu=0, addr=a, pages=1, frame=9, vma="A", vaddr=a + 16, value=5)
    b.add("sim", "invariant.violated", cpu=0, addr=a, pages=1, frame=9, invariant="frame-uaf",
          detail="cpu0 wrote freed frame 9")
    b.step()
    b.add("cpu1", "frame.alloc", cpu=1, addr=a + logs.PAGE, pages=1, frame=9, vma="B")
    b.end("violation", {}, ["frame-uaf"])
    out = inspect.ok(b.write(tmp_path / "uaf.jsonl"), "--history", hex(a))
    assert "     1  cpu1      frees frame 9 (it backed this page)" in out
    assert (
        "     2  cpu0      store 0x7effffffe010 = 5 (frame 9, vma A)  << stale TLB: the page table "
        "maps nothing here (zapped at step 1); frame 9 was freed at step 1"
    ) in out
    assert "!! frame-uaf: cpu0 wrote freed frame 9" in out
    assert "frame.alloc" not in out and "allocates" not in out  # another page's


def test_untouched_page(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--history", "0x10000")
    assert out == "history of page 0x10000\n  (no event matches)\nstate at the end of the log: nothing known\n"


@pytest.mark.parametrize("bad", ["page", "-4096", "0x"])
def test_bad_history_address(inspect, munmap_log, bad):
    status, out, err = inspect(munmap_log, "--history", bad)
    assert status == 2 and out == "" and err.count("\n") == 1 and err.startswith("--history:")
