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
    #: The anonymous page may be shared copy-on-write with another address space (a
    #: fork wrote-protected it; the page is not PageAnonExclusive): a write fault
    #: copies it unless this address space is the last to map it.
    cow: bool = False


#: A TLB entry is a cached PTE: the same four facts, owned by one CPU.
TlbEntry = Pte
