"""The VMA-tree owner: serialises tree updates and publishes each as a new version.

Faults read the published tree directly (RCU readers need no message); writers ask
the owner by message and get `tree_done` back.

| request | effect | reply `arg` |
|---|---|---|
| `mmap` (MapRequest) | place it (hint if free, else top-down), new live VMA, store it | (address,) or () when nothing fits |
| `map_fixed` ((MapRequest, fence), range) | store the new VMA over the range; VMAs no longer in the tree are detached | ids of the replaced VMAs |
| `unmap` (range, ("null" or "zero", fence)) | store NULL or ZERO (and, for glisse, fence the range); VMAs no longer in the tree are detached | ids of the removed VMAs |
| `clear_zero` (range, reply) | ZERO entries in the range become NULL | () (no reply when `reply` is False) |
| `protect` (range, (prot, copy id or None)) | change the VMAs' protection, in place or by storing a copy | ids of the old VMAs |
| `store_vma` (MapRequest, range) | store an already-reserved new VMA (pervma MAP_FIXED's last step) | () |
"""

from __future__ import annotations

from typing import cast

import attrs

from ..mm.layout import PAGE_SIZE
from ..mm.vma import Vma
from ..mm.vma_tree import ZERO
from ..mm.world import World
from .cpu import MapRequest
from .messages import Effects, Message

NAME = "tree"


@attrs.frozen(cache_hash=True)
class TreeOwnerState:
    #: Published version number: history, for the log only.
    version: int = attrs.field(default=0, eq=False)


def new_vma(world: World, req: MapRequest, start: int) -> Vma:
    owner = f"file:{req.file}" if req.kind == "file" else f"anon:{req.vma}"
    return Vma(id=req.vma, start=start, end=start + req.pages * PAGE_SIZE, kind=req.kind, owner=owner,
               file=req.file, fill=req.fill, prot=req.prot, write_locked=req.write_locked)


def store(fx: Effects, start: int, end: int, entry: object) -> None:
    """Publish a new tree version with [start, end) set to `entry`; detach VMAs that
    are no longer in the tree."""
    world = fx.world
    before = world.tree.vma_ids(start, end)
    tree = world.tree.store(start, end, entry)  # type: ignore[arg-type]
    world = attrs.evolve(world, tree=tree)
    for vid in before:
        if not tree.holds(vid):
            world = world.set_vma(attrs.evolve(world.vma(vid), state="detached"))
    fx.world = world
    kind = "null" if entry is None else "zero" if entry is ZERO else "vma"
    fx.emit("tree.store", addr=start, pages=(end - start) // PAGE_SIZE, vma=entry if kind == "vma" else None, entry=kind)


def _writer(fx: Effects, cpu: int, start: int, end: int) -> None:
    fx.world = attrs.evolve(fx.world, writers=fx.world.writers | {(cpu, start, end)})


def _fence(fx: Effects, cpu: int, start: int, end: int) -> None:
    # glisse: set in the same step as the store, so no fault can find the range's
    # new VMA before the fence is up.
    fx.world = attrs.evolve(fx.world, fences=fx.world.fences + ((start, end, cpu, frozenset()),))


def handle(state: TreeOwnerState, fx: Effects, msg: Message) -> TreeOwnerState:
    cpu = int(msg.src[3:])
    kind = msg.kind
    if kind == "mmap":
        req = msg.arg
        assert isinstance(req, MapRequest)
        size = req.pages * PAGE_SIZE
        start = fx.world.tree.get_unmapped_area(size, req.at)
        if start is None:
            fx.send(msg.src, "tree_done", arg=())
            return state
        vma = new_vma(fx.world, req, start)
        fx.world = fx.world.set_vma(vma)
        store(fx, start, start + size, vma.id)
        fx.send(msg.src, "tree_done", start, req.pages, arg=(start,))
        return attrs.evolve(state, version=state.version + 1)
    assert msg.addr is not None and msg.pages is not None
    start, end = msg.addr, msg.addr + msg.pages * PAGE_SIZE
    old = fx.world.tree.vma_ids(start, end)
    if kind in ("map_fixed", "store_vma"):
        req, fence = cast(tuple[object, bool], msg.arg if kind == "map_fixed" else (msg.arg, False))
        assert isinstance(req, MapRequest)
        if kind == "map_fixed":
            _writer(fx, cpu, start, end)
            if fence:
                _fence(fx, cpu, start, end)
        vma = new_vma(fx.world, req, start)
        fx.world = fx.world.set_vma(vma)
        store(fx, start, end, vma.id)
        reply: tuple[object, ...] = old if kind == "map_fixed" else ()
    elif kind == "unmap":
        entry, fence = cast(tuple[str, bool], msg.arg)
        _writer(fx, cpu, start, end)
        if fence:
            _fence(fx, cpu, start, end)
        store(fx, start, end, ZERO if entry == "zero" else None)
        reply = old
    elif kind == "clear_zero":
        for s, e, stored in list(fx.world.tree.items(start, end)):
            if stored is ZERO:
                store(fx, s, e, None)
        if msg.arg is False:
            return attrs.evolve(state, version=state.version + 1)
        reply = ()
    elif kind == "protect":
        prot, copy_id = cast(tuple[str, str | None], msg.arg)
        _writer(fx, cpu, start, end)
        for vid in old:
            vma = fx.world.vma(vid)
            if copy_id is None:
                fx.world = fx.world.set_vma(attrs.evolve(vma, prot=prot))
                fx.emit("tree.store", addr=vma.start, pages=vma.pages, vma=vid, entry="vma")
            else:
                # RCU readers never see a VMA change under them: publish a copy.
                copy = attrs.evolve(vma, id=copy_id if len(old) == 1 else f"{copy_id}/{vid}", prot=prot, refcount=1)
                fx.world = fx.world.set_vma(copy)
                s, e = max(vma.start, start), min(vma.end, end)
                store(fx, s, e, copy.id)
        reply = old
    else:
        raise ValueError(f"tree owner cannot handle {kind!r}")
    fx.send(msg.src, "tree_done", msg.addr, msg.pages, arg=reply)
    return attrs.evolve(state, version=state.version + 1)


def waiting_for(state: TreeOwnerState) -> str | None:
    return None
