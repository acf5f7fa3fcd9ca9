"""`glisse` (docs/design.md#policies), litmus style: the fault fence of MAP_FIXED and of a range
reused before its old flush is done."""

from __future__ import annotations

from vmactors.mm.layout import MMAP_BASE, PAGE_SIZE

A = MMAP_BASE - PAGE_SIZE

FAULT_VS_FIXED = """
    name = "fault-vs-fixed"
    [[map]]
    name = "A"
    fill = 1
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["mmap A fixed fill=2"]
"""


def fence_watch(memo, lines):
    """(cpu0 waited on a fence, cpu0 got fence_open, cpu0 installed a PTE through the
    new VMA 1.0 before the MAP_FIXED returned, the MAP_FIXED returned)."""
    waited, woken, early, done = memo
    for ev in lines:
        name = ev["event"]
        if name == "lock.wait" and ev.get("cpu") == 0 and ev["lock"] == "fence":
            waited = True
            assert ev["vma"] == "1.0"
        elif name == "msg.recv" and ev["kind"] == "fence_open" and ev["dst"] == "cpu0":
            assert waited
            woken = True
        elif name == "pte.install" and ev["cpu"] == 0 and ev["vma"] == "1.0" and not done:
            early = True
        elif name == "syscall.end" and ev["cpu"] == 1:
            done = True
    return waited, woken, early, done


def test_a_fault_that_finds_the_new_vma_of_map_fixed_waits_for_fence_open(scenario, walk) -> None:
    s = scenario(FAULT_VS_FIXED)
    ends = walk(s, "glisse", fence_watch, (False, False, False, False))
    assert any(t.memo[0] and t.memo[1] for t in ends)
    assert not any(t.memo[2] for t in ends)
    # Every wait ends with a wake-up, and the woken fault reads the new page.
    assert all(t.memo[1] for t in ends if t.memo[0])
    assert {t.regs["0:r0"] for t in ends if t.memo[0]} == {2}
    assert {t.regs["0:r0"] for t in ends} == {1, 2}
    assert not any(t.violations for t in ends)


def test_wilcox_does_not_fence_map_fixed(scenario, walk) -> None:
    s = scenario(FAULT_VS_FIXED)
    ends = walk(s, "wilcox", fence_watch, (False, False, False, False))
    assert not any(t.memo[0] for t in ends)
    assert any(t.memo[2] for t in ends)


REUSE = """
    name = "reuse-before-flush"
    [[map]]
    name = "A"
    fill = 1
    prefault = [0, 1]
    [[thread]]
    ops = ["munmap A"]
    [[thread]]
    ops = ["B = mmap fill=2", "r0 = load B"]
"""


def reuse_watch(memo, lines):
    """(B reused A's range, cpu1 waited on the old range's fence, cpu1 installed a
    PTE at A before cpu0's flush was done, cpu0's flush is done)."""
    reused, waited, early, flushed = memo
    for ev in lines:
        name = ev["event"]
        if name == "tree.store" and ev["addr"] == A and ev["entry"] == "vma" and not flushed:
            reused = True
        elif name == "lock.wait" and ev.get("cpu") == 1 and ev["lock"] == "fence":
            waited = True
        elif name == "pte.install" and ev["cpu"] == 1 and ev["addr"] == A and not flushed:
            early = True
        elif name == "msg.recv" and ev["kind"] == "flush_done" and ev["dst"] == "cpu0":
            flushed = True
    return reused, waited, early, flushed


def test_a_fault_in_a_range_reused_before_the_old_flush_waits_for_it(scenario, walk) -> None:
    s = scenario(REUSE)
    ends = walk(s, "glisse", reuse_watch, (False, False, False, False))
    # The new mmap may take the range at once (munmap stored NULL) ...
    assert any(t.memo[0] for t in ends)
    # ... but a fault there waits for the old flush.
    assert any(t.memo[1] for t in ends)
    assert not any(t.memo[2] for t in ends)
    assert not any(t.violations for t in ends)


def test_without_zero_or_fence_the_fault_does_not_wait(scenario, walk) -> None:
    s = scenario(REUSE)
    ends = walk(s, "wilcox-no-zero", reuse_watch, (False, False, False, False))
    assert any(t.memo[2] for t in ends)


def test_a_fault_finding_null_during_munmap_segvs_at_once(scenario, walk) -> None:
    s = scenario("""
        name = "fault-vs-munmap"
        [[map]]
        name = "A"
        fill = 5
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["munmap A"]
    """)

    def segv_during_munmap(memo, lines):
        for ev in lines:
            if ev["event"] == "fault.segv" and ev["cpu"] == 0 and memo == "munmap":
                return "segv-during"
            if ev["event"] == "tree.store" and ev["entry"] == "null":
                memo = "munmap"
            if ev["event"] == "syscall.end":
                memo = "done" if memo != "segv-during" else memo
        return memo

    ends = walk(s, "glisse", segv_during_munmap, "before")
    assert any(t.memo == "segv-during" for t in ends)
    assert {t.regs["0:r0"] for t in ends} == {5, "segv"}
