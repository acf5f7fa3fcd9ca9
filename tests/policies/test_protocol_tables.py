"""Each policy's protocol tables (the dispatch the CPU actor runs): every phase a row
names as next exists, and every row runs in some library scenario, so no row is
dead text. The same rows are what `vmactors policies --protocols` prints."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import pytest

from vmactors.actors.messages import Ipi, QsRequest
from vmactors.actors.tasks import CpuState
from vmactors.explore.canon import state_key
from vmactors.log.schema import FaultBegin
from vmactors.ops import Load, Store
from vmactors.policies import ABLATIONS, MAIN_POLICIES, POLICY_NAMES, get_policy
from vmactors.policies.render import protocol_tables
from vmactors.scenario import load_scenario
from vmactors.system.machine import Machine

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))

Row = tuple[str, str]  # (path, phase)


def rows(policy: str) -> set[Row]:
    return {(p.name, ph.name) for p in get_policy(policy).protocol.paths for ph in p.phases}


def rows_run_in(policy: str, path: Path) -> set[Row]:
    """Every (path, phase) a CPU runs in some state of library scenario `path`."""
    ran: set[Row] = set()
    machine = Machine(load_scenario(path), policy)
    seen: set[Hashable] = {state_key(machine, machine.initial)}
    todo = [machine.initial]
    while todo:
        system = todo.pop()
        for step in machine.enabled(system):
            result = machine.apply(system, step)
            if step.actor.is_cpu:
                state = system.actors[machine.slot[step.actor]]
                assert isinstance(state, CpuState)
                env = machine.head(system, step)
                if env is not None and isinstance(env.msg, (Ipi, QsRequest)):
                    pass
                elif env is not None and state.tail is not None and env.kind == state.tail.waiting \
                        and (env.msg.range or (None,))[0] == state.tail.start:
                    ran.add((state.tail.path, state.tail.phase))
                elif state.task is not None:
                    ran.add((state.task.path, state.task.phase))
                else:
                    actor = machine.actors[machine.slot[step.actor]]
                    op = actor.thread.ops[state.pc]  # type: ignore[attr-defined]
                    if not isinstance(op, (Load, Store)):
                        ran.add((actor.syscall_task(state).path, "start"))  # type: ignore[attr-defined]
                    elif any(isinstance(e, FaultBegin) for e in result.events):
                        ran.add(("fault", "start"))
            key = state_key(machine, result.system)
            if key not in seen:
                seen.add(key)
                todo.append(result.system)
    return ran


class RowsRun(dict[tuple[str, Path], set[Row]]):
    """`rows_run_in` per (policy, scenario), computed the first time a test asks (each
    costs a walk of the scenario's state space: a main policy needs its own in every
    scenario, an ablation only until it has run the rows its parent leaves unrun)."""

    def __missing__(self, key: tuple[str, Path]) -> set[Row]:
        self[key] = rows_run_in(*key)
        return self[key]

    def policy(self, policy: str) -> set[Row]:
        return set().union(*(self[policy, path] for path in LIBRARY))


@pytest.fixture(scope="module")
def ran() -> RowsRun:
    return RowsRun()


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_next_phase_exists(policy: str) -> None:
    assert get_policy(policy).protocol.problems() == []


def test_a_dangling_next_phase_is_reported() -> None:
    table = get_policy("mmap_sem").protocol.replace("fault", "lookup", next=("alloc", "allocate"))
    assert table.problems() == ["fault.lookup: next phase 'allocate' does not exist"]


@pytest.mark.parametrize("policy", MAIN_POLICIES)
def test_every_row_runs_in_the_library(policy: str, ran: RowsRun) -> None:
    """A main policy's rows all run under it, except rows only its ablations reach
    (wilcox's early-return remainder), which must run under one of them."""
    mine = rows(policy)
    ablations = [a for a in ABLATIONS if get_policy(a).base == policy]
    missing = mine - ran.policy(policy)
    only_ablated: set[Row] = set()
    for path in LIBRARY:
        for a in ablations:
            if missing - only_ablated:
                only_ablated |= missing & ran[a, path]
    assert missing - only_ablated == set(), f"{policy}: rows no library scenario runs: {sorted(missing)}"


def test_the_protocol_tables_printed_are_the_dispatch() -> None:
    text = protocol_tables("pervma", get_policy("pervma").protocol)
    for path in get_policy("pervma").protocol.paths:
        for ph in path.phases:
            assert f"    {ph.name:<12} {ph.doc}" in text
