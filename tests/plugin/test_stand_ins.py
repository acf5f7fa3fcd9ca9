"""Protocol tests in which the test is an actor (`vm.actors(..., stand_in=[...])`).

Each test reads like a litmus test: the setup (a scenario and the actor the test
plays), the interleaving (what the test receives and sends, and which CPUs it lets
run), the expected outcome. The test is one of the protocol's parties, so it can hold
a message back as long as it likes, reorder grants, or check that what reaches it is
exactly what the protocol promises.

The system runs only while the test awaits (`receive`, `step`, `idle`, `run_until`,
`finish`), each step choice 0 ("the actor that ran last goes on"), so every test is
deterministic. Where a litmus test needs a CPU to stand still — frozen inside its
RCU read-side section, or not yet started — it holds it (`system.hold("cpu1")`): a
held CPU takes no step of its own until released, but messages to it are still
delivered (interrupts are taken).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from vmactors.actors.messages import (
    Ack,
    CallRcu,
    DownRead,
    Envelope,
    Flush,
    FlushDone,
    Grant,
    Ipi,
    Qs,
    QsRequest,
    ShootdownToken,
    UpRead,
)
from vmactors.mm.vma_tree import ZERO
from vmactors.policies import MAIN_POLICIES
from vmactors.policies.glisse import FENCES, FenceOpen
from vmactors.policies.pervma import WRITE_LOCKED, Drained
from vmactors.testing import VM, SimError
from vmactors.testing.actors import Actors

PAGE = 4096
#: Where the first `[[map]]` of one page goes (top-down; docs/scenario-format.md).
TOP = 0x7EFFFFFFF000


# --- helpers -----------------------------------------------------------------------------------


async def receive_all(system: Actors, actor: str, n: int, kind: str | None = None) -> dict[str, Envelope]:
    """The next `n` messages to stand-in `actor`, by sender name."""
    got: dict[str, Envelope] = {}
    for _ in range(n):
        env = await system.receive(actor, kind=kind)
        assert env.src.name not in got, f"two messages from {env.src.name}: {got[env.src.name]}, {env}"
        got[env.src.name] = env
    return got


def cached(system: Actors, cpu: str, addr: int) -> bool:
    """Whether `cpu`'s TLB holds a translation for the page at `addr`."""
    return addr in system.state(cpu).tlb


def waits_for(system: Actors, cpu: str) -> str | None:
    task = system.state(cpu).task
    return None if task is None else task.waiting


def ack(system: Actors, cpu: str, ipi: Envelope) -> None:
    """As stand-in `cpu`: ack `ipi` (without flushing anything: a stand-in has no TLB
    of its own to change)."""
    assert isinstance(ipi.msg, Ipi)
    system.send(cpu, "shootdown", Ack(addr=ipi.msg.addr, pages=ipi.msg.pages, token=ipi.msg.token))


def record(system: Actors, *key: str) -> Any:
    """A locking design's own record in the address space (None: absent)."""
    return system.system.world.mm().policy.get(key)


def step_of(events: list[dict[str, Any]]) -> int:
    """The step of the only event in `events`."""
    assert len(events) == 1, events
    return int(events[0]["step"])


def send_ipis(system: Actors, flush: Envelope, cpus: Sequence[str]) -> ShootdownToken:
    """As the shootdown coordinator: IPI `cpus` for `flush`'s range."""
    assert isinstance(flush.msg, Flush)
    token = ShootdownToken(flush.src.index, flush.msg.addr, flush.msg.pages)
    for c in cpus:
        system.send("shootdown", c, Ipi(addr=token.addr, pages=token.pages, token=token))
    return token


async def shoot_down(system: Actors, flush: Envelope, cpus: Sequence[str]) -> None:
    """As the shootdown coordinator, by the book: IPI `cpus`, collect every ack, then
    `flush_done` to the initiator."""
    token = send_ipis(system, flush, cpus)
    acks = await receive_all(system, "shootdown", len(cpus), kind="ack")
    assert sorted(acks) == sorted(cpus)
    system.send("shootdown", flush.src.name, FlushDone(addr=token.addr, pages=token.pages))


# --- 1. the rwsem: grant order (the test is mmap_sem) --------------------------------------------

