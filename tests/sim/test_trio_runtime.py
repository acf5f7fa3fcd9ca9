"""The Trio runtime (one task per actor, the scheduler task owns every choice) and the
direct driver give the same log for the same strategy and seed, or choice list."""

from __future__ import annotations

import io

import pytest

from vmactors.sim.run import Run
from vmactors.sim.strategies import ReplayStrategy, make
from vmactors.sim.trio_runtime import run_trio

SCENARIO = """
    name = "trio"
    cpus = 3
    [[map]]
    name = "A"
    fill = 1
    prefault = [1, 2]
    [[map]]
    name = "F"
    kind = "file"
    file = "f"
    fill = 3
    [[thread]]
    ops = ["r0 = load A", "r1 = load F", "store A 8"]
    [[thread]]
    ops = ["mmap A fixed fill=2", "munmap F"]
    [[thread]]
    ops = ["r2 = load A", "B = mmap", "r3 = load B"]
"""

POLICIES = ["mmap_sem", "wilcox", "glisse", "pervma", "mmap_sem-irqs-off-wait", "wilcox-no-recheck"]


def direct(scen, policy, strategy, seed=0):
    buf = io.BytesIO()
    result = Run(scen, policy, strategy, seed, buf).run()
    return result, buf.getvalue()


async def via_trio(scen, policy, strategy, seed=0):
    buf = io.BytesIO()
    result = await run_trio(scen, policy, strategy, seed, buf)
    return result, buf.getvalue()


@pytest.mark.parametrize("policy", POLICIES)
async def test_same_log_for_the_same_strategy_and_seed(scenario, policy) -> None:
    s = scenario(SCENARIO)
    for strategy, seed in (("random", 0), ("random", 7), ("pct", 3)):
        r1, log1 = direct(s, policy, make(strategy, seed), seed)
        r2, log2 = await via_trio(s, policy, make(strategy, seed), seed)
        assert log1 == log2, (strategy, seed)
        assert r1 == r2


@pytest.mark.parametrize("policy", POLICIES)
async def test_same_log_for_a_replayed_choice_list(scenario, policy) -> None:
    s = scenario(SCENARIO)
    recorded, _ = direct(s, policy, make("random", 21), 21)
    r1, log1 = direct(s, policy, ReplayStrategy(recorded.choices))
    r2, log2 = await via_trio(s, policy, ReplayStrategy(recorded.choices))
    assert log1 == log2
    assert r1.choices == r2.choices == recorded.choices
    assert r1.regs == recorded.regs


async def test_a_deadlock_ends_the_same_way(scenario, walk) -> None:
    s = scenario("""
        name = "blocked"
        [[map]]
        name = "A"
        [[map]]
        name = "B"
        prefault = [0, 1]
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["munmap B"]
    """)
    dead = next(t for t in walk(s, "mmap_sem-irqs-off-wait") if t.end == "deadlock")
    r1, log1 = direct(s, "mmap_sem-irqs-off-wait", ReplayStrategy(dead.choices))
    r2, log2 = await via_trio(s, "mmap_sem-irqs-off-wait", ReplayStrategy(dead.choices))
    assert r1.outcome == r2.outcome == "deadlock"
    assert log1 == log2


async def test_the_step_limit_ends_the_same_way(scenario) -> None:
    s = scenario(SCENARIO)
    buf1, buf2 = io.BytesIO(), io.BytesIO()
    r1 = Run(s, "wilcox", make("random", 2), 2, buf1, max_steps=10).run()
    r2 = await run_trio(s, "wilcox", make("random", 2), 2, buf2, max_steps=10)
    assert r1.outcome == r2.outcome == "step-limit" and r1.steps == 10
    assert buf1.getvalue() == buf2.getvalue()
