"""Designs the benchmark measures besides the policies: each one changes a single row
of a policy's protocol table, to isolate the cost of one mechanism.

| variant | of | change |
|---|---|---|
| `wilcox-no-map-pages` | `wilcox` | file faults take the refcounted `fault` path (VMA reference, page-cache lookup, install, drop), as a driver that implements only `->fault` would; anonymous faults as before |

They are for measuring, not for exploring: `vmactors bench --policy` takes them,
the other commands do not.
"""

from __future__ import annotations

import attrs

from ..actors.kernel import Kernel
from ..actors.messages import Message
from ..actors.phases import EXIT, START, goto
from ..actors.policy import Policy
from ..actors.tasks import FaultTask
from ..policies import get_policy
from ..policies.wilcox import rcu_lookup


def _fault_start_refcounted(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask | str:
    """wilcox's lookup, then the refcounted path whatever the VMA's kind."""
    vma = rcu_lookup(k, t)
    if vma is None or isinstance(vma, FaultTask):  # segv, or a stack to expand first
        return EXIT if vma is None else vma
    return goto(t, "get_ref", vma=vma.id, holds=("rcu",))


def _no_map_pages() -> Policy:
    wilcox = get_policy("wilcox")
    protocol = wilcox.protocol.replace(
        "fault", START, handler=_fault_start_refcounted,
        doc="rcu_read_lock; find_vma (NULL or ZERO: SIGSEGV); every VMA -> get_ref (no map_pages path)")
    return attrs.evolve(wilcox, name="wilcox-no-map-pages", protocol=protocol, base="wilcox",
                        summary="bench variant of wilcox: file faults take the refcounted ->fault path")


VARIANTS: dict[str, Policy] = {p.name: p for p in (_no_map_pages(),)}

__all__ = ["VARIANTS"]
