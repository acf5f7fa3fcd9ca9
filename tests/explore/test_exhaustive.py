"""Exhaustive exploration (docs/design.md#reproducible-runs): outcome sets and interleaving counts derived by
hand, completeness, and what a cut says."""

from __future__ import annotations

import pytest

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.space import EXACT

MAIN = ["mmap_sem", "wilcox", "glisse", "pervma"]

# cpu0 has A (fill 1) in its TLB and reads it twice; cpu1 unmaps A.
#
# A TLB entry leaves only when its CPU flushes, and cpu0 flushes only on munmap's
# IPI, which is sent after the tree update and the zap (in every policy). So
# while cpu0's entry is there a load reads 1; once it is gone, the load walks the
# page table (no PTE: zapped), faults, and the lookup finds no VMA (NULL, or ZERO
# under wilcox) or, under mmap_sem, waits for the writer and then finds none:
# SIGSEGV. After the first segv the second load is a segv too (nothing maps A
# again). So (r0, r1) is (1, 1), (1, segv) or (segv, segv), never (segv, 1).
READ_TWICE = """
    name = "read-twice-vs-munmap"
    exists = "0:r0 = 1 and 0:r1 = segv"
    [[map]]
    name = "A"
    fill = 1
    prefault = [0]
    [[thread]]
    ops = ["r0 = load A", "r1 = load A"]
    [[thread]]
    ops = ["munmap A"]
"""


@pytest.mark.parametrize("policy", MAIN)
def test_outcomes_derived_by_hand(scenario, policy) -> None:
    e, _ = explore_exhaustive(scenario(READ_TWICE), policy)
    assert e.complete and e.cut is None
    got = {(dict(s.regs)["0:r0"], dict(s.regs)["0:r1"]) for s in e.states}
    assert got == {(1, 1), (1, "segv"), ("segv", "segv")}
    assert all(s.end == "ok" for s in e.states)
    assert e.exists == "sometimes"
    assert e.findings == ()
    assert sum(s.count for s in e.states) == e.runs > 3


# Four one-step ops (TLB hits): thread 0 loads twice (a1, a2), thread 1 loads once
# (b), thread 2 stores 3 (s); A's fill is 4. Interleavings: 4!/2! = 12 (a1 before
# a2). A load reads 3 iff s comes before it. Placing s:
#   first  -> (3,3,3), 3 ways (b anywhere among a1 < a2)
#   second -> a1 first: (4,3,3), 2 ways; b first: (3,3,4), 1 way
#   third  -> {a1,a2} first: (4,4,3), 1 way; {a1,b} first: (4,3,4), 2 ways
#   last   -> (4,4,4), 3 ways
COUNTS = """
    name = "counts"
    exists = "0:r0 = 4 and 0:r1 = 3"
    [[map]]
    name = "A"
    fill = 4
    prefault = [0, 1, 2]
    [[thread]]
    ops = ["r0 = load A", "r1 = load A"]
    [[thread]]
    ops = ["r2 = load A"]
    [[thread]]
    ops = ["store A 3"]
"""


@pytest.mark.parametrize("policy", MAIN)
def test_interleaving_counts_derived_by_hand(scenario, policy) -> None:
    e, _ = explore_exhaustive(scenario(COUNTS), policy, options=EXACT)
    got = {(r["0:r0"], r["0:r1"], r["1:r2"]): s.count for s in e.states for r in [dict(s.regs)]}
    assert got == {(3, 3, 3): 3, (4, 3, 3): 2, (3, 3, 4): 1, (4, 4, 3): 1, (4, 3, 4): 2, (4, 4, 4): 3}
    assert e.runs == 12
    assert e.exists == "sometimes"
    assert e.counts == "exact"


def test_a_single_fault_under_mmap_sem_has_two_interleavings(scenario) -> None:
    """One load of an untouched page: fault, down_read, grant, lookup, alloc, install
    (which sends up_read), then two steps in either order: the restarted load on cpu0
    and the rwsem taking the up_read. Under the RCU policies nothing else runs: 1."""
    s = scenario("""
        name = "one-fault"
        [[map]]
        name = "A"
        fill = 4
        [[thread]]
        ops = ["r0 = load A"]
    """)
    assert explore_exhaustive(s, "mmap_sem", options=EXACT)[0].runs == 2
    assert explore_exhaustive(s, "mmap_sem")[0].runs == 1  # reduced: the two commute
    for policy in ("wilcox", "glisse", "pervma"):
        e, _ = explore_exhaustive(s, policy, options=EXACT)
        assert e.runs == 1 and [dict(st.regs) for st in e.states] == [{"0:r0": 4}]


@pytest.mark.parametrize("policy", MAIN + ["mmap_sem-irqs-off-wait", "wilcox-no-recheck"])
def test_counts_sum_to_runs(scenario, policy) -> None:
    s = scenario("""
        name = "sum"
        [[map]]
        name = "A"
        fill = 1
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["mmap A fixed fill=2"]
    """)
    e, _ = explore_exhaustive(s, policy)
    assert e.complete
    assert sum(st.count for st in e.states) == e.runs
    assert all(st.count > 0 for st in e.states)
    for f in e.findings:
        assert 0 < f.runs <= e.runs


def test_a_deadlock_is_a_final_state_and_counts(scenario) -> None:
    s = scenario("""
        name = "blocked"
        [[map]]
        name = "A"
        [[map]]
        name = "B"
        prefault = [0, 1]
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["mprotect B prot=none"]
    """)
    e, choices = explore_exhaustive(s, "mmap_sem-irqs-off-wait")
    ends = {st.end for st in e.states}
    assert ends == {"ok", "deadlock"}
    dead = sum(st.count for st in e.states if st.end == "deadlock")
    finding = {f.invariant: f for f in e.findings}["deadlock"]
    assert finding.runs == dead
    # A deadlocked run's registers are as they are: cpu0 never got its value.
    assert all("0:r0" not in dict(st.regs) for st in e.states if st.end == "deadlock")
    assert sum(st.count for st in e.states) == e.runs


