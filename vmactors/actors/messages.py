"""The messages actors exchange: one frozen class per kind, with typed fields.

A message travels in an `Envelope` (sender, receiver, id, cause, the virtual time it
was sent). Equality and hashing cover the sender, the receiver and the message; the
id, the cause and the send time are history, for the log only, so two states that
differ only in them are the same state.

Policies that need messages of their own (glisse's `fence_open`, pervma's `drained`)
define them in their module, as subclasses of `Message`.

| kind | from -> to | fields | meaning |
|---|---|---|---|
| `down_read` / `down_write` | cpu -> mmap_sem | | take the rwsem |
| `up_read` / `up_write` | cpu -> mmap_sem | | release it |
| `downgrade` | cpu -> mmap_sem | | the writer becomes a reader |
| `grant` | mmap_sem -> cpu | `mode` | the rwsem is yours |
| `down_read_trylock` / `trylock_done` | cpu <-> mmap_sem | `ok` | take it for read only if nobody holds it for write or waits |
| `mmap` | cpu -> tree | `request` | place and store a new VMA |
| `map_fixed` | cpu -> tree | range, `request` | store a new VMA over the range |
| `unmap` | cpu -> tree | range, `entry` (`null`/`zero`) | clear the range |
| `clear_zero` | cpu -> tree | range, `reply` | ZERO entries in the range become NULL |
| `protect` | cpu -> tree | range, `prot`, `copy` | change the VMAs' protection (in place, or by a copy) |
| `store_vma` | cpu -> tree | range, `request` | store an already-reserved new VMA |
| `expand` | cpu -> tree | the faulting page, `vma` | expand_downwards: a grows-down VMA takes the gap below it down to the page |
| `dup_mmap` | cpu -> tree | `child` | fork: copy every VMA of the sender's address space into the child's |
| `move_vma` | cpu -> tree | range, `dest`, `vma` | mremap: the VMA moves to `dest` (what was there is detached), its old range is cleared |
| `tree_done` | tree -> cpu | range, `vmas` / `placed` | the update is published |
| `flush` | cpu -> shootdown | range | shoot this range down on every other CPU |
| `ipi` / `ack` | shootdown <-> cpu | range, `token` | flush your TLB / done |
| `flush_done` | shootdown -> cpu | range | every other CPU has acked |
| `call_rcu` | cpu -> rcu | `vma` | free this VMA after a grace period |
| `ma_free_rcu` | tree -> rcu | `cpus` | free the maple node these CPUs' walks hold after a grace period |
| `wake_up_new_task` | cpu -> cpu | | fork returned: the child's thread may start |
| `pte_unlock` | cpu -> cpu | | the page-table lock the receiver waits for is free |
| `qs_request` / `qs` | rcu <-> cpu | | report a quiescent state / reported |

>>> m = Flush(addr=0x7efffffff000, pages=1)
>>> m.KIND, m.log_arg()
('flush', None)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import attrs

from ..ids import MM0, ActorId, MmId, cpu


@attrs.frozen(cache_hash=True)
class Message:
    """Base of every message kind. `KIND` is the name the log and the docs use."""

    KIND: ClassVar[str] = ""

    @property
    def range(self) -> tuple[int, int] | None:
        """(addr, pages) when the message is about a range of pages."""
        return None

    def log_arg(self) -> Any:
        """The payload as the log's `arg` key shows it (None: no `arg`)."""
        return None

    def rename_cpus(self, ren: Mapping[int, int]) -> "Message":
        """The message with every CPU index `i` in it read as `ren[i]` (symmetry
        reduction); kinds whose payload names a CPU override this."""
        return self


@attrs.frozen(cache_hash=True)
class RangeMessage(Message):
    """A message about `pages` pages from `addr`."""

    addr: int
    pages: int

    @property
    def range(self) -> tuple[int, int] | None:
        return (self.addr, self.pages)


@attrs.frozen(cache_hash=True, slots=True)
class Envelope:
    """A message in flight from `src` to `dst`."""

    src: ActorId
    dst: ActorId
    msg: Message
    msg_id: int = attrs.field(default=0, eq=False)
    #: The id of the message whose handling sent this one (None: a spontaneous step).
    cause: int | None = attrs.field(default=None, eq=False)
    #: Virtual time (ns) at which the sending step ended: the earliest it can be handled.
    sent_at: int = attrs.field(default=0, eq=False)

    @property
    def kind(self) -> str:
        return self.msg.KIND

    def rename_cpus(self, ren: Mapping[int, int]) -> "Envelope":
        """The envelope between the renamed CPUs, its message renamed too."""
        src, dst, msg = _rename_actor(self.src, ren), _rename_actor(self.dst, ren), self.msg.rename_cpus(ren)
        if src is self.src and dst is self.dst and msg is self.msg:
            return self
        return Envelope(src, dst, msg, self.msg_id, self.cause, self.sent_at)


def _rename_actor(a: ActorId, ren: Mapping[int, int]) -> ActorId:
    return cpu(ren[a.index]) if a.is_cpu and ren[a.index] != a.index else a


