"""The TLB-shootdown coordinator, driven by hand-made messages."""

from __future__ import annotations

from vmactors.actors.base import Stepped, step_actor
from vmactors.actors.messages import Ack, Flush, Ipi, Message, ShootdownToken
from vmactors.actors.shootdown import Shootdown, ShootdownState
from vmactors.ids import SHOOTDOWN, cpu
from vmactors.log.schema import render_fields
from vmactors.mm.world import World

ADDR = 0x7EFFFFFFE000


def deliver(state: ShootdownState, src: int, msg: Message, ncpus: int) -> tuple[ShootdownState, Stepped]:
    out = step_actor(Shootdown(ncpus), state, World.empty(), msg, src=cpu(src))
    return out.state, out


def flush(addr: int = ADDR, pages: int = 2) -> Flush:
    return Flush(addr=addr, pages=pages)


def ack_for(ipi: Message) -> Ack:
    assert isinstance(ipi, Ipi)
    return Ack(addr=ipi.addr, pages=ipi.pages, token=ipi.token)


def sent(fx: Stepped) -> list[tuple[str, str, int, int]]:
    """(kind, receiver, addr, pages) of every message the step sent."""
    out = []
    for dst, m in fx.sent:
        assert m.range is not None
        out.append((m.KIND, dst.name, *m.range))
    return out


def test_an_ipi_goes_to_every_cpu_but_the_initiator() -> None:
    s, fx = deliver(ShootdownState(), 2, flush(), ncpus=4)
    assert sent(fx) == [("ipi", "cpu0", ADDR, 2), ("ipi", "cpu1", ADDR, 2), ("ipi", "cpu3", ADDR, 2)]
    assert {m for _, m in fx.sent} == {Ipi(addr=ADDR, pages=2, token=ShootdownToken(2, ADDR, 2))}
    ipis = [render_fields(e) for e in fx.events if e.NAME == "ipi.send"]
    assert ipis == [{"cpu": c, "addr": ADDR, "pages": 2} for c in (0, 1, 3)]
    waiting = Shootdown(4).waiting_for(s)
    assert waiting is not None and "cpu0, cpu1, cpu3" in waiting


def test_flush_done_only_after_the_last_ack() -> None:
    sd = Shootdown(3)
    s, fx = deliver(ShootdownState(), 1, flush(), ncpus=3)
    ipis = {dst.name: m for dst, m in fx.sent}
    s, fx = deliver(s, 2, ack_for(ipis["cpu2"]), ncpus=3)
    assert fx.sent == ()
    assert "cpu0" in (sd.waiting_for(s) or "") and "cpu2" not in (sd.waiting_for(s) or "")
    s, fx = deliver(s, 0, ack_for(ipis["cpu0"]), ncpus=3)
    assert sent(fx) == [("flush_done", "cpu1", ADDR, 2)]
    assert s == ShootdownState() and sd.waiting_for(s) is None


def test_a_single_cpu_gets_flush_done_at_once() -> None:
    s, fx = deliver(ShootdownState(), 0, flush(pages=1), ncpus=1)
    assert sent(fx) == [("flush_done", "cpu0", ADDR, 1)]
    assert not any(e.NAME == "ipi.send" for e in fx.events)
    assert s == ShootdownState()


def test_two_flushes_in_flight_are_kept_apart() -> None:
    other = ADDR - 0x10000
    s, fx1 = deliver(ShootdownState(), 0, flush(ADDR, 1), ncpus=2)
    s, fx2 = deliver(s, 1, flush(other, 1), ncpus=2)
    to_cpu1 = fx1.to(cpu(1))[0]
    to_cpu0 = fx2.to(cpu(0))[0]
    # cpu0 acks cpu1's flush: only cpu1 hears it is done.
    s, fx = deliver(s, 0, ack_for(to_cpu0), ncpus=2)
    assert [(k, dst, addr) for k, dst, addr, _ in sent(fx)] == [("flush_done", "cpu1", other)]
    s, fx = deliver(s, 1, ack_for(to_cpu1), ncpus=2)
    assert [(k, dst, addr) for k, dst, addr, _ in sent(fx)] == [("flush_done", "cpu0", ADDR)]
    assert s == ShootdownState()


def test_a_cpu_blocked_on_a_lock_still_flushes_and_acks(scenario) -> None:
    """The CPU side of the protocol: an IPI drops the range from the TLB and acks with
    the flush's token, even while the CPU's fault waits for the rwsem."""
    import attrs

    from vmactors.actors.cpu import CpuActor
    from vmactors.actors.tasks import FaultTask
    from vmactors.policies import get_policy
    from vmactors.system.machine import Machine

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
    machine = Machine(s, "mmap_sem")
    system = machine.initial
    a, b = machine.labels["A"], machine.labels["B"]
    cpu0 = attrs.evolve(system.cpus[0], task=FaultTask(phase="lookup", vaddr=b, access="load", waiting="grant"))
    assert set(cpu0.tlb) == {a, a + 4096, b}
    token = ShootdownToken(1, a, 2)
    ipi = Ipi(addr=a, pages=2, token=token)
    actor = CpuActor(0, get_policy("mmap_sem"), machine.program)
    assert ipi.KIND not in actor.rejects(cpu0)
    out = step_actor(actor, cpu0, system.world, ipi, src=SHOOTDOWN)
    after = out.state
    assert set(after.tlb) == {b}
    assert after.task == cpu0.task  # still waiting for its grant
    assert out.sent == ((SHOOTDOWN, Ack(addr=a, pages=2, token=token)),)
    assert [e.NAME for e in out.events] == ["tlb.flush", "ipi.ack"]
    # The irqs-off ablation is the one policy under which it does not take it.
    assert ipi.KIND in CpuActor(0, get_policy("mmap_sem-irqs-off-wait"), machine.program).rejects(cpu0)
