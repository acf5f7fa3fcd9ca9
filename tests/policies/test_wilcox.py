"""`wilcox` (docs/design.md#policies), litmus style: ZERO entries, VMA references and RCU freeing,
the recheck under the page-table lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.mm.layout import MMAP_BASE, PAGE_SIZE
from vmactors.scenario import load_scenario
from vmactors.system.machine import Machine

A = MMAP_BASE - PAGE_SIZE  # the first [[map]] ends at the mmap base

MUNMAP_VS_MMAP = """
    name = "munmap-vs-mmap"
    exists = "1:B = A"
    [[map]]
    name = "A"
    prefault = [0, 1]
    [[thread]]
    ops = ["munmap A"]
    [[thread]]
    ops = ["B = mmap"]
"""


def reuse_before_flush(memo, lines):
    """(phase, reused): phase 'before' -> 'flushing' once munmap changed A's tree
    entry, -> 'after' when cpu0 hears its flush is done; `reused` when a new VMA is
    stored at A while 'flushing'."""
    phase, reused = memo
    for ev in lines:
        if ev["event"] == "tree.store" and ev["addr"] == A:
            if ev["entry"] != "vma" and phase == "before":
                phase = "flushing"
            elif ev["entry"] == "vma" and phase == "flushing":
                reused = True
        elif ev["event"] == "msg.recv" and ev["kind"] == "flush_done" and ev["dst"] == "cpu0":
            phase = "after"
    return phase, reused


def test_zero_keeps_a_concurrent_mmap_off_the_range_until_the_flush(scenario, walk) -> None:
    s = scenario(MUNMAP_VS_MMAP)
    ends = walk(s, "wilcox", reuse_before_flush, ("before", False))
    assert not any(t.memo[1] for t in ends)
    # The range is reused once the munmap is done (a freed top range is next).
    assert {t.regs["1:B"] for t in ends} == {A, A - PAGE_SIZE}
    assert not any(t.violations for t in ends)


def test_without_zero_the_range_is_reused_before_the_flush(scenario, walk) -> None:
    s = scenario(MUNMAP_VS_MMAP)
    ends = walk(s, "wilcox-no-zero", reuse_before_flush, ("before", False))
    assert any(t.memo[1] for t in ends)


def test_munmap_leaves_zero_until_the_flush_is_done(scenario, run_events) -> None:
    s = scenario(MUNMAP_VS_MMAP)
    _, lines = run_events(s, "wilcox", [])
    stores = [(ev["entry"], i) for i, ev in enumerate(lines)
              if ev["event"] == "tree.store" and ev["actor"] == "tree" and ev["addr"] == A]
    flush_done = next(i for i, ev in enumerate(lines) if ev["event"] == "msg.recv" and ev["kind"] == "flush_done")
    (z, zi), (n, ni) = stores[:2]
    assert (z, n) == ("zero", "null")
    assert zi < flush_done < ni


FAULT_VS_MUNMAP = """
    name = "fault-vs-munmap"
    [[map]]
    name = "A"
    fill = 5
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["munmap A"]
"""


def references(memo, lines):
    """Tracks A's references and its freeing: (refs, gp_since_last_put, bad, freed_by_fault).
    `gp_since_last_put` becomes True when a grace period starts after the reference
    count reached 0; `bad` is set if A is freed while referenced or before such a
    grace period has ended."""
    refs, gp, bad, last_put = memo
    for ev in lines:
        name = ev["event"]
        if ev.get("vma") != "A" and not name.startswith("rcu.gp"):
            continue
        if name == "lock.acquire" and ev["lock"] == "refcount":
            refs += 1
        elif name == "lock.release" and ev["lock"] == "refcount":
            refs -= 1
            if refs == 0:
                gp, last_put = "waiting", ev["cpu"]
        elif name == "rcu.gp.start" and gp == "waiting":
            gp = "started"
        elif name == "rcu.gp.end" and gp == "started":
            gp = "ended"
        elif name == "vma.free":
            if refs != 0 or gp != "ended" or ev["actor"] != "rcu":
                bad = True
    return refs, gp, bad, last_put


def test_a_vma_is_freed_after_its_last_reference_and_a_grace_period(scenario, walk) -> None:
    s = scenario(FAULT_VS_MUNMAP)
    ends = walk(s, "wilcox", references, (1, None, False, None))
    assert ends
    assert not any(t.memo[2] for t in ends)
    assert all(t.memo[0] == 0 and t.memo[1] == "ended" for t in ends)
    assert all(t.system.world.mm().vmas["A"].state == "freed" for t in ends)
    # The last reference is sometimes the munmap's (cpu1), sometimes the fault's (cpu0).
    assert {t.memo[3] for t in ends} == {0, 1}
    assert not any(t.violations for t in ends)


def test_without_a_grace_period_the_monitor_fires(scenario, walk) -> None:
    s = scenario(FAULT_VS_MUNMAP)
    ends = walk(s, "wilcox-no-grace", references, (1, None, False, None))
    assert any(t.memo[2] for t in ends)


def retried(memo, lines):
    for ev in lines:
        if ev["event"] == "fault.retry" and ev["cpu"] == 0:
            return True
    return memo


def test_a_failed_recheck_retries_and_segvs_when_the_range_is_gone(scenario, walk) -> None:
    s = scenario(FAULT_VS_MUNMAP)
    ends = walk(s, "wilcox", retried, False)
    assert any(t.memo for t in ends)
    assert all(t.regs["0:r0"] == "segv" for t in ends if t.memo)
    assert {t.regs["0:r0"] for t in ends} == {5, "segv"}


def test_a_failed_recheck_retries_and_finds_the_replacement(scenario, walk) -> None:
    s = scenario("""
        name = "fault-vs-fixed"
        [[map]]
        name = "A"
        fill = 5
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["mmap A fixed fill=6"]
    """)
    ends = walk(s, "wilcox", retried, False)
    assert any(t.memo for t in ends)
    # The range is not gone: a retried fault finds the new VMA, never SIGSEGV.
    assert {t.regs["0:r0"] for t in ends if t.memo} == {6}
    assert {t.regs["0:r0"] for t in ends} == {5, 6}
    assert not any(t.violations for t in ends)


def test_the_retry_in_the_log(scenario, walk, run_events) -> None:
    s = scenario(FAULT_VS_MUNMAP)
    witness = next(t for t in walk(s, "wilcox", retried, False) if t.memo)
    result, lines = run_events(s, "wilcox", witness.choices)
    cpu0 = [ev for ev in lines if ev.get("cpu") == 0 and ev["event"].startswith("fault.")]
    assert [ev["event"] for ev in cpu0] == ["fault.begin", "fault.retry", "fault.segv"]
    assert "A" in cpu0[1]["reason"] and cpu0[1]["vma"] == "A"
    assert result.regs["0:r0"] == "segv"



def test_mprotect_publishes_a_copy_and_a_racing_fault_retries(scenario, walk) -> None:
    """docs/design.md#policies: RCU readers never see a VMA change under them; mprotect stores a
    copy (`1.0`) with the new protection, so a racing fault's recheck fails."""
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

    def watch(memo, lines):
        retried, copy = memo
        for ev in lines:
            if ev["event"] == "fault.retry" and "A" in ev["reason"]:
                retried = True
            if ev["event"] == "tree.store" and ev.get("vma") == "1.0":
                copy = True
        return retried, copy

    ends = walk(s, "wilcox", watch, (False, False))
    assert any(t.memo == (True, True) for t in ends)
    assert all(t.memo[1] for t in ends)
    outcomes = {tuple(sorted(t.regs.items())) for t in ends}
    assert outcomes == {(("0:r0", 2),), (("0:fault", "segv"), ("0:r0", 1))}
    assert not any(t.violations for t in ends)
    assert all(t.system.world.mm().vmas["1.0"].prot == "r" for t in ends)


