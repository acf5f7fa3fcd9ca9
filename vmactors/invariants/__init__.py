"""Invariant checkers (docs/design.md#invariants), run after every step.

Each checker looks only at what the step touched — the pages named by its events,
the accesses and VMA reads it noted — so its cost does not grow with the address
space. A violation becomes an `invariant.violated` event; the run goes on.

Every check is per address space: an event about a fork's child says so (`mm`), and
only CPUs running an address space's threads reach its pages.

>>> sorted(INVARIANTS)  # doctest: +NORMALIZE_WHITESPACE
['coherence', 'cow-isolation', 'deadlock', 'frame-uaf', 'munmap-incomplete', 'orphan-pte', 'permissive-pte',
 'pgtable-uaf', 'tree-uaf', 'vma-uaf', 'wrong-vma']
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from ..actors import footprint as fp
from ..actors.effects import CowStoreLost, NodeUseFreed, PgtableUseFreed, TlbAccess, UnmapReturned, VmaReadFreed
from ..actors.footprint import Obj
from ..ids import MM0, MmId
from ..log.schema import INVARIANTS, Event, PteInstall, PteProtect, SyscallEnd, TlbFill, TreeStore, VmaFree, VmaSetProt
from ..mm.layout import page_range, pgtable_range
from ..mm.page_table import Pte
from ..mm.vma import PROT_BITS
from ..system.state import StepResult, System


@attrs.frozen
class Violation:
    invariant: str
    detail: str
    #: Schema fields (cpu, addr, pages, frame, vma) where known.
    where: tuple[tuple[str, Any], ...] = ()

    def fields(self) -> dict[str, Any]:
        return dict(self.where)


_ADDS_TRANSLATION = (TlbFill, PteInstall)
_CHANGES_MAPPING = (PteInstall, TreeStore, SyscallEnd, VmaFree, PteProtect, VmaSetProt)
#: A page of an address space.
Page = tuple[MmId, int]


def _mm(ev: object) -> MmId:
    """The address space an event is about (one without `mm` is the scenario's own)."""
    return MmId(getattr(ev, "mm", None) or 0)


#: The events the checks below start from; a step with none of them and no notes
#: breaks nothing.
_CHECKED = (*_ADDS_TRANSLATION, *_CHANGES_MAPPING, VmaFree)
#: id of an events tuple -> (the tuple, kept alive; whether it has none of `_CHECKED`).
#: A remembered step (`Machine.steps`) gives back the same tuple at every state it is
#: taken in, and most steps (locks, IPIs, op boundaries) are quiet.
_QUIET: dict[int, tuple[tuple[Event | int, ...], bool]] = {}


def check_step(before: System, result: StepResult) -> list[Violation]:
    """Every invariant the step `before -> result.system` breaks."""
    if not result.notes:
        events = result.events
        if not events:
            return []
        quiet = _QUIET.get(id(events))
        if quiet is None:
            if len(_QUIET) > 10_000:
                _QUIET.clear()
            quiet = _QUIET[id(events)] = (events, not any(isinstance(ev, _CHECKED) for ev in events))
        if quiet[1]:
            return []
    after = result.system
    world = after.world
    out: list[Violation] = []
    coherence_pages: set[Page] = set()
    mapping_pages: set[Page] = set()
    new_translations: list[tuple[str, MmId, int, Pte]] = []
    for ev in result.events:
        if isinstance(ev, int):
            continue
        if isinstance(ev, _ADDS_TRANSLATION):
            mm = _mm(ev)
            coherence_pages.add((mm, ev.addr))
            if isinstance(ev, TlbFill):
                owner, pte = f"cpu{ev.cpu}", after.cpus[ev.cpu].tlb.get(ev.addr)
            else:
                owner, pte = "pte", world.mm(mm).ptes.get(ev.addr)
            if pte is not None:
                new_translations.append((owner, mm, ev.addr, pte))
        if isinstance(ev, _CHANGES_MAPPING) and ev.addr is not None:
            mm = _mm(ev)
            mapping_pages.update((mm, p) for p in page_range(ev.addr, ev.pages or 1))
        if isinstance(ev, VmaFree):
            mm = _mm(ev)
            vma = world.mm(mm).vmas[ev.vma]
            mapping_pages.update((mm, p) for p in page_range(vma.start, vma.pages))
    for note in result.notes:
        if isinstance(note, TlbAccess):
            out.extend(_frame_uaf(before, note))
            if note.store:
                out.extend(_cow_isolation(after, note))
        elif isinstance(note, VmaReadFreed):
            out.append(Violation("vma-uaf", f"cpu{note.cpu}'s fault path read vma {note.vma} after it was freed",
                                 (("cpu", note.cpu), ("vma", note.vma))))
        elif isinstance(note, UnmapReturned):
            out.extend(_munmap_incomplete_at_return(after, note))
        elif isinstance(note, NodeUseFreed):
            out.append(Violation("tree-uaf", f"cpu{note.cpu}'s walk of the VMA tree read a node that was replaced and "
                                             f"freed after a grace period its walk did not hold",
                                 (("cpu", note.cpu),)))
        elif isinstance(note, PgtableUseFreed):
            out.append(_pgtable_uaf(note))
        elif isinstance(note, CowStoreLost):
            out.append(Violation(
                "cow-isolation",
                f"cpu{note.cpu}'s copy-on-write fault mapped its copy (frame {note.copy}) of {note.page:#x}, but a "
                f"store reached the shared frame {note.frame} after the copy was taken: this address space lost it, "
                f"the other one sees it",
                (("cpu", note.cpu), ("addr", note.page), ("pages", 1), ("frame", note.frame))))
    for mm, page in sorted(coherence_pages):
        out.extend(_coherence(after, mm, page))
    for owner, mm, page, pte in new_translations:
        if pte.vma in world.mm(mm).unmapped:
            out.append(Violation(
                "munmap-incomplete",
                f"{'a PTE' if owner == 'pte' else owner + ' TLB entry'} for {page:#x} made through vma {pte.vma}, "
                f"which a returned munmap removed",
                (("addr", page), ("pages", 1), ("frame", pte.frame), ("vma", pte.vma)),
            ))
    for owner, mm, page, pte in new_translations:
        if owner == "pte":
            out.extend(_wrong_vma(after, mm, page, pte))
    for mm, page in sorted(mapping_pages):
        out.extend(_orphan(after, mm, page))
    for mm, page in sorted(mapping_pages):
        out.extend(_permissive(after, mm, page))
    return out


def check_reads(before: System, result: StepResult) -> set[Obj]:
    """The shared objects `check_step(before, result)` may read: what partial-order
    reduction must count as read by the step, so that two orders of the same steps
    never get different verdicts. Over-approximate, and kept next to `check_step` so
    the two change together: every page an event or note names (its PTE and every
    CPU's TLB entry), the VMA tree, every VMA, the checkers' bookkeeping, and the
    frames a TLB access reached."""
    pages: set[int] = set()
    out: set[Obj] = set()
    for ev in result.events:
        if isinstance(ev, int):
            continue
        if isinstance(ev, _ADDS_TRANSLATION + _CHANGES_MAPPING + (VmaFree,)):
            addr = getattr(ev, "addr", None)
            if addr is not None:
                pages.update(page_range(addr, getattr(ev, "pages", None) or 1))
    after = result.system.world.mm(MM0)
    for note in result.notes:
        if isinstance(note, TlbAccess):
            out.add(fp.frame(note.entry.frame))
            pages.add(note.page)
        elif isinstance(note, UnmapReturned):
            for vid in note.vmas:
                vma = after.vmas[vid]
                pages.update(page_range(vma.start, vma.pages))
        elif isinstance(note, VmaReadFreed):
            out.add(fp.vma(MM0, note.vma))
    if not pages and not out:
        return out
    ncpus = len(result.system.cpus)
    # Every address space: a checker may compare one with another (after a fork).
    for i, space in enumerate(result.system.world.mms):
        mm = MmId(i)
        out.update((fp.tree(mm), fp.writers(mm), fp.unmapped(mm)))
        out.update(fp.vma(mm, vid) for vid in space.vmas)
        out.update(fp.pte(mm, page) for page in pages)
    for page in pages:
        out.update(fp.tlb(c, page) for c in range(ncpus))
    return out


def _wrong_vma(system: System, mm: MmId, page: int, pte: Pte) -> Iterable[Violation]:
    """A PTE installed through a VMA object that no longer maps its address (the
    object was reused for another mapping)."""
    vma = system.world.mm(mm).vmas[pte.vma]
    if vma.covers(page):
        return ()
    return (Violation("wrong-vma", f"PTE for {page:#x} (frame {pte.frame}) installed through vma {pte.vma}, which "
                                   f"maps {vma.start:#x}-{vma.end:#x}",
                      (("addr", page), ("pages", 1), ("frame", pte.frame), ("vma", pte.vma))),)


def _frame_uaf(before: System, note: TlbAccess) -> Iterable[Violation]:
    entry = note.entry
    frame = before.world.frames[entry.frame]
    if frame.state == "free":
        why = "was freed"
    elif frame.owner != entry.owner:
        why = f"now belongs to {frame.owner}"
    else:
        return ()
    return (Violation("frame-uaf", f"cpu{note.cpu} accessed {note.page:#x} through its TLB: frame {entry.frame} {why}",
                      (("cpu", note.cpu), ("addr", note.page), ("pages", 1), ("frame", entry.frame),
                       ("vma", entry.vma))),)


def _cow_isolation(system: System, note: TlbAccess) -> Iterable[Violation]:
    """A store through a TLB entry to a page its own address space no longer maps
    there (its copy-on-write copy is another page) while another address space maps
    it: the other sees the store, its own address space does not."""
    mm = system.cpus[note.cpu].mm
    world = system.world
    if len(world.mms) < 2:
        return ()
    mine = world.mm(mm).ptes.get(note.page)
    frame = note.entry.frame
    if mine is not None and mine.frame == frame:
        return ()
    others = [m for m, space in enumerate(world.mms) if m != mm and any(p.frame == frame for p in space.ptes.values())]
    if not others:
        return ()
    now = f"frame {mine.frame}" if mine is not None else "nothing"
    return (Violation("cow-isolation",
                      f"cpu{note.cpu} stored to {note.page:#x} through a stale TLB entry into frame {frame}, which its "
                      f"address space no longer maps there (its page table has {now}) but address space "
                      f"{others[0]} does: the store is seen there, not here",
                      (("cpu", note.cpu), ("addr", note.page), ("pages", 1), ("frame", frame),
                       ("vma", note.entry.vma))),)


def _pgtable_uaf(note: PgtableUseFreed) -> Violation:
    lo, hi = pgtable_range(note.index)
    table = f"the page-table page for {lo:#x}-{hi:#x}"
    if note.state == "mapped":
        what = f"free_pgtables on cpu{note.cpu} unlinked {table} while it still held a PTE (installed after the zap)"
    else:
        when = "unlinked" if note.state == "dead" else "freed"
        what = f"cpu{note.cpu}'s fault wrote its PTE into {table}, which free_pgtables {when} after the fault walked to it"
    return Violation("pgtable-uaf", what, (("cpu", note.cpu), ("addr", lo), ("pages", (hi - lo) // 4096)))


def _coherence(system: System, mm: MmId, page: int) -> Iterable[Violation]:
    """What each CPU of the address space reaches for `page` right now: its TLB
    entry, else (by a page walk) the PTE. Two CPUs reaching different frames is
    Glisse's violation; a PTE that every CPU's TLB hides is reached by nobody."""
    seen: dict[int, list[str]] = {}
    pte = system.world.mm(mm).ptes.get(page)
    walkers = []
    for c in system.cpus:
        if c.mm != mm:
            continue
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


def _orphan(system: System, mm: MmId, page: int) -> Iterable[Violation]:
    space = system.world.mm(mm)
    pte = space.ptes.get(page)
    if pte is None or space.in_writer(page):
        return ()
    covering = space.find_vma(page)
    through = space.vmas[pte.vma]
    if covering is None or covering.state != "live":
        why = "no live VMA covers it"
    elif through.state != "live":
        why = f"it was installed through vma {pte.vma}, which is {through.state}"
    else:
        return ()
    return (Violation("orphan-pte", f"PTE for {page:#x} (frame {pte.frame}): {why}",
                      (("addr", page), ("pages", 1), ("frame", pte.frame), ("vma", pte.vma))),)


def _permissive(system: System, mm: MmId, page: int) -> Iterable[Violation]:
    """Outside a writer's operation on the page, a PTE that allows an access the live
    VMA covering it forbids."""
    space = system.world.mm(mm)
    pte = space.ptes.get(page)
    if pte is None or space.in_writer(page):
        return ()
    covering = space.find_vma(page)
    if covering is None or covering.state != "live":
        return ()
    extra = PROT_BITS[pte.prot] - PROT_BITS[covering.prot]
    if not extra:
        return ()
    return (Violation("permissive-pte", f"PTE for {page:#x} (frame {pte.frame}) allows {', '.join(sorted(extra))}, "
                                        f"which vma {covering.id} ({covering.prot}) forbids",
                      (("addr", page), ("pages", 1), ("frame", pte.frame), ("vma", covering.id))),)


def _munmap_incomplete_at_return(system: System, note: UnmapReturned) -> Iterable[Violation]:
    out = []
    mm = system.cpus[note.cpu].mm
    space = system.world.mm(mm)
    for vid in note.vmas:
        vma = space.vmas[vid]
        for page in page_range(vma.start, vma.pages):
            holders = []
            pte = space.ptes.get(page)
            if pte is not None and pte.vma == vid:
                holders.append("a PTE")
            holders += [f"cpu{c.id}'s TLB" for c in system.cpus
                        if c.mm == mm and (e := c.tlb.get(page)) is not None and e.vma == vid]
            if holders:
                out.append(Violation(
                    "munmap-incomplete",
                    f"cpu{note.cpu}'s unmap of vma {vid} returned while {', '.join(holders)} still map {page:#x}",
                    (("cpu", note.cpu), ("addr", page), ("pages", 1), ("vma", vid)),
                ))
    return out


__all__ = ["INVARIANTS", "Violation", "check_step", "check_reads"]
