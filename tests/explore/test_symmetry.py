"""Symmetry reduction (docs/design.md#exploring): interchangeable CPUs are found, and
the step relation commutes with swapping them — the successors of a swapped state are
the swapped successors — which is what makes keying a state by its orbit sound."""

from __future__ import annotations

import itertools

import pytest

from vmactors.explore.canon import state_key
from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.space import EXACT, Options
from vmactors.explore.symmetry import Symmetry, symmetry_classes
from vmactors.system.machine import Machine

READERS = """
    name = "readers-and-a-writer"
    cpus = 3
    [[map]]
    name = "A"
    fill = 1
    prefault = [0, 1]
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["r0 = load A"]
    [[thread]]
    ops = ["munmap A"]
"""


def test_identical_readers_are_one_class_and_the_writer_is_not(scenario) -> None:
    m = Machine(scenario(READERS), "wilcox")
    assert symmetry_classes(m) == ((0, 1),)


def test_a_different_tlb_or_program_breaks_the_symmetry(scenario) -> None:
    cold = READERS.replace("prefault = [0, 1]", "prefault = [0]")
    assert symmetry_classes(Machine(scenario(cold), "wilcox")) == ()
    other = READERS.replace('ops = ["r0 = load A"]\n    [[thread]]\n    ops = ["munmap A"]',
                            'ops = ["r1 = load A"]\n    [[thread]]\n    ops = ["munmap A"]')
    assert other != READERS
    assert symmetry_classes(Machine(scenario(other), "wilcox")) == ()


#: Readers that wait on a MAP_FIXED: glisse's fence records them.
FIXED = READERS.replace('"munmap A"', '"mmap A fixed fill=2"')


#: Readers whose walks hold a maple node (StackRot's expansion under the read lock).
STACK = """
    name = "stack-readers"
    cpus = 3
    [[map]]
    name = "S2"
    growsdown = true
    at = 0x7e0000000000
    [[map]]
    name = "S1"
    growsdown = true
    at = 0x7e0000002000
    [[thread]]
    ops = ["r0 = load S1-8"]
    [[thread]]
    ops = ["r0 = load S1-8"]
    [[thread]]
    ops = ["store S1 1"]
"""
#: Readers whose walks hold a page-table page that munmap frees after its downgrade.
PGTABLE = """
    name = "pgtable-readers"
    cpus = 3
    free_pgtables = true
    [[map]]
    name = "S"
    growsdown = true
    at = 0x7e0000200000
    [[map]]
    name = "U"
    at = 0x7e00001ff000
    prefault = []
    [[thread]]
    ops = ["r0 = load S-8"]
    [[thread]]
    ops = ["r0 = load S-8"]
    [[thread]]
    ops = ["munmap U"]
"""
#: RCU readers that wait for the page-table lock mremap holds across its flush.
PTL = """
    name = "ptl-readers"
    cpus = 3
    [[map]]
    name = "A"
    kind = "file"
    file = "f"
    [[map]]
    name = "B"
    [[thread]]
    ops = ["r0 = load B"]
    [[thread]]
    ops = ["r0 = load B"]
    [[thread]]
    ops = ["mremap A to B"]
"""


@pytest.mark.parametrize("policy, text", [(p, t) for p in ("mmap_sem", "wilcox", "glisse", "pervma")
                                          for t in (READERS, FIXED)]
                         + [("pervma-stack-read-lock", STACK), ("mmap_sem-downgrade-next-to-stack", PGTABLE),
                            ("wilcox", PTL)],
                         ids=[f"{p}-{t}" for p in ("mmap_sem", "wilcox", "glisse", "pervma") for t in ("munmap", "map-fixed")]
                         + ["stack-node-pins", "pgtable-pins", "ptl-waiters"])
def test_swapping_the_readers_commutes_with_every_step(scenario, policy, text) -> None:
    """For every state of the full graph (breadth-first, up to 400) and the swap π of
    the two readers: succ(π(s)) = π(succ(s)), as sets of states (up to frame names),
    and π(s) has the same canonical form as s."""
    m = Machine(scenario(text), policy)
    sym = Symmetry(m)
    swap = {0: 1, 1: 0, 2: 2}
    seen = {state_key(m, m.initial)}
    level = [m.initial]
    checked = 0
    while level and checked < 400:
        nxt = []
        for s in level:
            image = sym.rename(s, swap)
            assert state_key(m, sym.canonical(image)) == state_key(m, sym.canonical(s))
            succ = [m.apply(s, step).system for step in m.enabled(s)]
            want = {state_key(m, sym.rename(t, swap)) for t in succ}
            got = {state_key(m, m.apply(image, step).system) for step in m.enabled(image)}
            assert got == want, f"step {s.step}: the swap does not commute under {policy}"
            checked += 1
            for t in succ:
                k = state_key(m, t)
                if k not in seen:
                    seen.add(k)
                    nxt.append(t)
        level = nxt
    assert checked > 50


@pytest.mark.parametrize("policy", ["wilcox", "pervma"])
def test_symmetry_shrinks_the_graph_and_keeps_every_thread_labelling(scenario, policy) -> None:
    s = scenario(READERS)
    exact, _ = explore_exhaustive(s, policy, options=EXACT)
    sym, _ = explore_exhaustive(s, policy, options=Options(reduction=False, symmetry=True))
    assert sym.distinct_states < exact.distinct_states
    # cpu0 segv and cpu1 1, and its mirror image, are both listed, with runs that end there.
    assert {st.regs for st in sym.states} == {st.regs for st in exact.states}
    mirror = [st for st in sym.states if dict(st.regs) in ({"0:r0": "segv", "1:r0": 1}, {"0:r0": 1, "1:r0": "segv"})]
    assert len(mirror) == 2 and all(st.choices for st in mirror)
    for a, b in itertools.combinations(mirror, 2):
        assert a.choices != b.choices
