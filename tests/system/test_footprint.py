"""Footprints (issue: actors behind one protocol): every step declares, before it runs,
the shared objects it reads and writes; partial-order reduction will trust that
declaration, so here every step of every library scenario under every policy is run
with recording effects and checked against it:

- what the step read or wrote through the effects is declared (a write covers a read);
- what changed in the world or in a TLB between before and after was recorded as a
  write, so no handler can change shared state behind the accessors' back.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from pathlib import Path

import attrs
import pytest

from vmactors.actors import footprint as fp
from vmactors.actors.effects import RecordingEffects
from vmactors.actors.footprint import Footprint
from vmactors.actors.phases import Phase
from vmactors.explore.canon import state_key
from vmactors.ids import MmId
from vmactors.policies import POLICY_NAMES, get_policy
from vmactors.scenario import load_scenario
from vmactors.system.machine import Machine
from vmactors.system.state import Step, System

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))


def changed(before: System, after: System) -> set[fp.Obj]:
    """Every shared object whose value differs between the two systems."""
    out: set[fp.Obj] = set()
    for mm, (a, b) in enumerate(zip(before.world.mms, after.world.mms)):
        if a is b:
            continue  # the step built no new address space: nothing in it changed
        m = MmId(mm)
        if a.tree != b.tree:
            out.add(fp.tree(m))
        for vid in set(a.vmas) | set(b.vmas):
            if a.vmas.get(vid) != b.vmas.get(vid):
                out.add(fp.vma(m, vid))
        for page in set(a.ptes) | set(b.ptes):
            if a.ptes.get(page) != b.ptes.get(page):
                out.add(fp.pte(m, page))
        for key in set(a.policy) | set(b.policy):
            if a.policy.get(key) != b.policy.get(key):
                out.add(fp.policy(m, key))
        if a.writers != b.writers:
            out.add(fp.writers(m))
        if a.unmapped != b.unmapped:
            out.add(fp.unmapped(m))
        for key in set(a.pins) | set(b.pins):
            if a.pins.get(key) != b.pins.get(key):
                out.add(fp.pin(m, *key))
        if a.pgtables != b.pgtables:
            out.add(fp.pgtables(m))
    # (the world's maps are immutable: one that is the same object did not change)
    if before.world.page_cache is not after.world.page_cache:
        for slot in set(before.world.page_cache) | set(after.world.page_cache):
            if before.world.page_cache.get(slot) != after.world.page_cache.get(slot):
                out.add(fp.cache(*slot))
    fa, fb = before.world.frames, after.world.frames
    if fa.free != fb.free:
        out.add(fp.FREELIST)
    if fa.frames is not fb.frames:
        for fid in set(fa.frames) | set(fb.frames):
            if fa.frames.get(fid) != fb.frames.get(fid):
                out.add(fp.frame(fid))
    for ca, cb in zip(before.cpus, after.cpus):
        if ca.tlb is cb.tlb:
            continue
        for page in set(ca.tlb) | set(cb.tlb):
            if ca.tlb.get(page) != cb.tlb.get(page):
                out.add(fp.tlb(ca.id, page))
    return out


def checked_step(machine: Machine, system: System, step: Step) -> tuple[System, list[str]]:
    """Run `step` with recording effects: the next system, and what is wrong with the
    step's declared footprint (empty: nothing)."""
    declared = machine.footprint(system, step)
    result = machine.apply(system, step, RecordingEffects)
    touched = result.touched
    assert touched is not None
    out = []
    missing = declared.missing(touched)
    if missing:
        out.append(f"{machine.describe(system, step)}: touched but not declared: {missing}")
    behind = changed(system, result.system) - touched.writes
    if behind:
        out.append(f"{machine.describe(system, step)}: changed without going through the effects: {sorted(behind)}")
    return result.system, out


def checked_walk(machine: Machine) -> Iterator[list[str]]:
    """Every enabled step of every state of the scenario's state space, each run once,
    with recording effects: what is wrong with its declared footprint (the walk goes
    on from the state that run gives)."""
    seen: set[Hashable] = {state_key(machine, machine.initial)}
    todo = [machine.initial]
    while todo:
        system = todo.pop()
        for step in machine.enabled(system):
            nxt, wrong = checked_step(machine, system, step)
            yield wrong
            key = state_key(machine, nxt)
            if key not in seen:
                seen.add(key)
                todo.append(nxt)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_step_of_the_library_touches_only_what_it_declares(policy: str, runs_under) -> None:
    found: list[str] = []
    steps = 0
    walked = 0
    for path in LIBRARY:
        scen = load_scenario(path)
        if not runs_under(scen, policy):
            continue
        walked += 1
        for wrong in checked_walk(Machine(scen, policy)):
            steps += 1
            found += [f"{path.name}: {p}" for p in wrong]
    assert walked and steps > 100 * walked
    assert not found, "\n".join(found[:10])


def test_a_step_that_touches_an_undeclared_object_is_caught(scenario) -> None:
    """Drop `pte@page` from the declared writes of mmap_sem's fault install: the
    check above finds the step that sets the PTE."""
    s = scenario("""
        name = "one-fault"
        [[map]]
        name = "A"
        [[thread]]
        ops = ["r0 = load A"]
    """)
    policy = get_policy("mmap_sem")
    install = policy.protocol.phase("fault", "install")
    broken = attrs.evolve(policy, protocol=policy.protocol.replace(
        "fault", "install", writes=tuple(a for a in install.writes if a.label != "pte@page")))
    machine = Machine(s, broken)
    found = [p for wrong in checked_walk(machine) for p in wrong]
    assert found and all("('pte', 0," in p for p in found)
    assert not any(checked_walk(Machine(s, policy)))


def test_a_change_behind_the_effects_back_is_caught(scenario, monkeypatch) -> None:
    """A handler that changes a TLB without recording it (here: the IPI flush with its
    recording switched off) is caught by comparing the states before and after."""
    s = scenario("""
        name = "shootdown"
        cpus = 2
        [[map]]
        name = "A"
        prefault = [0, 1]
        [[thread]]
        ops = ["munmap A"]
    """)
    machine = Machine(s, "mmap_sem")
    assert not any(checked_walk(machine))
    monkeypatch.setattr(RecordingEffects, "record_write",
                        lambda self, obj: None if obj[0] == "tlb" else self.writes.add(obj))
    found = [p for wrong in checked_walk(machine) for p in wrong]
    assert found and all("changed without going through the effects" in p and "'tlb'" in p for p in found)


def test_footprints_tell_which_steps_commute(scenario) -> None:
    """Two CPUs loading different pages touch disjoint objects; a zap and a page walk
    of the same page conflict."""
    s = scenario("""
        name = "two-loads"
        [[map]]
        name = "A"
        prefault = []
        [[map]]
        name = "B"
        prefault = []
        [[thread]]
        ops = ["r0 = load A", "munmap B"]
        [[thread]]
        ops = ["r1 = load B"]
    """)
    machine = Machine(s, "mmap_sem")
    system = machine.initial
    load_a, load_b = (machine.footprint(system, st) for st in machine.enabled(system))
    assert not load_a.conflicts(load_b)
    assert isinstance(load_a, Footprint) and fp.pte(MmId(0), machine.labels["A"]) in load_a.reads
