"""VMAs: what a mapping is, independent of how it is found (see `vma_tree`).

Only what every design shares lives here. What a locking design keeps per VMA (a
reference count, a per-VMA lock) is that policy's own record, in its own module.
"""

from __future__ import annotations

from typing import Literal

import attrs

from .layout import PAGE_SIZE

VmaState = Literal["live", "detached", "freed"]

PROT_BITS = {"none": frozenset(), "r": frozenset({"load"}), "rw": frozenset({"load", "store"})}


def is_page_cache(owner: str) -> bool:
    """Whether a frame `owner` (`Vma.frame_owner`) is a file's page-cache slot, not an
    anonymous page."""
    return owner.startswith("file:")


def prot_allows(prot: str, access: str) -> bool:
    """Whether protection `prot` ("none" | "r" | "rw") permits `access` ("load" | "store")."""
    return access in PROT_BITS[prot]


@attrs.frozen(cache_hash=True)
class Vma:
    """One mapping. `owner` names the memory it maps (an anon mapping's identity,
    kept across mprotect copies, or the file) and is what frames are owned by.

    >>> v = Vma(id="A", start=0x10000, end=0x11000, kind="anon", owner="anon:A")
    >>> v.pages
    1
    """

    id: str
    start: int
    end: int
    kind: Literal["anon", "file"]
    owner: str
    file: str | None = None
    fill: int = 0
    prot: str = "rw"
    state: VmaState = "live"
    #: VM_GROWSDOWN (a stack): a fault in the gap just below it expands it down.
    growsdown: bool = False

    @property
    def pages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE

    def frame_owner(self, page: int) -> str:
        """Who owns the frame behind virtual page `page` of this VMA."""
        if self.kind == "file":
            return f"file:{self.file}:{(page - self.start) // PAGE_SIZE}"
        if self.growsdown:
            # Counted from the top: a stack's pages keep their owner as it grows down.
            return f"{self.owner}:-{(self.end - page) // PAGE_SIZE}"
        return f"{self.owner}:{(page - self.start) // PAGE_SIZE}"

    def covers(self, addr: int) -> bool:
        return self.start <= addr < self.end