GRANT_ORDER = {
    "name": "grant-order",
    "about": "cpu0 munmaps A; cpu1 faults on B; cpu2 munmaps B. The test is mmap_sem, as before Linux 4.20 "
             "(munmap holds it for write to the end).",
    "map": [
        {"name": "A", "fill": 1, "prefault": [0, 1, 2]},
        {"name": "B", "fill": 5},  # untouched: cpu1's load faults and needs the rwsem
    ],
    "thread": [["munmap A"], ["r0 = load B"], ["munmap B"]],
}


@pytest.mark.parametrize(("first", "r0"), [("reader", 5), ("writer", "segv")])
async def test_mmap_sem_grant_order_decides_the_fault_and_waiters_take_ipis(vm: VM, first: str,
                                                                           r0: int | str) -> None:
    async with vm.actors(GRANT_ORDER, "mmap_sem-4.19", stand_in=["mmap_sem"]) as system:
        # Every CPU asks; nobody holds the lock yet.
        asks = await receive_all(system, "mmap_sem", 3)
        assert {c: e.kind for c, e in asks.items()} == {"cpu0": "down_write", "cpu1": "down_read",
                                                      "cpu2": "down_write"}

        # Grant cpu0 the write lock: its munmap of A runs to the end, shootdown included.
        system.send("mmap_sem", "cpu0", Grant(mode="write"))
        release = await system.receive("mmap_sem", kind="up_write")
        assert release.src.name == "cpu0"
        assert system.events("syscall.end", cpu=0, op="munmap")
        # cpu1 and cpu2 wait for the rwsem, yet both took cpu0's IPI and acked it.
        for c in (1, 2):
            assert waits_for(system, f"cpu{c}") == "grant"
            assert system.events("ipi.ack", cpu=c)
            assert not cached(system, f"cpu{c}", TOP)
        # Neither waiter has run a step of its critical section.
        assert not system.events("msg.send", kind="unmap", src="cpu2")
        assert not system.events("fault.end", cpu=1) and not system.events("fault.segv", cpu=1)

        if first == "reader":
            system.send("mmap_sem", "cpu1", Grant(mode="read"))
            assert (await system.receive("mmap_sem")).kind == "up_read"  # the fault is done
            assert system.state("cpu1").regs["r0"] == 5
            assert waits_for(system, "cpu2") == "grant"  # the writer still waits
            system.send("mmap_sem", "cpu2", Grant(mode="write"))
            assert (await system.receive("mmap_sem")).kind == "up_write"
        else:
            system.send("mmap_sem", "cpu2", Grant(mode="write"))
            assert (await system.receive("mmap_sem")).kind == "up_write"  # B is gone
            assert waits_for(system, "cpu1") == "grant"  # the reader still waits
            assert system.events("ipi.ack", cpu=1, addr=TOP - PAGE)  # and took cpu2's IPI too
            system.send("mmap_sem", "cpu1", Grant(mode="read"))
            assert (await system.receive("mmap_sem")).kind == "up_read"

        r = await system.finish()
    assert r.outcome == "ok", r.violations
    assert r.regs == {"1:r0": r0}
    assert r.violations == ()


@pytest.mark.parametrize("acks", [True, False])
async def test_mmap_sem_real_rwsem_queues_a_reader_behind_the_writer(vm: VM, acks: bool) -> None:
    """The test is cpu1: it asks the real rwsem for a read lock while cpu0's mprotect
    holds it for write (across its shootdown, in every Linux). The rwsem queues it;
    cpu0's shootdown IPIs it meanwhile. A CPU that acks gets the grant once cpu0
    releases; one that does not (interrupts off while waiting) deadlocks the mprotect:
    the mmap_sem-irqs-off-wait ablation."""
    s = {"name": "reader-behind-writer", "cpus": 2,  # cpu1: no thread, the test plays it
         "map": [{"name": "A", "fill": 1, "prefault": [0]}], "thread": [["mprotect A prot=r"]]}
    async with vm.actors(s, "mmap_sem", stand_in=["cpu1"]) as system:
        await system.run_until("lock.acquire", cpu=0, lock="mmap_sem", mode="write")
        system.send("cpu1", "mmap_sem", DownRead())
        await system.run_until("lock.wait", cpu=1, lock="mmap_sem", mode="read")
        assert not system.events("lock.acquire", cpu=1)
        assert system.state("mmap_sem").waiters == {(1, "read")}

        ipi = await system.receive("cpu1")  # not a grant: the writer is still in
        assert isinstance(ipi.msg, Ipi) and ipi.src.name == "shootdown" and ipi.msg.addr == TOP
        if not acks:
            r = await system.finish()
            assert r.outcome == "deadlock"
            assert r.waiting["cpu0"].startswith("flush_done")
            assert r.waiting["shootdown"] == "acks from cpu1 for cpu0's flush"
            return
        ack(system, "cpu1", ipi)

        grant = await system.receive("cpu1", kind="grant")
        assert grant.msg == Grant(mode="read")
        released = step_of(system.events("lock.release", cpu=0, mode="write"))
        granted = step_of(system.events("lock.acquire", cpu=1, mode="read"))
        assert released < granted
        system.send("cpu1", "mmap_sem", UpRead())
        r = await system.finish()
    assert r.outcome == "ok" and r.violations == ()
    assert r.events("lock.release", cpu=1, lock="mmap_sem", mode="read")


