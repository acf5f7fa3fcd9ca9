"""Footprints: which shared objects one actor step reads and writes.

Shared objects are named by small tuples, so footprints are plain sets:

| object | what it is |
|---|---|
| `("tree", mm)` | an address space's VMA tree (every lookup reads it, every store writes it) |
| `("vma", mm, id)` | one VMA record (its range, protection, state) |
| `("pte", mm, page)` | one page-table entry |
| `("tlb", cpu, page)` | one CPU's TLB entry for a page |
| `("frame", id)` | one physical frame (contents, owner, state) |
| `("freelist",)` | the free-frame stack (every allocation and free) |
| `("cache", file, index)` | one page-cache slot |
| `("policy", mm, key)` | one record of the locking design's own state (a VMA's lock or references, a fence) |
| `("writers", mm)`, `("unmapped", mm)` | the invariant checkers' bookkeeping |
| `("pin", mm, kind, cpu)` | a pointer a CPU holds across steps (a maple node, a page-table page, a held page-table lock) |
| `("pgtables", mm)` | which page-table pages are present (scenarios with `free_pgtables = true`) |

An actor's own state (a CPU's registers and task, the rwsem's holders) is not shared
and not listed; messages are not objects either (each channel has one sender and one
receiver). Every step declares its footprint before it runs
(`vmactors.system.step.footprint`); a test records what each step really touched and
checks that it was declared (`vmactors.actors.effects.RecordingEffects`). Partial-order
reduction uses footprints to tell which steps commute.

>>> a = Footprint.of(reads=[pte(MM0, 0x1000)], writes=[tlb(1, 0x1000)])
>>> b = Footprint.of(writes=[pte(MM0, 0x1000)])
>>> a.conflicts(b), a.conflicts(Footprint.of(reads=[pte(MM0, 0x1000)]))
(True, False)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import attrs

from ..ids import MM0, MmId

Obj = tuple[Hashable, ...]

FREELIST: Obj = ("freelist",)


def tree(mm: MmId) -> Obj:
    return ("tree", mm)


def vma(mm: MmId, vma_id: str) -> Obj:
    return ("vma", mm, vma_id)


def pte(mm: MmId, page: int) -> Obj:
    return ("pte", mm, page)


def tlb(cpu: int, page: int) -> Obj:
    return ("tlb", cpu, page)


def frame(fid: int) -> Obj:
    return ("frame", fid)


def cache(file: str, index: int) -> Obj:
    return ("cache", file, index)


def policy(mm: MmId, key: Hashable) -> Obj:
    return ("policy", mm, key)


def writers(mm: MmId) -> Obj:
    return ("writers", mm)


def unmapped(mm: MmId) -> Obj:
    return ("unmapped", mm)


def pin(mm: MmId, kind: str, cpu: int) -> Obj:
    return ("pin", mm, kind, cpu)


def pgtables(mm: MmId) -> Obj:
    return ("pgtables", mm)


@attrs.frozen
class Footprint:
    """What one step reads and writes."""

    reads: frozenset[Obj] = frozenset()
    writes: frozenset[Obj] = frozenset()

    @classmethod
    def of(cls, reads: Iterable[Obj] = (), writes: Iterable[Obj] = ()) -> "Footprint":
        return cls(frozenset(reads), frozenset(writes))

    def __or__(self, other: "Footprint") -> "Footprint":
        return Footprint(self.reads | other.reads, self.writes | other.writes)

    def conflicts(self, other: "Footprint") -> bool:
        """Whether the two steps may not commute: one writes what the other touches."""
        return bool(self.writes & (other.reads | other.writes) or other.writes & self.reads)

    def covers(self, other: "Footprint") -> bool:
        """Whether every access of `other` is declared here (a write covers a read)."""
        return other.writes <= self.writes and other.reads <= (self.reads | self.writes)

    def missing(self, other: "Footprint") -> "Footprint":
        """The accesses of `other` not declared here."""
        return Footprint(other.reads - self.reads - self.writes, other.writes - self.writes)

    def __bool__(self) -> bool:
        return bool(self.reads or self.writes)


EMPTY = Footprint()

#: An object pattern: an object with None where any value matches (`("pte", mm,
#: None)`: every PTE of an address space). `ANY` matches every object. Partial-order
#: reduction describes what an actor may still do with patterns (`explore.por`).
Pattern = tuple[Hashable, ...]
ANY: Pattern = ("*",)


def matches(obj: Obj, pattern: Pattern) -> bool:
    """Whether `obj` is one of the objects `pattern` stands for.

    >>> matches(pte(MM0, 0x1000), ("pte", MM0, None)), matches(tlb(1, 0x1000), ("tlb", 0, None))
    (True, False)
    """
    if pattern is ANY or pattern == ANY:
        return True
    if len(obj) != len(pattern):
        return False
    for o, p in zip(obj, pattern):
        if p is None or p == o:
            continue
        if isinstance(p, tuple) and isinstance(o, tuple) and matches(o, p):
            continue
        return False
    return True

__all__ = ["Obj", "Pattern", "ANY", "matches", "Footprint", "EMPTY", "FREELIST", "tree", "vma", "pte", "tlb", "frame", "cache", "policy",
           "writers", "unmapped", "pin", "pgtables", "MM0"]
