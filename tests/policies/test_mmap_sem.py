"""`mmap_sem` (Linux v5.4) and `mmap_sem-4.19`, litmus style: tiny scenarios, facts
over every interleaving (`walk` searches system state x a monitor of the log lines)
or along chosen ones."""

from __future__ import annotations

import pytest

from vmactors.explore.exhaustive import explore_exhaustive

#: cpu1's writer holds mmap_sem for write across its shootdown of B (which cpu0
#: caches) while cpu0's fault on A queues for the read lock: mprotect always does;
#: munmap did before 4.20.
BLOCKED_READER = """
    name = "blocked-reader"
    [[map]]
    name = "A"
    [[map]]
    name = "B"
    prefault = [0, 1]
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["{op}"]
"""
HOLDERS = [("mmap_sem", "mprotect B prot=r"), ("mmap_sem-4.19", "mprotect B prot=r"), ("mmap_sem-4.19", "munmap B")]


def ack_while_waiting(memo, lines):
    """'idle' -> 'waiting' (cpu0 queued on the rwsem) -> 'acked' (cpu0 acked an IPI
    while still queued); the grant takes 'waiting' back to 'idle'."""
    for ev in lines:
        name, cpu = ev["event"], ev.get("cpu")
        if name == "lock.wait" and cpu == 0 and ev["lock"] == "mmap_sem":
            memo = "waiting"
        elif name == "lock.acquire" and cpu == 0 and ev["lock"] == "mmap_sem" and memo == "waiting":
            memo = "idle"
        elif name == "ipi.ack" and cpu == 0 and memo == "waiting":
            memo = "acked"
    return memo


@pytest.mark.parametrize("policy, op", HOLDERS)
def test_a_cpu_blocked_on_the_rwsem_still_acks_an_ipi(scenario, walk, policy, op) -> None:
    s = scenario(BLOCKED_READER.format(op=op))
    ends = walk(s, policy, ack_while_waiting, "idle")
    assert any(t.memo == "acked" for t in ends)
    assert all(t.end == "ok" and not t.violations for t in ends)
    assert {t.regs["0:r0"] for t in ends} == {0}


def test_since_4_20_a_reader_waiting_behind_munmap_is_let_in_before_the_shootdown(scenario, walk) -> None:
    """v5.4's munmap downgrades to read after detaching the VMAs, so the queued fault
    may be granted before any IPI goes out; before 4.20 it never was: the writer held
    the lock across its flush."""

    def order(memo, lines):
        """'idle' -> 'waiting' (cpu0 queued before any IPI went out) -> 'let in' (granted
        before the first IPI) or 'ipi first'; an IPI before any wait: 'late'."""
        for ev in lines:
            if memo == "idle" and ev["event"] == "ipi.send":
                memo = "late"
            elif memo == "idle" and ev["event"] == "lock.wait" and ev.get("cpu") == 0:
                memo = "waiting"
            elif memo == "waiting" and ev["event"] == "lock.acquire" and ev.get("cpu") == 0:
                memo = "let in"
            elif memo == "waiting" and ev["event"] == "ipi.send":
                memo = "ipi first"
        return memo

    s = scenario(BLOCKED_READER.format(op="munmap B"))
    assert "let in" in {t.memo for t in walk(s, "mmap_sem", order, "idle")}
    old = {t.memo for t in walk(s, "mmap_sem-4.19", order, "idle")}
    assert "ipi first" in old and "let in" not in old


def test_the_ack_while_waiting_in_the_log(scenario, walk, run_events) -> None:
    """Along one such interleaving, the log shows cpu0's wait, its ack, then its grant."""
    s = scenario(BLOCKED_READER.format(op="mprotect B prot=r"))
    witness = next(t for t in walk(s, "mmap_sem", ack_while_waiting, "idle") if t.memo == "acked")
    result, lines = run_events(s, "mmap_sem", witness.choices)
    assert result.outcome == "ok"
    order = [(ev["event"], ev.get("lock")) for ev in lines if ev.get("cpu") == 0
             and ev["event"] in ("lock.wait", "lock.acquire", "ipi.ack") and ev["actor"] != "sim"]
    assert order.index(("lock.wait", "mmap_sem")) < order.index(("ipi.ack", None)) \
        < order.index(("lock.acquire", "mmap_sem"))


