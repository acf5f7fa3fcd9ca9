"""The cost model's contention rule (`vmactors.system.clock`), on hand-built accesses:
setup (which CPU touched which line, when), the step, the virtual time it ends at."""

from __future__ import annotations

from pathlib import Path

import attrs
import immutables
import pytest

from vmactors.actors.messages import DownRead, Envelope, Flush, Ipi, ShootdownToken
from vmactors.errors import UsageError
from vmactors.ids import MMAP_SEM, MM0, SHOOTDOWN, cpu
from vmactors.log.schema import FaultBegin, IpiAck, IpiSend
from vmactors.system.clock import CostModel, Costs, line_of, load_costs

C = Costs()
REF = ("policy", MM0, ("ref", "A"))  # a VMA's reference count: an atomic counter
TREE = ("tree", MM0)  # read by every lookup, written by tree stores
STEP = C.cpu_step_ns


def step(model: CostModel, who: int, caches: immutables.Map, *, reads=(), writes=(), start: int = 0,
         events=(), sent=()):  # type: ignore[no-untyped-def]
    accesses = {o: False for o in reads} | {o: True for o in writes}
    return model.step(cpu(who), accesses, events, None, start, caches, sent)


def test_a_line_nobody_writes_is_cheap_to_read() -> None:
    m = CostModel()
    caches: immutables.Map = immutables.Map()
    first = step(m, 0, caches, reads=[TREE])
    assert first.end == STEP + C.llc_ns  # first touch: the last-level cache
    caches = first.caches
    for who in (1, 2, 0, 1):
        out = step(m, who, caches, reads=[TREE], start=100)
        caches = out.caches
        assert out.end <= 100 + STEP + C.llc_ns and not out.waits
    again = step(m, 2, caches, reads=[TREE], start=500)
    assert again.end == 500 + STEP and not again.waits  # it shares the line now: a hit


def test_a_write_to_a_line_another_cpu_wrote_pays_a_transfer() -> None:
    m = CostModel()
    caches = step(m, 0, immutables.Map(), writes=[REF]).caches
    mine = step(m, 0, caches, writes=[REF], start=1000)
    assert mine.end == 1000 + STEP + C.atomic_ns and not mine.waits  # cpu0 holds it: a local atomic
    theirs = step(m, 1, caches, writes=[REF], start=1000)
    assert theirs.end == 1000 + STEP + C.line_transfer_ns + C.atomic_ns
    assert theirs.waits == (("vma refcount", C.line_transfer_ns),)


def test_reading_a_line_another_cpu_modified_is_a_transfer_then_shared() -> None:
    m = CostModel()
    caches = step(m, 0, immutables.Map(), writes=[TREE]).caches
    out = step(m, 1, caches, reads=[TREE], start=1000)
    assert out.end == 1000 + STEP + C.line_transfer_ns
    # both share it now: cpu0 reads it for free, a write by cpu0 invalidates cpu1's copy
    assert step(m, 0, out.caches, reads=[TREE], start=2000).end == 2000 + STEP
    assert step(m, 0, out.caches, writes=[TREE], start=2000).end == 2000 + STEP + C.line_transfer_ns


def test_transfers_of_one_line_queue_behind_each_other() -> None:
    """Four CPUs write the counter at the same instant: each waits for the previous
    transfer, so the last ends three transfers after the first."""
    m = CostModel()
    caches = step(m, 9, immutables.Map(), writes=[REF]).caches  # cpu9 holds it
    ends = []
    for who in range(4):
        out = step(m, who, caches, writes=[REF], start=1000)
        caches = out.caches
        ends.append(out.end)
    x = C.line_transfer_ns
    assert ends == [1000 + STEP + x * (i + 1) + C.atomic_ns for i in range(4)]


def test_different_lines_do_not_queue() -> None:
    m = CostModel()
    caches = step(m, 9, immutables.Map(), writes=[REF, ("policy", MM0, ("ref", "B"))]).caches
    a = step(m, 0, caches, writes=[REF], start=1000)
    b = step(m, 1, a.caches, writes=[("policy", MM0, ("ref", "B"))], start=1000)
    assert a.end == b.end == 1000 + STEP + C.line_transfer_ns + C.atomic_ns


