"""`mmap_sem`: the baseline — one rwsem per mm (Linux before 6.4).

Faults take the rwsem for read; mmap, munmap, MAP_FIXED and mprotect take it for
write and hold it to the end, TLB flush and frees included. So a fault concurrent
with munmap waits and then SIGSEGVs, a fault on a range being replaced by MAP_FIXED
waits and then sees the new mapping, and no CPU can reach a new page while another
still caches the old one.
"""

from __future__ import annotations

import attrs

from ..actors.kernel import Kernel
from ..actors.messages import DownRead, Grant, MapFixed, Message, Protect, TreeDone, Unmap, UpWrite
from ..actors.phases import EXIT, START, Path, Phase, ProtocolTable, goto, wait
from ..actors.policy import Policy
from ..actors.tasks import FaultTask, SyscallTask
from ..ids import MMAP_SEM, TREE
from .common import (
    OLD_VMAS,
    RANGE_PTE_FRAMES,
    RANGE_PTES,
    RETURN_WRITES,
    TASK_FRAMES,
    down_read_then,
    fault_under_mmap_sem,
    flush_phase,
    madvise_path,
    mmap_path,
    take_old,
    writer_start,
)


@attrs.frozen
class MmapSemKnobs:
    #: Ablation: free the zapped frames before the shootdown completes.
    free_before_flush: bool = False


# --- fault -------------------------------------------------------------------------------------


def fault_start(k: Kernel, t: FaultTask, msg: Message | None) -> FaultTask:
    return down_read_then("lookup", t, k, holds=("mmap_sem",))


# --- writers -------------------------------------------------------------------------------------


def _zap(k: Kernel, t: SyscallTask) -> SyscallTask:
    assert t.start is not None
    frames = k.zap_range(t.start, t.pages)
    if k.knobs(MmapSemKnobs).free_before_flush:
        for fid in frames:
            k.free_frame(fid)
        frames = ()
    return goto(t, "flush", frames=frames)


def _free(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    for fid in t.frames:
        k.free_frame(fid)
    for vid in t.old:
        if k.vma(vid).state == "detached":
            k.free_vma_now(vid)
    return goto(t, "release", frames=())


def _release(k: Kernel, t: SyscallTask, msg: Message | None) -> str:
    k.send(MMAP_SEM, UpWrite(mm=k.mm))
    k.syscall_return(t, t.old if t.op != "mprotect" else ())
    return EXIT


def munmap_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None
    k.send(TREE, Unmap(addr=t.start, pages=t.pages, entry="null", mm=k.mm))
    return wait(t, "zap", TreeDone)


def munmap_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    return take_old(t, msg, "zap") or _zap(k, t)


def map_fixed_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.request is not None
    k.send(TREE, MapFixed(addr=t.start, pages=t.pages, request=t.request, mm=k.mm))
    return wait(t, "zap", TreeDone)


def map_fixed_zap(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    if msg is not None:
        assert isinstance(msg, TreeDone) and t.request is not None
        return goto(t, "zap", old=msg.vmas, new=t.request.vma, ret=t.start)
    return _zap(k, t)


def mprotect_update(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    assert t.start is not None and t.prot is not None
    k.send(TREE, Protect(addr=t.start, pages=t.pages, prot=t.prot, copy=None, mm=k.mm))
    return wait(t, "protect", TreeDone)


def mprotect_protect(k: Kernel, t: SyscallTask, msg: Message | None) -> SyscallTask:
    if msg is not None:
        assert isinstance(msg, TreeDone)
        return goto(t, "protect", old=msg.vmas, new=None)
    assert t.start is not None and t.prot is not None
    k.change_protection(t.start, t.pages, t.prot, None)
    return goto(t, "flush")


DOWN_WRITE = "down_write(mmap_sem); wait for the grant"
ZAP_WRITES = (RANGE_PTES, RANGE_PTE_FRAMES)

PROTOCOL = ProtocolTable((
    Path("fault", (
        Phase(START, fault_start, ("lookup",), "down_read(mmap_sem); wait for the grant", sends=(DownRead,)),
    ) + fault_under_mmap_sem()),
    mmap_path(),
    madvise_path(),
    Path("munmap", (
        writer_start("update", DOWN_WRITE),
        Phase("update", munmap_update, ("zap",), "ask the tree owner to store NULL over the range (VMAs detached)",
              sends=(Unmap,)),
        Phase("zap", munmap_zap, ("zap", "flush"), "zap the PTEs under the page-table lock", writes=ZAP_WRITES),
        flush_phase("free", "flush the local TLB, ask for the shootdown, wait for every ack"),
        Phase("free", _free, ("release",), "free the frames and the VMAs, still under the write lock",
              reads=(OLD_VMAS,), writes=(TASK_FRAMES, OLD_VMAS)),
        Phase("release", _release, (EXIT,), "up_write; return", sends=(UpWrite,), writes=RETURN_WRITES),
    )),
    Path("mmap_fixed", (
        writer_start("update", DOWN_WRITE),
        Phase("update", map_fixed_update, ("zap",), "ask the tree owner to store the new VMA over the range",
              sends=(MapFixed,)),
        Phase("zap", map_fixed_zap, ("zap", "flush"), "zap the old PTEs", writes=ZAP_WRITES),
        flush_phase("free", "local flush, shootdown, wait for every ack"),
        Phase("free", _free, ("release",), "free the old frames and VMAs", reads=(OLD_VMAS,),
              writes=(TASK_FRAMES, OLD_VMAS)),
        Phase("release", _release, (EXIT,), "up_write; return", sends=(UpWrite,), writes=RETURN_WRITES),
    )),
    Path("mprotect", (
        writer_start("update", DOWN_WRITE),
        Phase("update", mprotect_update, ("protect",), "ask the tree owner to change the VMA's protection in place",
              sends=(Protect,)),
        Phase("protect", mprotect_protect, ("protect", "flush"), "change the PTEs' protection",
              writes=(RANGE_PTES,)),
        flush_phase("release", "local flush, shootdown, wait for every ack"),
        Phase("release", _release, (EXIT,), "up_write; return", sends=(UpWrite,), writes=RETURN_WRITES),
    )),
))

MMAP_SEM_POLICY = Policy(
    name="mmap_sem",
    summary="one rwsem per mm: faults read-lock it, writers write-lock it to the end (flush and frees included)",
    protocol=PROTOCOL,
    config=MmapSemKnobs(),
)

ABLATIONS = (
    MMAP_SEM_POLICY.ablation(
        "mmap_sem-free-before-flush",
        "ablation of mmap_sem: frames freed at the zap, before the shootdown completes (trips frame-uaf)",
        config=MmapSemKnobs(free_before_flush=True)),
    MMAP_SEM_POLICY.ablation(
        "mmap_sem-irqs-off-wait",
        "ablation of mmap_sem: a CPU waiting for the rwsem takes no IPIs (trips deadlock)",
        irqs_off_lock_wait=True),
)

__all__ = ["MMAP_SEM_POLICY", "ABLATIONS", "MmapSemKnobs", "PROTOCOL", "Grant"]
