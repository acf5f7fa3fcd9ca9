"""`madvise LABEL dontneed` under every policy: the pages are discarded (zapped, shot
down, frames freed only after the flush), the mapping stays, and a later fault sees
fresh memory: zeroes for anonymous memory, the file's contents for a file map."""

from __future__ import annotations

import pytest

from vmactors.policies import POLICY_NAMES, get_policy

FRESH = """
    name = "discard"
    cpus = 2
    [[map]]
    name = "A"
    fill = 5
    prefault = [0, 1]
    [[map]]
    name = "F"
    kind = "file"
    file = "f"
    fill = 7
    [[thread]]
    ops = ["store A 3", "store F 9", "madvise A dontneed", "madvise F dontneed", "r0 = load A", "r1 = load F"]
    [[thread]]
    ops = ["r2 = load A"]
"""


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_a_discarded_page_comes_back_fresh_under_every_policy(vm, policy) -> None:
    e = vm.explore(vm.scenario(FRESH), policy)
    assert e.complete and not e.findings
    # cpu1 reads A before (5 or 3) or after (0) the discard; thread 0 always sees fresh memory.
    assert {(dict(s.regs)["0:r0"], dict(s.regs)["0:r1"]) for s in e.states} == {(0, 9)}
    assert {dict(s.regs)["1:r2"] for s in e.states} == {0, 3, 5}


@pytest.mark.parametrize("policy", ["mmap_sem", "wilcox", "glisse", "pervma"])
def test_frames_go_back_only_after_the_shootdown_and_the_mapping_stays(vm, policy) -> None:
    s = vm.scenario(FRESH)
    for seed in range(10):
        r = vm.run(s, policy, seed=seed)
        assert r.outcome == "ok"
        begin = r.events(event="syscall.begin", op="madvise")
        end = r.events(event="syscall.end", op="madvise")
        assert len(begin) == len(end) == 2
        zap = r.events(event="pte.zap", cpu=0)[0]
        free = r.events(event="frame.free", frame=zap["frame"])
        done = r.events(event="msg.recv", kind="flush_done", dst="cpu0")
        assert free and done and free[0]["step"] >= done[0]["step"]  # in the step that took flush_done, or later
        assert not r.events(event="tree.store", step=begin[0]["step"])  # no tree update: the VMA stays
        assert r.regs["0:r0"] == 0 and r.regs["0:r1"] == 9


def test_every_policy_has_the_madvise_path() -> None:
    for name in POLICY_NAMES:
        path = get_policy(name).protocol.path("madvise")
        assert [p.name for p in path.phases] == ["start", "zap", "flush", "free"]
