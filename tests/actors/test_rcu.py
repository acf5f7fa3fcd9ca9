"""The RCU grace-period coordinator, and the CPU side of quiescent states."""

from __future__ import annotations

import attrs
import immutables

from vmactors.actors.base import Stepped, step_actor
from vmactors.actors.cpu import CpuActor
from vmactors.actors.effects import Effects
from vmactors.actors.kernel import Kernel
from vmactors.actors.messages import CallRcu, Message, Qs, QsRequest
from vmactors.actors.rcu import Rcu, RcuState
from vmactors.actors.tasks import CpuState, Program, ThreadProgram
from vmactors.ids import MM0, RCU, ActorId, cpu
from vmactors.log.schema import RcuGpStart
from vmactors.mm.vma import Vma
from vmactors.mm.world import World
from vmactors.policies import get_policy

# qs_request handling needs no thread: an idle program for two CPUs is enough.
PROGRAM = Program(threads=(ThreadProgram(None), ThreadProgram(None)), maps=immutables.Map())
POLICY = get_policy("wilcox")


def world_with(*ids: str) -> World:
    w = World.empty(1)
    space = w.mm(MM0)
    for i, vid in enumerate(ids):
        start = 0x7E0000000000 + i * 0x10000
        vma = Vma(id=vid, start=start, end=start + 4096, kind="anon", owner=f"anon:{vid}", state="detached")
        space = attrs.evolve(space, vmas=space.vmas.set(vid, vma))
    return w.with_mm(MM0, space)


def vma_state(world: World, vid: str) -> str:
    return world.mm(MM0).vmas[vid].state


def deliver(state: RcuState, world: World, src: ActorId, msg: Message, ncpus: int) -> tuple[RcuState, Stepped]:
    out = step_actor(Rcu(ncpus), state, world, msg, src=src)
    return out.state, out


def qs(c: int) -> tuple[ActorId, Qs]:
    """cpu`c` reports a quiescent state: (sender, message)."""
    return cpu(c), Qs()


def names(fx: Stepped) -> list[str]:
    return [e.NAME for e in fx.events]


def asked(fx: Stepped) -> list[str]:
    """The CPUs the step sent a `qs_request` to."""
    return [dst.name for dst, m in fx.sent if isinstance(m, QsRequest)]


# The CPU's read side, as the fault paths call it (through the CPU's kernel context).

def rcu_read_lock(state: CpuState) -> CpuState:
    k = Kernel(Effects(World.empty(), cpu(state.id)), state, POLICY, PROGRAM.threads[state.id])
    k.rcu_read_lock()
    return k.cpu


def rcu_read_unlock(fx: Effects, state: CpuState) -> CpuState:
    k = Kernel(fx, state, POLICY, PROGRAM.threads[state.id])
    k.rcu_read_unlock()
    return k.cpu


def cpu_handle(state: CpuState, world: World, msg: Message) -> Stepped:
    """Deliver `msg` from RCU to the CPU in `state`."""
    return step_actor(CpuActor(state.id, POLICY, PROGRAM), state, world, msg, src=RCU)


def test_a_grace_period_frees_the_vma_only_at_its_end() -> None:
    world = world_with("A")
    s, fx = deliver(RcuState(), world, cpu(1), CallRcu(vma="A"), ncpus=3)
    assert names(fx) == ["rcu.gp.start"]
    assert s.current == ((MM0, "A"),)  # the callback: free VMA A of mm 0
    # Every CPU is asked at once; they answer in any order.
    assert asked(fx) == ["cpu0", "cpu1", "cpu2"]
    assert vma_state(fx.world, "A") == "detached"
    for c in (2, 0):
        s, fx = deliver(s, fx.world, *qs(c), ncpus=3)
        assert names(fx) == ["rcu.qs"]
        assert asked(fx) == []
        assert vma_state(fx.world, "A") == "detached"
        assert "cpu1" in (Rcu(3).waiting_for(s) or "")
    s, fx = deliver(s, fx.world, *qs(1), ncpus=3)
    assert names(fx) == ["rcu.qs", "rcu.gp.end", "vma.free"]
    assert vma_state(fx.world, "A") == "freed"
    assert s.waiting is None and Rcu(3).waiting_for(s) is None


