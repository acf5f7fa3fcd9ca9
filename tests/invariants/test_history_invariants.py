"""The invariants the kernel's own history needed (docs/design.md#invariants): each on
a hand-built state — the bad one trips it, the good one next to it does not — and
each ablation of docs/history.md tripping it where its parent policy is clean
(tests/invariants/test_checkers.py runs those on the library scenarios)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from vmactors.actors.effects import CowStoreLost, NodeUseFreed, PgtableUseFreed, TlbAccess
from vmactors.ids import MM0, MmId
from vmactors.invariants import check_step
from vmactors.log.schema import PteInstall, TreeStore, VmaSetProt
from vmactors.mm.page_table import Pte
from vmactors.system.machine import Machine
from vmactors.system.state import StepResult, System

FORKED = """
    name = "forked"
    cpus = 2
    [[map]]
    name = "A"
    prefault = [0]
    [[thread]]
    ops = ["fork"]
    [[thread]]
    mm = "child"
    ops = ["r0 = load A"]
"""

ONE = """
    name = "one"
    [[map]]
    name = "A"
    prefault = []
    [[thread]]
    ops = ["r0 = load A"]
"""


def step(after: System, *events: Any, notes: tuple[Any, ...] = ()) -> StepResult:
    return StepResult(after, tuple(events), (), None, tuple(notes), 0)


def names(violations: list[Any]) -> list[str]:
    return [v.invariant for v in violations]


def with_space(system: System, mm: MmId, **changes: Any) -> System:
    space = attrs.evolve(system.world.mm(mm), **changes)
    return attrs.evolve(system, world=system.world.with_mm(mm, space))


@pytest.fixture
def forked(scenario):
    """cpu0 (the parent) maps A's page, frame F, and its TLB holds it writable; the
    child (mm 1) maps F too, read-only, as fork leaves them."""
    m = Machine(scenario(FORKED), "mmap_sem")
    system = m.initial
    a = m.labels["A"]
    pte = system.world.mm(MM0).ptes[a]
    shared = attrs.evolve(pte, prot="r", cow=True)
    parent = system.world.mm(MM0)
    system = with_space(system, MmId(1), tree=parent.tree, vmas=parent.vmas,
                        ptes=system.world.mm(MmId(1)).ptes.set(a, shared))
    return system, a, pte


# --- cow-isolation -----------------------------------------------------------------------


def test_a_store_into_the_page_its_own_mm_no_longer_maps_but_the_child_does(forked) -> None:
    system, a, pte = forked
    frames, copy = system.world.frames.alloc(pte.owner, 0)
    after = attrs.evolve(system, world=system.world.with_frames(frames))
    after = with_space(after, MM0, ptes=after.world.mm(MM0).ptes.set(a, attrs.evolve(pte, frame=copy)))
    v = check_step(system, step(after, notes=(TlbAccess(0, a, pte, store=True),)))
    assert names(v) == ["cow-isolation"]
    assert "address space 1" in v[0].detail and v[0].fields()["frame"] == pte.frame


def test_the_same_store_is_fine_while_its_mm_still_maps_the_page_or_when_it_is_a_load(forked) -> None:
    system, a, pte = forked
    assert check_step(system, step(system, notes=(TlbAccess(0, a, pte, store=True),))) == []
    frames, copy = system.world.frames.alloc(pte.owner, 0)
    after = attrs.evolve(system, world=system.world.with_frames(frames))
    after = with_space(after, MM0, ptes=after.world.mm(MM0).ptes.set(a, attrs.evolve(pte, frame=copy)))
    assert check_step(system, step(after, notes=(TlbAccess(0, a, pte, store=False),))) == []


def test_a_copy_taken_before_a_store_reached_the_shared_page(forked) -> None:
    system, a, pte = forked
    v = check_step(system, step(system, notes=(CowStoreLost(0, a, pte.frame, 7),)))
    assert names(v) == ["cow-isolation"] and "lost" in v[0].detail


# --- tree-uaf ----------------------------------------------------------------------------


def test_a_walk_that_read_a_freed_tree_node(scenario) -> None:
    system = Machine(scenario(ONE), "pervma").initial
    v = check_step(system, step(system, notes=(NodeUseFreed(0, MM0),)))
    assert names(v) == ["tree-uaf"] and v[0].fields()["cpu"] == 0


# --- pgtable-uaf ---------------------------------------------------------------------------


@pytest.mark.parametrize("state, words", [("dead", "unlinked"), ("freed", "freed"), ("mapped", "still held a PTE")])
def test_a_page_table_page_used_after_free_pgtables(scenario, state, words) -> None:
    system = Machine(scenario(ONE), "mmap_sem").initial
    v = check_step(system, step(system, notes=(PgtableUseFreed(1, MM0, 0x7e0000000000 // 0x200000, state),)))
    assert names(v) == ["pgtable-uaf"] and words in v[0].detail
    assert v[0].fields()["addr"] == 0x7e0000000000


# --- permissive-pte ------------------------------------------------------------------------


def test_a_pte_that_allows_a_store_its_vma_forbids(scenario) -> None:
    m = Machine(scenario(ONE), "mmap_sem")
    system, a = m.initial, m.labels["A"]
    space = system.world.mm(MM0)
    after = with_space(system, MM0, vmas=space.vmas.set("A", attrs.evolve(space.vmas["A"], prot="r")))
    pte = after.world.mm(MM0).ptes[a]
    ev = VmaSetProt(cpu=0, addr=a, pages=1, vma="A", prot="r")
    v = check_step(system, step(after, ev))
    assert names(v) == ["permissive-pte"] and "allows store" in v[0].detail
    # the PTE made read-only too: fine; the same VMA change inside a writer's operation: fine
    ro = with_space(after, MM0, ptes=after.world.mm(MM0).ptes.set(a, attrs.evolve(pte, prot="r")))
    assert check_step(system, step(ro, ev)) == []
    busy = with_space(after, MM0, writers=frozenset({(0, a, a + 4096)}))
    assert check_step(system, step(busy, TreeStore(addr=a, pages=1, entry="vma", vma="A"))) == []


def test_a_pte_as_permissive_as_its_vma_is_fine(scenario) -> None:
    m = Machine(scenario(ONE), "mmap_sem")
    system, a = m.initial, m.labels["A"]
    pte = system.world.mm(MM0).ptes[a]
    ev = PteInstall(cpu=0, addr=a, pages=1, frame=pte.frame, vma="A", prot="rw")
    assert check_step(system, step(system, ev)) == []


# --- an event about a fork's child is about the child's page ---------------------------------


def test_coherence_is_per_address_space(forked) -> None:
    """Parent and child mapping the page to different frames is what copy-on-write is."""
    system, a, pte = forked
    frames, copy = system.world.frames.alloc(pte.owner, 0)
    after = attrs.evolve(system, world=system.world.with_frames(frames))
    after = with_space(after, MmId(1), ptes=after.world.mm(MmId(1)).ptes.set(a, Pte(copy, "rw", "A", pte.owner)))
    ev = PteInstall(cpu=1, addr=a, pages=1, frame=copy, vma="A", prot="rw", mm=1)
    assert check_step(system, step(after, ev)) == []