# --- 2. the TLB shootdown (the test is the coordinator) ------------------------------------------

SHOOTDOWN = {
    "name": "munmap-shootdown",
    "about": "cpu0 munmaps A, which every CPU caches; cpu1 and cpu2 load B from their TLBs.",
    "map": [{"name": "A", "fill": 1, "prefault": [0, 1, 2]}, {"name": "B", "fill": 2, "prefault": [1, 2]}],
    "thread": [["munmap A"], ["r0 = load B"], ["r0 = load B"]],
}


@pytest.mark.parametrize("policy", MAIN_POLICIES)
async def test_shootdown_acks_follow_the_flush_and_munmap_returns_after_flush_done(vm: VM, policy: str) -> None:
    async with vm.actors(SHOOTDOWN, policy, stand_in=["shootdown"]) as system:
        flush = await system.receive("shootdown", kind="flush")
        assert (flush.src.name, flush.msg.range) == ("cpu0", (TOP, 1))
        # cpu0 flushed its own TLB before asking; cpu1 and cpu2 still cache A.
        assert [cached(system, c, TOP) for c in ("cpu0", "cpu1", "cpu2")] == [False, True, True]
        assert TOP not in system.system.world.mm().ptes and system.events("pte.zap", cpu=0, addr=TOP)

        # IPI cpu1 alone: it acks, with its translation gone; cpu2 still caches A.
        token = send_ipis(system, flush, ["cpu1"])
        got = await system.receive("shootdown", kind="ack")
        assert got.src.name == "cpu1" and got.msg == Ack(addr=TOP, pages=1, token=token)
        assert not cached(system, "cpu1", TOP) and cached(system, "cpu2", TOP)

        send_ipis(system, flush, ["cpu2"])
        got = await system.receive("shootdown", kind="ack")
        assert got.src.name == "cpu2" and not cached(system, "cpu2", TOP)
        # Each CPU flushed in the step it acked, and before it sent the ack.
        for c in (1, 2):
            mine = [e["event"] for e in system.events(actor=f"cpu{c}")
                    if e["event"] in ("tlb.flush", "msg.send") and e.get("addr") == TOP]
            assert mine == ["tlb.flush", "msg.send"]
            assert step_of(system.events("tlb.flush", cpu=c, reason="ipi")) == \
                step_of(system.events("ipi.ack", cpu=c))

        # Every ack is in, but the munmap has not returned and freed nothing.
        await system.idle()
        assert waits_for(system, "cpu0") == "flush_done"
        assert not system.events("syscall.end", cpu=0)
        assert not system.events("frame.free")

        done = system.send("shootdown", "cpu0", FlushDone(addr=TOP, pages=1))
        r = await system.finish()
    assert r.outcome == "ok" and r.violations == ()
    assert r.regs == {"1:r0": 2, "2:r0": 2}
    assert step_of(r.events("syscall.end", cpu=0, op="munmap")) > done[0]["step"]
    assert all(e["step"] > done[0]["step"] for e in r.events("frame.free"))


