"""Invariant checkers (docs/design.md#invariants) on hand-built bad states, the deadlock report, and
the ablations of docs/design.md#ablations, each tripping its invariant where its parent is clean."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from vmactors.actors.effects import Effects, Note, TlbAccess, UnmapReturned
from vmactors.actors.kernel import Kernel
from vmactors.actors.tasks import CpuState, ThreadProgram
from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.ids import MM0, cpu
from vmactors.invariants import check_step
from vmactors.log.schema import Event, PteInstall, TlbFill, TreeStore
from vmactors.mm.frames import FrameTable
from vmactors.mm.page_table import Pte
from vmactors.mm.vma import Vma
from vmactors.mm.world import AddressSpace
from vmactors.policies import get_policy
from vmactors.system.machine import Machine
from vmactors.system.state import StepResult, System

TWO_CPUS = """
    name = "two"
    [[map]]
    name = "A"
    fill = 1
    prefault = [0, 1]
    [[map]]
    name = "B"
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["munmap A"]
"""


@pytest.fixture
def base(scenario):
    m = Machine(scenario(TWO_CPUS), "mmap_sem")
    return m.initial, m.labels["A"], m.labels["B"]


def step(after: System, *events: Event, notes: tuple[Note, ...] = ()) -> StepResult:
    return StepResult(after, tuple(events), (), None, tuple(notes), 0)


def names(violations) -> list[str]:
    return [v.invariant for v in violations]


# --- the events a step logs, as they describe the state after it ---------------------


def tlb_fill(after: System, c: int, page: int) -> TlbFill:
    """cpu`c` cached the PTE for `page` (the entry its TLB now holds)."""
    e = after.cpus[c].tlb[page]
    return TlbFill(cpu=c, addr=page, pages=1, frame=e.frame, vma=e.vma, prot=e.prot)


def pte_install(after: System, c: int, page: int) -> PteInstall:
    """cpu`c` installed the PTE `page` now has."""
    p = after.world.mm(MM0).ptes[page]
    return PteInstall(cpu=c, addr=page, pages=1, frame=p.frame, vma=p.vma, prot=p.prot)


# --- hand-built states ------------------------------------------------------------------


def with_tlb(system: System, c: int, page: int, pte: Pte | None) -> System:
    old = system.cpus[c]
    tlb = old.tlb.delete(page) if pte is None else old.tlb.set(page, pte)
    # CPUs come first in the actor slots: cpu`c` is slot `c`.
    return attrs.evolve(system, actors=system.actors[:c] + (attrs.evolve(old, tlb=tlb),) + system.actors[c + 1:])


def with_space(system: System, space: AddressSpace) -> System:
    return attrs.evolve(system, world=system.world.with_mm(MM0, space))


def with_mm(system: System, **changes: Any) -> System:
    """The system with its address space's fields changed (tree, ptes, writers, …)."""
    return with_space(system, attrs.evolve(system.world.mm(MM0), **changes))


def with_frames(system: System, frames: FrameTable) -> System:
    return attrs.evolve(system, world=system.world.with_frames(frames))


def set_vma(space: AddressSpace, vma: Vma) -> AddressSpace:
    return attrs.evolve(space, vmas=space.vmas.set(vma.id, vma))


def read_vma(fx: Effects, c: CpuState, vid: str) -> None:
    """A fault path on CPU `c` reads VMA `vid` it found earlier."""
    Kernel(fx, c, get_policy("mmap_sem"), ThreadProgram(None)).read_vma(vid)


def test_the_initial_state_is_clean(base) -> None:
    system, a, _ = base
    assert check_step(system, step(system, tlb_fill(system, 0, a), pte_install(system, 0, a))) == []


def test_coherence_two_tlbs(base) -> None:
    system, a, _ = base
    frames, other = system.world.frames.alloc("anon:X:0", 0)
    old = system.cpus[1].tlb[a]
    after = with_tlb(with_frames(system, frames), 1, a, attrs.evolve(old, frame=other))
    v = check_step(system, step(after, tlb_fill(after, 1, a)))
    assert names(v) == ["coherence"]
    assert v[0].fields()["addr"] == a
    assert "cpu0's TLB" in v[0].detail and "cpu1's TLB" in v[0].detail


