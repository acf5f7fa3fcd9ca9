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
    """`LABEL`, `LABEL+OFFSET` (label set, offset in bytes) or an absolute address
    (label None, offset = the address)."""

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
    """`LABEL = mmap [PAGES] [kind=] [file=] [fill=] [at=]`; `at` is only a hint."""

    label: str
    pages: int = 1
    kind: Kind = "anon"
    file: str | None = None
    fill: int = 0
    at: int | None = None


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


Op = Union[Load, Store, Mmap, MmapFixed, Munmap, Mprotect, Madvise]

__all__ = ["Kind", "Prot", "RegValue", "Addr", "Load", "Store", "Mmap", "MmapFixed", "Munmap", "Mprotect", "Madvise", "Op"]