# --- the rwsem (mmap_sem / mmap_lock) ----------------------------------------------------


@attrs.frozen(cache_hash=True)
class DownRead(Message):
    KIND: ClassVar[str] = "down_read"
    mm: MmId = MM0


@attrs.frozen(cache_hash=True)
class DownWrite(Message):
    KIND: ClassVar[str] = "down_write"
    mm: MmId = MM0


@attrs.frozen(cache_hash=True)
class UpRead(Message):
    KIND: ClassVar[str] = "up_read"
    mm: MmId = MM0


@attrs.frozen(cache_hash=True)
class UpWrite(Message):
    KIND: ClassVar[str] = "up_write"
    mm: MmId = MM0


@attrs.frozen(cache_hash=True)
class Downgrade(Message):
    KIND: ClassVar[str] = "downgrade"
    mm: MmId = MM0


@attrs.frozen(cache_hash=True)
class DownReadTrylock(Message):
    """down_read_trylock(): take the read lock only if that needs no waiting."""

    KIND: ClassVar[str] = "down_read_trylock"
    mm: MmId = MM0


@attrs.frozen(cache_hash=True)
class TrylockDone(Message):
    """The answer to `down_read_trylock`: `ok` means the read lock is held."""

    KIND: ClassVar[str] = "trylock_done"
    ok: bool

    def log_arg(self) -> Any:
        return self.ok


@attrs.frozen(cache_hash=True)
class Grant(Message):
    KIND: ClassVar[str] = "grant"
    mode: Literal["read", "write"]

    def log_arg(self) -> Any:
        return self.mode


RwsemRequest = DownRead | DownWrite | UpRead | UpWrite | Downgrade | DownReadTrylock

# --- the tree owner -------------------------------------------------------------------------


@attrs.frozen(cache_hash=True)
class MapRequest:
    """What a new mapping should be: the tree owner builds the VMA from it."""

    vma: str
    pages: int
    kind: Literal["anon", "file"]
    file: str | None
    fill: int
    prot: str = "rw"
    #: A hint (mmap without MAP_FIXED) or the MAP_FIXED address.
    at: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"vma": self.vma, "pages": self.pages, "kind": self.kind, "file": self.file, "fill": self.fill,
                "prot": self.prot, "at": self.at}


@attrs.frozen(cache_hash=True)
class Mmap(Message):
    KIND: ClassVar[str] = "mmap"
    request: MapRequest
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.request.as_dict()


@attrs.frozen(cache_hash=True)
class MapFixed(RangeMessage):
    KIND: ClassVar[str] = "map_fixed"
    request: MapRequest
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.request.as_dict()


@attrs.frozen(cache_hash=True)
class Unmap(RangeMessage):
    KIND: ClassVar[str] = "unmap"
    #: What the range holds until the writer clears it: NULL, or wilcox's ZERO.
    entry: Literal["null", "zero"]
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.entry


@attrs.frozen(cache_hash=True)
class ClearZero(RangeMessage):
    KIND: ClassVar[str] = "clear_zero"
    #: Whether the writer waits for a `tree_done`.
    reply: bool
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.reply


@attrs.frozen(cache_hash=True)
class Protect(RangeMessage):
    KIND: ClassVar[str] = "protect"
    prot: str
    #: The id of a copy to publish (RCU readers never see a VMA change), or None: in place.
    copy: str | None
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return [self.prot, self.copy]


@attrs.frozen(cache_hash=True)
class StoreVma(RangeMessage):
    KIND: ClassVar[str] = "store_vma"
    request: MapRequest
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.request.as_dict()


@attrs.frozen(cache_hash=True)
class TreeDone(Message):
    """The tree owner's reply: the range it updated and the VMAs it removed or
    replaced; for `mmap`, where it placed the VMA (`addr` None: nothing fits)."""

    KIND: ClassVar[str] = "tree_done"
    addr: int | None = None
    pages: int | None = None
    vmas: tuple[str, ...] = ()

    @property
    def range(self) -> tuple[int, int] | None:
        return None if self.addr is None or self.pages is None else (self.addr, self.pages)

    def log_arg(self) -> Any:
        return list(self.vmas) or None


@attrs.frozen(cache_hash=True)
class Placed(TreeDone):
    """`tree_done` for an `mmap`: `addr` is where the VMA went (None: nothing fits)."""

    def log_arg(self) -> Any:
        return [self.addr] if self.addr is not None else None


@attrs.frozen(cache_hash=True)
class Expand(RangeMessage):
    """expand_downwards(vma, address): grows-down VMA `vma` reaches down to the page at
    `addr` (`pages` 1), if the pages up to its start are still a gap (and the gap
    below keeps its guard)."""

    KIND: ClassVar[str] = "expand"
    vma: str
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.vma


@attrs.frozen(cache_hash=True)
class DupMmap(Message):
    """dup_mmap: copy every VMA of address space `mm` into address space `child`."""

    KIND: ClassVar[str] = "dup_mmap"
    child: MmId
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.child


