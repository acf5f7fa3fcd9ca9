"""Typed names: who an actor is, and which address space (`mm`) something belongs to.

Actors are CPUs (`cpu0`, `cpu1`, …) and four service actors. An `ActorId` is a small
frozen value; its `name` is what logs print and what channels between two actors are
sorted by. Ids are interned, so comparing two of them is cheap.

>>> cpu(2).name, TREE.name, cpu(2).is_cpu, str(SHOOTDOWN)
('cpu2', 'tree', True, 'shootdown')
>>> actor_id("mmap_sem") is MMAP_SEM and actor_id("cpu10") == cpu(10)
True
"""

from __future__ import annotations

import enum
import functools
import re
from typing import NewType, final

import attrs

#: An address space: 0 is the scenario's own `mm`; later ones come from `fork`.
MmId = NewType("MmId", int)
MM0 = MmId(0)


class ActorKind(enum.IntEnum):
    """Actor kinds, in the fixed actor order: every CPU, then the services."""

    CPU = 0
    TREE = 1
    SHOOTDOWN = 2
    RCU = 3
    MMAP_SEM = 4


_SERVICE_NAMES = {ActorKind.TREE: "tree", ActorKind.SHOOTDOWN: "shootdown", ActorKind.RCU: "rcu",
                  ActorKind.MMAP_SEM: "mmap_sem"}


@final
@attrs.frozen(cache_hash=True, repr=False)
class ActorId:
    """One actor. Use `cpu(i)` and the service constants rather than the constructor."""

    kind: ActorKind
    index: int = 0
    #: The log name (`cpu3`, `tree`, …); derived, so not part of equality.
    name: str = attrs.field(eq=False, default="")

    @property
    def is_cpu(self) -> bool:
        return self.kind is ActorKind.CPU

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"ActorId({self.name})"

    def __reduce__(self) -> tuple[object, tuple[str]]:
        # Unpickled ids are the interned ones (worker processes compare with `is`).
        return (actor_id, (self.name,))


@functools.lru_cache(maxsize=None)
def cpu(index: int) -> ActorId:
    """The id of CPU `index`."""
    return ActorId(ActorKind.CPU, index, f"cpu{index}")


TREE = ActorId(ActorKind.TREE, 0, "tree")
SHOOTDOWN = ActorId(ActorKind.SHOOTDOWN, 0, "shootdown")
RCU = ActorId(ActorKind.RCU, 0, "rcu")
MMAP_SEM = ActorId(ActorKind.MMAP_SEM, 0, "mmap_sem")
SERVICES: tuple[ActorId, ...] = (TREE, SHOOTDOWN, RCU, MMAP_SEM)
_BY_NAME = {a.name: a for a in SERVICES}
_CPU_NAME = re.compile(r"cpu(0|[1-9][0-9]*)")


def actor_id(name: str) -> ActorId:
    """The id an actor name stands for; `ValueError` if it names none."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    m = _CPU_NAME.fullmatch(name)
    if m is None:
        raise ValueError(f"no actor is called {name!r} (cpu0, cpu1, …, {', '.join(_BY_NAME)})")
    return cpu(int(m.group(1)))


def actor_order(ncpus: int) -> tuple[ActorId, ...]:
    """The fixed actor order of a system with `ncpus` CPUs."""
    return tuple(cpu(i) for i in range(ncpus)) + SERVICES


__all__ = ["ActorId", "ActorKind", "MmId", "MM0", "cpu", "TREE", "SHOOTDOWN", "RCU", "MMAP_SEM", "SERVICES",
           "actor_id", "actor_order"]