# A read-only mapping whose PTE is present; thread 1 makes the range writable, by
# mprotect or by MAP_FIXED, while thread 0 stores to it. Thread 0's write fault may
# find the new, writable VMA while the old read-only PTE is still there.
RO_STORE = """
    name = "store-vs-{name}"
    [[map]]
    name = "A"
    fill = 1
    prot = "r"
    prefault = []
    [[thread]]
    ops = ["store A 3"]
    [[thread]]
    ops = ["{op}"]
"""


@pytest.mark.parametrize("policy", ["mmap_sem", "pervma", "wilcox", "glisse"])
def test_a_write_fault_racing_mprotect_to_rw_does_not_poll(scenario, policy) -> None:
    s = scenario(RO_STORE.format(name="mprotect", op="mprotect A prot=rw"))
    e, _ = explore_exhaustive(s, policy)
    assert e.complete, e.cut
    assert {tuple(st.regs) for st in e.states} == {(), (("0:fault", "segv"),)}
    assert e.findings == ()


@pytest.mark.parametrize("policy", ["mmap_sem", "glisse", "pervma", "wilcox"])
def test_a_write_fault_racing_map_fixed_over_a_read_only_mapping(scenario, policy) -> None:
    s = scenario(RO_STORE.format(name="map-fixed", op="mmap A fixed fill=7"))
    e, _ = explore_exhaustive(s, policy)
    assert e.complete, e.cut
    assert {tuple(st.regs) for st in e.states} == {(), (("0:fault", "segv"),)}
    assert e.findings == ()