@pytest.mark.parametrize("policy", MAIN_POLICIES)
async def test_a_cpu_that_acks_without_flushing_breaks_munmap(vm: VM, policy: str) -> None:
    """The test is cpu1, which caches A, and acks the IPI without flushing (a stand-in
    never changes its TLB): munmap returns while cpu1 still maps A's page. The
    shootdown is only as good as its acks, whatever the locking design."""
    s = {"name": "ack-without-flush", "cpus": 2,
         "map": [{"name": "A", "fill": 1, "prefault": [0, 1]}], "thread": [["munmap A"]]}
    async with vm.actors(s, policy, stand_in=["cpu1"]) as system:
        ipi = await system.receive("cpu1", kind="ipi")
        ack(system, "cpu1", ipi)
        await system.run_until("syscall.end", cpu=0)
        assert cached(system, "cpu1", TOP)
        r = await system.finish()
    assert "munmap-incomplete" in r.violations
    (v,) = r.events("invariant.violated", invariant="munmap-incomplete")
    assert (v["cpu"], v["addr"], v["vma"]) == (0, TOP, "A")


# --- 3. RCU grace periods ---------------------------------------------------------------------------

RCU_READER = {
    "name": "munmap-vs-rcu-reader",
    "about": "cpu1 faults on file map A under RCU while cpu0 munmaps A.",
    "map": [{"name": "A", "kind": "file", "file": "fA", "fill": 1}],  # untouched: cpu1's load faults
    "thread": [["munmap A"], ["r0 = load A"]],
}


async def test_wilcox_rcu_reader_answers_only_when_it_leaves_the_section(vm: VM) -> None:
    """The test is rcu. cpu1 has found VMA A under rcu_read_lock and is frozen there
    (mid fault, rcu_map_pages path) while cpu0's munmap removes A and hands it to
    call_rcu. cpu0 reports a quiescent state at once; cpu1 owes one until it leaves the
    read-side section, so the test may not free A before then."""
    async with vm.actors(RCU_READER, "wilcox", stand_in=["rcu"]) as system:
        system.hold("cpu0")
        # cpu1 enters its read-side section and finds A; then it is frozen there.
        await system.run_until("lock.acquire", cpu=1, lock="rcu", mode="read")
        system.hold("cpu1")
        assert system.state("cpu1").task.vma == "A"

        # cpu0's munmap runs (cpu1 takes its IPI) and hands A to call_rcu.
        system.release("cpu0")
        call = await system.receive("rcu", kind="call_rcu")
        assert call.src.name == "cpu0" and call.msg == CallRcu(vma="A")
        assert system.system.world.mm().vmas["A"].state == "detached"
        assert system.events("ipi.ack", cpu=1)

        # A grace period: ask each CPU for a quiescent state.
        system.send("rcu", "cpu0", QsRequest())
        assert (await system.receive("rcu", kind="qs")).src.name == "cpu0"
        system.send("rcu", "cpu1", QsRequest())
        await system.idle()
        assert system.events("msg.recv", kind="qs_request", dst="cpu1")  # delivered, not answered
        assert not system.inbox
        cpu1 = system.state("cpu1")
        assert (cpu1.rcu_nesting, cpu1.qs_owed, cpu1.task.vma) == (1, True, "A")  # still reading A

        # cpu1 goes on: its recheck finds A detached, it leaves RCU (the qs goes out),
        # retries, and finds nothing.
        system.release("cpu1")
        qs = await system.receive("rcu", kind="qs")
        assert qs.src.name == "cpu1"
        sent = step_of(system.events("msg.send", kind="qs", src="cpu1"))
        left = [e["step"] for e in system.events("lock.release", cpu=1, lock="rcu")]
        assert left[0] == sent  # it answered in the step that left the section
        assert system.events("fault.retry", cpu=1, vma="A")
        assert system.state("cpu1").rcu_nesting == 0
        # The grace period is over: no CPU can still hold A; freeing it now is safe.
        r = await system.finish()
    assert r.outcome == "ok" and r.violations == ()
    assert r.regs == {"1:r0": "segv"}


async def test_wilcox_no_grace_frees_under_the_frozen_reader(vm: VM) -> None:
    """The same interleaving without a grace period (wilcox-no-grace): A is freed at
    once, under cpu1's feet — the use-after-free the grace period prevents."""
    async with vm.actors(RCU_READER, "wilcox-no-grace", stand_in=["rcu"]) as system:
        system.hold("cpu0")
        await system.run_until("lock.acquire", cpu=1, lock="rcu", mode="read")
        system.hold("cpu1")
        system.release("cpu0")
        await system.run_until("syscall.end", cpu=0)
        assert system.system.world.mm().vmas["A"].state == "freed"
        system.release("cpu1")
        r = await system.finish()
    assert not r.events("msg.recv", dst="rcu")  # nothing ever reached rcu
    assert "vma-uaf" in r.violations


