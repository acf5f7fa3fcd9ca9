"""The VMA tree (docs/design.md#the-world): a range map of VMA / NULL / ZERO entries with a top-down
allocator, checked against a reference model that is a plain dict page -> entry."""

from __future__ import annotations

from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from vmactors.mm.layout import MMAP_BASE, MMAP_MIN, PAGE_SIZE
from vmactors.mm.vma_tree import ZERO, VmaTree
from vmactors.system.setup import layout

#: The window the model tests work in: the top 12 pages under the mmap base, and
#: 4 pages at the bottom of the user range (so a gap that runs down to MMAP_MIN
#: can be closed off, and "nothing fits" is reachable).
TOP = [MMAP_BASE - (i + 1) * PAGE_SIZE for i in range(12)][::-1]
BOTTOM = [MMAP_MIN + i * PAGE_SIZE for i in range(4)]
WINDOW = BOTTOM + TOP
ENTRIES = st.sampled_from(["A", "B", "C", ZERO, None])


class Reference:
    """page -> entry ("A", ZERO); a missing page is NULL."""

    def __init__(self) -> None:
        self.pages: dict[int, object] = {}

    def store(self, start: int, end: int, entry: object) -> None:
        for p in range(start, end, PAGE_SIZE):
            if entry is None:
                self.pages.pop(p, None)
            else:
                self.pages[p] = entry

    def load(self, addr: int) -> object:
        return self.pages.get(addr - addr % PAGE_SIZE)

    def find_vma(self, addr: int) -> object:
        e = self.load(addr)
        return e if isinstance(e, str) else None

    def is_free(self, start: int, end: int) -> bool:
        return all(p not in self.pages for p in range(start, end, PAGE_SIZE))

    def get_unmapped_area(self, size: int, hint: int | None) -> int | None:
        if hint is not None and MMAP_MIN <= hint and hint + size <= MMAP_BASE and self.is_free(hint, hint + size):
            return hint
        # The top of each gap: the mmap base, or the start of a taken run.
        tops = [MMAP_BASE] + sorted((p for p in self.pages if p - PAGE_SIZE not in self.pages), reverse=True)
        for top in tops:
            if top > MMAP_BASE:
                continue
            start = top - size
            if start >= MMAP_MIN and self.is_free(max(start, MMAP_MIN), top):
                return start
        return None


def ranges() -> st.SearchStrategy[tuple[int, int]]:
    """A page-aligned range that starts inside the window (it may run over its edge)."""
    return st.tuples(st.sampled_from(WINDOW), st.integers(1, 5)).map(lambda t: (t[0], t[0] + t[1] * PAGE_SIZE))


class VmaTreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tree = VmaTree()
        self.ref = Reference()
        self.versions: list[tuple[VmaTree, dict[int, object]]] = []

    @rule(r=ranges(), entry=ENTRIES)
    def store(self, r: tuple[int, int], entry: object) -> None:
        start, end = r
        if end > MMAP_BASE:
            end = MMAP_BASE
        if start >= end:
            return
        # A published version never changes under an RCU reader.
        self.versions.append((self.tree, dict(self.ref.pages)))
        self.tree = self.tree.store(start, end, entry)  # type: ignore[arg-type]
        self.ref.store(start, end, entry)

    @rule(pages=st.integers(1, 6), hint=st.none() | st.sampled_from(WINDOW + [MMAP_MIN - PAGE_SIZE, MMAP_BASE]))
    def allocate(self, pages: int, hint: int | None) -> None:
        size = pages * PAGE_SIZE
        got = self.tree.get_unmapped_area(size, hint)
        want = self.ref.get_unmapped_area(size, hint)
        assert got == want, (pages, hint, got, want)
        if got is not None:
            assert got % PAGE_SIZE == 0 and MMAP_MIN <= got and got + size <= MMAP_BASE
            assert self.ref.is_free(got, got + size)

    @rule(r=ranges())
    def range_queries(self, r: tuple[int, int]) -> None:
        start, end = r
        assert self.tree.is_free(start, end) == self.ref.is_free(start, end)
        ids = []
        for p in range(start, end, PAGE_SIZE):
            e = self.ref.find_vma(p)
            if e is not None and e not in ids:
                ids.append(e)
        assert list(self.tree.vma_ids(start, end)) == ids

    @invariant()
    def every_page_agrees(self) -> None:
        for p in WINDOW + [MMAP_BASE, MMAP_MIN - PAGE_SIZE, TOP[0] - PAGE_SIZE]:
            for addr in (p, p + 8, p + PAGE_SIZE - 8):
                assert self.tree.load(addr) is self.ref.load(addr) or self.tree.load(addr) == self.ref.load(addr)
                assert self.tree.find_vma(addr) == self.ref.find_vma(addr)

    @invariant()
    def old_versions_are_unchanged(self) -> None:
        if self.versions:
            tree, pages = self.versions[-1]
            for p in WINDOW:
                assert tree.load(p) == pages.get(p)

    @invariant()
    def entries_are_sorted_disjoint_and_merged(self) -> None:
        t = self.tree
        assert len(t.starts) == len(t.ends) == len(t.entries) == len(t)
        for i in range(len(t)):
            assert t.starts[i] < t.ends[i]
            assert t.entries[i] is not None
            if i:
                assert t.ends[i - 1] <= t.starts[i]
                assert not (t.ends[i - 1] == t.starts[i] and t.entries[i - 1] == t.entries[i])


TestVmaTreeAgainstReference = VmaTreeMachine.TestCase
TestVmaTreeAgainstReference.settings = settings(max_examples=50, stateful_step_count=20)