@attrs.frozen(cache_hash=True)
class MoveVma(RangeMessage):
    """mremap's move_vma: a copy of the VMA over the range, called `vma`, is stored at
    `dest` (whatever was there is detached); the old range becomes NULL."""

    KIND: ClassVar[str] = "move_vma"
    dest: int
    vma: str
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return [self.dest, self.vma]


TreeRequest = Mmap | MapFixed | Unmap | ClearZero | Protect | StoreVma | Expand | DupMmap | MoveVma

# --- TLB shootdown ---------------------------------------------------------------------------


@attrs.frozen(cache_hash=True)
class Flush(RangeMessage):
    KIND: ClassVar[str] = "flush"
    mm: MmId = MM0
    #: Which syscall asks (the index of its op in the initiator's thread), so its
    #: `flush_done` finds it even when an earlier syscall's flush is still pending.
    op: int = 0


@attrs.frozen(cache_hash=True)
class ShootdownToken:
    """Which flush an IPI belongs to: the initiating CPU, its range, its syscall."""

    initiator: int
    addr: int
    pages: int
    op: int = 0

    def rename_cpus(self, ren: Mapping[int, int]) -> "ShootdownToken":
        return ShootdownToken(ren[self.initiator], self.addr, self.pages, self.op)


@attrs.frozen(cache_hash=True)
class Ipi(RangeMessage):
    KIND: ClassVar[str] = "ipi"
    token: ShootdownToken

    def log_arg(self) -> Any:
        return [self.token.initiator, self.token.addr, self.token.pages, self.token.op]

    def rename_cpus(self, ren: Mapping[int, int]) -> "Ipi":
        return Ipi(self.addr, self.pages, self.token.rename_cpus(ren))


@attrs.frozen(cache_hash=True)
class Ack(RangeMessage):
    KIND: ClassVar[str] = "ack"
    token: ShootdownToken

    def log_arg(self) -> Any:
        return [self.token.initiator, self.token.addr, self.token.pages, self.token.op]

    def rename_cpus(self, ren: Mapping[int, int]) -> "Ack":
        return Ack(self.addr, self.pages, self.token.rename_cpus(ren))


@attrs.frozen(cache_hash=True)
class FlushDone(RangeMessage):
    KIND: ClassVar[str] = "flush_done"
    #: The syscall whose flush is done (`Flush.op`).
    op: int = 0

    def log_arg(self) -> Any:
        return self.op


# --- RCU -------------------------------------------------------------------------------------


@attrs.frozen(cache_hash=True)
class CallRcu(Message):
    """call_rcu(): free this VMA once a grace period has passed."""

    KIND: ClassVar[str] = "call_rcu"
    vma: str
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return self.vma


@attrs.frozen(cache_hash=True)
class MaFreeRcu(Message):
    """ma_free_rcu(): a replaced maple-tree node goes back after a grace period; the
    CPUs in `cpus` hold a pointer to it in a walk of theirs."""

    KIND: ClassVar[str] = "ma_free_rcu"
    cpus: tuple[int, ...]
    mm: MmId = MM0

    def log_arg(self) -> Any:
        return list(self.cpus)

    def rename_cpus(self, ren: Mapping[int, int]) -> "MaFreeRcu":
        return MaFreeRcu(tuple(ren[c] for c in self.cpus), self.mm)


@attrs.frozen(cache_hash=True)
class QsRequest(Message):
    KIND: ClassVar[str] = "qs_request"


@attrs.frozen(cache_hash=True)
class Qs(Message):
    KIND: ClassVar[str] = "qs"


# --- between CPUs ------------------------------------------------------------------------------


@attrs.frozen(cache_hash=True)
class WakeUpNewTask(Message):
    """wake_up_new_task(): the fork is done; the child's thread on the receiving CPU starts."""

    KIND: ClassVar[str] = "wake_up_new_task"


@attrs.frozen(cache_hash=True)
class PteUnlock(Message):
    """The page-table lock the receiver waits for was released (its holder kept it
    across a TLB shootdown)."""

    KIND: ClassVar[str] = "pte_unlock"


#: Interrupt-like messages: a CPU takes them whatever it is doing (unless it waits
#: with interrupts off, an ablation).
INTERRUPTS: frozenset[str] = frozenset({Ipi.KIND, QsRequest.KIND})

__all__ = [
    "Message", "RangeMessage", "Envelope", "DownRead", "DownWrite", "UpRead", "UpWrite", "Downgrade", "Grant",
    "DownReadTrylock", "TrylockDone",
    "MapRequest", "Mmap", "MapFixed", "Unmap", "ClearZero", "Protect", "StoreVma", "TreeDone", "Placed", "Flush",
    "ShootdownToken", "Ipi", "Ack", "FlushDone", "CallRcu", "QsRequest", "Qs", "INTERRUPTS", "RwsemRequest",
    "TreeRequest", "Expand", "DupMmap", "MoveVma", "MaFreeRcu", "WakeUpNewTask", "PteUnlock",
]