def test_coherence_a_tlb_and_the_pte(base) -> None:
    system, a, _ = base
    frames, other = system.world.frames.alloc("anon:X:0", 0)
    ptes = system.world.mm(MM0).ptes
    pte = attrs.evolve(ptes[a], frame=other)
    after = with_mm(with_frames(system, frames), ptes=ptes.set(a, pte))
    after = with_tlb(after, 1, a, None)
    v = check_step(system, step(after, pte_install(after, 1, a)))
    assert names(v) == ["coherence"]
    assert "the PTE" in v[0].detail and "cpu0's TLB" in v[0].detail


def test_coherence_needs_someone_to_reach_the_pte(base) -> None:
    """Every CPU's TLB still maps the old frame: nobody walks to the new PTE yet, so
    no two CPUs reach different frames (the flush that follows is what matters)."""
    system, a, _ = base
    frames, other = system.world.frames.alloc("anon:X:0", 0)
    ptes = system.world.mm(MM0).ptes
    pte = attrs.evolve(ptes[a], frame=other)
    after = with_mm(with_frames(system, frames), ptes=ptes.set(a, pte))
    assert check_step(system, step(after, pte_install(after, 1, a))) == []


def test_frame_uaf_a_freed_frame(base) -> None:
    system, a, _ = base
    entry = system.cpus[0].tlb[a]
    freed = with_frames(system, system.world.frames.release(entry.frame))
    v = check_step(freed, step(freed, notes=(TlbAccess(0, a, entry),)))
    assert names(v) == ["frame-uaf"]
    assert v[0].fields()["frame"] == entry.frame and "was freed" in v[0].detail
    # The same access to the frame while it is still in use is fine.
    assert check_step(system, step(system, notes=(TlbAccess(0, a, entry),))) == []


def test_frame_uaf_a_frame_given_to_another_owner(base) -> None:
    system, a, _ = base
    entry = system.cpus[0].tlb[a]
    frames, again = system.world.frames.release(entry.frame).alloc("anon:1.0:0", 0)
    assert again == entry.frame  # LIFO reuse
    reused = with_frames(system, frames)
    v = check_step(reused, step(reused, notes=(TlbAccess(0, a, entry),)))
    assert names(v) == ["frame-uaf"] and "anon:1.0:0" in v[0].detail


def test_vma_uaf(base) -> None:
    system, _, _ = base
    space = system.world.mm(MM0)
    world = system.world.with_mm(MM0, set_vma(space, attrs.evolve(space.vmas["A"], state="freed")))
    fx = Effects(world, cpu(0))
    read_vma(fx, system.cpus[0], "A")
    v = check_step(system, step(attrs.evolve(system, world=world), notes=tuple(fx.notes)))
    assert names(v) == ["vma-uaf"] and v[0].fields() == {"cpu": 0, "vma": "A"}
    # Reading a live or detached VMA is no use-after-free.
    for state in ("live", "detached"):
        fx = Effects(system.world.with_mm(MM0, set_vma(space, attrs.evolve(space.vmas["A"], state=state))), cpu(0))
        read_vma(fx, system.cpus[0], "A")
        assert fx.notes == []


def test_orphan_pte_no_vma_covers_it(base) -> None:
    system, a, _ = base
    space = system.world.mm(MM0)
    space = attrs.evolve(space, tree=space.tree.store(a, a + 4096, None))
    space = set_vma(space, attrs.evolve(space.vmas["A"], state="detached"))
    after = with_space(system, space)
    ev = TreeStore(addr=a, pages=1, entry="null")
    v = check_step(system, step(after, ev))
    assert names(v) == ["orphan-pte"] and "no live VMA" in v[0].detail
    # Inside the writer's operation on that page it is expected.
    busy = with_mm(after, writers=frozenset({(1, a, a + 4096)}))
    assert check_step(system, step(busy, ev)) == []


def test_orphan_pte_installed_through_a_dead_vma(base) -> None:
    system, a, _ = base
    space = system.world.mm(MM0)
    new = attrs.evolve(space.vmas["A"], id="1.0", owner="anon:1.0")
    space = set_vma(set_vma(space, new), attrs.evolve(space.vmas["A"], state="detached"))
    space = attrs.evolve(space, tree=space.tree.store(a, a + 4096, "1.0"))
    after = with_space(system, space)
    v = check_step(system, step(after, pte_install(after, 0, a)))
    assert "orphan-pte" in names(v)
    assert any("installed through vma A" in x.detail for x in v)