def test_without_interrupts_the_same_scenario_deadlocks(scenario, walk) -> None:
    s = scenario(BLOCKED_READER.format(op="mprotect B prot=r"))
    ends = walk(s, "mmap_sem-irqs-off-wait", ack_while_waiting, "idle")
    assert not any(t.memo == "acked" for t in ends)
    assert any(t.end == "deadlock" for t in ends)


MUNMAP_3CPU = """
    name = "munmap-3cpu"
    [[map]]
    name = "A"
    pages = 2
    fill = 3
    prefault = [0, 1, 2]
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["munmap A"]
    [[thread]]
    ops = ["r1 = load A+0x1000"]
"""


def frees_before_last_ack(memo, lines):
    """(acks so far, frames freed before the last ack)."""
    acks, early = memo
    for ev in lines:
        if ev["event"] == "ipi.ack":
            acks += 1
        elif ev["event"] == "frame.free" and acks < 2:
            early += 1
    return acks, early


def test_frames_are_freed_only_after_the_last_ack(scenario, walk) -> None:
    s = scenario(MUNMAP_3CPU)
    ends = walk(s, "mmap_sem", frees_before_last_ack, (0, 0))
    assert ends and all(t.memo == (2, 0) for t in ends)
    assert all(not t.violations for t in ends)
    # The monitor can fail: with the ablation, frames go before the acks are in.
    bad = walk(s, "mmap_sem-free-before-flush", frees_before_last_ack, (0, 0))
    assert any(t.memo[1] == 2 for t in bad)
    assert any("frame-uaf" in t.violations for t in bad)


def test_frame_free_follows_the_last_ipi_ack_in_the_log(scenario, walk, run_events) -> None:
    s = scenario(MUNMAP_3CPU)
    for t in walk(s, "mmap_sem")[:20]:
        _, lines = run_events(s, "mmap_sem", t.choices)
        names = [ev["event"] for ev in lines]
        frees = [i for i, n in enumerate(names) if n == "frame.free"]
        acks = [i for i, n in enumerate(names) if n == "ipi.ack"]
        assert len(frees) == 2 and len(acks) == 2
        assert min(frees) > max(acks)
        # ... and the munmap returns (and releases the rwsem) after the frees.
        end = next(i for i, ev in enumerate(lines) if ev["event"] == "syscall.end")
        assert end > max(frees)


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


def test_a_fault_concurrent_with_munmap_ends_in_sigsegv_sometimes_and_breaks_nothing(scenario) -> None:
    s = scenario(FAULT_VS_MUNMAP)
    e, _ = explore_exhaustive(s, "mmap_sem")
    assert e.complete
    assert {dict(st.regs)["0:r0"] for st in e.states} == {5, "segv"}
    assert all(st.end == "ok" for st in e.states)
    assert e.findings == ()


@pytest.mark.parametrize("policy", ["mmap_sem", "mmap_sem-4.19"])
def test_a_fault_that_waited_for_the_writer_finds_nothing(scenario, walk, policy) -> None:
    """A fault that queued on the rwsem behind munmap always SIGSEGVs: the writer lets
    readers in only once the VMAs are out of the tree (v5.4: at its downgrade; before
    4.20: at its end)."""

    def waited(memo, lines):
        for ev in lines:
            if ev["event"] == "lock.wait" and ev.get("cpu") == 0:
                return True
        return memo

    s = scenario(FAULT_VS_MUNMAP)
    ends = walk(s, policy, waited, False)
    assert any(t.memo for t in ends)
    assert all(t.regs["0:r0"] == "segv" for t in ends if t.memo)


