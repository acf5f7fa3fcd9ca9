"""The parsed form of a scenario file (DESIGN §6): plain frozen values, no behaviour.

The parser (`vmactors.scenario.parse`) produces these; the simulator consumes them.

>>> Addr(label="A", offset=8)
Addr(label='A', offset=8)
"""

from __future__ import annotations

from typing import Literal, Union

import attrs

Kind = Literal["anon", "file"]
Prot = Literal["none", "r", "rw"]
Verdict = Literal["never", "sometimes", "always"]
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


Op = Union[Load, Store, Mmap, MmapFixed, Munmap, Mprotect]


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
