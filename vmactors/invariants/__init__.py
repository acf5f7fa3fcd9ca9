"""Invariant checkers (DESIGN §5), run after every step.

Each checker looks only at what the step touched — the pages named by its events,
the accesses and VMA reads it noted — so its cost does not grow with the address
space. A violation becomes an `invariant.violated` event; the run goes on.

>>> sorted(INVARIANTS)
['coherence', 'deadlock', 'frame-uaf', 'munmap-incomplete', 'orphan-pte', 'vma-uaf']
"""

from __future__ import annotations

from typing import Any, Iterable

import attrs

from ..mm.layout import page_range
from ..mm.page_table import Pte
from ..sim.system import StepResult, System

INVARIANTS: dict[str, str] = {
    "coherence": "two CPUs can reach different frames for the same virtual page at the same instant",
    "frame-uaf": "a CPU reads or writes, through its TLB, a frame that was freed or given to another owner",
    "vma-uaf": "a fault path reads a VMA that was freed",
    "orphan-pte": "outside a writer operation on that page, a PTE that no live VMA covers, or installed through a VMA no longer live",
    "munmap-incomplete": "munmap (or MAP_FIXED's unmap) has returned while a translation through the unmapped VMA still exists",
    "deadlock": "no step is enabled and a thread is unfinished",
}


@attrs.frozen
class Violation:
    invariant: str
    detail: str
    #: Schema fields (cpu, addr, pages, frame, vma) where known.
    where: tuple[tuple[str, Any], ...] = ()

    def fields(self) -> dict[str, Any]:
        return dict(self.where)


_ADDS_TRANSLATION = ("tlb.fill", "pte.install")
_CHANGES_MAPPING = ("pte.install", "tree.store", "syscall.end", "vma.free", "pte.protect")


def check_step(before: System, result: StepResult) -> list[Violation]:
    """Every invariant the step `before -> result.system` breaks."""
    after = result.system
    out: list[Violation] = []
    coherence_pages: set[int] = set()
    orphan_pages: set[int] = set()
    new_translations: list[tuple[str, int, Pte]] = []
    for name, fields in result.events:
        if name == "msg.send":
            continue
        if name in _ADDS_TRANSLATION:
            coherence_pages.add(fields["addr"])
            owner = f"cpu{fields['cpu']}" if name == "tlb.fill" else "pte"
            pte = after.world.ptes.get(fields["addr"]) if name == "pte.install" else \
                after.cpus[fields["cpu"]].tlb.get(fields["addr"])
            if pte is not None:
                new_translations.append((owner, fields["addr"], pte))
        if name in _CHANGES_MAPPING and fields.get("addr") is not None:
            orphan_pages.update(page_range(fields["addr"], fields.get("pages") or 1))
        if name == "vma.free":
            vma = after.world.vmas[fields["vma"]]
            orphan_pages.update(page_range(vma.start, vma.pages))
    for what, detail in result.notes:
        if what == "access":
            out.extend(_frame_uaf(before, *detail))
        elif what == "vma-read-freed":
            cpu, vma = detail
            out.append(Violation("vma-uaf", f"cpu{cpu}'s fault path read vma {vma} after it was freed",
                                 (("cpu", cpu), ("vma", vma))))
        elif what == "munmap-returned":
            out.extend(_munmap_incomplete_at_return(after, *detail))
    for page in sorted(coherence_pages):
        out.extend(_coherence(after, page))
    for owner, page, pte in new_translations:
        if pte.vma in after.world.unmapped:
            out.append(Violation(
                "munmap-incomplete",
                f"{'a PTE' if owner == 'pte' else owner + ' TLB entry'} for {page:#x} made through vma {pte.vma}, "
                f"which a returned munmap removed",
                (("addr", page), ("pages", 1), ("frame", pte.frame), ("vma", pte.vma)),
            ))
    for page in sorted(orphan_pages):
        out.extend(_orphan(after, page))
    return out


def _frame_uaf(before: System, cpu: int, page: int, entry: Pte) -> Iterable[Violation]:
    frame = before.world.frames[entry.frame]
    if frame.state == "free":
        why = "was freed"
    elif frame.owner != entry.owner:
        why = f"now belongs to {frame.owner}"
    else:
        return ()
    return (Violation("frame-uaf", f"cpu{cpu} accessed {page:#x} through its TLB: frame {entry.frame} {why}",
                      (("cpu", cpu), ("addr", page), ("pages", 1), ("frame", entry.frame), ("vma", entry.vma))),)


def _coherence(system: System, page: int) -> Iterable[Violation]:
    """What each CPU reaches for `page` right now: its TLB entry, else (by a page
    walk) the PTE. Two CPUs reaching different frames is Glisse's violation; a PTE
    that every CPU's TLB hides is reached by nobody."""
    seen: dict[int, list[str]] = {}
    pte = system.world.ptes.get(page)
    walkers = []
    for c in system.cpus:
        e = c.tlb.get(page)
        if e is not None:
            seen.setdefault(e.frame, []).append(f"cpu{c.id}'s TLB")
        elif pte is not None:
            walkers.append(f"cpu{c.id}")
    if walkers:
        assert pte is not None
        seen.setdefault(pte.frame, []).append("the PTE")
    if len(seen) < 2:
        return ()
    parts = "; ".join(f"{', '.join(who)} -> frame {f}" for f, who in sorted(seen.items()))
    return (Violation("coherence", f"{page:#x} reaches different frames: {parts}",
                      (("addr", page), ("pages", 1))),)


def _orphan(system: System, page: int) -> Iterable[Violation]:
    world = system.world
    pte = world.ptes.get(page)
    if pte is None or world.in_writer(page):
        return ()
    covering = world.find_vma(page)
    through = world.vmas[pte.vma]
    if covering is None or covering.state != "live":
        why = "no live VMA covers it"
    elif through.state != "live":
        why = f"it was installed through vma {pte.vma}, which is {through.state}"
    else:
        return ()
    return (Violation("orphan-pte", f"PTE for {page:#x} (frame {pte.frame}): {why}",
                      (("addr", page), ("pages", 1), ("frame", pte.frame), ("vma", pte.vma))),)


def _munmap_incomplete_at_return(system: System, cpu: int, vmas: tuple[str, ...]) -> Iterable[Violation]:
    out = []
    for vid in vmas:
        vma = system.world.vmas[vid]
        for page in page_range(vma.start, vma.pages):
            holders = []
            pte = system.world.ptes.get(page)
            if pte is not None and pte.vma == vid:
                holders.append("a PTE")
            holders += [f"cpu{c.id}'s TLB" for c in system.cpus if (e := c.tlb.get(page)) is not None and e.vma == vid]
            if holders:
                out.append(Violation(
                    "munmap-incomplete",
                    f"cpu{cpu}'s unmap of vma {vid} returned while {', '.join(holders)} still map {page:#x}",
                    (("cpu", cpu), ("addr", page), ("pages", 1), ("vma", vid)),
                ))
    return out


__all__ = ["INVARIANTS", "Violation", "check_step"]
