"""Address layout constants (docs/design.md#the-world)."""

from __future__ import annotations

PAGE_SIZE = 4096
WORD = 8
#: Top of the mmap area: the first top-down mapping ends here.
MMAP_BASE = 0x7F0000000000
#: Lowest address a mapping may use (Linux's default mmap_min_addr).
MMAP_MIN = 0x10000


def page_of(addr: int) -> int:
    """The page-aligned address of the page holding `addr`.

    >>> hex(page_of(0x7effffffe008))
    '0x7effffffe000'
    """
    return addr - (addr % PAGE_SIZE)


def page_range(start: int, pages: int) -> range:
    """The page-aligned addresses of `pages` pages from `start`."""
    return range(start, start + pages * PAGE_SIZE, PAGE_SIZE)
