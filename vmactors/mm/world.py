"""Shared world state of one address space (DESIGN §1): the VMA tree, VMAs, page
tables, page caches and frames. Changed only inside one actor step (that is the
page-table lock); TLBs belong to their CPUs and live in the CPU state.

The `writers` and `unmapped` sets are bookkeeping for invariant checks (which
ranges a writer is in the middle of, which VMAs a returned munmap removed).
"""

from __future__ import annotations

import attrs
import immutables

from .frames import FrameTable
from .layout import page_range
from .page_table import Pte
from .vma import Vma
from .vma_tree import VmaTree


@attrs.frozen(cache_hash=True)
class World:
    tree: VmaTree = VmaTree()
    vmas: immutables.Map[str, Vma] = immutables.Map()
    ptes: immutables.Map[int, Pte] = immutables.Map()
    #: (file, page index) -> frame id.
    page_cache: immutables.Map[tuple[str, int], int] = immutables.Map()
    frames: FrameTable = FrameTable()
    #: (cpu, start, end) of writer operations between their tree update and return.
    writers: frozenset[tuple[int, int, int]] = frozenset()
    #: VMAs removed by a munmap / MAP_FIXED that has returned.
    unmapped: frozenset[str] = frozenset()
    #: glisse: fenced ranges (start, end, owner cpu, waiting cpus): a fault that finds
    #: a VMA there waits until the owner's munmap flush or MAP_FIXED is done.
    fences: tuple[tuple[int, int, int, frozenset[int]], ...] = ()

    def vma(self, vma_id: str) -> Vma:
        return self.vmas[vma_id]

    def find_vma(self, addr: int) -> Vma | None:
        """What a lookup sees at `addr` (NULL and ZERO both give None)."""
        vid = self.tree.find_vma(addr)
        return None if vid is None else self.vmas[vid]

    def set_vma(self, vma: Vma) -> "World":
        return attrs.evolve(self, vmas=self.vmas.set(vma.id, vma))

    def install_pte(self, page: int, pte: Pte) -> "World":
        return attrs.evolve(self, ptes=self.ptes.set(page, pte))

    def zap_range(self, start: int, pages: int) -> tuple["World", list[tuple[int, Pte]]]:
        """Remove every PTE in the range; returns the zapped (page, pte) pairs."""
        zapped = [(p, self.ptes[p]) for p in page_range(start, pages) if p in self.ptes]
        if not zapped:
            return self, zapped
        m = self.ptes.mutate()
        for p, _ in zapped:
            del m[p]
        return attrs.evolve(self, ptes=m.finish()), zapped

    def in_writer(self, page: int) -> bool:
        return any(s <= page < e for _, s, e in self.writers)

