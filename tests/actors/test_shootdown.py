"""The TLB-shootdown coordinator, driven by hand-made messages."""

from __future__ import annotations

from vmactors.actors import shootdown
from vmactors.actors.messages import Effects, Message
from vmactors.actors.shootdown import ShootdownState
from vmactors.mm.world import World

ADDR = 0x7EFFFFFFE000


def deliver(state: ShootdownState, msg: Message, ncpus: int) -> tuple[ShootdownState, Effects]:
    fx = Effects(World(), "shootdown")
    return shootdown.handle(state, fx, msg, ncpus), fx


def flush(cpu: int, addr: int = ADDR, pages: int = 2) -> Message:
    return Message("flush", f"cpu{cpu}", "shootdown", addr=addr, pages=pages)


def ack_for(ipi: Message, cpu: int) -> Message:
    return Message("ack", f"cpu{cpu}", "shootdown", addr=ipi.addr, pages=ipi.pages, arg=ipi.arg)


def test_an_ipi_goes_to_every_cpu_but_the_initiator() -> None:
    s, fx = deliver(ShootdownState(), flush(2), ncpus=4)
    assert [(m.kind, m.dst, m.addr, m.pages) for m in fx.out] == [
        ("ipi", "cpu0", ADDR, 2), ("ipi", "cpu1", ADDR, 2), ("ipi", "cpu3", ADDR, 2)]
    ipis = [f for n, f in fx.events if n == "ipi.send"]
    assert ipis == [{"cpu": c, "addr": ADDR, "pages": 2} for c in (0, 1, 3)]
    assert shootdown.waiting_for(s) is not None and "cpu0, cpu1, cpu3" in shootdown.waiting_for(s)


def test_flush_done_only_after_the_last_ack() -> None:
    s, fx = deliver(ShootdownState(), flush(1), ncpus=3)
    ipis = {m.dst: m for m in fx.out}
    s, fx = deliver(s, ack_for(ipis["cpu2"], 2), ncpus=3)
    assert fx.out == []
    assert "cpu0" in (shootdown.waiting_for(s) or "") and "cpu2" not in (shootdown.waiting_for(s) or "")
    s, fx = deliver(s, ack_for(ipis["cpu0"], 0), ncpus=3)
    assert [(m.kind, m.dst, m.addr, m.pages) for m in fx.out] == [("flush_done", "cpu1", ADDR, 2)]
    assert s == ShootdownState() and shootdown.waiting_for(s) is None


def test_a_single_cpu_gets_flush_done_at_once() -> None:
    s, fx = deliver(ShootdownState(), flush(0, pages=1), ncpus=1)
    assert [(m.kind, m.dst, m.addr, m.pages) for m in fx.out] == [("flush_done", "cpu0", ADDR, 1)]
    assert not any(n == "ipi.send" for n, _ in fx.events)
    assert s == ShootdownState()


def test_two_flushes_in_flight_are_kept_apart() -> None:
    other = ADDR - 0x10000
    s, fx1 = deliver(ShootdownState(), flush(0, ADDR, 1), ncpus=2)
    s, fx2 = deliver(s, flush(1, other, 1), ncpus=2)
    to_cpu1 = fx1.out[0]
    to_cpu0 = fx2.out[0]
    # cpu0 acks cpu1's flush: only cpu1 hears it is done.
    s, fx = deliver(s, ack_for(to_cpu0, 0), ncpus=2)
    assert [(m.kind, m.dst, m.addr) for m in fx.out] == [("flush_done", "cpu1", other)]
    s, fx = deliver(s, ack_for(to_cpu1, 1), ncpus=2)
    assert [(m.kind, m.dst, m.addr) for m in fx.out] == [("flush_done", "cpu0", ADDR)]
    assert s == ShootdownState()


def test_a_cpu_blocked_on_a_lock_still_flushes_and_acks(scenario) -> None:
    """The CPU side of the protocol: an IPI drops the range from the TLB and acks with
    the flush's token, even while the CPU's fault waits for the rwsem."""
    import attrs

    from vmactors.actors import cpu as cpu_actor
    from vmactors.actors.cpu import FaultTask
    from vmactors.policies import get_policy
    from vmactors.sim.setup import build

    s = scenario("""
        name = "ipi"
        [[map]]
        name = "A"
        pages = 2
        prefault = [0]
        [[map]]
        name = "B"
        prefault = [0]
        [[thread]]
        ops = ["r0 = load B"]
        [[thread]]
        ops = ["munmap A"]
    """)
    system, program, where = build(s)
    a, b = where["A"], where["B"]
    cpu0 = attrs.evolve(system.cpus[0], task=FaultTask(phase="lookup", vaddr=b, access="load", waiting="grant"))
    assert set(cpu0.tlb) == {a, a + 4096, b}
    token = (1, a, 2)
    fx = Effects(system.world, "cpu0")
    ipi = Message("ipi", "shootdown", "cpu0", addr=a, pages=2, arg=token)
    policy = get_policy("mmap_sem")
    assert cpu_actor.accepts(cpu0, ipi, policy)
    after = cpu_actor.handle(cpu0, fx, ipi, program, policy)
    assert set(after.tlb) == {b}
    assert after.task == cpu0.task  # still waiting for its grant
    assert [(m.kind, m.dst, m.addr, m.pages, m.arg) for m in fx.out] == [("ack", "shootdown", a, 2, token)]
    assert [n for n, _ in fx.events if n != "msg.send"] == ["tlb.flush", "ipi.ack"]
    # The irqs-off ablation is the one policy under which it does not take it.
    assert not cpu_actor.accepts(cpu0, ipi, get_policy("mmap_sem-irqs-off-wait"))
