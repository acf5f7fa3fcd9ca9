"""What one actor step does, collected: the world after it, the messages it sent, the
events it logged, and facts for the invariant checkers.

Handlers stay pure from the outside: each step gets a fresh `Effects` over the world
as it was, and every read or change of shared state goes through its accessors, so
`RecordingEffects` (used by tests) can record the step's real footprint.

>>> from vmactors.ids import TREE
>>> fx = Effects(World.empty(), TREE)
>>> fx.tree(MM0).find_vma(0x10000) is None
True
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

import attrs

from ..ids import MM0, ActorId, MmId
from ..log.schema import Event
from ..mm.frames import Frame
from ..mm.page_table import Pte
from ..mm.vma import Vma
from ..mm.vma_tree import VmaTree
from ..mm.world import AddressSpace, Pin, PinKey, World, Writer
from . import footprint as fp
from .messages import Message


@attrs.frozen
class Note:
    """A fact for the invariant checkers that is not a log event."""


@attrs.frozen
class TlbAccess(Note):
    """A load or store went through `cpu`'s TLB entry `entry` for `page`."""

    cpu: int
    page: int
    entry: Pte
    store: bool = False


@attrs.frozen
class VmaReadFreed(Note):
    """A fault path read a VMA that was freed."""

    cpu: int
    vma: str


@attrs.frozen
class UnmapReturned(Note):
    """A munmap or MAP_FIXED returned, having removed `vmas`."""

    cpu: int
    vmas: tuple[str, ...]


@attrs.frozen
class NodeUseFreed(Note):
    """`cpu`'s tree walk used a maple node that was freed after a grace period."""

    cpu: int
    mm: MmId


@attrs.frozen
class CowStoreLost(Note):
    """wp_page_copy on `cpu` mapped its copy of `frame` for `page`, but the shared
    page changed after the copy was taken: a store through a stale writable TLB
    entry went to the page another address space keeps, and this one lost it."""

    cpu: int
    page: int
    frame: int
    copy: int


@attrs.frozen
class PgtableUseFreed(Note):
    """A page-table page was used after free_pgtables unlinked it: `cpu`'s fault wrote
    a PTE into it (`state` dead: unlinked, freed: freed), or free_pgtables unlinked it
    while it still held a PTE (`cpu` the unmapping CPU, `state` "mapped")."""

    cpu: int
    mm: MmId
    index: int
    state: str


_V = TypeVar("_V", bound=Hashable)