def test_map_fixed_faults_wait_then_see_the_new_mapping(scenario) -> None:
    s = scenario("""
        name = "fixed"
        [[map]]
        name = "A"
        fill = 1
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["mmap A fixed fill=2"]
    """)
    e, _ = explore_exhaustive(s, "mmap_sem")
    assert {dict(st.regs)["0:r0"] for st in e.states} == {1, 2}
    assert e.findings == ()


def test_step_by_step_a_fault_queued_on_the_rwsem_takes_the_ipi(scenario, log_schema) -> None:
    """Hand-picked steps (`run.enabled()` / `run.take(i)`): before 4.20, munmap B holds
    the rwsem for write and shoots down; cpu0's fault on A is queued behind it, and
    still takes the IPI and acks, so the munmap completes and then the fault is granted."""
    import io

    from vmactors.sim.run import Run
    from vmactors.system.setup import layout
    from vmactors.sim.strategies import ReplayStrategy

    s = scenario(BLOCKED_READER.format(op="munmap B"))
    b = layout(s)["B"]
    buf = io.BytesIO()
    run = Run(s, "mmap_sem-4.19", ReplayStrategy([]), 0, buf)
    assert b in run.system.cpus[0].tlb

    def take(actor: str, src: str | None = None):
        steps = run.enabled()
        for i, st in enumerate(steps):
            if st.actor.name == actor and (st.src.name if st.src else None) == src:
                return run.take(i)
        raise AssertionError(f"{actor} <- {src} is not enabled: {[run.machine.describe(run.system, st) for st in steps]}")

    def names(result) -> list[str]:
        return [e.NAME for e in result.events if not isinstance(e, int)]

    take("cpu1")                                   # munmap B: down_write
    assert "lock.acquire" in names(take("mmap_sem", "cpu1"))
    take("cpu1", "mmap_sem")                       # granted: ask the tree owner
    take("tree", "cpu1")                           # NULL over B
    take("cpu1", "tree")
    assert "pte.zap" in names(take("cpu1"))        # zap B's PTE
    assert "fault.begin" in names(take("cpu0"))    # cpu0 faults on A ...
    take("cpu0")                                   # ... and asks for the read lock
    assert "lock.wait" in names(take("mmap_sem", "cpu0"))
    assert run.system.cpus[0].task.waiting == "grant"
    take("cpu1")                                   # local flush, ask for the shootdown
    assert "ipi.send" in names(take("shootdown", "cpu1"))
    acked = take("cpu0", "shootdown")              # blocked, yet it takes the IPI
    assert names(acked) == ["tlb.flush", "ipi.ack"]
    assert run.system.cpus[0].task.waiting == "grant"
    assert b not in run.system.cpus[0].tlb
    take("shootdown", "cpu0")
    assert "frame.free" in names(take("cpu1", "shootdown"))
    result = run.run()
    assert result.outcome == "ok" and result.regs == {"0:r0": 0}
    log_schema.check(buf.getvalue().splitlines())



def test_since_4_20_a_fault_sigsegvs_while_a_stale_tlb_still_reads_the_old_page(scenario) -> None:
    """Glisse's "today behavior": after munmap's downgrade a fault finds no VMA and
    SIGSEGVs while another CPU's TLB still maps the old page; before 4.20 the fault
    waited for the whole munmap."""
    s = scenario("""
        name = "segv-while-stale"
        cpus = 3
        exists = "1:r0 = segv and 2:r1 = 1 and 2:r2 = 1"
        [[map]]
        name = "A"
        kind = "file"
        file = "f1"
        fill = 1
        prefault = [2]
        [[map]]
        name = "F"
        prefault = [1, 2]
        [[thread]]
        ops = ["munmap A"]
        [[thread]]
        ops = ["r0 = load A", "store F 1"]
        [[thread]]
        ops = ["r1 = load F", "r2 = load A"]
    """)
    assert explore_exhaustive(s, "mmap_sem")[0].exists == "sometimes"
    assert explore_exhaustive(s, "mmap_sem-4.19")[0].exists == "never"