async def test_real_rcu_frees_the_vma_only_after_every_qs(vm: VM) -> None:
    """The test is cpu1 (an idle CPU); rcu is real. cpu0's munmap IPIs it (the test
    acks), then hands A to call_rcu; A stays allocated until the test reports its
    quiescent state."""
    s = {"name": "munmap-grace-period", "cpus": 2,
         "map": [{"name": "A", "fill": 1, "prefault": [0]}], "thread": [["munmap A"]]}
    async with vm.actors(s, "wilcox", stand_in=["cpu1"]) as system:
        ipi = await system.receive("cpu1", kind="ipi")
        ack(system, "cpu1", ipi)

        await system.receive("cpu1", kind="qs_request")
        # The grace period started after call_rcu(A) and asked both CPUs at once; once
        # the system is idle cpu0 has reported, cpu1 (the test) not yet.
        assert system.events("msg.recv", kind="call_rcu", dst="rcu")
        await system.idle()
        assert system.events("rcu.qs", cpu=0) and not system.events("rcu.qs", cpu=1)
        assert system.state("rcu").waiting == {1}
        assert system.system.world.mm().vmas["A"].state == "detached"
        assert not system.events("vma.free")

        qs = system.send("cpu1", "rcu", Qs())
        r = await system.finish()
    assert r.outcome == "ok" and r.violations == ()
    (free,) = r.events("vma.free", vma="A")
    assert free["actor"] == "rcu" and free["step"] > qs[0]["step"]
    assert step_of(r.events("rcu.gp.end")) == free["step"]


# --- 4. wilcox's ZERO entry (the test is the coordinator) -----------------------------------------

ZERO_RESERVATION = {
    "name": "zero-reservation",
    "about": "cpu0 munmaps A; while its flush is pending cpu1 loads A and cpu2 mmaps; afterwards cpu3 mmaps "
             "and loads the same address.",
    "map": [{"name": "A", "fill": 1, "prefault": [0]}],
    "thread": [["munmap A"], ["r0 = load A"], ["N = mmap fill=3"], ["M = mmap fill=9", "r1 = load A"]],
}


async def test_wilcox_zero_entry_reserves_the_range_until_the_flush_is_done(vm: VM) -> None:
    async with vm.actors(ZERO_RESERVATION, "wilcox", stand_in=["shootdown"]) as system:
        system.hold("cpu1", "cpu2", "cpu3")
        flush = await system.receive("shootdown", kind="flush")
        # munmap's flush is pending: A's range holds ZERO.
        assert [entry for _, _, entry in system.system.world.mm().tree.items(TOP, TOP + PAGE)] == [ZERO]

        # A fault on the range SIGSEGVs at once (no waiting).
        system.release("cpu1")
        await system.run_until("op.end", cpu=1)
        assert system.state("cpu1").regs["r0"] == "segv"
        assert system.events("fault.segv", cpu=1, addr=TOP) and not system.events("lock.wait", cpu=1)

        # A new mmap does not get the range, though it is the top free one.
        system.release("cpu2")
        placed = await system.run_until("syscall.end", cpu=2, op="mmap")
        assert placed["ret"] not in range(TOP - PAGE + 1, TOP + PAGE)

        # The flush completes; munmap turns ZERO into NULL and returns.
        await shoot_down(system, flush, ["cpu1", "cpu2", "cpu3"])
        await system.run_until("syscall.end", cpu=0, op="munmap")
        assert step_of(system.events("tree.store", entry="null", addr=TOP)) < \
            step_of(system.events("syscall.end", cpu=0))

        # Now the range is reused: cpu3's mmap gets it, and a load at A's old address
        # sees the new mapping.
        system.release("cpu3")
        r = await system.finish()
    assert r.outcome == "ok" and r.violations == ()
    assert r.regs == {"1:r0": "segv", "2:N": placed["ret"], "3:M": TOP, "3:r1": 9}


