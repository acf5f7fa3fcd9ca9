"""The VMA-tree owner: serialises tree updates and publishes each as a new version.

Faults read the published tree directly (RCU readers need no message); writers ask
the owner by message and get `tree_done` back. A locking design that must act in the
same step as a store (glisse's fence, pervma's born-write-locked VMA) does so through
the `TreeHooks` the policy provides.

| request | effect | reply |
|---|---|---|
| `mmap` | place it (hint if free, else top-down), new live VMA, store it | `tree_done` with the address, or none when nothing fits |
| `map_fixed` | store the new VMA over the range; VMAs no longer in the tree are detached | the replaced VMAs |
| `unmap` | store NULL or ZERO; VMAs no longer in the tree are detached | the removed VMAs |
| `clear_zero` | ZERO entries in the range become NULL | nothing, or an empty `tree_done` when asked |
| `protect` | change the VMAs' protection, in place or by storing a copy | the old VMAs |
| `store_vma` | store an already-reserved new VMA (pervma MAP_FIXED's last step) | an empty `tree_done` |
"""

from __future__ import annotations

from typing import Literal, Protocol, final

import attrs

from ..ids import TREE, ActorId, MmId
from ..log.schema import TreeStore
from ..mm.layout import PAGE_SIZE
from ..mm.vma import Vma
from ..mm.vma_tree import ZERO, Entry
from ..mm.world import World
from . import footprint as fp
from .base import Actor
from .effects import Effects
from .footprint import Footprint
from .messages import (
    ClearZero,
    Envelope,
    MapFixed,
    MapRequest,
    Mmap,
    Placed,
    Protect,
    StoreVma,
    TreeDone,
    TreeRequest,
    Unmap,
)

NAME = "tree"


class TreeHooks(Protocol):
    """What a locking design does inside the tree owner's step."""

    def tree_updated(self, fx: Effects, mm: MmId, who: int, msg: TreeRequest, start: int, end: int) -> None:
        """Called before a `map_fixed` or `unmap` store, in the same step."""

    def vma_created(self, fx: Effects, mm: MmId, vma: Vma) -> None:
        """Called when a new VMA enters the tree (`mmap`, `map_fixed`, `store_vma`)."""

    def tree_footprint(self, world: World, mm: MmId, msg: TreeRequest) -> Footprint:
        """What the two hooks above read and write for request `msg`."""


@attrs.frozen(cache_hash=True)
class TreeOwnerState:
    #: Published version number: history, for the log only.
    version: int = attrs.field(default=0, eq=False)


def new_vma(req: MapRequest, start: int) -> Vma:
    owner = f"file:{req.file}" if req.kind == "file" else f"anon:{req.vma}"
    return Vma(id=req.vma, start=start, end=start + req.pages * PAGE_SIZE, kind=req.kind, owner=owner,
               file=req.file, fill=req.fill, prot=req.prot)


def store(fx: Effects, mm: MmId, start: int, end: int, entry: Entry | None) -> None:
    """Publish a new tree version with [start, end) set to `entry`; detach VMAs that
    are no longer in the tree."""
    tree = fx.tree(mm)
    before = tree.vma_ids(start, end)
    tree = tree.store(start, end, entry)
    fx.set_tree(mm, tree)
    for vid in before:
        if not tree.holds(vid):
            fx.set_vma(mm, attrs.evolve(fx.vma(mm, vid), state="detached"))
    kind: Literal["vma", "zero", "null"] = "null" if entry is None else "zero" if entry is ZERO else "vma"
    fx.emit(TreeStore(addr=start, pages=(end - start) // PAGE_SIZE, entry=kind,
                      vma=entry if isinstance(entry, str) else None))


