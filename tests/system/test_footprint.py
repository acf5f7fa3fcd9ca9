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
    fa, fb = before.world.frames, after.world.frames
    if fa.free != fb.free:
        out.add(fp.FREELIST)
    for fid in set(fa.frames) | set(fb.frames):
        if fa.frames.get(fid) != fb.frames.get(fid):
            out.add(fp.frame(fid))
    for ca, cb in zip(before.cpus, after.cpus):
        for page in set(ca.tlb) | set(cb.tlb):
            if ca.tlb.get(page) != cb.tlb.get(page):
                out.add(fp.tlb(ca.id, page))
    return out


def problems(machine: Machine, system: System, step: Step) -> list[str]:
    """What is wrong with `step`'s declared footprint in `system` (empty: nothing)."""
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
    return out


def every_step(machine: Machine) -> Iterator[tuple[System, Step]]:
    """Every (state, enabled step) of the scenario's state space."""
    seen: set[Hashable] = {state_key(machine, machine.initial)}
    todo = [machine.initial]
    while todo:
        system = todo.pop()
        for step in machine.enabled(system):
            yield system, step
            nxt = machine.apply(system, step).system
            key = state_key(machine, nxt)
            if key not in seen:
                seen.add(key)
                todo.append(nxt)


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_step_of_the_library_touches_only_what_it_declares(policy: str) -> None:
    found: list[str] = []
    steps = 0
    for path in LIBRARY:
        machine = Machine(load_scenario(path), policy)
        for system, step in every_step(machine):
            steps += 1
            found += [f"{path.name}: {p}" for p in problems(machine, system, step)]
    assert steps > 1000
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
    found = [p for system, step in every_step(machine) for p in problems(machine, system, step)]
    assert found and all("('pte', 0," in p for p in found)
    assert all(not problems(Machine(s, policy), system, step) for system, step in every_step(Machine(s, policy)))


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
    assert not [p for sy, st in every_step(machine) for p in problems(machine, sy, st)]
    monkeypatch.setattr(RecordingEffects, "record_write",
                        lambda self, obj: None if obj[0] == "tlb" else self.writes.add(obj))
    found = [p for sy, st in every_step(machine) for p in problems(machine, sy, st)]
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