def test_a_tiny_max_states_cuts_the_search_and_says_so(scenario) -> None:
    e, _ = explore_exhaustive(scenario(COUNTS), "mmap_sem", max_states=5)
    assert e.complete is False
    assert e.cut is not None and e.cut.reason == "max-states" and e.cut.text == "--max-states 5 reached"
    full, _ = explore_exhaustive(scenario(COUNTS), "mmap_sem")
    assert full.complete and e.distinct_states < full.distinct_states


def test_equal_situations_merge(scenario) -> None:
    """Interleavings explode, distinct states do not: 12 interleavings of the counts
    scenario go through far fewer than 12 x 5 states."""
    e, _ = explore_exhaustive(scenario(COUNTS), "wilcox")
    assert e.distinct_states < 30


@pytest.mark.parametrize("policy", MAIN)
def test_two_maps_of_one_file_share_its_pages(scenario, policy) -> None:
    """Thread 0 stores 5 through A, thread 1 loads through B, both map file f (fill 1):
    the page-cache frame is shared, so r0 is 1 (load first) or 5 (store first)."""
    s = scenario("""
        name = "shared-file"
        [[map]]
        name = "A"
        kind = "file"
        file = "f"
        fill = 1
        [[map]]
        name = "B"
        kind = "file"
        file = "f"
        [[thread]]
        ops = ["store A 5"]
        [[thread]]
        ops = ["r0 = load B"]
    """)
    e, _ = explore_exhaustive(s, policy)
    assert {dict(st.regs)["1:r0"] for st in e.states} == {1, 5}
    assert e.findings == ()


@pytest.mark.parametrize("policy", MAIN)
def test_an_mmap_hint_is_used_when_free(scenario, policy) -> None:
    s = scenario("""
        name = "hint"
        [[map]]
        name = "A"
        at = 0x7e0000000000
        [[thread]]
        ops = ["B = mmap at=0x7d0000000000", "C = mmap at=0x7e0000000000", "r0 = load C"]
    """)
    e, _ = explore_exhaustive(s, policy)
    [state] = e.states
    regs = dict(state.regs)
    assert regs["0:B"] == 0x7D0000000000
    assert regs["0:C"] == 0x7F0000000000 - 4096  # taken: top-down instead
    assert regs["0:r0"] == 0


@pytest.mark.parametrize("policy", MAIN)
def test_an_mmap_hint_outside_the_user_range_is_ignored(scenario, policy) -> None:
    """As in Linux (arch_get_unmapped_area_topdown): a hint below mmap_min_addr or
    reaching past the mmap base is not an error; the allocator places the mapping."""
    s = scenario("""
        name = "hint-out-of-range"
        [[map]]
        name = "A"
        [[thread]]
        ops = ["B = mmap at=0x8000", "C = mmap at=0x7f0000000000", "D = mmap 2 at=0x7effffffe000"]
    """)
    e, _ = explore_exhaustive(s, policy)
    [state] = e.states
    regs = dict(state.regs)
    assert (regs["0:B"], regs["0:C"], regs["0:D"]) == (0x7F0000000000 - 2 * 4096, 0x7F0000000000 - 3 * 4096,
                                                      0x7F0000000000 - 5 * 4096)


def count_paths(scen, policy: str, invariant: str) -> tuple[int, int]:
    """Independent count, by memoised recursion over (state, violated yet): every
    interleaving, and those that pass through a step violating `invariant`."""
    from vmactors.explore.canon import state_key
    from vmactors.invariants import check_step
    from vmactors.system.machine import Machine

    machine = Machine(scen, policy)
    memo: dict = {}

    def paths(system, violated: bool) -> tuple[int, int]:
        key = (state_key(machine, system), violated)
        if key in memo:
            return memo[key]
        steps = machine.enabled(system)
        if not steps:
            done = (1, 1 if violated or (invariant == "deadlock" and not machine.finished(system)) else 0)
        else:
            total = bad = 0
            for st in steps:
                r = machine.apply(system, st)
                v = violated or any(x.invariant == invariant for x in check_step(system, r))
                t, b = paths(r.system, v)
                total += t
                bad += b
            done = (total, bad)
        memo[key] = done
        return done

    return paths(machine.initial, False)


@pytest.mark.parametrize("policy, invariant, text", [
    ("mmap_sem-free-before-flush", "frame-uaf", READ_TWICE),
    ("wilcox-early-return", "munmap-incomplete", READ_TWICE),
    ("wilcox-no-recheck", "orphan-pte", """
        name = "fault-vs-munmap"
        [[map]]
        name = "A"
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["munmap A"]
    """),
    # munmap downgrades mmap_sem before its flush; mprotect holds it for write across its flush
    ("mmap_sem-irqs-off-wait", "deadlock", """
        name = "fault-vs-mprotect"
        [[map]]
        name = "A"
        [[map]]
        name = "B"
        prefault = [0]
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["mprotect B prot=none"]
    """),
])
def test_violation_runs_count_the_interleavings_through_a_violation(scenario, policy, invariant, text) -> None:
    s = scenario(text)
    e, _ = explore_exhaustive(s, policy, options=EXACT)
    total, bad = count_paths(s, policy, invariant)
    assert e.runs == total
    assert {f.invariant: f.runs for f in e.findings}[invariant] == bad
    assert 0 < bad <= total