# --- each ablation differs from wilcox by its one safeguard ---------------------------------------------


def test_early_return_frees_only_on_its_own_acks(scenario) -> None:
    """wilcox-early-return: a munmap returns once its IPIs are sent and its remainder
    waits for *its* flush_done, not for the flush of the MAP_FIXED that follows it on
    the same range; the MAP_FIXED itself waits for its acks as in wilcox."""
    s = scenario("""
        name = "munmap-then-fixed"
        cpus = 2
        [[map]]
        name = "A"
        [[thread]]
        ops = ["munmap A", "mmap A fixed fill=8"]
        [[thread]]
        ops = ["r0 = load A", "r1 = load A"]
    """)
    assert [f.invariant for f in explore_exhaustive(s, "wilcox")[0].findings] == []
    assert [f.invariant for f in explore_exhaustive(s, "wilcox-early-return")[0].findings] == ["munmap-incomplete"]


def test_free_before_flush_keeps_wilcox_coherence_violation(scenario) -> None:
    """wilcox-free-before-flush frees once the shootdown is asked for, not inside the
    zap: a fault between the zap and the flush still gets a fresh frame, and the
    coherence violation wilcox shows under MAP_FIXED is still there."""
    s = scenario("""
        name = "fixed-with-stale-tlb"
        cpus = 2
        [[map]]
        name = "A"
        fill = 1
        prefault = [0]
        [[thread]]
        ops = ["mmap A fixed fill=2"]
        [[thread]]
        ops = ["r0 = load A"]
    """)
    base = {f.invariant for f in explore_exhaustive(s, "wilcox")[0].findings}
    assert base == {"coherence"}
    assert base <= {f.invariant for f in explore_exhaustive(s, "wilcox-free-before-flush")[0].findings}


def test_a_returned_munmaps_remainder_takes_only_its_own_flush_done() -> None:
    """The remainder of an early-returned munmap (its `tail`) and a later syscall on the
    same range both wait for a `flush_done`: each takes only its own, by the syscall
    that asked (the op index), never by the range."""
    import immutables

    from vmactors.actors.base import step_actor
    from vmactors.actors.cpu import CpuActor
    from vmactors.actors.messages import FlushDone
    from vmactors.actors.tasks import CpuState, Program, SyscallTask, ThreadProgram
    from vmactors.ids import SHOOTDOWN
    from vmactors.mm.world import World
    from vmactors.ops import Munmap
    from vmactors.policies import get_policy

    addr = MMAP_BASE - PAGE_SIZE
    program = Program(threads=(ThreadProgram(0, (Munmap("A"), Munmap("A")), ("munmap A", "munmap A")),),
                      maps=immutables.Map({"A": (addr, 1)}))
    actor = CpuActor(0, get_policy("wilcox-early-return"), program)
    tail = SyscallTask(op="munmap", phase="tail", start=addr, pages=1, waiting="flush_done", index=0)
    later = SyscallTask(op="munmap", phase="free", start=addr, pages=1, waiting="flush_done", index=1)
    state = CpuState(id=0, thread=0, pc=1, task=later, tail=tail)
    out = step_actor(actor, state, World.empty(), FlushDone(addr=addr, pages=1, op=1), src=SHOOTDOWN)
    assert out.state.tail == tail  # the later syscall went on; the remainder still waits for its own
    out = step_actor(actor, state, World.empty(), FlushDone(addr=addr, pages=1, op=0), src=SHOOTDOWN)
    assert out.state.tail is None and out.state.task == later  # the remainder ran; the later syscall still waits


def test_a_write_fault_under_an_anonymous_map_fixed_copies_the_file_page(walk) -> None:
    """mapfixed-anon-over-file: the store's fault finds the new anonymous VMA while
    the read-only PTE of file f1's page is still there. do_wp_page copies the page
    (ptep_clear_flush of the file page by the faulting CPU, then the copy mapped);
    the file is never written through the anonymous mapping."""
    s = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "mapfixed-anon-over-file.toml")
    file_frame = Machine(s, "wilcox").initial.world.page_cache[("f1", 0)]

    def watch(memo, lines):
        copied, written = memo
        for ev in lines:
            if ev["event"] == "pte.zap" and ev.get("cpu") == 0 and ev["frame"] == file_frame:
                copied = True  # the fault's own ptep_clear_flush: wp_page_copy
            elif ev["event"] == "mem.store" and ev["frame"] == file_frame:
                written = True
        return copied, written

    ends = walk(s, "wilcox", watch, (False, False))
    assert any(t.memo[0] for t in ends), "no interleaving takes the copy"
    assert not any(t.memo[1] for t in ends), "a store reached the file through the anonymous mapping"
    assert not any(t.violations for t in ends)
