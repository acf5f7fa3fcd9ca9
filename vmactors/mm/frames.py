"""Physical frames, with LIFO reuse so a use-after-free shows up fast (docs/design.md#the-world)."""

from __future__ import annotations

from typing import Literal

import attrs
import immutables


@attrs.frozen(cache_hash=True)
class Frame:
    """A physical page: unset words read as `fill`; `owner` is the mapping page or
    page-cache slot it belongs to (see `Vma.frame_owner`)."""

    id: int
    owner: str
    fill: int = 0
    #: word offset -> value, sorted by offset.
    words: tuple[tuple[int, int], ...] = ()
    state: Literal["free", "in-use"] = "in-use"
    #: How many address spaces map this anonymous page (page_mapcount): more than one
    #: after a fork shared it copy-on-write; a write fault then copies it.
    mapcount: int = 1

    def read(self, offset: int) -> int:
        for off, value in self.words:
            if off == offset:
                return value
        return self.fill

    def write(self, offset: int, value: int) -> "Frame":
        words = dict(self.words)
        words[offset] = value
        return attrs.evolve(self, words=tuple(sorted(words.items())))

    def copy(self, fid: int) -> "Frame":
        """A copy of this page's contents in frame `fid` (wp_page_copy), mapped once."""
        return Frame(id=fid, owner=self.owner, fill=self.fill, words=self.words)


@attrs.frozen(cache_hash=True)
class FrameTable:
    """Every frame ever allocated, and the free stack (top = last)."""

    frames: immutables.Map[int, Frame] = immutables.Map()
    free: tuple[int, ...] = ()
    #: Next never-used id; a history counter, not part of a state's identity.
    next_id: int = attrs.field(default=0, eq=False)

    def alloc(self, owner: str, fill: int) -> tuple["FrameTable", int]:
        """Take the most recently freed frame, else a new one; it is zeroed to `fill`."""
        if self.free:
            fid = self.free[-1]
            table = attrs.evolve(self, free=self.free[:-1])
        else:
            fid = self.next_id
            table = attrs.evolve(self, next_id=self.next_id + 1)
        frame = Frame(id=fid, owner=owner, fill=fill)
        return attrs.evolve(table, frames=table.frames.set(fid, frame)), fid

    def release(self, fid: int) -> "FrameTable":
        frame = self.frames[fid]
        return attrs.evolve(
            self,
            frames=self.frames.set(fid, attrs.evolve(frame, state="free", owner="", mapcount=1)),
            free=self.free + (fid,),
        )

    def update(self, frame: Frame) -> "FrameTable":
        return attrs.evolve(self, frames=self.frames.set(frame.id, frame))

    def __getitem__(self, fid: int) -> Frame:
        return self.frames[fid]
