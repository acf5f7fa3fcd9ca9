"""A locking design's protocols as tables: the table is the dispatch.

Each path a CPU can be on (`fault`, `mmap`, `munmap`, `mmap_fixed`, `mprotect`,
`madvise`) is a sequence of `Phase`s. A phase names the kernel code that runs in one
step (`handler`), the phases it may hand over to (`next`; `EXIT` when the fault or the
syscall is over), the messages it may send, what it reads and writes of the shared
world, and a one-line `doc`. The CPU actor runs a task by looking its phase up here
and calling the handler; a handler that moves to a phase its row does not list is an
error. `vmactors policies --protocols` and docs/policies/*.md print these same rows.

A handler gets the step's `Kernel` (`vmactors.actors.kernel`), the task as it is
(with `waiting` cleared when a message woke it) and the message, if one did; it
returns the task with its next phase (`goto`, `wait`) or `EXIT`.

>>> def start(k, t, msg): return EXIT
>>> table = ProtocolTable((Path("fault", (Phase("start", start, (EXIT,), "give up"),)),))
>>> table.phase("fault", "start").doc, table.problems()
('give up', [])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import attrs

from ..ids import MmId
from ..mm.world import World
from .footprint import ANY, Footprint, Obj, Pattern
from .kernel import Kernel
from .messages import Message
from .tasks import CpuState, FaultTask, SyscallTask, Task

#: The pseudo-phase a task moves to when its fault or syscall is over.
EXIT: Final = "exit"
#: The first phase of every path.
START: Final = "start"

#: What a handler returns: the task with its next phase, or EXIT.
Outcome = Task | str
Handler = Callable[[Kernel, Any, Message | None], Outcome]

_T = TypeVar("_T", FaultTask, SyscallTask)


def goto(t: _T, phase: str, **changes: Any) -> _T:
    """The task, runnable at `phase` (with `changes` to its fields)."""
    return attrs.evolve(t, phase=phase, waiting=None, **changes)


def wait(t: _T, phase: str, on: type[Message], **changes: Any) -> _T:
    """The task, blocked until an `on` message arrives; then `phase` runs with it."""
    return attrs.evolve(t, phase=phase, waiting=on.KIND, **changes)


# --- footprint declarations ---------------------------------------------------------------


@attrs.frozen
class View:
    """What a footprint declaration may look at: the world and the CPU before the
    step, the task the phase runs on and the message that wakes it."""

    world: World
    cpu: CpuState
    task: Task
    msg: Message | None

    @property
    def fault(self) -> FaultTask:
        assert isinstance(self.task, FaultTask)
        return self.task

    @property
    def syscall(self) -> SyscallTask:
        assert isinstance(self.task, SyscallTask)
        return self.task


@attrs.frozen
class Scope:
    """What is known, ahead of time, of a step a CPU may take later (partial-order
    reduction asks): the CPU, its address space, and the pages its op may touch (None:
    not known, e.g. the address a future mmap will return)."""

    cpu: int
    mm: MmId
    pages: frozenset[int] | None


def _anything(scope: Scope) -> Iterable[Pattern]:
    return (ANY,)


@attrs.frozen
class Access:
    """A family of shared objects a phase may touch, named for people (`label`),
    resolved against the state before the step (`objects`), and, for a step not yet
    taken, bounded by patterns (`future`; the default: anything)."""

    label: str
    objects: Callable[[View], Iterable[Obj]] = attrs.field(eq=False, repr=False)
    future: Callable[[Scope], Iterable[Pattern]] = attrs.field(default=_anything, eq=False, repr=False)

    def __str__(self) -> str:
        return self.label


# --- the tables ------------------------------------------------------------------------------


@attrs.frozen
class Phase:
    name: str
    handler: Handler = attrs.field(eq=False, repr=False)
    #: Phases this one may hand over to (its own name when a reply wakes it and the
    #: work follows in a later step); EXIT when the fault or syscall is over.
    next: tuple[str, ...]
    doc: str
    #: Message kinds it may send.
    sends: tuple[type[Message], ...] = ()
    reads: tuple[Access, ...] = ()
    writes: tuple[Access, ...] = ()
    #: A phase that only a scenario with this feature (`scenario_features`) reaches:
    #: partial-order reduction leaves it out of what a CPU may still do elsewhere.
    feature: str | None = None
    #: Sends and accesses above that only a scenario with the feature needs:
    #: (feature, those message kinds and Access words).
    only: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def footprint(self, view: View) -> Footprint:
        return Footprint.of([o for a in self.reads for o in a.objects(view)],
                            [o for a in self.writes for o in a.objects(view)])

    def replace(self, **changes: Any) -> "Phase":
        return attrs.evolve(self, **changes)


#: The scenario features that make some phases reachable (`Phase.feature`, `Phase.only`):
#: copy-on-write (after a fork, or an anonymous MAP_FIXED over a file mapping), a
#: grows-down map (stack expansion), page-table pages that munmap frees
#: (`free_pgtables = true`).
FEATURES = ("cow", "stack", "pgtables")


@attrs.frozen
class Path:
    """One protocol path: its phases in the order they are described."""

    name: str
    phases: tuple[Phase, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.phases)


def _index(paths: tuple[Path, ...]) -> dict[tuple[str, str], Phase]:
    return {(path.name, ph.name): ph for path in paths for ph in path.phases}


@attrs.frozen
class ProtocolTable:
    """Every path of one locking design."""

    paths: tuple[Path, ...]
    _by_key: dict[tuple[str, str], Phase] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_by_key", _index(self.paths))

    def phase(self, path: str, name: str) -> Phase:
        try:
            return self._by_key[(path, name)]
        except KeyError:
            raise KeyError(f"no phase {name!r} on path {path!r}") from None

    def path(self, name: str) -> Path:
        for p in self.paths:
            if p.name == name:
                return p
        raise KeyError(f"no path {name!r}")

    def replace(self, path: str, phase: str, **changes: Any) -> "ProtocolTable":
        """A copy with one phase's row changed (a derived design)."""
        out = []
        for p in self.paths:
            if p.name == path:
                if phase not in p.names():
                    raise KeyError(f"no phase {phase!r} on path {path!r}")
                p = Path(p.name, tuple(ph.replace(**changes) if ph.name == phase else ph for ph in p.phases))
            out.append(p)
        return ProtocolTable(tuple(out))

    def with_path(self, path: Path) -> "ProtocolTable":
        """A copy with `path` added, or replacing the path of that name."""
        names = [p.name for p in self.paths]
        if path.name in names:
            return ProtocolTable(tuple(path if p.name == path.name else p for p in self.paths))
        return ProtocolTable(self.paths + (path,))

    def problems(self) -> list[str]:
        """What is wrong with the table: a path without `start`, a `next` that names
        no phase of its path, a phase named twice."""
        out = []
        for p in self.paths:
            names = p.names()
            if START not in names:
                out.append(f"{p.name}: no {START!r} phase")
            if len(set(names)) != len(names):
                out.append(f"{p.name}: a phase is named twice")
            for ph in p.phases:
                for n in ph.next:
                    if n != EXIT and n not in names:
                        out.append(f"{p.name}.{ph.name}: next phase {n!r} does not exist")
        return out


__all__ = ["EXIT", "START", "FEATURES", "Access", "Scope", "Handler", "Outcome", "Path", "Phase", "ProtocolTable", "View", "goto", "wait"]