def test_a_callback_queued_during_a_grace_period_waits_for_the_next_one() -> None:
    world = world_with("A", "B")
    s, fx = deliver(RcuState(), world, cpu(0), CallRcu(vma="A"), ncpus=2)
    s, fx = deliver(s, fx.world, cpu(1), CallRcu(vma="B"), ncpus=2)
    assert names(fx) == []  # no second grace period while one runs
    assert s.current == ((MM0, "A"),) and s.next == ((MM0, "B"),)
    s, fx = deliver(s, fx.world, *qs(0), ncpus=2)
    s, fx = deliver(s, fx.world, *qs(1), ncpus=2)
    assert names(fx) == ["rcu.qs", "rcu.gp.end", "vma.free", "rcu.gp.start"]
    assert vma_state(fx.world, "A") == "freed" and vma_state(fx.world, "B") == "detached"
    gp2 = [e.gp for e in fx.events if isinstance(e, RcuGpStart)][0]
    assert gp2 == 2
    w = fx.world
    s, fx = deliver(s, w, *qs(1), ncpus=2)
    s, fx = deliver(s, fx.world, *qs(0), ncpus=2)
    assert vma_state(fx.world, "B") == "freed"


def test_a_cpu_inside_a_read_side_section_answers_only_on_unlock() -> None:
    c = rcu_read_lock(CpuState(id=0))
    out = cpu_handle(c, World.empty(), QsRequest())
    c = out.state
    assert out.sent == () and c.qs_owed and c.rcu_nesting == 1
    # Nested sections: only the outermost unlock reports.
    c = rcu_read_lock(c)
    fx = Effects(World.empty(), cpu(0))
    c = rcu_read_unlock(fx, c)
    assert fx.out == [] and c.qs_owed
    c = rcu_read_unlock(fx, c)
    assert [(m.KIND, dst.name) for dst, m in fx.out] == [("qs", "rcu")]
    assert c.rcu_nesting == 0 and not c.qs_owed


def test_a_cpu_outside_a_read_side_section_answers_at_once() -> None:
    out = cpu_handle(CpuState(id=1), World.empty(), QsRequest())
    assert [(m.KIND, dst.name) for dst, m in out.sent] == [("qs", "rcu")]
    assert not out.state.qs_owed


def test_the_grace_period_waits_for_the_reader_end_to_end() -> None:
    """Coordinator and CPU together: cpu0 is mid-fault (rcu_nesting 1) when the grace
    period starts; the VMA is freed only after cpu0 leaves its read-side section."""
    world = world_with("A")
    cpus = {0: rcu_read_lock(CpuState(id=0)), 1: CpuState(id=1)}
    s, fx = deliver(RcuState(), world, cpu(1), CallRcu(vma="A"), ncpus=2)
    world = fx.world

    def ask(requests: list[tuple[ActorId, Message]], world: World) -> list[tuple[ActorId, Message]]:
        """Deliver each request to its CPU; the answers, as (sender, message)."""
        answers = []
        for dst, req in requests:
            out = cpu_handle(cpus[dst.index], world, req)
            cpus[dst.index] = out.state
            answers += [(dst, m) for _, m in out.sent]
        return answers

    answers = ask(list(fx.sent), world)  # both CPUs are asked at once
    assert [src.name for src, _ in answers] == ["cpu1"]  # cpu0 is inside its read-side section: no answer yet
    assert cpus[0].qs_owed and s.waiting == {0, 1}
    s, fx = deliver(s, world, *answers[0], ncpus=2)
    assert vma_state(fx.world, "A") == "detached" and s.waiting == {0}
    cfx = Effects(fx.world, cpu(0))
    cpus[0] = rcu_read_unlock(cfx, cpus[0])  # leaving it answers
    assert [dst for dst, _ in cfx.out] == [RCU]
    s, fx = deliver(s, cfx.world, cpu(0), cfx.out[0][1], ncpus=2)
    assert vma_state(fx.world, "A") == "freed"
    assert attrs.evolve(s) == RcuState()