# --- 5. glisse: a MAP_FIXED fences faults on the range (the test is the coordinator) --------------

FIXED_FENCE = {
    "name": "map-fixed-fence",
    "about": "cpu0 replaces file map A (f1, contents 1) by f2 (contents 2); cpu1 faults on A, cpu2 on B.",
    "map": [{"name": "A", "kind": "file", "file": "f1", "fill": 1, "prefault": []},
            {"name": "B", "fill": 5}],
    "thread": [["mmap A fixed kind=file file=f2 fill=2"], ["r0 = load A"], ["r0 = load B"]],
}


async def test_glisse_fault_under_map_fixed_waits_for_the_fence(vm: VM) -> None:
    async with vm.actors(FIXED_FENCE, "glisse", stand_in=["shootdown"]) as system:
        system.hold("cpu1", "cpu2")
        # The MAP_FIXED has stored the new VMA (fence up) and zapped; its flush is ours.
        flush = await system.receive("shootdown", kind="flush")
        assert flush.src.name == "cpu0"
        assert system.system.world.mm().tree.find_vma(TOP) == "0.0"  # the new VMA is already visible
        (fence,) = record(system, *FENCES)
        assert (fence.start, fence.owner) == (TOP, 0)

        # cpu1's fault finds the new VMA in the fenced range: it waits, with no result.
        system.release("cpu1")
        await system.idle()
        (wait,) = system.events("lock.wait", cpu=1)
        assert (wait["lock"], wait["addr"]) == ("fence", TOP)
        assert waits_for(system, "cpu1") == "fence_open"
        assert record(system, *FENCES)[0].waiters == {1}
        assert "r0" not in system.state("cpu1").regs

        # cpu2's fault on B, outside the fence, does not wait.
        system.release("cpu2")
        await system.run_until("op.end", cpu=2)
        assert system.state("cpu2").regs["r0"] == 5 and not system.events("lock.wait", cpu=2)

        # The waiting CPU still takes the IPI; the MAP_FIXED completes, then opens the fence.
        await shoot_down(system, flush, ["cpu1", "cpu2"])
        assert waits_for(system, "cpu1") == "fence_open"
        r = await system.finish()
    assert r.outcome == "ok" and r.violations == ()
    assert r.regs == {"1:r0": 2, "2:r0": 5}  # the new page, never the old one
    ret = step_of(r.events("syscall.end", cpu=0, op="mmap-fixed"))
    opened = step_of(r.events("msg.send", kind=FenceOpen.KIND, dst="cpu1"))
    loaded = step_of(r.events("mem.load", cpu=1))
    assert ret == opened < loaded


# --- 6. pervma: per-VMA write locks (the test is mmap_sem, a.k.a. mmap_lock) ----------------------

PERVMA = {
    "name": "vma-write-lock",
    "about": "cpu0 faults on A (per-VMA read lock); cpu1 munmaps A; cpu2 faults on A meanwhile.",
    "map": [{"name": "A", "fill": 1}],  # untouched: both loads fault
    "thread": [["r0 = load A"], ["munmap A"], ["r0 = load A"]],
}


