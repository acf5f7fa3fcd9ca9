"""The ops the kernel's history needed (docs/history.md), each under every design and
the pre-4.20 `mmap_sem`: `fork` (a copy-on-write child whose threads start when it
returns), a grows-down map (the stack), `mremap`, `truncate`, page-table pages that
munmap frees. Each litmus test: the setup, every interleaving, the outcomes. The
ablations run them in the library (tests/system/test_footprint.py,
tests/sim/test_trio_runtime.py)."""

from __future__ import annotations

import pytest

from vmactors.scenario import parse_scenario

DESIGNS = ("mmap_sem", "mmap_sem-4.19", "wilcox", "glisse", "pervma")


def outcomes(vm, text: str, policy: str) -> tuple[set[tuple[tuple[str, object], ...]], set[str]]:
    e = vm.explore(parse_scenario(text, "ops.toml"), policy)
    assert e.complete and {s.end for s in e.states} == {"ok"}
    return {tuple(sorted(s.regs)) for s in e.states}, {f.invariant for f in e.findings}


FORK = """
    name = "fork-copies"
    cpus = 2
    [[map]]
    name = "A"
    fill = 1
    prefault = [0]
    [[map]]
    name = "F"
    kind = "file"
    file = "f"
    [[thread]]
    ops = ["store A 5", "fork", "store A 7", "store F 3"]
    [[thread]]
    mm = "child"
    ops = ["r1 = load A", "store A 9", "r2 = load A", "r3 = load F"]
"""


@pytest.mark.parametrize("policy", DESIGNS)
def test_the_child_sees_the_page_as_it_was_at_fork_and_shares_the_file(vm, policy) -> None:
    """The child starts when fork returns; its anonymous page is the parent's as of
    the fork (5, never the parent's later 7) and its own store stays its own; the
    shared file page shows the parent's store once it is made."""
    regs, violations = outcomes(vm, FORK, policy)
    assert regs == {(("1:r1", 5), ("1:r2", 9), ("1:r3", f)) for f in (0, 3)}
    assert violations == set()


STACK = """
    name = "stack-grows"
    [[map]]
    name = "S"
    growsdown = true
    at = 0x7e0000010000
    [[map]]
    name = "A"
    at = 0x7e000000d000
    [[thread]]
    ops = ["store S-8 1", "r0 = load S-8", "r1 = load S-0x1008"]
"""


@pytest.mark.parametrize("policy", DESIGNS)
def test_a_stack_grows_down_to_a_fault_below_it_but_keeps_its_guard(vm, policy) -> None:
    """S-8 is in the gap just below the stack: the fault expands S to it. The page
    below that would leave no guard page above A: SIGSEGV."""
    regs, violations = outcomes(vm, STACK, policy)
    assert regs == {(("0:r0", 1), ("0:r1", "segv"))}
    assert violations == set()


MREMAP = """
    name = "mremap-moves"
    cpus = 2
    [[map]]
    name = "A"
    fill = 4
    prefault = [0, 1]
    [[map]]
    name = "B"
    fill = 6
    prefault = [1]
    [[thread]]
    ops = ["store A 5", "mremap A to B", "r0 = load B", "r1 = load A"]
    [[thread]]
    ops = ["r2 = load B"]
"""


@pytest.mark.parametrize("policy", DESIGNS)
def test_mremap_moves_the_page_and_unmaps_what_was_there(vm, policy) -> None:
    """A's page, with the store, is at B's address afterwards and A's range is gone;
    cpu1 reads B's old page (6) or the moved one (5), never a mix of translations —
    except in the RCU designs, whose faults take no lock mremap holds: a fault in B
    between the tree update and move_ptes maps a fresh page of the moved VMA (4),
    which move_ptes then replaces (`coherence`; the designs say nothing of mremap)."""
    regs, violations = outcomes(vm, MREMAP, policy)
    seen = {6, 5} | ({4} if policy in ("wilcox", "glisse") else set())
    assert regs == {(("0:r0", 5), ("0:r1", "segv"), ("1:r2", v)) for v in seen}
    assert violations == ({"coherence"} if policy in ("wilcox", "glisse") else set())


TRUNCATE = """
    name = "truncate-drops"
    cpus = 2
    [[map]]
    name = "F"
    kind = "file"
    file = "f"
    fill = 2
    prefault = [0, 1]
    [[thread]]
    ops = ["store F 5", "truncate f", "r0 = load F"]
    [[thread]]
    ops = ["r1 = load F"]
"""


@pytest.mark.parametrize("policy", DESIGNS)
def test_truncate_drops_the_file_pages_everywhere(vm, policy) -> None:
    """After truncate, the file reads as fresh zeroes; the other CPU reads the page
    before (2, 5) or after (0) it, through no stale translation."""
    regs, violations = outcomes(vm, TRUNCATE, policy)
    assert regs == {(("0:r0", 0), ("1:r1", v)) for v in (0, 2, 5)}
    assert violations == set()


PGTABLES = """
    name = "pgtables-freed"
    free_pgtables = true
    [[map]]
    name = "U"
    prefault = []
    [[thread]]
    ops = ["munmap U", "V = mmap", "store V 1", "r0 = load V"]
"""


@pytest.mark.parametrize("policy", DESIGNS)
def test_munmap_frees_the_page_table_page_and_a_later_fault_gets_a_new_one(vm, policy) -> None:
    s = parse_scenario(PGTABLES, "ops.toml")
    r = vm.run(s, policy)
    assert r.outcome == "ok" and r.regs["0:r0"] == 1
    assert r.regs["0:V"] == 0x7EFFFFFFF000  # U's range, reused top-down
    assert len(r.events(event="pgtable.free")) == 1


MREMAP_TO_ADDR = """
    name = "mremap-to-an-address"
    [[map]]
    name = "A"
    pages = 2
    fill = 4
    [[thread]]
    ops = ["store A 5", "mremap A to 0x7efffffff000", "r0 = load A", "mremap A to 0x7e0000000000",
           "r1 = load 0x7e0000000000", "r2 = load A"]
"""


@pytest.mark.parametrize("policy", DESIGNS)
def test_mremap_onto_an_overlapping_range_moves_nothing_and_to_a_free_address_moves(vm, policy) -> None:
    """A is 0x7effffffe000-0x7f0000000000: onto 0x7efffffff000 it would overlap itself,
    so nothing moves (Linux: EINVAL); to a free address, the page is there and A's
    range is gone."""
    regs, violations = outcomes(vm, MREMAP_TO_ADDR, policy)
    assert regs == {(("0:r0", 5), ("0:r1", 5), ("0:r2", "segv"))}
    assert violations == set()