def test_a_transfer_across_sockets_costs_more() -> None:
    m = CostModel(attrs.evolve(C, cpus_per_socket=2))
    caches = step(m, 0, immutables.Map(), writes=[REF]).caches
    near = step(m, 1, caches, writes=[REF], start=1000)
    far = step(m, 2, caches, writes=[REF], start=1000)
    assert near.end == 1000 + STEP + C.line_transfer_ns + C.atomic_ns
    assert far.end == 1000 + STEP + C.remote_line_transfer_ns + C.atomic_ns


def test_a_pte_write_takes_its_page_table_lock_and_neighbours_share_lines() -> None:
    m = CostModel()
    page = 0x7E0000000000
    pte = ("pte", MM0, page)
    assert line_of(pte) == line_of(("pte", MM0, page + 7 * 4096))  # 8 PTEs per line
    assert line_of(pte) != line_of(("pte", MM0, page + 8 * 4096))
    caches = step(m, 0, immutables.Map(), writes=[pte]).caches
    out = step(m, 1, caches, writes=[("pte", MM0, page + 4096)], start=1000)
    names = [n for n, _ in out.waits]
    assert names == ["page-table lock", "page table"]


def test_frames_tlbs_and_bookkeeping_are_not_lines() -> None:
    m = CostModel()
    caches: immutables.Map = immutables.Map()
    out = step(m, 0, caches, writes=[("frame", 3), ("freelist",), ("tlb", 0, 4096), ("writers", MM0)])
    assert out.end == STEP and out.caches is caches


def test_a_lock_request_is_an_atomic_on_the_rwsem_word_by_the_cpu_that_sends_it() -> None:
    m = CostModel()
    caches = step(m, 0, immutables.Map(), sent=[(MMAP_SEM, DownRead())]).caches
    out = step(m, 1, caches, sent=[(MMAP_SEM, DownRead())], start=1000)
    assert out.end == 1000 + STEP + C.line_transfer_ns + C.atomic_ns
    assert out.waits == (("mmap_sem", C.line_transfer_ns),)
    # the rwsem actor's handling of it costs nothing more
    env = Envelope(cpu(1), MMAP_SEM, DownRead(), sent_at=out.end)
    assert m.step(MMAP_SEM, {}, (), env, out.end, out.caches).end == out.end


def test_ipis_cost_the_sender_per_target_and_an_interrupt_on_the_target() -> None:
    m = CostModel()
    caches: immutables.Map = immutables.Map()
    env = Envelope(cpu(0), SHOOTDOWN, Flush(addr=0x10000, pages=1), sent_at=0)
    sends = [IpiSend(cpu=c, addr=0x10000, pages=1) for c in (1, 2, 3)]
    assert m.step(SHOOTDOWN, {}, sends, env, 0, caches).end == 3 * C.ipi_send_ns
    token = ShootdownToken(0, 0x10000, 1)
    ipi = Envelope(SHOOTDOWN, cpu(2), Ipi(addr=0x10000, pages=1, token=token), sent_at=0)
    out = m.step(cpu(2), {}, [IpiAck(cpu=2, addr=0x10000, pages=1)], ipi, 0, caches)
    assert out.end == STEP + C.ipi_receive_ns


def test_events_cost_what_the_table_says() -> None:
    m = CostModel()
    out = step(m, 0, immutables.Map(), events=[FaultBegin(cpu=0, addr=0x10000, pages=1, vaddr=0x10000,
                                                          access="load")])
    assert out.end == STEP + C.fault_entry_ns


def test_costs_come_from_a_toml_file(tmp_path: Path) -> None:
    f = tmp_path / "costs.toml"
    f.write_text("line_transfer_ns = 120\nipi_receive_ns = 3000\n")
    costs = load_costs(f)
    assert costs.line_transfer_ns == 120 and costs.ipi_receive_ns == 3000 and costs.atomic_ns == C.atomic_ns
    f.write_text("line_transfer = 120\n")
    with pytest.raises(UsageError, match="unknown cost parameter 'line_transfer'.*line_transfer_ns"):
        load_costs(f)
    f.write_text("atomic_ns = -1\n")
    with pytest.raises(UsageError, match="atomic_ns must be a non-negative integer"):
        load_costs(f)


def test_every_parameter_has_a_meaning_and_a_source() -> None:
    for name, value, unit, doc, source in Costs().rows():
        assert value >= 0 and unit and doc and source, name
