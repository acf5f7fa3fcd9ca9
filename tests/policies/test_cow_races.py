"""wp_page_copy against the writers that walk the same PTEs (docs/design.md#the-world):
a copy-on-write fault maps its copy only if the PTE still holds the page it copied
(pte_same), and a zap, change_protection, MAP_FIXED or move_ptes waits for the page-table lock
the fault holds between ptep_clear_flush and mapping the copy, as
pte_offset_map_lock makes it wait in the kernel. Without these, a page a writer took
away came back after the writer returned."""

from __future__ import annotations

import pytest

from vmactors.explore.exhaustive import explore_exhaustive

MAIN = ("mmap_sem", "wilcox", "glisse", "pervma")


def fork_then(ops: str, exists: str = "", maps: str = "") -> str:
    """Thread 0's store after fork copies A's shared page (5) while thread 1 runs `ops`
    on A (`maps`: more [[map]] tables)."""
    return f"""
    name = "cow-vs-writer"
    {exists}
    [[map]]
    name = "A"
    fill = 5
    prefault = [0]
    {maps}
    [[thread]]
    ops = ["fork", "store A+8 2"]
    [[thread]]
    ops = [{ops}]
"""


# Thread 1 discards A's pages.
FORK_THEN_DONTNEED = fork_then('"madvise A dontneed", "r2 = load A"', exists='exists = "1:r2 = 5"')

# Under wilcox the store's fault finds the new anonymous VMA over f1's read-only page
# and copies it (mapfixed-anon-over-file); the MAP_FIXED's zap must not be undone.
STORE_VS_ANON_MAP_FIXED = """
    name = "cow-vs-map-fixed"
    exists = "1:r1 = 1"
    [[map]]
    name = "A"
    kind = "file"
    file = "f1"
    fill = 1
    prot = "r"
    prefault = []
    [[thread]]
    ops = ["store A+8 3"]
    [[thread]]
    ops = ["mmap A fixed fill=2", "r1 = load A"]
"""

FORK_THEN_MUNMAP = fork_then('"munmap A", "r2 = load A"')


@pytest.mark.parametrize("policy", MAIN)
def test_a_copy_of_a_discarded_page_is_never_mapped(scenario, policy) -> None:
    """After MADV_DONTNEED returns, A reads 0 (or the copy's fresh page with 2 stored),
    never the discarded page's 5."""
    e, _ = explore_exhaustive(scenario(FORK_THEN_DONTNEED), policy)
    assert e.complete and e.exists == "never"
    assert {dict(s.regs)["1:r2"] for s in e.states} <= {0, 2}
    assert e.findings == ()


@pytest.mark.parametrize("policy", MAIN)
def test_old_file_data_never_shows_through_a_new_anonymous_mapping(scenario, policy) -> None:
    e, _ = explore_exhaustive(scenario(STORE_VS_ANON_MAP_FIXED), policy)
    assert e.complete and e.exists == "never"
    assert e.findings == ()


@pytest.mark.parametrize("policy", MAIN)
def test_munmap_leaves_no_copy_behind(scenario, policy) -> None:
    e, _ = explore_exhaustive(scenario(FORK_THEN_MUNMAP), policy)
    assert e.complete and e.findings == ()
    assert {dict(s.regs)["1:r2"] for s in e.states} == {"segv"}


FORK_THEN_MREMAP = fork_then('"mremap A to D", "r2 = load A", "r3 = load D+8"', maps='[[map]]\n    name = "D"')


@pytest.mark.parametrize("policy", MAIN)
def test_mremap_moves_the_copy_not_around_it(scenario, policy) -> None:
    """move_ptes waits for the copy-on-write's page-table lock: the old range keeps
    no PTE once mremap returned (no orphan PTE, no unmap left incomplete)."""
    e, _ = explore_exhaustive(scenario(FORK_THEN_MREMAP), policy)
    assert e.complete and e.findings == ()
    assert {dict(s.regs)["1:r2"] for s in e.states} == {"segv"}
