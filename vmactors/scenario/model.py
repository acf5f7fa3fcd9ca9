"""The parsed form of a scenario file (docs/scenario-format.md): plain frozen values, no behaviour.

The parser (`vmactors.scenario.parse`) produces these; the simulator consumes them.

>>> MapSpec(name="A").pages
1
"""

from __future__ import annotations

from typing import Literal, Union

import attrs

# The ops are their own module (the CPU actor runs them); the model names them.
from ..ops import (
    Addr,
    Fork,
    Kind,
    Load,
    Madvise,
    Mmap,
    MmapFixed,
    Mprotect,
    Mremap,
    Munmap,
    Op,
    Prot,
    RegValue,
    Store,
    Truncate,
)

Verdict = Literal["never", "sometimes", "always"]


@attrs.frozen
class MapSpec:
    """One `[[map]]`: the address space before the threads start.

    `prefault` None means untouched; () means PTEs installed but no TLB warmed.
    `fill` is already resolved (a file map without `fill` takes the file's fill).
    """

    name: str
    pages: int = 1
    kind: Kind = "anon"
    file: str | None = None
    fill: int = 0
    at: int | None = None
    prot: Prot = "rw"
    prefault: tuple[int, ...] | None = None
    #: VM_GROWSDOWN: a fault in the gap just below expands it (a stack).
    growsdown: bool = False


@attrs.frozen
class ThreadSpec:
    cpu: int
    ops: tuple[Op, ...]
    #: The source text of each op, for messages and logs.
    texts: tuple[str, ...]
    #: The address space it runs in: 0, the scenario's own; k, the child of the k-th
    #: `fork` (its `mm = "NAME"`), started when that fork returns.
    mm: int = 0


# --- the `exists` clause -------------------------------------------------------


@attrs.frozen
class Atom:
    """`T:REG = VALUE` or `T:REG != VALUE`; VALUE int, "segv", or a map label
    (resolved to that map's initial address when evaluated)."""

    thread: int
    reg: str
    negated: bool
    value: int | str
    value_is_label: bool = False


@attrs.frozen
class Not:
    item: "Expr"


@attrs.frozen
class And:
    items: tuple["Expr", ...]


@attrs.frozen
class Or:
    items: tuple["Expr", ...]


Expr = Union[Atom, Not, And, Or]


@attrs.frozen
class Expectation:
    """One `[expect]` entry: the `exists` verdict (None when the scenario has no
    `exists`) and the exact set of invariants violated somewhere."""

    exists: Verdict | None
    violations: frozenset[str] = frozenset()


@attrs.frozen
class Scenario:
    name: str
    about: str
    cpus: int
    maps: tuple[MapSpec, ...]
    threads: tuple[ThreadSpec, ...]
    exists: Expr | None
    #: The `exists` source text, as written.
    exists_text: str | None
    #: policy name -> expectation, in file order.
    expect: tuple[tuple[str, Expectation], ...]
    #: file name -> fill, for every file named by a map or an op.
    files: tuple[tuple[str, int], ...]
    path: str
    sha256: str
    #: The child address spaces `fork` ops create, by name; the k-th is MmId k + 1.
    forks: tuple[str, ...] = ()
    #: munmap frees page-table pages no VMA needs any more (free_pgtables); off: they
    #: are never freed (the model's default, and every scenario's before it had this key).
    free_pgtables: bool = False

    @property
    def mms(self) -> int:
        """How many address spaces the scenario has (its own, and each fork's child)."""
        return 1 + len(self.forks)


__all__ = ["Addr", "Fork", "Kind", "Load", "Madvise", "Mmap", "MmapFixed", "Mprotect", "Mremap", "Munmap", "Op", "Prot",
           "RegValue", "Store", "Truncate", "Verdict", "MapSpec", "ThreadSpec", "Atom", "Not", "And", "Or", "Expr",
           "Expectation", "Scenario"]
