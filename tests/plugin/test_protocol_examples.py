"""Protocol checks written with the `vm` fixture, as litmus tests: the setup (a
scenario), the interleaving (steps taken by hand), the expected outcome.

These double as examples of the plugin (docs/testing.md)."""

from __future__ import annotations

import pytest

from vmactors.testing import VM, SimError

# --- mmap_sem: a CPU blocked on the rwsem still takes IPIs ---------------------------

MUNMAP_VS_FAULT = {
    "name": "mprotect-vs-fault",
    "about": "cpu0 mprotects A (write lock held to the end, shootdown included) while cpu1 faults on B.",
    "map": [
        {"name": "A", "fill": 1, "prefault": [0, 1]},  # cpu1 caches A: the mprotect must IPI it
        {"name": "B", "fill": 5},  # untouched: cpu1's load of B faults and needs the rwsem
    ],
    "thread": [["mprotect A prot=r"], ["r0 = load B"]],
}


def test_mmap_sem_cpu_waiting_for_the_rwsem_still_acks_an_ipi(vm: VM) -> None:
    s = vm.scenario(MUNMAP_VS_FAULT)
    sim = vm.start(s, policy="mmap_sem")

    # cpu0: mprotect takes mmap_sem for write.
    sim.run_until("lock.acquire", only="cpu0", cpu=0, mode="write")
    # cpu1: its fault on B queues for the read lock.
    sim.run_until("lock.wait", only="cpu1", cpu=1, lock="mmap_sem", mode="read")
    # cpu0: zap, then the shootdown IPIs cpu1, which still waits for the rwsem.
    sim.run_until_message("ipi", to="cpu1", only="cpu0")
    events = sim.deliver("ipi", to="cpu1")

    assert [e["event"] for e in events] == ["msg.recv", "tlb.flush", "msg.send", "ipi.ack"]
    r = sim.finish()
    assert r.outcome == "ok"
    assert r.regs == {"1:r0": 5}
    # cpu1 got the lock only after cpu0's mprotect released it.
    released = r.events(event="lock.release", cpu=0, mode="write")[0]["step"]
    granted = r.events(event="lock.acquire", cpu=1, mode="read")[0]["step"]
    assert granted > released


def test_mmap_sem_irqs_off_wait_ablation_deadlocks_on_the_same_interleaving(vm: VM) -> None:
    s = vm.scenario(MUNMAP_VS_FAULT)
    sim = vm.start(s, policy="mmap_sem-irqs-off-wait")
    sim.run_until("lock.acquire", only="cpu0", cpu=0, mode="write")
    sim.run_until("lock.wait", only="cpu1", cpu=1)
    sim.run_until_message("ipi", to="cpu1", only="cpu0")

    # cpu1 waits for the rwsem with interrupts off: the IPI cannot be taken.
    with pytest.raises(SimError, match="cannot be delivered"):
        sim.deliver("ipi", to="cpu1")
    r = sim.finish()
    assert r.outcome == "deadlock"
    assert r.waiting["cpu0"].startswith("flush_done")  # mprotect waits for cpu1's ack
    assert r.waiting["cpu1"].startswith("grant")  # cpu1 waits for cpu0's lock


def test_mmap_sem_fault_during_munmap_waits_then_segfaults(vm: VM) -> None:
    s = vm.scenario({"name": "munmap-vs-load", "map": [{"name": "A", "fill": 1}],
                     "thread": [["munmap A"], ["r0 = load A"]]})
    sim = vm.start(s, policy="mmap_sem")
    sim.run_until("lock.acquire", only="cpu0", cpu=0, mode="write")
    sim.run_until("lock.wait", only="cpu1", cpu=1)
    r = sim.finish()
    assert r.regs == {"1:r0": "segv"}
    assert r.events(event="fault.segv", cpu=1)


# --- MAP_FIXED against a concurrent fault: wilcox does not block, glisse does ---------

