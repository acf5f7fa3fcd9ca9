"""Address layout constants (docs/design.md#the-world)."""

from __future__ import annotations

PAGE_SIZE = 4096
WORD = 8
#: Top of the mmap area: the first top-down mapping ends here.
MMAP_BASE = 0x7F0000000000
#: Lowest address a mapping may use (Linux's default mmap_min_addr).
MMAP_MIN = 0x10000
#: What one page-table page (a PTE page) maps: 512 PTEs, 2 MiB on x86-64.
PTRS_PER_PTE = 512
PMD_SIZE = PTRS_PER_PTE * PAGE_SIZE


def page_of(addr: int) -> int:
    """The page-aligned address of the page holding `addr`.

    >>> hex(page_of(0x7effffffe008))
    '0x7effffffe000'
    """
    return addr - (addr % PAGE_SIZE)


def pgtable_of(addr: int) -> int:
    """The index of the page-table page that holds the PTE for `addr` (its 2 MiB slot).

    >>> pgtable_of(0x7effffe00000) == pgtable_of(0x7effffffffff), pgtable_of(0x7effffdff000) + 1 == pgtable_of(0x7effffe00000)
    (True, True)
    """
    return addr // PMD_SIZE


def pgtable_range(index: int) -> tuple[int, int]:
    """[start, end) of the addresses page-table page `index` maps."""
    return index * PMD_SIZE, (index + 1) * PMD_SIZE


def page_range(start: int, pages: int) -> range:
    """The page-aligned addresses of `pages` pages from `start`."""
    return range(start, start + pages * PAGE_SIZE, PAGE_SIZE)
