"""`pervma` (Linux 6.15+), litmus style: lock_vma_under_rcu and its rechecks, the
fallback to lock_mm_and_find_vma, vma_start_write waiting for readers, a first
anonymous write's anon_vma, and VMA objects reused at once."""

from __future__ import annotations

from pathlib import Path

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.scenario import load_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"

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


def test_a_fault_falls_back_to_mmap_lock_when_the_vma_is_write_locked_and_looks_again_when_detached(
        scenario, walk) -> None:
    s = scenario(FAULT_VS.format(op="munmap A"))
    ends = walk(s, "pervma", fallbacks, ())
    reasons = {r for t in ends for r in t.memo}
    assert "vma A is write-locked: lock_mm_and_find_vma" in reasons, reasons
    # vm_refcnt zero (the object freed; a detached VMA is still write-locked, which is
    # checked first): -EAGAIN, the lookup runs again -- and now finds nothing.
    again = "vma A is freed: look it up again"
    assert again in reasons, reasons
    assert all("no vma under RCU: lock_mm_and_find_vma" in t.memo for t in ends if again in t.memo)
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


def test_map_fixed_logs_the_detached_vma_with_its_range(scenario, run_events) -> None:
    """`vma.detach` names the range the detached VMA covers, so `inspect --addr` finds it."""
    s = scenario(FAULT_VS.format(op="mmap A fixed fill=6"))
    _, lines = run_events(s, "pervma", [])
    (detach,) = [ev for ev in lines if ev["event"] == "vma.detach"]
    (a,) = [ev for ev in lines if ev["event"] == "tree.store" and ev["step"] == 0 and ev.get("vma") == "A"]
    assert (detach["vma"], detach["addr"], detach["pages"]) == ("A", a["addr"], a["pages"])


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
    # A is fresh: the store is a first anonymous write, which needs mmap_lock (trylock).
    assert {r for t in ends for r in t.memo} == {
        "vma A is write-locked: lock_mm_and_find_vma",
        "vma A has no anon_vma and mmap_lock is taken: lock_mm_and_find_vma"}
    assert {tuple(sorted(t.regs.items())) for t in ends} == {(("0:r0", 2),), (("0:fault", "segv"), ("0:r0", 1))}
    assert not any(t.violations for t in ends)


# --- a first anonymous write needs mmap_lock (__vmf_anon_prepare) ---------------------------------------


def inside_map_fixed(memo, lines):
    """Over `mapfixed-other-range-not-blocked`: while cpu0's MAP_FIXED holds mmap_lock
    for write, which of the other faults end (B's read on cpu1; C's first and second
    write on cpu2), and whether cpu2's trylock succeeded before the MAP_FIXED took the
    lock. memo: (held, trylock ok before, ended inside: frozenset of names)."""
    held, early_trylock, inside, writes_done = memo
    for ev in lines:
        name = ev["event"]
        if name == "lock.acquire" and ev.get("cpu") == 0 and ev["lock"] == "mmap_sem" and ev["mode"] == "write":
            held = True
        elif name == "lock.release" and ev.get("cpu") == 0 and ev["lock"] == "mmap_sem":
            held = False
        elif name == "msg.recv" and ev["kind"] == "trylock_done" and ev["dst"] == "cpu2" and ev["arg"] is True:
            early_trylock = early_trylock or not held
        elif name == "fault.end" and held:
            what = "B" if ev["cpu"] == 1 else ("C first write" if writes_done == 0 else "C second write")
            inside = inside | {what}
        if name == "fault.end" and ev["cpu"] == 2:
            writes_done += 1
    return held, early_trylock, inside, writes_done


def test_a_first_anonymous_write_waits_for_a_concurrent_map_fixed(walk) -> None:
    """The file read and the write to a VMA that has an anon_vma complete inside the
    MAP_FIXED; the first write to a fresh anonymous VMA only when its trylock of
    mmap_lock came before the MAP_FIXED's lock (Linux 6.18: 64 in 26,205)."""
    s = load_scenario(LIBRARY / "mapfixed-other-range-not-blocked.toml")
    ends = walk(s, "pervma", inside_map_fixed, (False, False, frozenset(), 0))
    inside = {name for t in ends for name in t.memo[2]}
    assert {"B", "C second write"} <= inside
    # A first write ends inside the MAP_FIXED only if its trylock won the race.
    assert all(t.memo[1] for t in ends if "C first write" in t.memo[2])
    assert any("C first write" in t.memo[2] for t in ends)  # it can win that race
    assert not any(t.violations for t in ends)


def test_a_first_anonymous_write_that_loses_the_trylock_waits_for_the_writer(walk) -> None:
    s = load_scenario(LIBRARY / "mapfixed-other-range-not-blocked.toml")
    ends = walk(s, "pervma", fallbacks_of(2), ())
    assert any(r == "vma C has no anon_vma and mmap_lock is taken: lock_mm_and_find_vma" for t in ends for r in t.memo)
    # Under wilcox nothing of the kind exists: no fault there ever waits for anything.
    assert not any(t.memo for t in walk(s, "wilcox", fallbacks_of(2), ()))


def fallbacks_of(cpu):
    def watch(memo, lines):
        for ev in lines:
            if ev["event"] == "fault.retry" and ev["cpu"] == cpu:
                memo = tuple(sorted(set(memo) | {ev["reason"]}))
        return memo

    return watch


# --- VMA objects are reused at once (SLAB_TYPESAFE_BY_RCU) ---------------------------------------------


def test_a_reused_vma_object_is_caught_by_the_recheck(walk) -> None:
    """vma-object-reuse: cpu0's fault found A; A is unmapped and its object reused for
    B elsewhere before cpu0 locks it. The recheck sees that B does not map the address
    and falls back; without it, B's page is mapped at A's address."""
    s = load_scenario(LIBRARY / "vma-object-reuse.toml")
    ends = walk(s, "pervma", fallbacks_of(0), ())
    assert any(any("vma object A now holds vma 1.1" in r for r in t.memo) for t in ends)
    assert {t.regs["0:r0"] for t in ends} == {1, "segv"}
    assert not any(t.violations for t in ends)
    bad = walk(s, "pervma-no-vma-recheck", fallbacks_of(0), ())
    assert any(t.regs["0:r0"] == 7 and "wrong-vma" in t.violations for t in bad)


def test_reading_a_freed_vma_object_is_not_a_use_after_free_under_pervma(walk) -> None:
    """The object a fault found may be freed under it: it is still a VMA object
    (typesafe), so reading it is legal and vma-uaf never fires; wilcox-no-grace, whose
    freed VMAs are gone, does trip it on the same kind of race."""
    s = load_scenario(LIBRARY / "vma-object-reuse.toml")
    assert not any("vma-uaf" in t.violations for t in walk(s, "pervma-no-vma-recheck"))
