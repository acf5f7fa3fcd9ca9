"""Page-table and TLB entries: one translation each, with the VMA it came through."""

from __future__ import annotations

import attrs


@attrs.frozen(cache_hash=True)
class Pte:
    """A present PTE: frame, protection, the VMA it was installed through, and the
    owner the frame had then (a later owner change means the frame was reused)."""

    frame: int
    prot: str
    vma: str
    owner: str


#: A TLB entry is a cached PTE: the same four facts, owned by one CPU.
TlbEntry = Pte
