"""The parsed form of a scenario file (docs/scenario-format.md): plain frozen values, no behaviour.

The parser (`vmactors.scenario.parse`) produces these; the simulator consumes them.

>>> MapSpec(name="A").pages
1
"""

from __future__ import annotations

from typing import Literal, Union

import attrs

# The ops are their own module (the CPU actor runs them); the model names them.
from ..ops import Addr, Kind, Load, Madvise, Mmap, MmapFixed, Mprotect, Munmap, Op, Prot, RegValue, Store

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


@attrs.frozen
class ThreadSpec:
    cpu: int
    ops: tuple[Op, ...]
    #: The source text of each op, for messages and logs.
    texts: tuple[str, ...]


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

__all__ = ["Addr", "Kind", "Load", "Madvise", "Mmap", "MmapFixed", "Mprotect", "Munmap", "Op", "Prot", "RegValue", "Store",
           "Verdict", "MapSpec", "ThreadSpec", "Atom", "Not", "And", "Or", "Expr", "Expectation", "Scenario"]
