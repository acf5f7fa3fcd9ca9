"""The story of one virtual page, and the translation state that explains it.

`Translations` replays what the log says about page tables, TLBs, the VMA tree and
frames, so a load can be judged against the state at that instant: a load whose frame is
not the one the page table maps now went through a stale TLB entry; a load from a frame
that was freed is a use after free. `page_history` streams a log and tells one page's
story as one short line per event, enough to answer "why did CPU 1 read the old value?".

What the log does not say, the tracker infers: a page whose PTE or TLB entries were set
up before the run (`prefault`) shows up first as a load or a flush; the frame a CPU
reads there is taken as what its TLB and the page table held until told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from vmactors.inspect.filters import EventFilter
from vmactors.inspect.labels import PAGE_SIZE, Event, covers, entry_text, hex_addr, page_range, ret_text, value_text
from vmactors.inspect.reader import Record
from vmactors.log.schema import (
    FaultBegin, FaultEnd, FaultRetry, FaultSegv, FrameAlloc, FrameFree, InvariantViolated, IpiAck, IpiSend,
    MemLoad, MemStore, PteInstall, PteProtect, PteZap, SyscallBegin, SyscallEnd, TlbFill, TlbFlush, TreeStore,
    VmaFree,
)


@attrs.frozen
class Translation:
    """A translation: where a PTE or a TLB entry points, and since which step."""

    frame: Any
    vma: Any
    step: int
    inferred: bool = False  # seen only in use (prefault), never installed in the log


@attrs.define
class PageState:
    """What the log has said about one virtual page so far.

    `pte` is `None` once zapped; `pte_known` is False until the log says anything about
    the PTE at all. TLB entries are per CPU; a CPU absent from `tlb` has no entry we know of.
    """

    pte: Translation | None = None
    pte_known: bool = False
    pte_since: int | None = None  # step of the last install/zap/protect
    tlb: dict[int, Translation] = attrs.field(factory=dict)
    tree: str | None = None  # entry_text of the last tree.store over the page
    tree_step: int | None = None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Translations:
    """Page tables, TLBs, tree entries and free frames, replayed from events.

    With `page` given, only that page is tracked (constant memory, for `--history`);
    otherwise every page the log touches. Pages are per address space: an event about a
    fork's child (`mm`) is about the child's page, not the scenario's own.
    """

    def __init__(self, page: int | None = None) -> None:
        self.page = None if page is None else page - page % PAGE_SIZE
        #: The pages of each address space (`pages` is the scenario's own).
        self.spaces: dict[int, dict[int, PageState]] = {0: {}}
        self.pages: dict[int, PageState] = self.spaces[0]
        self.mm = 0
        self.freed: dict[Any, int] = {}  # frame -> step it was freed (not since reallocated)
        self.page_frames: set[Any] = set()  # with `page`: frames seen behind it
        self.page_vmas: set[Any] = set()  # with `page`: VMAs seen over it

    def _pages_of(self, ev: Event) -> Iterator[int]:
        rng = page_range(ev)
        if rng is None:
            return
        start = rng[0] - rng[0] % PAGE_SIZE
        if self.page is not None:
            if rng[0] <= self.page < rng[1]:
                yield self.page
            return
        if rng[1] - start <= PAGE_SIZE:
            yield start
        else:
            # A range (a tree store, a flush of a whole mapping): only the pages already
            # known matter, and a huge mapping must not cost a state per page.
            yield from [p for p in self._space() if start <= p < rng[1]]

    def _space(self) -> dict[int, PageState]:
        return self.spaces.setdefault(self.mm, {})

    def state(self, page: int) -> PageState:
        space = self._space()
        st = space.get(page)
        if st is None:
            st = space[page] = PageState()
        return st

    def _remember(self, ev: Event) -> None:
        if self.page is not None:
            if ev.get("frame") is not None:
                self.page_frames.add(ev["frame"])
            if ev.get("vma") is not None:
                self.page_vmas.add(ev["vma"])

    def judge(self, ev: Event) -> str | None:
        """For a load or store, what was wrong with the translation it used, if anything.

        Call before `observe(ev)`. Returns e.g. `stale TLB: the PTE maps frame 5 (since
        step 7)`, or None when the access went through the current translation.
        """
        if ev.get("event") not in (MemLoad.NAME, MemStore.NAME):
            return None
        rng = page_range(ev)
        if rng is None:
            return None
        page = rng[0] - rng[0] % PAGE_SIZE
        if self.page is not None and page != self.page:
            return None
        frame = ev.get("frame")
        notes = []
        st = self.spaces.get(_int(ev.get("mm")) or 0, {}).get(page)
        if st is not None and st.pte_known:
            if st.pte is None:
                since = f" (zapped at step {st.pte_since})" if st.pte_since is not None else ""
                notes.append(f"stale TLB: the page table maps nothing here{since}")
            elif st.pte.frame != frame:
                notes.append(f"stale TLB: the PTE maps frame {st.pte.frame} (since step {st.pte.step})")
        if frame in self.freed:
            notes.append(f"frame {frame} was freed at step {self.freed[frame]}")
        return "; ".join(notes) or None

    def observe(self, ev: Event) -> None:
        """Update the state with one event."""
        name = ev.get("event")
        step = ev.get("step", 0)
        cpu = _int(ev.get("cpu"))
        frame = ev.get("frame")
        if name == FrameFree.NAME:
            if self.page is None or frame in self.page_frames:
                self.freed[frame] = step
            return
        if name == FrameAlloc.NAME:
            self.freed.pop(frame, None)
        self.mm = _int(ev.get("mm")) or 0
        for page in self._pages_of(ev):
            st = self.state(page)
            self._remember(ev)
            if name == TreeStore.NAME:
                st.tree, st.tree_step = entry_text(ev), step
            elif name in (PteInstall.NAME, PteProtect.NAME):
                st.pte = Translation(frame, ev.get("vma"), step)
                st.pte_known, st.pte_since = True, step
            elif name == PteZap.NAME:
                st.pte, st.pte_known, st.pte_since = None, True, step
            elif name == TlbFill.NAME and cpu is not None:
                st.tlb[cpu] = Translation(frame, ev.get("vma"), step)
            elif name == TlbFlush.NAME and cpu is not None:
                st.tlb.pop(cpu, None)
            elif name in (MemLoad.NAME, MemStore.NAME) and cpu is not None:
                if cpu not in st.tlb:
                    # Used without a fill we saw: a prefaulted entry.
                    st.tlb[cpu] = Translation(frame, ev.get("vma"), step, inferred=True)
                if not st.pte_known:
                    st.pte = Translation(frame, ev.get("vma"), step, inferred=True)
                    st.pte_known = True

    def summary(self, page: int) -> str:
        """The page's state now, in one line."""
        st = self.pages.get(page - page % PAGE_SIZE)
        if st is None:
            return "nothing known"
        parts = []
        if st.tree is not None:
            parts.append(f"tree: {st.tree}")
        if st.pte_known:
            parts.append("PTE: none" if st.pte is None else f"PTE -> frame {st.pte.frame} (vma {st.pte.vma})")
        for cpu in sorted(st.tlb):
            entry = st.tlb[cpu]
            stale = st.pte_known and (st.pte is None or st.pte.frame != entry.frame)
            parts.append(f"cpu{cpu} TLB -> frame {entry.frame}" + (" (stale)" if stale else ""))
        return "; ".join(parts) or "nothing known"


