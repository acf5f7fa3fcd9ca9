"""The timed scheduler (`vmactors.perf.timed`, `vmactors.perf.runner`): the step with
the earliest virtual start goes next, ties by actor order, the rwsem grants in arrival
order; the fast runner takes exactly the steps `TimedStrategy` takes on a `Run`; and
a run is a function of its inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from vmactors.perf import timed
from vmactors.perf.bench import measure, policy
from vmactors.perf.runner import run_timed
from vmactors.perf.timed import TimedStrategy
from vmactors.perf.workloads import WORKLOADS
from vmactors.scenario import parse_scenario
from vmactors.sim.run import Run
from vmactors.system.clock import Costs
from vmactors.system.machine import Machine

POLICIES = ("mmap_sem", "wilcox", "glisse", "pervma", "wilcox-no-map-pages")


def trace(machine: Machine) -> list[tuple[int, int, int, int, int]]:
    steps: list[tuple[int, int, int, int, int]] = []
    run_timed(machine, on_step=lambda *s: steps.append(s))
    return steps


def strategy_trace(machine: Machine) -> list[tuple[int, int, int, int, int]]:
    """The same run through `Run` and `TimedStrategy` (the step loop every runtime uses)."""
    strategy = TimedStrategy()
    run = Run(machine.scenario, machine.policy, strategy, machine=machine)  # type: ignore[arg-type]
    strategy.bind(machine, lambda: run.system)
    steps = []
    while (chosen := run.next_step()) is not None:
        index, step = chosen
        result = run.take(index)
        src = -1 if step.src is None else machine.slot[step.src]
        steps.append((machine.slot[step.actor], src, step.choice, result.vtime_ns,
                      result.system.clocks[machine.slot[step.actor]]))
    assert run.finish().outcome in ("ok", "violation")
    return steps


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("name", POLICIES)
def test_the_fast_runner_takes_the_steps_the_timed_strategy_takes(workload: str, name: str) -> None:
    w = WORKLOADS[workload]
    fast = trace(Machine(w.scenario(3, 4), policy(name)))
    slow = strategy_trace(Machine(w.scenario(3, 4), policy(name)))
    assert fast == slow


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_steps_run_in_the_order_of_their_virtual_start(workload: str) -> None:
    for name in POLICIES:
        starts = [s[3] for s in trace(Machine(WORKLOADS[workload].scenario(4, 6), policy(name)))]
        assert starts == sorted(starts), name


TIE = """
name = "tie"
[[map]]
name = "A"
prefault = [0, 1, 2]
[[thread]]
ops = ["r0 = load A", "r1 = load A"]
[[thread]]
ops = ["r0 = load A", "r1 = load A"]
[[thread]]
ops = ["r0 = load A", "r1 = load A"]
"""


def test_ties_go_by_actor_order() -> None:
    """Three CPUs whose steps cost the same start together each time: cpu0, cpu1, cpu2."""
    steps = trace(Machine(parse_scenario(TIE, "tie.toml"), "mmap_sem"))
    assert [(s[0], s[3]) for s in steps] == [(0, 0), (1, 0), (2, 0), (0, 31), (1, 31), (2, 31)]


def test_an_ipi_that_arrived_goes_before_the_cpus_next_op() -> None:
    """A CPU busy with its own ops takes an interrupt that arrived meanwhile at its next
    step boundary, not after its last op."""
    text = """
name = "ipi"
[[map]]
name = "A"
prefault = [0, 1]
[[thread]]
ops = ["munmap A"]
[[thread]]
ops = [""" + ", ".join(['"store A 1"'] * 40) + "]\n"
    m = Machine(parse_scenario(text, "ipi.toml"), "mmap_sem")
    steps = trace(m)
    ipi_at = next(i for i, s in enumerate(steps) if s[0] == 1 and s[1] == m.slot[m.ids[-3]])  # from shootdown
    later_ops = [s for s in steps[ipi_at:] if s[0] == 1 and s[1] == -1]
    assert later_ops, "cpu1 still had ops to run when the IPI came"


FIFO = """
name = "fifo"
cpus = 3
[[map]]
name = "A"
[[map]]
name = "B"
prefault = [1, 2]
[[thread]]
ops = ["r0 = load A"]                      # faults: holds mmap_sem for read
[[thread]]
ops = [""" + ", ".join(['"r1 = load B"'] * 14) + """, "munmap B"]   # down_write while cpu0 reads
[[thread]]
ops = [""" + ", ".join(['"r2 = load B"'] * 14) + """, "r3 = load A"]   # down_read after the writer queued
"""


def lock_order(monkeypatch: Any = None) -> list[tuple[int, str]]:
    m = Machine(parse_scenario(FIFO, "fifo.toml"), "mmap_sem")
    strategy = TimedStrategy()
    run = Run(m.scenario, m.policy, strategy, machine=m)
    strategy.bind(m, lambda: run.system)
    run.keep_events()
    run.run()
    assert run.events is not None
    return [(e["cpu"], e["mode"]) for e in run.events if e["event"] == "lock.acquire" and e.get("lock") == "mmap_sem"]


def test_the_rwsem_grants_in_arrival_order() -> None:
    """cpu0 holds mmap_sem for read; cpu1's down_write queues; cpu2's down_read comes
    later and waits behind the writer, as Linux's rwsem queues it."""
    order = lock_order()
    assert order.index((1, "write")) < order.index((2, "read"))


def test_without_the_queue_rule_the_later_reader_overtakes_the_writer(monkeypatch: Any) -> None:
    monkeypatch.setattr(timed.RwsemQueue, "holds_back", lambda self, env, state: False)
    order = lock_order()
    assert order.index((2, "read")) < order.index((1, "write"))


def test_a_measurement_is_a_function_of_its_inputs() -> None:
    w = WORKLOADS["churn"]
    a = measure(w, "wilcox", 4, 20, Costs())
    b = measure(w, "wilcox", 4, 20, Costs())
    assert a == b and a.m.faults == 4 * 20


def test_json_is_byte_identical_from_two_processes(tmp_path: Any) -> None:
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.append(subprocess.run([sys.executable, "-m", "vmactors", "bench", "fixed-same", "--cpus", "1,3",
                                    "--faults", "12", "--json", "--policy", "glisse", "--policy", "pervma"],
                                   capture_output=True, env=env, check=True).stdout)
    assert outs[0] == outs[1] and b'"workload": "fixed-same"' in outs[0]