class Effects:
    """The effects of one step of `actor`."""

    __slots__ = ("_world", "actor", "out", "events", "notes")

    def __init__(self, world: World, actor: ActorId) -> None:
        self._world = world
        self.actor = actor
        #: (receiver, message) in send order.
        self.out: list[tuple[ActorId, Message]] = []
        #: Events, and for each `msg.send` the index of the message in `out`.
        self.events: list[Event | int] = []
        self.notes: list[Note] = []

    @property
    def world(self) -> World:
        """The world after the step (read it only when the step is over)."""
        return self._world

    # --- messages, events, notes ------------------------------------------------------

    def send(self, dst: ActorId, msg: Message) -> None:
        self.out.append((dst, msg))
        self.events.append(len(self.out) - 1)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def note(self, note: Note) -> None:
        self.notes.append(note)

    # --- recording hooks (no-ops here; a CPU records its own TLB accesses) ---------

    def record_read(self, obj: fp.Obj) -> None:
        pass

    def record_write(self, obj: fp.Obj) -> None:
        pass

    # --- address spaces -------------------------------------------------------------------

    def _space(self, mm: MmId) -> AddressSpace:
        return self._world.mms[mm]

    def _set_space(self, mm: MmId, space: AddressSpace) -> None:
        self._world = self._world.with_mm(mm, space)

    def tree(self, mm: MmId) -> VmaTree:
        self.record_read(fp.tree(mm))
        return self._space(mm).tree

    def set_tree(self, mm: MmId, tree: VmaTree) -> None:
        self.record_write(fp.tree(mm))
        s = self._space(mm)
        self._set_space(mm, AddressSpace(tree, s.vmas, s.ptes, s.policy, s.writers, s.unmapped, s.pins, s.pgtables))

    def vma(self, mm: MmId, vma_id: str) -> Vma:
        self.record_read(fp.vma(mm, vma_id))
        return self._space(mm).vmas[vma_id]

    def find_vma(self, mm: MmId, addr: int) -> Vma | None:
        """What a lookup in the published tree sees at `addr` (NULL and ZERO: None)."""
        vid = self.tree(mm).find_vma(addr)
        return None if vid is None else self.vma(mm, vid)

    def set_vma(self, mm: MmId, vma: Vma) -> None:
        self.record_write(fp.vma(mm, vma.id))
        s = self._space(mm)
        self._set_space(mm, AddressSpace(s.tree, s.vmas.set(vma.id, vma), s.ptes, s.policy, s.writers, s.unmapped,
                                         s.pins, s.pgtables))

    def vma_ids(self, mm: MmId) -> list[str]:
        """Every VMA record of the address space, sorted (reads each)."""
        ids = sorted(self._space(mm).vmas.keys())
        for vid in ids:
            self.record_read(fp.vma(mm, vid))
        return ids

    def pte(self, mm: MmId, page: int) -> Pte | None:
        self.record_read(fp.pte(mm, page))
        return self._space(mm).ptes.get(page)

    def set_pte(self, mm: MmId, page: int, pte: Pte | None) -> None:
        self.record_write(fp.pte(mm, page))
        s = self._space(mm)
        ptes = s.ptes.set(page, pte) if pte is not None else s.ptes.delete(page)
        self._set_space(mm, AddressSpace(s.tree, s.vmas, ptes, s.policy, s.writers, s.unmapped, s.pins, s.pgtables))

    def policy_get(self, mm: MmId, key: Hashable, default: _V) -> _V:
        """The policy record under `key` (or `default`)."""
        self.record_read(fp.policy(mm, key))
        return self._space(mm).policy.get(key, default)  # type: ignore[return-value]

    def policy_set(self, mm: MmId, key: Hashable, value: Hashable | None) -> None:
        """Set (or, with None, remove) the policy record under `key`."""
        self.record_write(fp.policy(mm, key))
        s = self._space(mm)
        rec = s.policy.set(key, value) if value is not None else (s.policy.delete(key) if key in s.policy else s.policy)
        self._set_space(mm, AddressSpace(s.tree, s.vmas, s.ptes, rec, s.writers, s.unmapped, s.pins, s.pgtables))

    def add_writer(self, mm: MmId, writer: Writer) -> None:
        self.record_write(fp.writers(mm))
        s = self._space(mm)
        self._set_space(mm, AddressSpace(s.tree, s.vmas, s.ptes, s.policy, s.writers | {writer}, s.unmapped, s.pins,
                                         s.pgtables))

    def end_writer(self, mm: MmId, cpu: int, unmapped: tuple[str, ...]) -> None:
        """A writer syscall returns: its ranges leave `writers`; the VMAs it removed join `unmapped`."""
        self.record_write(fp.writers(mm))
        s = self._space(mm)
        writers = frozenset(w for w in s.writers if w[0] != cpu)
        if unmapped:
            self.record_write(fp.unmapped(mm))
        self._set_space(mm, AddressSpace(s.tree, s.vmas, s.ptes, s.policy, writers, s.unmapped | frozenset(unmapped),
                                         s.pins, s.pgtables))

    def pins(self, mm: MmId, kind: str) -> dict[int, Pin]:
        """Every pin of `kind` in the address space, by CPU (reads each)."""
        out = {}
        for (k, c), p in self._space(mm).pins.items():
            if k == kind:
                self.record_read(fp.pin(mm, kind, c))
                out[c] = p
        return out

    def pin(self, mm: MmId, kind: str, cpu: int) -> Pin | None:
        self.record_read(fp.pin(mm, kind, cpu))
        return self._space(mm).pins.get((kind, cpu))

    def set_pin(self, mm: MmId, kind: str, cpu: int, pin: Pin | None) -> None:
        self.record_write(fp.pin(mm, kind, cpu))
        s = self._space(mm)
        key: PinKey = (kind, cpu)
        pins = s.pins.set(key, pin) if pin is not None else (s.pins.delete(key) if key in s.pins else s.pins)
        self._set_space(mm, AddressSpace(s.tree, s.vmas, s.ptes, s.policy, s.writers, s.unmapped, pins, s.pgtables))

    def models_pgtables(self, mm: MmId) -> bool:
        """Whether page-table pages are records in this scenario (fixed for a run: no
        object is read)."""
        return self._space(mm).pgtables is not None

    def pgtables(self, mm: MmId) -> frozenset[int] | None:
        """The page-table pages present (None: not modelled)."""
        s = self._space(mm)
        if s.pgtables is not None:
            self.record_read(fp.pgtables(mm))
        return s.pgtables

    def set_pgtables(self, mm: MmId, pgtables: frozenset[int]) -> None:
        self.record_write(fp.pgtables(mm))
        s = self._space(mm)
        self._set_space(mm, AddressSpace(s.tree, s.vmas, s.ptes, s.policy, s.writers, s.unmapped, s.pins, pgtables))

    def spaces(self) -> int:
        """How many address spaces there are."""
        return len(self._world.mms)

    # --- frames and page caches --------------------------------------------------------------

    def frame(self, fid: int) -> Frame:
        self.record_read(fp.frame(fid))
        return self._world.frames[fid]

    def write_frame(self, frame: Frame) -> None:
        self.record_write(fp.frame(frame.id))
        self._world = self._world.with_frames(self._world.frames.update(frame))

    def alloc_frame(self, owner: str, fill: int) -> int:
        """Take a frame (LIFO) for `owner`, zeroed to `fill`."""
        self.record_write(fp.FREELIST)
        frames, fid = self._world.frames.alloc(owner, fill)
        self.record_write(fp.frame(fid))
        self._world = self._world.with_frames(frames)
        return fid

    def release_frame(self, fid: int) -> None:
        self.record_write(fp.FREELIST)
        self.record_write(fp.frame(fid))
        self._world = self._world.with_frames(self._world.frames.release(fid))

    def page_cache(self, file: str, index: int) -> int:
        self.record_read(fp.cache(file, index))
        return self._world.page_cache[(file, index)]

    def file_pages(self, file: str) -> list[int]:
        """The indexes of the file's pages in the page cache (their number is fixed by
        the scenario; reading the list reads no slot)."""
        return sorted(i for f, i in self._world.page_cache.keys() if f == file)

    def set_page_cache(self, file: str, index: int, fid: int) -> None:
        self.record_write(fp.cache(file, index))
        self._world = self._world.with_page_cache(self._world.page_cache.set((file, index), fid))


class RecordingEffects(Effects):
    """Effects that also record every shared object the step reads and writes."""

    __slots__ = ("reads", "writes")

    def __init__(self, world: World, actor: ActorId) -> None:
        super().__init__(world, actor)
        self.reads: set[fp.Obj] = set()
        self.writes: set[fp.Obj] = set()

    def record_read(self, obj: fp.Obj) -> None:
        self.reads.add(obj)

    def record_write(self, obj: fp.Obj) -> None:
        self.writes.add(obj)

    def footprint(self) -> fp.Footprint:
        return fp.Footprint(frozenset(self.reads), frozenset(self.writes))


__all__ = ["Effects", "RecordingEffects", "Note", "TlbAccess", "VmaReadFreed", "UnmapReturned", "NodeUseFreed",
           "PgtableUseFreed", "CowStoreLost", "MM0"]