def _vma(ev: Event) -> str:
    vma = ev.get("vma")
    return f"vma {vma}" if vma is not None else "no vma"


def _story(ev: Event, tr: Translations, page: int) -> str | None:
    """One event, told from the page's point of view (before `tr.observe(ev)`); None
    when the event is not part of this page's story."""
    name = ev.get("event")
    frame = ev.get("frame")
    if name == FrameFree.NAME:
        if frame not in tr.page_frames:
            return None
        return f"frees frame {frame} (it backed this page)"
    if name == VmaFree.NAME:
        if ev.get("vma") not in tr.page_vmas:
            return None
        return f"frees vma {ev.get('vma')}"
    if name == InvariantViolated.NAME:
        if page_range(ev) is not None and not covers(ev, page):
            return None
        if page_range(ev) is None and frame not in tr.page_frames and ev.get("vma") not in tr.page_vmas:
            return None
        return f"!! {ev.get('invariant')}: {ev.get('detail', '')}".rstrip(": ")
    if not covers(ev, page):
        return None
    st = tr.pages.get(page)
    if name == TreeStore.NAME:
        was = f" (was {st.tree})" if st is not None and st.tree is not None else ""
        return f"tree stores {entry_text(ev)}{was}"
    if name == PteInstall.NAME:
        return f"installs PTE -> frame {frame} ({_vma(ev)}, {ev.get('prot', '?')})"
    if name == PteZap.NAME:
        return f"zaps PTE -> frame {frame} ({_vma(ev)})"
    if name == PteProtect.NAME:
        return f"sets PTE protection {ev.get('prot', '?')} (frame {frame}, {_vma(ev)})"
    if name == TlbFill.NAME:
        return f"TLB fill -> frame {frame} ({_vma(ev)}, {ev.get('prot', '?')})"
    if name == TlbFlush.NAME:
        cpu = _int(ev.get("cpu"))
        had = st.tlb.get(cpu) if st is not None and cpu is not None else None
        drops = f": drops frame {had.frame}" if had is not None else ""
        return f"TLB flush ({ev.get('reason', '?')}){drops}"
    if name in (MemLoad.NAME, MemStore.NAME):
        where = hex_addr(ev.get("vaddr", ev.get("addr")))
        value = value_text(ev.get("value"))
        if name == MemLoad.NAME:
            reg = ev.get("reg")
            what = f"load {where} -> {reg} = {value}" if reg is not None else f"load {where} = {value}"
        else:
            what = f"store {where} = {value}"
        text = f"{what} (frame {frame}, {_vma(ev)})"
        verdict = tr.judge(ev)
        return f"{text}  << {verdict}" if verdict else text
    if name == FaultBegin.NAME:
        return f"page fault on {ev.get('access', '?')} at {hex_addr(ev.get('vaddr', ev.get('addr')))}"
    if name == FaultRetry.NAME:
        return f"fault retries ({ev.get('reason', '?')})"
    if name == FaultSegv.NAME:
        return f"SIGSEGV ({ev.get('reason', '?')})"
    if name == FaultEnd.NAME:
        return f"fault done ({_vma(ev)})"
    if name == IpiSend.NAME:
        return f"sends IPI to cpu{ev.get('cpu')} (flush)"
    if name == IpiAck.NAME:
        return "acks the IPI"
    if name == FrameAlloc.NAME:
        return f"allocates frame {frame} ({_vma(ev)})"
    if name == SyscallBegin.NAME:
        return f"{ev.get('op', 'syscall')} begins: {ev.get('text', '')}".rstrip(": ")
    if name == SyscallEnd.NAME:
        return f"{ev.get('op', 'syscall')} returns {ret_text(ev.get('ret'))}"
    return None


