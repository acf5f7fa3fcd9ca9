"""What a locking design gives the actors: its protocol table, the hooks the tree owner
calls in its own step, and its knobs. Each design builds one `Policy` in its own
module (`vmactors.policies.*`); an ablation is the same design with one knob changed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

import attrs

from ..ids import MmId
from ..mm.vma import Vma
from ..mm.world import World
from .effects import Effects
from .footprint import EMPTY, Footprint
from .messages import TreeRequest
from .phases import ProtocolTable

_C = TypeVar("_C")


class NoTreeHooks:
    """A design that does nothing of its own inside the tree owner's steps."""

    def tree_updated(self, fx: Effects, mm: MmId, who: int, msg: TreeRequest, start: int, end: int) -> None:
        return None

    def vma_created(self, fx: Effects, mm: MmId, vma: Vma) -> None:
        return None

    def node_replaced(self, fx: Effects, mm: MmId, who: int) -> None:
        return None

    def tree_footprint(self, world: World, mm: MmId, msg: TreeRequest) -> Footprint:
        return EMPTY


@attrs.frozen
class Policy:
    """One locking design (or an ablation of one).

    >>> from vmactors.policies import get_policy
    >>> get_policy("wilcox-no-zero").base
    'wilcox'
    """

    name: str
    summary: str
    protocol: ProtocolTable = attrs.field(repr=False)
    #: The design's knobs (a frozen record of its own type), read by its handlers.
    config: Hashable = None
    #: The main policy an ablation derives from (None: a main policy).
    base: str | None = None
    #: Ablation knob: a CPU waiting for the rwsem takes no interrupts.
    irqs_off_lock_wait: bool = False
    hooks: Any = attrs.field(factory=NoTreeHooks, repr=False)
    #: The design's own records for the world a scenario sets up (e.g. which VMAs
    #: already have an anon_vma), or None.
    setup: Callable[[World], World] | None = attrs.field(default=None, repr=False)
    #: How the design's records name CPUs: `(key, record, ren) -> record` with every
    #: CPU index `i` read as `ren[i]` (symmetry reduction); None: they name none.
    rename_record: Callable[[Hashable, Hashable, Mapping[int, int]], Hashable] | None = attrs.field(
        default=None, repr=False)
    #: Which kernel (version, functions) the design follows, for people.
    kernel: str = ""
    #: What the model does differently from that kernel, for people.
    differences: tuple[str, ...] = ()

    def knobs(self, kind: type[_C]) -> _C:
        """The design's knobs, checked to be of `kind`."""
        if not isinstance(self.config, kind):
            raise TypeError(f"{self.name}: knobs are {type(self.config).__name__}, not {kind.__name__}")
        return self.config

    def ablation(self, name: str, summary: str, **changes: Any) -> "Policy":
        """This design with one safeguard removed."""
        return attrs.evolve(self, name=name, summary=summary, base=self.base or self.name, **changes)


__all__ = ["Policy", "NoTreeHooks"]
