"""The RCU grace-period coordinator, and the CPU side of quiescent states."""

from __future__ import annotations

import attrs

from vmactors.actors import cpu as cpu_actor
from vmactors.actors import rcu
from vmactors.actors.cpu import CpuState
from vmactors.actors.messages import Effects, Message
from vmactors.actors.rcu import RcuState
from vmactors.mm.vma import Vma
from vmactors.mm.world import World
from vmactors.policies import get_policy
from vmactors.policies.base import rcu_read_lock, rcu_read_unlock


def world_with(*ids: str) -> World:
    w = World()
    for i, vid in enumerate(ids):
        start = 0x7E0000000000 + i * 0x10000
        w = w.set_vma(Vma(id=vid, start=start, end=start + 4096, kind="anon", owner=f"anon:{vid}",
                          state="detached", refcount=0))
    return w


def deliver(state: RcuState, world: World, msg: Message, ncpus: int) -> tuple[RcuState, Effects]:
    fx = Effects(world, "rcu")
    return rcu.handle(state, fx, msg, ncpus), fx


def qs(cpu: int) -> Message:
    return Message("qs", f"cpu{cpu}", "rcu")


def names(fx: Effects) -> list[str]:
    return [n for n, _ in fx.events if n != "msg.send"]


def test_a_grace_period_frees_the_vma_only_at_its_end() -> None:
    world = world_with("A")
    s, fx = deliver(RcuState(), world, Message("call_rcu", "cpu1", "rcu", arg="A"), ncpus=3)
    assert names(fx) == ["rcu.gp.start"]
    # The CPUs are asked in turn: cpu0 first, the next one after each answer.
    assert [m.dst for m in fx.out if m.kind == "qs_request"] == ["cpu0"]
    assert fx.world.vma("A").state == "detached"
    for cpu, asked_next in ((0, "cpu1"), (1, "cpu2")):
        s, fx = deliver(s, fx.world, qs(cpu), ncpus=3)
        assert names(fx) == ["rcu.qs"]
        assert [m.dst for m in fx.out if m.kind == "qs_request"] == [asked_next]
        assert fx.world.vma("A").state == "detached"
        assert "cpu2" in (rcu.waiting_for(s) or "")
    s, fx = deliver(s, fx.world, qs(2), ncpus=3)
    assert names(fx) == ["rcu.qs", "rcu.gp.end", "vma.free"]
    assert fx.world.vma("A").state == "freed"
    assert s.waiting is None and rcu.waiting_for(s) is None


def test_a_callback_queued_during_a_grace_period_waits_for_the_next_one() -> None:
    world = world_with("A", "B")
    s, fx = deliver(RcuState(), world, Message("call_rcu", "cpu0", "rcu", arg="A"), ncpus=2)
    s, fx = deliver(s, fx.world, Message("call_rcu", "cpu1", "rcu", arg="B"), ncpus=2)
    assert names(fx) == []  # no second grace period while one runs
    s, fx = deliver(s, fx.world, qs(0), ncpus=2)
    s, fx = deliver(s, fx.world, qs(1), ncpus=2)
    assert names(fx) == ["rcu.qs", "rcu.gp.end", "vma.free", "rcu.gp.start"]
    assert fx.world.vma("A").state == "freed" and fx.world.vma("B").state == "detached"
    gp2 = [f["gp"] for n, f in fx.events if n == "rcu.gp.start"][0]
    assert gp2 == 2
    w = fx.world
    s, fx = deliver(s, w, qs(1), ncpus=2)
    s, fx = deliver(s, fx.world, qs(0), ncpus=2)
    assert fx.world.vma("B").state == "freed"


def test_a_cpu_inside_a_read_side_section_answers_only_on_unlock() -> None:
    program = None  # qs_request handling needs neither the program nor the policy
    policy = get_policy("wilcox")
    cpu = rcu_read_lock(CpuState(id=0))
    fx = Effects(World(), "cpu0")
    cpu = cpu_actor.handle(cpu, fx, Message("qs_request", "rcu", "cpu0"), program, policy)  # type: ignore[arg-type]
    assert fx.out == [] and cpu.qs_owed and cpu.rcu_nesting == 1
    # Nested sections: only the outermost unlock reports.
    cpu = rcu_read_lock(cpu)
    fx = Effects(World(), "cpu0")
    cpu = rcu_read_unlock(fx, cpu)
    assert fx.out == [] and cpu.qs_owed
    cpu = rcu_read_unlock(fx, cpu)
    assert [(m.kind, m.dst) for m in fx.out] == [("qs", "rcu")]
    assert cpu.rcu_nesting == 0 and not cpu.qs_owed


def test_a_cpu_outside_a_read_side_section_answers_at_once() -> None:
    fx = Effects(World(), "cpu1")
    cpu = cpu_actor.handle(CpuState(id=1), fx, Message("qs_request", "rcu", "cpu1"), None, get_policy("wilcox"))  # type: ignore[arg-type]
    assert [(m.kind, m.dst) for m in fx.out] == [("qs", "rcu")]
    assert not cpu.qs_owed


def test_the_grace_period_waits_for_the_reader_end_to_end() -> None:
    """Coordinator and CPU together: cpu0 is mid-fault (rcu_nesting 1) when the grace
    period starts; the VMA is freed only after cpu0 leaves its read-side section."""
    world = world_with("A")
    cpus = {0: rcu_read_lock(CpuState(id=0)), 1: CpuState(id=1)}
    s, fx = deliver(RcuState(), world, Message("call_rcu", "cpu1", "rcu", arg="A"), ncpus=2)
    world = fx.world

    def ask(requests: list[Message], world: World) -> list[Message]:
        answers = []
        for req in requests:
            c = int(req.dst[3:])
            cfx = Effects(world, req.dst)
            cpus[c] = cpu_actor.handle(cpus[c], cfx, req, None, get_policy("wilcox"))  # type: ignore[arg-type]
            answers += cfx.out
        return answers

    assert ask(list(fx.out), world) == []  # cpu0 is inside its read-side section: no answer yet
    assert cpus[0].qs_owed and s.waiting == {0, 1}
    cfx = Effects(world, "cpu0")
    cpus[0] = rcu_read_unlock(cfx, cpus[0])  # leaving it answers
    s, fx = deliver(s, cfx.world, cfx.out[0], ncpus=2)
    assert fx.world.vma("A").state == "detached" and s.waiting == {1}
    answers = ask([m for m in fx.out if m.kind == "qs_request"], fx.world)
    assert [m.src for m in answers] == ["cpu1"]
    s, fx = deliver(s, fx.world, answers[0], ncpus=2)
    assert fx.world.vma("A").state == "freed"
    assert attrs.evolve(s) == RcuState()