def test_munmap_incomplete_at_return(base) -> None:
    system, a, _ = base
    space = system.world.mm(MM0)
    space = attrs.evolve(space, ptes=space.ptes.delete(a))  # A's one page zapped
    space = attrs.evolve(space, tree=space.tree.store(a, a + 4096, None), unmapped=frozenset({"A"}))
    space = set_vma(space, attrs.evolve(space.vmas["A"], state="detached"))
    after = with_tlb(with_space(system, space), 1, a, None)  # cpu1 flushed; cpu0 did not
    v = check_step(system, step(after, notes=(UnmapReturned(1, ("A",)),)))
    assert names(v) == ["munmap-incomplete"]
    assert "cpu0's TLB" in v[0].detail and v[0].fields()["vma"] == "A"
    # Once cpu0 has flushed too, the return is fine.
    done = with_tlb(after, 0, a, None)
    assert check_step(system, step(done, notes=(UnmapReturned(1, ("A",)),))) == []


def test_munmap_incomplete_ignores_a_newer_mapping(base) -> None:
    system, a, _ = base
    space = system.world.mm(MM0)
    new = attrs.evolve(space.vmas["A"], id="1.0", owner="anon:1.0")
    space = set_vma(set_vma(space, new), attrs.evolve(space.vmas["A"], state="detached"))
    space = attrs.evolve(space, tree=space.tree.store(a, a + 4096, "1.0"), unmapped=frozenset({"A"}))
    pte = Pte(frame=space.ptes[a].frame, prot="rw", vma="1.0", owner=new.frame_owner(a))
    space = attrs.evolve(space, ptes=space.ptes.set(a, pte))
    after = with_tlb(with_tlb(with_space(system, space), 0, a, pte), 1, a, pte)
    assert check_step(system, step(after, notes=(UnmapReturned(1, ("A",)),))) == []


def test_munmap_incomplete_a_translation_made_after_return(base) -> None:
    system, a, _ = base
    after = with_mm(system, unmapped=frozenset({"A"}))
    v = check_step(system, step(after, tlb_fill(after, 0, a)))
    assert "munmap-incomplete" in names(v)


# --- deadlock ---------------------------------------------------------------------

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
    ops = ["mprotect B prot=r"]
"""


def test_a_deadlock_names_what_each_blocked_actor_waits_for(scenario, walk, run_events, log_schema) -> None:
    s = scenario(BLOCKED_READER)
    dead = [t for t in walk(s, "mmap_sem-irqs-off-wait") if t.end == "deadlock"]
    assert dead
    result, lines = run_events(s, "mmap_sem-irqs-off-wait", dead[0].choices)
    assert result.outcome == "deadlock" and result.violations == ("deadlock",)
    assert "grant" in result.waiting["cpu0"]
    assert "flush_done" in result.waiting["cpu1"]
    assert "cpu0" in result.waiting["shootdown"]
    end = lines[-1]
    assert end["event"] == "run.end" and end["outcome"] == "deadlock"
    assert end["waiting"] == result.waiting
    violated = [ev for ev in lines if ev["event"] == "invariant.violated"]
    assert [ev["invariant"] for ev in violated] == ["deadlock"]
    assert "cpu0 waits for grant" in violated[0]["detail"]
    log_schema.check(lines)


# --- ablations ----------------------------------------------------------------------

STALE = """
    name = "stale-tlb-vs-munmap"
    [[map]]
    name = "A"
    prefault = [0, 1]
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["munmap A"]
"""
FAULT = """
    name = "fault-vs-munmap"
    [[map]]
    name = "A"
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["munmap A"]
"""
REUSE = """
    name = "reuse-with-a-stale-tlb"
    cpus = 3
    [[map]]
    name = "A"
    prefault = [2]
    [[thread]]
    ops = ["munmap A"]
    [[thread]]
    ops = ["B = mmap", "r0 = load B"]