def page_history(records: Iterable[Record], addr: int, filt: EventFilter | None = None) -> Iterator[str]:
    """Stream the story of the page holding `addr`: a header, one line per event
    (`  STEP  ACTOR  what happened`), and the page's state at the end.

    `filt` selects which lines are shown; the state is tracked over every event, so a
    load is judged stale even when the events that made it stale are filtered out.
    """
    page = addr - addr % PAGE_SIZE
    tr = Translations(page)
    filt = filt or EventFilter()
    yield f"history of page {hex_addr(page)}"
    shown = 0
    for rec in records:
        ev = rec.event
        if filt.to_step is not None and ev["step"] > filt.to_step:
            break
        text = _story(ev, tr, page)
        tr.observe(ev)
        if text is None or not filt.matches(ev):
            continue
        shown += 1
        # Step-0 set-up events come from `sim`; name the CPU whose TLB they fill.
        who = f"cpu{ev['cpu']}" if ev["step"] == 0 and isinstance(ev.get("cpu"), int) else ev["actor"]
        yield f"{ev['step']:>6}  {who:<9} {text}"
    if shown == 0:
        yield "  (no event matches)"
    at = f"at step {filt.to_step}" if filt.to_step is not None else "at the end of the log"
    yield f"state {at}: {tr.summary(page)}"