@given(st.lists(st.tuples(ranges(), ENTRIES), max_size=8))
def test_equal_contents_give_equal_trees(stores: list[tuple[tuple[int, int], object]]) -> None:
    """Two trees holding the same entries compare equal however they were built (the
    explorer's state key relies on it)."""
    tree = VmaTree()
    ref = Reference()
    for (start, end), entry in stores:
        end = min(end, MMAP_BASE)
        if start < end:
            tree = tree.store(start, end, entry)  # type: ignore[arg-type]
            ref.store(start, end, entry)
    rebuilt = VmaTree()
    for p, e in sorted(ref.pages.items()):
        rebuilt = rebuilt.store(p, p + PAGE_SIZE, e)  # type: ignore[arg-type]
    note(repr(tree))
    assert tree == rebuilt


def test_zero_reads_as_null_for_lookups_but_is_taken_for_the_allocator() -> None:
    top = MMAP_BASE - PAGE_SIZE
    t = VmaTree().store(top, MMAP_BASE, ZERO)
    assert t.load(top + 8) is ZERO
    assert t.find_vma(top + 8) is None
    assert not t.is_free(top, MMAP_BASE)
    assert t.get_unmapped_area(PAGE_SIZE) == top - PAGE_SIZE
    assert t.get_unmapped_area(PAGE_SIZE, hint=top) == top - PAGE_SIZE
    # ... and once it is NULL again, the range is free.
    t = t.store(top, MMAP_BASE, None)
    assert t.get_unmapped_area(PAGE_SIZE) == top
    assert len(t) == 0


def test_first_mapping_ends_at_the_mmap_base() -> None:
    assert VmaTree().get_unmapped_area(3 * PAGE_SIZE) == MMAP_BASE - 3 * PAGE_SIZE


def test_top_down_in_declaration_order_without_guard_gaps(scenario) -> None:
    s = scenario("""
        name = "layout"
        [[map]]
        name = "A"
        pages = 2
        [[map]]
        name = "B"
        [[map]]
        name = "C"
        at = 0x7e0000000000
        [[map]]
        name = "D"
        pages = 3
        [[thread]]
        ops = ["r0 = load A"]
    """)
    where = layout(s)
    assert where["A"] == MMAP_BASE - 2 * PAGE_SIZE
    assert where["B"] == where["A"] - PAGE_SIZE
    assert where["C"] == 0x7E0000000000
    assert where["D"] == where["B"] - 3 * PAGE_SIZE


def test_a_freed_top_range_is_reused_next() -> None:
    a = VmaTree().get_unmapped_area(PAGE_SIZE)
    t = VmaTree().store(a, a + PAGE_SIZE, "A")
    b = t.get_unmapped_area(PAGE_SIZE)
    t = t.store(b, b + PAGE_SIZE, "B")
    assert (a, b) == (MMAP_BASE - PAGE_SIZE, MMAP_BASE - 2 * PAGE_SIZE)
    t = t.store(a, a + PAGE_SIZE, None)  # munmap A
    assert t.get_unmapped_area(PAGE_SIZE) == a
    # A bigger request does not fit there and goes under B.
    assert t.get_unmapped_area(2 * PAGE_SIZE) == b - 2 * PAGE_SIZE


def test_a_hint_is_used_only_when_its_range_is_free() -> None:
    hint = 0x7E0000000000
    t = VmaTree()
    assert t.get_unmapped_area(PAGE_SIZE, hint) == hint
    taken = t.store(hint, hint + PAGE_SIZE, "A")
    assert taken.get_unmapped_area(PAGE_SIZE, hint) == MMAP_BASE - PAGE_SIZE
    zero = t.store(hint + PAGE_SIZE, hint + 2 * PAGE_SIZE, ZERO)
    assert zero.get_unmapped_area(2 * PAGE_SIZE, hint) == MMAP_BASE - 2 * PAGE_SIZE
    assert zero.get_unmapped_area(PAGE_SIZE, hint) == hint
    # A hint outside the user range is ignored.
    assert t.get_unmapped_area(PAGE_SIZE, MMAP_BASE) == MMAP_BASE - PAGE_SIZE
    assert t.get_unmapped_area(PAGE_SIZE, MMAP_MIN - PAGE_SIZE) == MMAP_BASE - PAGE_SIZE


def test_nothing_fits() -> None:
    t = VmaTree().store(MMAP_MIN, MMAP_BASE, "ALL")
    assert t.get_unmapped_area(PAGE_SIZE) is None
    t = t.store(MMAP_MIN, MMAP_MIN + PAGE_SIZE, None)
    assert t.get_unmapped_area(PAGE_SIZE) == MMAP_MIN
    assert t.get_unmapped_area(2 * PAGE_SIZE) is None


def test_a_partial_store_keeps_the_uncovered_parts() -> None:
    base = MMAP_BASE - 4 * PAGE_SIZE
    t = VmaTree().store(base, MMAP_BASE, "A").store(base + PAGE_SIZE, base + 2 * PAGE_SIZE, ZERO)
    assert [t.load(base + i * PAGE_SIZE) for i in range(4)] == ["A", ZERO, "A", "A"]
    assert list(t.items()) == [
        (base, base + PAGE_SIZE, "A"),
        (base + PAGE_SIZE, base + 2 * PAGE_SIZE, ZERO),
        (base + 2 * PAGE_SIZE, MMAP_BASE, "A"),
    ]
    assert t.vma_ids(base, MMAP_BASE) == ("A",)