async def test_pervma_writer_waits_for_readers_to_drain_and_faults_fall_back(vm: VM) -> None:
    async with vm.actors(PERVMA, "pervma", stand_in=["mmap_sem"]) as system:
        system.hold("cpu1", "cpu2")
        # cpu0 holds A's per-VMA read lock (lock_vma_under_rcu), mid fault; frozen there.
        await system.run_until("lock.acquire", cpu=0, lock="vma", mode="read", vma="A")
        system.hold("cpu0")
        assert record(system, "readers", "A") == 1

        # cpu1's munmap gets mmap_lock for write; vma_start_write waits for the reader.
        system.release("cpu1")
        ask = await system.receive("mmap_sem", kind="down_write")
        assert ask.src.name == "cpu1"
        system.send("mmap_sem", "cpu1", Grant(mode="write"))
        await system.idle()
        assert system.events("lock.wait", cpu=1, lock="vma", mode="write", vma="A")
        assert waits_for(system, "cpu1") == Drained.KIND
        assert "A" in record(system, *WRITE_LOCKED)
        assert not system.events("msg.send", kind="unmap")  # the tree is untouched

        # cpu2's fault finds A write-locked: it falls back to mmap_lock for read, and waits.
        system.release("cpu2")
        fallback = await system.receive("mmap_sem", kind="down_read")
        assert fallback.src.name == "cpu2"
        (retry,) = system.events("fault.retry", cpu=2)
        assert "write-locked" in retry["reason"]
        assert not system.events("lock.acquire", cpu=2, lock="vma")

        # cpu0 finishes its fault: vma_end_read wakes the writer with `drained`.
        system.release("cpu0")
        downgrade = await system.receive("mmap_sem", kind="downgrade")  # update done, zap under read
        assert downgrade.src.name == "cpu1"
        drained = step_of(system.events("msg.send", kind=Drained.KIND, src="cpu0", dst="cpu1"))
        unmap = step_of(system.events("msg.send", kind="unmap", src="cpu1"))
        assert drained < unmap
        assert system.state("cpu0").regs["r0"] == 1

        # Only now may the fallen-back fault have mmap_lock: A is gone, SIGSEGV.
        assert waits_for(system, "cpu2") == "grant"
        system.send("mmap_sem", "cpu2", Grant(mode="read"))
        ups = await receive_all(system, "mmap_sem", 2, kind="up_read")
        assert sorted(ups) == ["cpu1", "cpu2"]
        r = await system.finish()
    assert r.outcome == "ok" and r.violations == ()
    assert r.regs == {"0:r0": 1, "2:r0": "segv"}


# --- async stand-in tests need no marker and no configuration -------------------------------------

#: The example of docs/testing.md, "The test as an actor (stand-ins)", verbatim.
DOC_EXAMPLE = '''\
# test_shootdown.py — no conftest.py, no pytest.ini, no marker
from vmactors.actors.messages import FlushDone, Ipi, ShootdownToken

MUNMAP = {
    "name": "munmap-shootdown",
    "map": [{"name": "A", "fill": 1, "prefault": [0, 1]}],  # cpu0 and cpu1 cache A
    "thread": [["munmap A"], ["r0 = load A"]],
}


async def test_munmap_returns_only_after_flush_done(vm):
    async with vm.actors(MUNMAP, "wilcox", stand_in=["shootdown"]) as system:
        # cpu0's munmap has zapped A and asks the shootdown (us) to flush it.
        flush = await system.receive("shootdown", kind="flush")
        addr, pages = flush.msg.addr, flush.msg.pages
        assert addr in system.state("cpu1").tlb  # cpu1 still caches A

        # IPI cpu1; it flushes, then acks.
        token = ShootdownToken(flush.src.index, addr, pages)
        system.send("shootdown", "cpu1", Ipi(addr=addr, pages=pages, token=token))
        ack = await system.receive("shootdown", kind="ack")
        assert ack.src.name == "cpu1" and addr not in system.state("cpu1").tlb

        # Every ack is in, but munmap waits for us.
        assert system.state("cpu0").task.waiting == "flush_done"
        assert not system.events("syscall.end")

        done = system.send("shootdown", "cpu0", FlushDone(addr=addr, pages=pages))
        r = await system.finish()

    assert r.outcome == "ok" and r.violations == ()
    (end,) = r.events("syscall.end", cpu=0, op="munmap")
    assert end["step"] > done[0]["step"]
'''


def test_the_docs_show_the_example_tested_here() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text(encoding="utf-8")
    assert DOC_EXAMPLE in docs


