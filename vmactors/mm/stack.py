"""Stack expansion: which grows-down VMA a fault below it expands, and how far
(expand_downwards; docs/design.md#the-world).

A fault at an address no VMA covers expands the first VMA above it when that VMA
grows down (VM_GROWSDOWN), the pages from the faulting one up to the VMA are all a
gap (NULL: a ZERO reservation is taken), and the gap left below keeps a guard
against a previous mapping that does not grow down itself and is accessible
(`stack_guard_gap`: 256 pages in Linux, one page here). A grows-down neighbour needs
no guard: the expansion may then consume the whole gap, which is how StackRot
(CVE-2023-3269) got a maple node replaced.

>>> from .vma import Vma
>>> s = Vma(id="S", start=0x30000, end=0x31000, kind="anon", owner="anon:S", growsdown=True)
>>> a = Vma(id="A", start=0x20000, end=0x21000, kind="anon", owner="anon:A")
>>> t = VmaTree().store(0x20000, 0x21000, "A").store(0x30000, 0x31000, "S")
>>> vmas = {"S": s, "A": a}
>>> stack_to_expand(t, vmas.__getitem__, 0x2f008).id, stack_to_expand(t, vmas.__getitem__, 0x21008)
('S', None)
"""

from __future__ import annotations

from collections.abc import Callable

from .layout import PAGE_SIZE, page_of
from .vma import Vma
from .vma_tree import VmaTree

#: The gap an expansion must leave below it to a mapping that does not grow down.
STACK_GUARD_GAP = PAGE_SIZE


def stack_to_expand(tree: VmaTree, vma: Callable[[str], Vma], addr: int) -> Vma | None:
    """The grows-down VMA a fault at `addr` expands down to `addr`'s page, or None."""
    if tree.load(addr) is not None:
        return None
    above = tree.next_entry(addr)
    if above is None or not isinstance(above[2], str):
        return None
    stack = vma(above[2])
    if not stack.growsdown or stack.state != "live":
        return None
    return stack if guard_kept(tree, vma, page_of(addr)) else None


def guard_kept(tree: VmaTree, vma: Callable[[str], Vma], start: int) -> bool:
    """Whether a stack reaching down to `start` keeps its guard gap below (its
    previous mapping grows down, is inaccessible, or is far enough)."""
    below = tree.prev_entry(start)
    if below is None or not isinstance(below[2], str):
        return True
    prev = vma(below[2])
    return prev.growsdown or prev.prot == "none" or start - below[1] >= STACK_GUARD_GAP


def consumes_gap(tree: VmaTree, start: int) -> bool:
    """Whether a stack reaching down to `start` leaves no gap below it: the maple tree
    then drops the gap's entry and writes a new node (RCU-freeing the old one); an
    expansion that leaves a gap only moves a pivot in place."""
    below = tree.prev_entry(start)
    return below is not None and below[1] == start


__all__ = ["STACK_GUARD_GAP", "stack_to_expand", "guard_kept", "consumes_gap"]
