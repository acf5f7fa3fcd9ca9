"""Per-CPU TLBs: virtual page -> cached PTE. Only the owning CPU fills or flushes."""

from __future__ import annotations

import immutables

from .layout import PAGE_SIZE
from .page_table import TlbEntry

Tlb = immutables.Map  # Map[int, TlbEntry]


def flush_tlb_range(tlb: "immutables.Map[int, TlbEntry]", start: int, pages: int) -> "immutables.Map[int, TlbEntry]":
    """Drop every entry for the `pages` pages from `start`."""
    if not tlb:
        return tlb
    m = tlb.mutate()
    for page in range(start, start + pages * PAGE_SIZE, PAGE_SIZE):
        if page in m:
            del m[page]
    return m.finish()
