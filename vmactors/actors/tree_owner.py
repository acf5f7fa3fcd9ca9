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
| `expand` | expand_downwards: if the pages below the grows-down VMA are still a gap (keeping its guard), the VMA starts lower and the tree stores it there; consuming the whole gap replaces the tree node (`node_replaced`) | `tree_done` with the VMA, or an empty one when it cannot grow |
| `dup_mmap` | fork: a copy of every VMA of the sender's address space is stored in the child's | `tree_done` with the copies and their span |
| `move_vma` | mremap: a copy of the VMA at the range, under its new id, is stored at `dest` (VMAs there are detached), the old range becomes NULL | the moved and the replaced VMAs; an empty `tree_done` if the range is not one VMA |
"""

from __future__ import annotations

from typing import Literal, Protocol, final

import attrs

from ..ids import TREE, ActorId, MmId
from ..log.schema import TreeStore
from ..mm.layout import PAGE_SIZE
from ..mm.stack import consumes_gap, guard_kept
from ..mm.vma import Vma
from ..mm.vma_tree import ZERO, Entry
from ..mm.world import World
from . import footprint as fp
from .base import Actor
from .effects import Effects
from .footprint import Footprint
from .messages import (
    ClearZero,
    DupMmap,
    Envelope,
    Expand,
    MapFixed,
    MapRequest,
    Mmap,
    MoveVma,
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

    def node_replaced(self, fx: Effects, mm: MmId, who: int) -> None:
        """Called when a store under the read lock (a stack expansion) replaced the
        tree node other CPUs' walks may hold (CPU `who` stored it)."""

    def tree_footprint(self, world: World, mm: MmId, msg: TreeRequest) -> Footprint:
        """What the hooks above read and write for request `msg` (in address space `mm`:
        a `dup_mmap`'s child)."""


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
                      vma=entry if isinstance(entry, str) else None, mm=mm or None))


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
            case Expand():
                return self._expand(state, fx, env, msg) or bumped
            case DupMmap():
                ids: list[str] = []
                span: list[int] = []
                for s, e, entry in list(fx.tree(msg.mm).items()):
                    if not isinstance(entry, str):
                        continue  # a ZERO reservation is not a VMA: the child has a gap there
                    vma = attrs.evolve(fx.vma(msg.mm, entry), state="live")
                    fx.set_vma(msg.child, vma)
                    self.hooks.vma_created(fx, msg.child, vma)
                    store(fx, msg.child, s, e, entry)
                    ids.append(entry)
                    span += [s, e]
                if not span:
                    fx.send(env.src, TreeDone(vmas=()))
                    return bumped
                lo, hi = min(span), max(span)
                fx.send(env.src, TreeDone(addr=lo, pages=(hi - lo) // PAGE_SIZE, vmas=tuple(ids)))
                return bumped
            case MoveVma():
                start, end = msg.addr, msg.addr + msg.pages * PAGE_SIZE
                dest, dest_end = msg.dest, msg.dest + msg.pages * PAGE_SIZE
                tree = fx.tree(msg.mm)
                old = tree.vma_ids(start, end)
                moving = fx.vma(msg.mm, old[0]) if len(old) == 1 else None
                if moving is None or (moving.start, moving.end) != (start, end) or (dest < end and start < dest_end):
                    # mremap of a range that is not one VMA (-EFAULT), or onto itself (-EINVAL)
                    fx.send(env.src, TreeDone(vmas=()))
                    return state
                replaced = tree.vma_ids(dest, dest_end)
                fx.add_writer(msg.mm, (who, start, end))
                fx.add_writer(msg.mm, (who, dest, dest_end))
                self.hooks.tree_updated(fx, msg.mm, who, msg, start, end)
                new = attrs.evolve(moving, id=msg.vma, start=dest, end=dest_end, state="live")
                fx.set_vma(msg.mm, new)
                self.hooks.vma_created(fx, msg.mm, new)
                store(fx, msg.mm, dest, dest_end, msg.vma)
                store(fx, msg.mm, start, end, None)
                fx.send(env.src, TreeDone(addr=msg.addr, pages=msg.pages, vmas=old + replaced))
                return bumped
        raise TypeError(f"tree owner cannot handle {msg.KIND!r}")

    def _expand(self, state: TreeOwnerState, fx: Effects, env: Envelope, msg: Expand) -> TreeOwnerState | None:
        """expand_downwards under the caller's lock: recheck that the pages are still a
        gap below the grows-down VMA and that the guard below is kept; then the VMA
        starts lower and the tree says so. None: it grew (a new version)."""
        mm, start = msg.mm, msg.addr
        vma = fx.vma(mm, msg.vma)
        if vma.start <= start and vma.state == "live":
            fx.send(env.src, TreeDone(addr=start, pages=1, vmas=(vma.id,)))  # another fault grew it already
            return state
        tree = fx.tree(mm)
        if (vma.state != "live" or not vma.growsdown or not tree.is_free(start, vma.start)
                or not guard_kept(tree, lambda vid: fx.vma(mm, vid), start)):
            fx.send(env.src, TreeDone())
            return state
        grown = attrs.evolve(vma, start=start)
        fx.set_vma(mm, grown)
        store(fx, mm, start, vma.start, vma.id)
        if consumes_gap(fx.tree(mm), start):
            # The gap's entry goes: RCU mode writes a new node and frees the old one
            # after a grace period (only a pivot moves when a gap is left).
            self.hooks.node_replaced(fx, mm, env.src.index)
        fx.send(env.src, TreeDone(addr=start, pages=1, vmas=(vma.id,)))
        return None

    def footprint(self, state: TreeOwnerState, world: World, env: Envelope | None, choice: int) -> Footprint:
        assert env is not None
        msg = env.msg
        assert isinstance(msg, (Mmap, MapFixed, StoreVma, Unmap, ClearZero, Protect, Expand, DupMmap, MoveVma))
        mm = msg.mm
        space = world.mm(mm)
        if isinstance(msg, Expand):
            below = space.tree.prev_entry(msg.addr)
            reads = [fp.tree(mm), fp.vma(mm, msg.vma)]
            if below is not None and isinstance(below[2], str):
                reads.append(fp.vma(mm, below[2]))
            return Footprint.of(reads, [fp.tree(mm), fp.vma(mm, msg.vma)]) | self.hooks.tree_footprint(world, mm, msg)
        if isinstance(msg, DupMmap):
            ids = [e for _, _, e in space.tree.items() if isinstance(e, str)]
            return (Footprint.of([fp.tree(mm)] + [fp.vma(mm, v) for v in ids],
                                 [fp.tree(msg.child)] + [fp.vma(msg.child, v) for v in ids])
                    | self.hooks.tree_footprint(world, msg.child, msg))
        if isinstance(msg, MoveVma):
            touched = (space.tree.vma_ids(msg.addr, msg.addr + msg.pages * PAGE_SIZE)
                       + space.tree.vma_ids(msg.dest, msg.dest + msg.pages * PAGE_SIZE))
            objs = [fp.tree(mm)] + [fp.vma(mm, v) for v in touched]
            return (Footprint.of(objs, objs + [fp.vma(mm, msg.vma), fp.writers(mm)])
                    | self.hooks.tree_footprint(world, mm, msg))
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