FIXED_VS_FAULT = """
name = "fixed-vs-fault"
about = "cpu1 replaces A (file f1) with file f2 by MAP_FIXED while cpu0 faults A in."

[[map]]
name = "A"
kind = "file"
file = "f1"
fill = 1            # untouched: cpu0's load faults

[[thread]]
ops = ["r0 = load A"]

[[thread]]
ops = ["mmap A fixed kind=file file=f2 fill=2"]
"""


def _fault_inside_map_fixed(vm: VM, policy: str):  # type: ignore[no-untyped-def]
    """cpu1's MAP_FIXED has stored the new VMA but not shot down the old
    translations; then cpu0 runs alone as far as it can."""
    sim = vm.start(vm.scenario(FIXED_VS_FAULT), policy=policy)
    sim.run_until("tree.store", only="cpu1", entry="vma")
    while any(step.startswith("cpu0") or step.endswith("-> cpu0: grant") for step in sim.enabled()):
        sim.step("cpu0")
    return sim


def test_wilcox_map_fixed_never_blocks_a_fault(vm: VM) -> None:
    sim = _fault_inside_map_fixed(vm, "wilcox")

    # cpu0 finished its load — the new page — while the MAP_FIXED is still running.
    assert sim.regs == {"0:r0": 2}
    assert not sim.events(event="lock.wait", cpu=0)
    assert not sim.events(event="syscall.end", cpu=1)
    assert sim.finish().outcome == "ok"

    # And in no sampled interleaving does the fault wait for anything.
    s = vm.scenario(FIXED_VS_FAULT)
    for seed in range(50):
        r = vm.run(s, policy="wilcox", seed=seed)
        assert not r.events(event="lock.wait", cpu=0), r.choices


def test_glisse_fault_waits_for_fence_open(vm: VM) -> None:
    sim = _fault_inside_map_fixed(vm, "glisse")

    # cpu0 found the new VMA in a fenced range: it waits, without a result.
    (wait,) = sim.events(event="lock.wait", cpu=0)
    assert wait["lock"] == "fence"
    assert sim.regs == {}
    with pytest.raises(SimError, match="cpu0 waits for fence_open"):
        sim.step("cpu0")

    # cpu1 finishes the replacement (shootdown included), then opens the fence.
    sim.run_until_message("fence_open", to="cpu0", only="cpu1")
    assert sim.events(event="ipi.ack", cpu=0)  # the old translation is gone everywhere
    sim.deliver("fence_open", to="cpu0")
    r = sim.finish()
    assert r.outcome == "ok"
    assert r.regs == {"0:r0": 2}


def test_under_wilcox_but_not_glisse_the_old_and_new_page_coexist(vm: VM) -> None:
    """The headline scenario as a property of the whole state space: wilcox allows
    the `exists` outcome and breaks coherence; glisse never does."""
    s = vm.load("scenarios/mapfixed-two-readers.toml")
    wilcox = vm.explore(s, "wilcox")
    assert wilcox.complete and wilcox.exists == "sometimes"
    assert [f.invariant for f in wilcox.findings] == ["coherence"]
    # The shortest counterexample replays as one run.
    r = vm.run(s, "wilcox", choices=wilcox.findings[0].choices)
    assert "coherence" in r.violations

    glisse = vm.explore(s, "glisse")
    assert glisse.complete and glisse.exists == "never" and glisse.findings == ()


# --- wilcox munmap: the ZERO entry ------------------------------------------------------


def test_wilcox_fault_on_a_range_being_unmapped_segfaults_at_once(vm: VM) -> None:
    s = vm.scenario({"name": "munmap-vs-load", "map": [{"name": "A", "fill": 1}],
                     "thread": [["munmap A"], ["r0 = load A"]]})
    sim = vm.start(s, policy="wilcox")
    zero = sim.run_until("tree.store", only="cpu0", entry="zero")
    assert zero["addr"] == sim.run.program.maps["A"][0]

    segv = sim.run_until("fault.segv", only="cpu1", cpu=1)
    assert not sim.events(event="lock.wait", cpu=1)
    assert not sim.events(event="syscall.end", cpu=0)  # munmap still in progress
    assert segv["addr"] == zero["addr"]
    assert sim.finish().regs == {"1:r0": "segv"}
