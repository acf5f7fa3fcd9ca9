"""`pervma` (DESIGN §4), litmus style: lock_vma_under_rcu, the fallback to
lock_mm_and_find_vma, and vma_start_write waiting for readers."""

from __future__ import annotations

from vmactors.explore.exhaustive import explore_exhaustive

FAULT_VS = """
    name = "fault-vs-{op}"
    [[map]]
    name = "A"
    fill = 5
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["{op}"]
"""


def fallbacks(memo, lines):
    """The reasons of cpu0's fallbacks to mmap_lock, as a sorted tuple."""
    for ev in lines:
        if ev["event"] == "fault.retry" and ev["cpu"] == 0:
            memo = tuple(sorted(set(memo) | {ev["reason"]}))
    return memo


def test_a_fault_falls_back_to_mmap_lock_when_the_vma_is_write_locked_or_detached(scenario, walk) -> None:
    s = scenario(FAULT_VS.format(op="munmap A"))
    ends = walk(s, "pervma", fallbacks, ())
    reasons = {r for t in ends for r in t.memo}
    assert all("lock_mm_and_find_vma" in r for r in reasons)
    assert any("A is write-locked" in r for r in reasons), reasons
    assert any("A is detached" in r for r in reasons), reasons
    # A fault that fell back after the VMA was taken away finds nothing there.
    assert all(t.regs["0:r0"] == "segv" for t in ends if any("A is" in r for r in t.memo))
    assert not any(t.violations for t in ends)


def test_map_fixed_sends_faults_to_mmap_lock_where_they_wait(scenario, walk) -> None:
    s = scenario(FAULT_VS.format(op="mmap A fixed fill=6"))

    def watch(memo, lines):
        fell_back, waited = memo
        for ev in lines:
            if ev["event"] == "fault.retry" and ev["cpu"] == 0:
                fell_back = True
            elif ev["event"] == "lock.wait" and ev.get("cpu") == 0 and ev["lock"] == "mmap_sem":
                waited = True
        return fell_back, waited

    ends = walk(s, "pervma", watch, (False, False))
    assert any(t.memo == (True, True) for t in ends)
    # Whoever waited for the writer sees the new mapping.
    assert {t.regs["0:r0"] for t in ends if t.memo[1]} == {6}
    assert {t.regs["0:r0"] for t in ends} == {5, 6}
    assert not any(t.violations for t in ends)


def drain_watch(memo, lines):
    """(cpu1 waits for A's readers, cpu1 stored into A's range while cpu0 still held
    A's read lock, cpu0 holds A's read lock)."""
    waited, early, reading = memo
    for ev in lines:
        name = ev["event"]
        if name == "lock.acquire" and ev.get("cpu") == 0 and ev["lock"] == "vma":
            reading = True
        elif name == "lock.release" and ev.get("cpu") == 0 and ev["lock"] == "vma":
            reading = False
        elif name == "lock.wait" and ev.get("cpu") == 1 and ev["lock"] == "vma":
            assert ev["vma"] == "A" and ev["mode"] == "write"
            waited = True
        elif name == "tree.store" and reading:
            early = True
    return waited, early, reading


def test_vma_start_write_waits_for_the_readers(scenario, walk) -> None:
    s = scenario(FAULT_VS.format(op="munmap A"))
    ends = walk(s, "pervma", drain_watch, (False, False, False))
    assert any(t.memo[0] for t in ends)
    assert not any(t.memo[1] for t in ends)


def test_the_drain_in_the_log(scenario, walk, run_events) -> None:
    """lock.wait (vma, write) by the writer, then the reader's lock.release of the
    VMA, then the `drained` wake-up, then the writer's tree update."""
    s = scenario(FAULT_VS.format(op="munmap A"))
    witness = next(t for t in walk(s, "pervma", drain_watch, (False, False, False)) if t.memo[0])
    _, lines = run_events(s, "pervma", witness.choices)

    def index(pred):
        return next(i for i, ev in enumerate(lines) if pred(ev))

    wait = index(lambda ev: ev["event"] == "lock.wait" and ev.get("lock") == "vma")
    release = index(lambda ev: ev["event"] == "lock.release" and ev.get("lock") == "vma" and ev["cpu"] == 0)
    drained = index(lambda ev: ev["event"] == "msg.recv" and ev["kind"] == "drained")
    store = index(lambda ev: ev["event"] == "tree.store" and ev["actor"] == "tree")
    assert wait < release < drained < store


def test_faults_and_munmap_break_no_invariant(scenario) -> None:
    s = scenario(FAULT_VS.format(op="munmap A"))
    e, _ = explore_exhaustive(s, "pervma")
    assert e.complete and e.findings == ()
    assert {dict(st.regs)["0:r0"] for st in e.states} == {5, "segv"}


def test_mprotect_write_locks_the_vma_first(scenario, walk) -> None:
    s = scenario("""
        name = "store-vs-mprotect"
        [[map]]
        name = "A"
        fill = 1
        [[thread]]
        ops = ["store A 2", "r0 = load A"]
        [[thread]]
        ops = ["mprotect A prot=r"]
    """)
    ends = walk(s, "pervma", fallbacks, ())
    assert {r for t in ends for r in t.memo} == {"vma A is write-locked: lock_mm_and_find_vma"}
    assert {tuple(sorted(t.regs.items())) for t in ends} == {(("0:r0", 2),), (("0:fault", "segv"), ("0:r0", 1))}
    assert not any(t.violations for t in ends)