"""

OBJECT_REUSE = """
    name = "vma-object-reuse"
    cpus = 2
    [[map]]
    name = "A"
    fill = 1
    [[map]]
    name = "C"
    prefault = []
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["munmap A", "B = mmap 2 fill=7"]
"""

def library_text(name: str) -> str:
    return (Path(__file__).resolve().parents[2] / "scenarios" / f"{name}.toml").read_text()


ABLATIONS = [
    ("mmap_sem-free-before-flush", "mmap_sem", "frame-uaf", STALE),
    ("mmap_sem-irqs-off-wait", "mmap_sem", "deadlock", BLOCKED_READER),
    ("wilcox-no-zero", "wilcox", "coherence", REUSE),
    ("wilcox-free-before-flush", "wilcox", "frame-uaf", STALE),
    ("wilcox-no-grace", "wilcox", "vma-uaf", FAULT),
    ("wilcox-no-recheck", "wilcox", "orphan-pte", FAULT),
    ("wilcox-early-return", "wilcox", "munmap-incomplete", STALE),
    ("pervma-no-vma-recheck", "pervma", "wrong-vma", OBJECT_REUSE),
    # The kernel's own history (docs/history.md): each on its library scenario.
    ("mmap_sem-downgrade-next-to-stack", "mmap_sem", "pgtable-uaf", library_text("munmap-downgrade-vs-stack")),
    ("mmap_sem-mremap-flush-after-unlock", "mmap_sem", "frame-uaf", library_text("mremap-flush-vs-truncate")),
    ("pervma-stack-read-lock", "pervma", "tree-uaf", library_text("stackrot")),
    ("pervma-fork-no-vma-lock", "pervma", "cow-isolation", library_text("fork-vs-per-vma-locks")),
    ("pervma-no-born-lock", "pervma", "permissive-pte", library_text("new-vma-visible-before-final")),
]


@pytest.mark.parametrize("ablation, parent, invariant, text", ABLATIONS, ids=[a[0] for a in ABLATIONS])
def test_each_ablation_trips_its_invariant_where_its_parent_is_clean(scenario, run_events, log_schema, ablation,
                                                                      parent, invariant, text) -> None:
    s = scenario(text)
    clean, _ = explore_exhaustive(s, parent)
    assert clean.complete and clean.findings == ()
    broken, choices = explore_exhaustive(s, ablation)
    assert broken.complete
    found = {f.invariant: f for f in broken.findings}
    assert invariant in found, found
    assert found[invariant].runs > 0
    # The shortest counterexample replays to the same violation, and its log says so.
    again, lines = run_events(s, ablation, choices[invariant])
    assert invariant in again.violations
    log_schema.check(lines)
    assert invariant in lines[-1]["violations"]
    assert any(ev["event"] == "invariant.violated" and ev["invariant"] == invariant for ev in lines)


def test_every_ablation_is_covered() -> None:
    from vmactors.policies import ABLATIONS as NAMES

    assert sorted(a[0] for a in ABLATIONS) == sorted(NAMES)


# --- every syscall returns only after its shootdown (docs/design.md#the-world) ------------------------

WRITER = """
    name = "writer"
    [[map]]
    name = "A"
    prefault = [0, 1]
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["{op}"]
"""
OPS = ["mprotect A prot=r", "mmap A fixed fill=3", "munmap A"]


def returns_after_flush(memo, lines):
    """(cpu1 was told its flush is done, cpu1's syscall returned before that)."""
    done, early = memo
    for ev in lines:
        if ev["event"] == "msg.recv" and ev["kind"] == "flush_done" and ev["dst"] == "cpu1":
            done = True
        elif ev["event"] == "syscall.end" and ev["cpu"] == 1 and not done:
            early = True
    return done, early


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("policy", ["mmap_sem", "wilcox", "glisse", "pervma"])
def test_every_syscall_returns_after_its_shootdown(scenario, walk, policy, op) -> None:
    ends = walk(scenario(WRITER.format(op=op)), policy, returns_after_flush, (False, False))
    assert ends and all(t.memo == (True, False) for t in ends)
    assert not any(t.violations for t in ends)


def test_the_early_return_ablation_does_not(scenario, walk) -> None:
    ends = walk(scenario(WRITER.format(op="munmap A")), "wilcox-early-return", returns_after_flush, (False, False))
    assert any(t.memo[1] for t in ends)
