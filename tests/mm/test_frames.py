"""Frames (docs/design.md#the-world): LIFO reuse, so a use-after-free shows up fast."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vmactors.mm.frames import FrameTable


def test_freed_frames_are_reused_last_in_first_out() -> None:
    t = FrameTable()
    ids = []
    for i in range(3):
        t, fid = t.alloc(f"anon:A:{i}", fill=0)
        ids.append(fid)
    assert ids == [0, 1, 2]
    t = t.release(0).release(2)
    t, x = t.alloc("anon:B:0", fill=7)
    t, y = t.alloc("anon:B:1", fill=7)
    t, z = t.alloc("anon:B:2", fill=7)
    assert (x, y, z) == (2, 0, 3)


def test_a_reused_frame_starts_afresh_with_its_new_owner() -> None:
    t, fid = FrameTable().alloc("anon:A:0", fill=1)
    t = t.update(t[fid].write(8, 42))
    assert t[fid].read(8) == 42 and t[fid].read(16) == 1
    t = t.release(fid)
    assert t[fid].state == "free"
    t, again = t.alloc("anon:B:0", fill=5)
    assert again == fid
    frame = t[again]
    assert (frame.owner, frame.state, frame.read(8), frame.read(0)) == ("anon:B:0", "in-use", 5, 5)


def test_the_old_table_is_unchanged() -> None:
    t0, fid = FrameTable().alloc("o", 0)
    t1 = t0.release(fid)
    assert t0[fid].state == "in-use" and t1[fid].state == "free"


@given(st.lists(st.booleans(), max_size=40))
def test_lifo_against_a_stack(ops: list[bool]) -> None:
    """alloc (True) / free the oldest live frame (False), against a plain stack."""
    t = FrameTable()
    live: list[int] = []
    stack: list[int] = []
    fresh = 0
    for alloc in ops:
        if alloc or not live:
            t, fid = t.alloc("o", 0)
            if stack:
                assert fid == stack.pop()
            else:
                assert fid == fresh
                fresh += 1
            assert fid not in live
            live.append(fid)
        else:
            fid = live.pop(0)
            t = t.release(fid)
            stack.append(fid)
    assert t.free == tuple(stack)