@pytest.mark.parametrize("trio_plugin", ["pytest-trio", "no pytest-trio"])
def test_async_stand_in_test_runs_in_a_fresh_folder(tmp_path: Path, trio_plugin: str) -> None:
    """A fresh folder — no pytest.ini, no conftest.py, no marker — holding one async
    stand-in test: `python -m pytest` runs it, with pytest-trio and without."""
    (tmp_path / "test_shootdown.py").write_text(DOC_EXAMPLE, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_shootdown.py"]
    if trio_plugin == "no pytest-trio":
        args[3:3] = ["-p", "no:trio"]
    out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout and "warning" not in out.stdout.lower(), out.stdout
    assert f"rootdir: {tmp_path}" in out.stdout and "configfile" not in out.stdout, out.stdout
    plugins = next(ln for ln in out.stdout.splitlines() if ln.startswith("plugins:"))
    assert "vmactors" in plugins and ("trio-" in plugins) == (trio_plugin == "pytest-trio"), plugins


# --- the kit itself ---------------------------------------------------------------------------------


async def test_running_out_of_steps_does_not_end_the_run(vm: VM) -> None:
    """When only the test can go on, `step()` says so, and the run goes on once the
    test sends (it is not reported as a deadlock)."""
    async with vm.actors(SHOOTDOWN, "mmap_sem", stand_in=["shootdown"]) as system:
        flush = await system.receive("shootdown", kind="flush")
        await system.idle()
        with pytest.raises(SimError, match="only the test can go on"):
            await system.step()
        await shoot_down(system, flush, ["cpu1", "cpu2"])
        r = await system.finish()
    assert r.outcome == "ok", r.describe()


async def test_choices_replay_a_run_with_stand_in_sends(vm: VM) -> None:
    """The choice list leaves the test's own sends out, so the same test actions
    under `choices=` take the same steps, even with non-zero choices among them."""

    async def play(choices: list[int] | None) -> tuple[list[int], bytes]:
        async with vm.actors(SHOOTDOWN, "wilcox", stand_in=["shootdown"], choices=choices,
                             strategy=None if choices is not None else "random", seed=4) as system:
            flush = await system.receive("shootdown", kind="flush")
            await shoot_down(system, flush, ["cpu1", "cpu2"])
            r = await system.finish()
            return list(system.choices), r.log

    choices, log = await play(None)
    assert any(choices)  # a random schedule, not all zeros
    again, log2 = await play(choices)
    # The same steps; only run.start differs (strategy replay, not random).
    assert again == choices and log2.split(b"\n")[1:] == log.split(b"\n")[1:]


async def test_targeted_steps_and_filters(vm: VM) -> None:
    async with vm.actors(SHOOTDOWN, "mmap_sem", stand_in=["shootdown"]) as system:
        system.hold("cpu0")
        await system.step("cpu1")  # cpu1's load of B, from its TLB
        assert system.state("cpu1").regs["r0"] == 2
        assert system.addr("A") == TOP
        with pytest.raises(SimError, match="cpu0 has no enabled step"):
            await system.step("cpu0")
        system.release("cpu0")
        flush = await system.receive("shootdown", kind="flush", src="cpu0")
        token = send_ipis(system, flush, ["cpu1", "cpu2"])
        acks = [await system.receive("shootdown", kind="ack", src=c) for c in ("cpu2", "cpu1")]
        assert [a.src.name for a in acks] == ["cpu2", "cpu1"] and all(a.msg.token == token for a in acks)
        assert system.inbox == []
        with pytest.raises(SimError, match="cpu1 is not stood in for"):
            system.send("cpu1", "cpu0", FlushDone(addr=TOP, pages=1))
        system.send("shootdown", "cpu0", FlushDone(addr=TOP, pages=1))
        await system.finish()
    assert any(isinstance(r, Actors) for r in vm.runs)  # in the report of a failing test


async def test_a_seed_alone_picks_a_random_schedule(vm: VM) -> None:
    """As with `vm.run`, `seed=` alone means the random strategy with that seed: two
    seeds give two schedules, one seed the same one twice; no seed: choice 0 always."""

    async def choices(**how: Any) -> tuple[int, ...]:
        async with vm.actors("mapfixed-two-readers", "wilcox", **how) as system:
            r = await system.finish()
        return tuple(r.choices)

    by_seed = {seed: await choices(seed=seed) for seed in range(4)}
    assert len(set(by_seed.values())) > 1
    assert await choices(seed=2) == by_seed[2]
    assert set(await choices()) == {0}


async def test_a_message_its_receiver_does_not_take_is_an_error_at_that_step(vm: VM) -> None:
    """A stand-in that sends a CPU something it is not waiting for (flush_done to a CPU
    that asked for no flush) gets a SimError from the step that delivers it, which the
    test can expect; the actors are still there to close."""
    async with vm.actors(SHOOTDOWN, "wilcox", stand_in=["shootdown"]) as system:
        flush = await system.receive("shootdown", kind="flush")
        system.send("shootdown", "cpu1", FlushDone(addr=flush.msg.addr, pages=flush.msg.pages))
        with pytest.raises(SimError, match="cpu1 cannot take flush_done from shootdown"):
            await system.idle()
