"""The VMA tree: an immutable range map whose entries are a VMA id, NULL or ZERO.

ZERO is the maple-tree reservation Wilcox describes: a lookup sees NULL, the
allocator sees the range as taken. Every update returns a new tree (a published
version); an RCU reader keeps the version it found. Lookups are binary searches, so
their cost grows with log(#entries); updates copy the entry tuples, which is cheap at
the sizes scenarios use.

>>> t = VmaTree().store(0x20000, 0x22000, "A")
>>> t.find_vma(0x21008)
'A'
>>> z = t.store(0x20000, 0x22000, ZERO)
>>> z.find_vma(0x21008) is None, z.is_free(0x20000, 0x22000)
(True, False)
"""

from __future__ import annotations

import bisect
from typing import Final, Iterator, Union

import attrs

from .layout import MMAP_BASE, MMAP_MIN


class _Zero:
    """The ZERO entry (a singleton)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ZERO"

    def __reduce__(self) -> str:
        return "ZERO"


ZERO: Final = _Zero()
Entry = Union[str, _Zero]


@attrs.frozen(cache_hash=True)
class VmaTree:
    """Sorted, non-overlapping [start, end) ranges with their entries; gaps are NULL."""

    starts: tuple[int, ...] = ()
    ends: tuple[int, ...] = ()
    entries: tuple[Entry, ...] = ()

    def load(self, addr: int) -> Entry | None:
        """The raw entry at `addr`: a VMA id, ZERO, or None (NULL)."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.ends[i]:
            return self.entries[i]
        return None

    def find_vma(self, addr: int) -> str | None:
        """What a lookup sees: the VMA id at `addr`, or None for NULL and ZERO."""
        entry = self.load(addr)
        return entry if isinstance(entry, str) else None

    def next_entry(self, addr: int) -> tuple[int, int, Entry] | None:
        """The first entry starting above `addr` ((start, end, entry)), or None."""
        i = bisect.bisect_right(self.starts, addr)
        return (self.starts[i], self.ends[i], self.entries[i]) if i < len(self.starts) else None

    def prev_entry(self, addr: int) -> tuple[int, int, Entry] | None:
        """The last entry ending at or below `addr`, or None.

        >>> t = VmaTree().store(0x20000, 0x21000, "A").store(0x30000, 0x31000, "S")
        >>> t.prev_entry(0x2f000)[2], t.next_entry(0x2f000)[2], t.next_entry(0x30000)
        ('A', 'S', None)
        """
        i = bisect.bisect_right(self.ends, addr) - 1
        return (self.starts[i], self.ends[i], self.entries[i]) if i >= 0 else None

    def items(self, start: int = 0, end: int = 1 << 64) -> Iterator[tuple[int, int, Entry]]:
        """Entries overlapping [start, end), clipped to it, in address order."""
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while i < len(self.starts) and self.starts[i] < end:
            if self.ends[i] > start:
                yield max(self.starts[i], start), min(self.ends[i], end), self.entries[i]
            i += 1

    def vma_ids(self, start: int, end: int) -> tuple[str, ...]:
        """The VMA ids found in [start, end), each once, in address order."""
        seen: list[str] = []
        for _, _, e in self.items(start, end):
            if isinstance(e, str) and e not in seen:
                seen.append(e)
        return tuple(seen)

    def holds(self, vma_id: str) -> bool:
        return vma_id in self.entries

    def store(self, start: int, end: int, entry: Entry | None) -> "VmaTree":
        """A new version with [start, end) set to `entry` (None stores NULL).

        Entries only partly covered keep their uncovered parts."""
        assert start < end
        out: list[tuple[int, int, Entry]] = []
        placed = False
        for s, e, x in zip(self.starts, self.ends, self.entries):
            if e <= start or s >= end:
                if s >= end and not placed:
                    if entry is not None:
                        out.append((start, end, entry))
                    placed = True
                out.append((s, e, x))
                continue
            if s < start:
                out.append((s, start, x))
            if not placed:
                if entry is not None:
                    out.append((start, end, entry))
                placed = True
            if e > end:
                out.append((end, e, x))
        if not placed and entry is not None:
            out.append((start, end, entry))
        # Merge neighbours holding the same entry so equal trees compare equal.
        merged: list[tuple[int, int, Entry]] = []
        for s, e, x in out:
            if merged and merged[-1][1] == s and merged[-1][2] == x:
                merged[-1] = (merged[-1][0], e, x)
            else:
                merged.append((s, e, x))
        return VmaTree(
            tuple(m[0] for m in merged), tuple(m[1] for m in merged), tuple(m[2] for m in merged)
        )

    def is_free(self, start: int, end: int) -> bool:
        """True when [start, end) is all NULL (ZERO counts as taken)."""
        return next(self.items(start, end), None) is None

    def get_unmapped_area(self, size: int, hint: int | None = None) -> int | None:
        """Where a new mapping of `size` bytes goes: at `hint` if that range is free
        (a hint, as mmap without MAP_FIXED), else top-down: the top of the highest
        free gap below the mmap base that fits. None when nothing fits."""
        if hint is not None and MMAP_MIN <= hint and hint + size <= MMAP_BASE:
            if self.is_free(hint, hint + size):
                return hint
        top = MMAP_BASE
        for i in range(len(self.starts) - 1, -1, -1):
            s, e = self.starts[i], self.ends[i]
            if e < top and top - e >= size:
                return top - size
            top = min(top, s)
        if top - MMAP_MIN >= size:
            return top - size
        return None

    def __len__(self) -> int:
        return len(self.starts)

