"""Shared world state (docs/design.md#the-world): frames and page caches, and one `AddressSpace` per
`mm`, keyed by its id. Changed only inside one actor step (that step is the
page-table lock); TLBs belong to their CPUs and live in the CPU state.

An address space holds its VMA tree, its VMAs and page tables, the records its
locking design keeps (`policy`: key -> frozen record, owned by the policy module),
and two sets of bookkeeping for the invariant checkers (`writers`: which ranges a
writer is in the middle of; `unmapped`: which VMAs a returned munmap removed).

Two more records exist only where a scenario needs them, so every other scenario's
states are what they were: `pins`, the kernel objects a CPU holds a bare pointer to
across steps (a maple-tree node its walk recorded, a page-table page its fault walked
to), each `live`, `dead` (unlinked: a maple node replaced, a page-table page cleared
from its pmd) or `freed`; and `pgtables`, the page-table pages present (by
`layout.pgtable_of` index), kept only when the scenario frees page-table pages
(`free_pgtables = true`; None otherwise: they are never freed).

>>> w = World.empty(1)
>>> w.mm(MM0).tree.find_vma(0x10000) is None
True
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Literal

import attrs
import immutables

from ..ids import MM0, MmId
from .frames import FrameTable
from .page_table import Pte
from .vma import Vma
from .vma_tree import VmaTree

#: A writer between its tree update and its return: (cpu, start, end).
Writer = tuple[int, int, int]


PinState = Literal["live", "dead", "freed"]
#: A pin's key: (kind, cpu); kinds are "node" (a maple-tree node), "pgtable" (a
#: page-table page) and "ptl" (page-table locks held across steps).
PinKey = tuple[str, int]


def ptl_ranges(pin: "Pin") -> tuple[tuple[int, int], ...]:
    """The ranges a page-table-lock pin covers."""
    return pin.obj if isinstance(pin.obj, tuple) else ()


@attrs.frozen(cache_hash=True)
class Pin:
    """A bare pointer a CPU holds across steps: to `obj` (a page-table page's index;
    None for the maple node a walk found; the ranges of a page-table lock held across
    a shootdown), and what became of the object since."""

    obj: int | None | tuple[tuple[int, int], ...]
    state: PinState = "live"
    #: CPUs waiting for it to go (a held page-table lock's waiters).
    waiters: frozenset[int] = frozenset()


@attrs.frozen(cache_hash=True)
class AddressSpace:
    tree: VmaTree = VmaTree()
    vmas: immutables.Map[str, Vma] = immutables.Map()
    ptes: immutables.Map[int, Pte] = immutables.Map()
    #: The locking design's own records (per-VMA locks, references, fences), by key.
    policy: immutables.Map[Hashable, Hashable] = immutables.Map()
    writers: frozenset[Writer] = frozenset()
    unmapped: frozenset[str] = frozenset()
    #: Pointers CPUs hold across steps, by (kind, cpu) (see the module docstring).
    pins: immutables.Map[PinKey, Pin] = immutables.Map()
    #: The page-table pages present, by index; None: not modelled (never freed).
    pgtables: frozenset[int] | None = None

    def find_vma(self, addr: int) -> Vma | None:
        """What a lookup sees at `addr` (NULL and ZERO both give None)."""
        vid = self.tree.find_vma(addr)
        return None if vid is None else self.vmas[vid]

    def in_writer(self, page: int) -> bool:
        return any(s <= page < e for _, s, e in self.writers)

    def rename_cpus(self, ren: Mapping[int, int],
                    record: Callable[[Hashable, Hashable, Mapping[int, int]], Hashable] | None) -> "AddressSpace":
        """The address space with every CPU index `i` read as `ren[i]`: the writers,
        the pins (whose CPU holds them, who waits), and the locking design's records
        through its own `record` renamer."""
        policy = self.policy
        if record is not None and policy:
            changed = {k: r for k, v in policy.items() if (r := record(k, v, ren)) != v}
            if changed:
                policy = policy.update(changed)
        writers = self.writers
        if any(ren[c] != c for c, _, _ in writers):
            writers = frozenset((ren[c], s, e) for c, s, e in writers)
        pins = self.pins
        if any(ren[c] != c or any(ren[w] != w for w in pin.waiters) for (_, c), pin in pins.items()):
            pins = immutables.Map({(kind, ren[c]): Pin(pin.obj, pin.state, frozenset(ren[w] for w in pin.waiters))
                                   for (kind, c), pin in pins.items()})
        if policy is self.policy and writers is self.writers and pins is self.pins:
            return self
        return AddressSpace(self.tree, self.vmas, self.ptes, policy, writers, self.unmapped, pins, self.pgtables)


@attrs.frozen(cache_hash=True)
class World:
    mms: tuple[AddressSpace, ...]
    #: (file, page index) -> frame id.
    page_cache: immutables.Map[tuple[str, int], int] = immutables.Map()
    frames: FrameTable = FrameTable()
    #: Which CPUs' caches hold each cache line of shared kernel data, and when its
    #: last transfer ends: history for the cost model (`vmactors.system.clock`), not
    #: part of a state's identity.
    caches: immutables.Map[Hashable, Hashable] = attrs.field(default=immutables.Map(), eq=False)

    @classmethod
    def empty(cls, mms: int = 1) -> "World":
        return cls(mms=tuple(AddressSpace() for _ in range(mms)))

    def mm(self, mm: MmId = MM0) -> AddressSpace:
        return self.mms[mm]

    def with_mm(self, mm: MmId, space: AddressSpace) -> "World":
        return World(self.mms[:mm] + (space,) + self.mms[mm + 1:], self.page_cache, self.frames, self.caches)

    def with_frames(self, frames: FrameTable) -> "World":
        return World(self.mms, self.page_cache, frames, self.caches)

    def rename_cpus(self, ren: Mapping[int, int],
                    record: Callable[[Hashable, Hashable, Mapping[int, int]], Hashable] | None) -> "World":
        mms = tuple(s.rename_cpus(ren, record) for s in self.mms)
        if all(a is b for a, b in zip(mms, self.mms)):
            return self
        return World(mms, self.page_cache, self.frames, self.caches)

    def with_page_cache(self, cache: immutables.Map[tuple[str, int], int]) -> "World":
        return World(self.mms, cache, self.frames, self.caches)