@final
class TreeOwner(Actor[TreeOwnerState]):
    id: ActorId = TREE

    def __init__(self, hooks: TreeHooks) -> None:
        self.hooks = hooks

    def initial(self) -> TreeOwnerState:
        return TreeOwnerState()

    def _create(self, fx: Effects, mm: MmId, req: MapRequest, start: int) -> None:
        vma = new_vma(req, start)
        fx.set_vma(mm, vma)
        self.hooks.vma_created(fx, mm, vma)

    def handle(self, state: TreeOwnerState, fx: Effects, env: Envelope | None, choice: int) -> TreeOwnerState:
        assert env is not None
        msg = env.msg
        who = env.src.index
        bumped = TreeOwnerState(version=state.version + 1)
        match msg:
            case Mmap():
                req = msg.request
                size = req.pages * PAGE_SIZE
                start = fx.tree(msg.mm).get_unmapped_area(size, req.at)
                if start is None:
                    fx.send(env.src, Placed())
                    return state
                self._create(fx, msg.mm, req, start)
                store(fx, msg.mm, start, start + size, req.vma)
                fx.send(env.src, Placed(addr=start, pages=req.pages))
                return bumped
            case MapFixed():
                start, end = msg.addr, msg.addr + msg.pages * PAGE_SIZE
                old = fx.tree(msg.mm).vma_ids(start, end)
                fx.add_writer(msg.mm, (who, start, end))
                self.hooks.tree_updated(fx, msg.mm, who, msg, start, end)
                self._create(fx, msg.mm, msg.request, start)
                store(fx, msg.mm, start, end, msg.request.vma)
                fx.send(env.src, TreeDone(addr=msg.addr, pages=msg.pages, vmas=old))
                return bumped
            case StoreVma():
                start, end = msg.addr, msg.addr + msg.pages * PAGE_SIZE
                self._create(fx, msg.mm, msg.request, start)
                store(fx, msg.mm, start, end, msg.request.vma)
                fx.send(env.src, TreeDone(addr=msg.addr, pages=msg.pages))
                return bumped
            case Unmap():
                start, end = msg.addr, msg.addr + msg.pages * PAGE_SIZE
                old = fx.tree(msg.mm).vma_ids(start, end)
                fx.add_writer(msg.mm, (who, start, end))
                self.hooks.tree_updated(fx, msg.mm, who, msg, start, end)
                store(fx, msg.mm, start, end, ZERO if msg.entry == "zero" else None)
                fx.send(env.src, TreeDone(addr=msg.addr, pages=msg.pages, vmas=old))
                return bumped
            case ClearZero():
                start, end = msg.addr, msg.addr + msg.pages * PAGE_SIZE
                for s, e, entry in list(fx.tree(msg.mm).items(start, end)):
                    if entry is ZERO:
                        store(fx, msg.mm, s, e, None)
                if msg.reply:
                    fx.send(env.src, TreeDone(addr=msg.addr, pages=msg.pages))
                return bumped
            case Protect():
                start, end = msg.addr, msg.addr + msg.pages * PAGE_SIZE
                old = fx.tree(msg.mm).vma_ids(start, end)
                fx.add_writer(msg.mm, (who, start, end))
                for vid in old:
                    vma = fx.vma(msg.mm, vid)
                    if msg.copy is None:
                        fx.set_vma(msg.mm, attrs.evolve(vma, prot=msg.prot))
                        fx.emit(TreeStore(addr=vma.start, pages=vma.pages, entry="vma", vma=vid))
                    else:
                        # RCU readers never see a VMA change under them: publish a copy.
                        copy = attrs.evolve(vma, id=msg.copy if len(old) == 1 else f"{msg.copy}/{vid}",
                                            prot=msg.prot)
                        fx.set_vma(msg.mm, copy)
                        store(fx, msg.mm, max(vma.start, start), min(vma.end, end), copy.id)
                fx.send(env.src, TreeDone(addr=msg.addr, pages=msg.pages, vmas=old))
                return bumped
        raise TypeError(f"tree owner cannot handle {msg.KIND!r}")

    def footprint(self, state: TreeOwnerState, world: World, env: Envelope | None, choice: int) -> Footprint:
        assert env is not None
        msg = env.msg
        assert isinstance(msg, (Mmap, MapFixed, StoreVma, Unmap, ClearZero, Protect))
        mm = msg.mm
        space = world.mm(mm)
        objs_r = [fp.tree(mm)]
        objs_w = [fp.tree(mm)]
        rng = msg.range
        if isinstance(msg, Mmap):
            objs_w.append(fp.vma(mm, msg.request.vma))
        elif rng is not None:
            start, end = rng[0], rng[0] + rng[1] * PAGE_SIZE
            touched = space.tree.vma_ids(start, end)
            objs_w += [fp.vma(mm, vid) for vid in touched]
            objs_r += [fp.vma(mm, vid) for vid in touched]
            if isinstance(msg, (MapFixed, StoreVma)):
                objs_w.append(fp.vma(mm, msg.request.vma))
            if isinstance(msg, Protect) and msg.copy is not None:
                objs_w += [fp.vma(mm, msg.copy if len(touched) == 1 else f"{msg.copy}/{v}") for v in touched]
            if isinstance(msg, (MapFixed, Unmap, Protect)):
                objs_w.append(fp.writers(mm))
        return Footprint.of(objs_r, objs_w) | self.hooks.tree_footprint(world, mm, msg)

    def waiting_for(self, state: TreeOwnerState) -> str | None:
        return None


__all__ = ["TreeOwner", "TreeOwnerState", "TreeHooks", "new_vma", "store", "NAME"]
