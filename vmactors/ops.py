"""What a thread can do: the ops of a scenario's `[[thread]]`, as the parser makes
them and the CPU actor runs them (docs/design.md#scenarios).

>>> Load(reg="r0", addr=Addr(label="A", offset=8))
Load(reg='r0', addr=Addr(label='A', offset=8))
"""

from __future__ import annotations

from typing import Literal, Union

import attrs

Kind = Literal["anon", "file"]
Prot = Literal["none", "r", "rw"]
#: A register value: an integer (addresses too) or the string "segv".
RegValue = Union[int, str]


@attrs.frozen
class Addr:
    """`LABEL`, `LABEL+OFFSET`, `LABEL-OFFSET` (label set, offset in bytes, negative
    below the mapping: a grows-down map's guard gap) or an absolute address (label
    None, offset = the address)."""

    label: str | None
    offset: int


@attrs.frozen
class Load:
    reg: str
    addr: Addr


@attrs.frozen
class Store:
    addr: Addr
    value: int


@attrs.frozen
class Mmap:
    """`LABEL = mmap [PAGES] [kind=] [file=] [fill=] [at=] [prot=]`; `at` is only a
    hint; `prot` is the protection the mapping ends up with (vma_set_page_prot runs
    after the VMA is in the tree)."""

    label: str
    pages: int = 1
    kind: Kind = "anon"
    file: str | None = None
    fill: int = 0
    at: int | None = None
    prot: Prot = "rw"


@attrs.frozen
class MmapFixed:
    """`mmap LABEL fixed [PAGES] [kind=] [file=] [fill=]` over LABEL's range."""

    label: str
    pages: int
    kind: Kind = "anon"
    file: str | None = None
    fill: int = 0


@attrs.frozen
class Munmap:
    label: str


@attrs.frozen
class Mprotect:
    label: str
    prot: Prot


@attrs.frozen
class Madvise:
    """`madvise LABEL dontneed`: the whole mapping's pages are discarded (zapped and
    shot down); the mapping stays, and later faults see fresh memory."""

    label: str
    advice: Literal["dontneed"] = "dontneed"


@attrs.frozen
class Fork:
    """`fork [NAME]`: a child address space (`NAME`, default `child`) copied from this
    thread's, anonymous pages shared copy-on-write; the `[[thread]]`s with `mm = "NAME"`
    start when it returns."""

    child: str = "child"


@attrs.frozen
class Mremap:
    """`mremap LABEL to DEST`: move LABEL's whole mapping to DEST, a label's address or
    a page-aligned address (MREMAP_MAYMOVE|MREMAP_FIXED; whatever is mapped there is
    unmapped): the PTEs move (move_ptes), the old range is flushed."""

    label: str
    to: str | int


@attrs.frozen
class Truncate:
    """`truncate FILE`: the file's pages are dropped (unmap_mapping_range zaps every
    PTE of them in every address space, the TLBs are shot down, truncate_inode_pages
    frees them); later faults map fresh zeroed pages."""

    file: str


Op = Union[Load, Store, Mmap, MmapFixed, Munmap, Mprotect, Madvise, Fork, Mremap, Truncate]

__all__ = ["Kind", "Prot", "RegValue", "Addr", "Load", "Store", "Mmap", "MmapFixed", "Munmap", "Mprotect", "Madvise",
           "Fork", "Mremap", "Truncate", "Op"]
