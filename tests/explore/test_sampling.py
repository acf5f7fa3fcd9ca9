"""Random and PCT sampling (docs/design.md#reproducible-runs), and `--jobs 2` giving the same results as
`--jobs 1` (for sampling and for exhaustive multi-policy exploration)."""

from __future__ import annotations

import pytest

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.runner import ExploreOptions, explore
from vmactors.sim.run import run_scenario

SCENARIO = """
    name = "sampled"
    exists = "0:r0 = 1 and 0:r1 = segv"
    [[map]]
    name = "A"
    fill = 1
    prefault = [0, 1]
    [[thread]]
    ops = ["r0 = load A", "r1 = load A"]
    [[thread]]
    ops = ["munmap A"]
"""


def facts(e) -> dict:
    """What an exploration found, independent of where replay files went."""
    doc = e.to_json()
    for v in doc["violations"].values():
        v.pop("replay")
    return {**doc, "distinct_states": e.distinct_states,
            "choices": {f.invariant: f.choices for f in e.findings}}


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_sampled_states_are_real_states(scenario, strategy) -> None:
    s = scenario(SCENARIO)
    [e], interrupted = explore(s, ["wilcox"], ExploreOptions(strategy=strategy, runs=60, save=None))
    assert not interrupted
    assert e.strategy == strategy and e.counts == "sampled" and e.complete is False
    assert e.runs == 60 == sum(st.count for st in e.states)
    full, _ = explore_exhaustive(s, "wilcox")
    assert {st.regs for st in e.states} <= {st.regs for st in full.states}
    assert e.exists in ("sometimes", "always", "never")


def test_random_sampling_finds_every_outcome_of_a_tiny_scenario(scenario) -> None:
    s = scenario("""
        name = "tiny"
        exists = "0:r0 = segv"
        [[map]]
        name = "A"
        fill = 1
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["munmap A"]
    """)
    [e], _ = explore(s, ["mmap_sem"], ExploreOptions(strategy="random", runs=100, seed=1, save=None))
    full, _ = explore_exhaustive(s, "mmap_sem")
    assert {st.regs for st in e.states} == {st.regs for st in full.states}
    assert e.exists == "sometimes"


def test_pct_reaches_the_ipi_before_the_next_load(scenario) -> None:
    """docs/design.md#reproducible-runs: a CPU with an IPI waiting may first run its next op, or take the IPI.
    Here (r0, r1) = (1, segv) needs cpu0 to take munmap's IPI between its two loads."""
    s = scenario(SCENARIO)
    [e], _ = explore(s, ["mmap_sem"], ExploreOptions(strategy="pct", runs=300, depth=3, save=None))
    assert any(dict(st.regs)["0:r1"] == "segv" for st in e.states)


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_same_seed_same_sample_different_seed_other_sample(scenario, strategy) -> None:
    s = scenario("""
        name = "fault-vs-munmap"
        [[map]]
        name = "A"
        fill = 5
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["munmap A"]
    """)

    def sample(seed):
        [e], _ = explore(s, ["glisse"], ExploreOptions(strategy=strategy, runs=40, seed=seed, save=None))
        return facts(e)

    assert sample(1) == sample(1)
    assert any(sample(n) != sample(1) for n in (2, 3, 4))


def test_a_sampled_violation_is_shrunk_and_replays(scenario) -> None:
    s = scenario(SCENARIO)
    [e], _ = explore(s, ["mmap_sem-free-before-flush"], ExploreOptions(strategy="random", runs=100, save=None))
    found = {f.invariant: f for f in e.findings}
    assert "frame-uaf" in found
    f = found["frame-uaf"]
    assert 0 < f.runs <= 100
    again = run_scenario(s, "mmap_sem-free-before-flush", strategy="replay", choices=f.choices)
    assert "frame-uaf" in again.violations


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_jobs_2_samples_the_same_runs_as_jobs_1(scenario, strategy) -> None:
    s = scenario(SCENARIO)
    policies = ["mmap_sem-free-before-flush", "wilcox"]
    one, _ = explore(s, policies, ExploreOptions(strategy=strategy, runs=120, seed=9, jobs=1, save=None))
    two, _ = explore(s, policies, ExploreOptions(strategy=strategy, runs=120, seed=9, jobs=2, save=None))
    assert [e.policy for e in two] == policies
    assert [facts(e) for e in one] == [facts(e) for e in two]


def test_jobs_2_explores_several_policies_exactly_as_jobs_1(scenario) -> None:
    s = scenario(SCENARIO)
    policies = ["pervma", "mmap_sem", "wilcox-early-return", "glisse"]
    one, _ = explore(s, policies, ExploreOptions(jobs=1, save=None))
    two, _ = explore(s, policies, ExploreOptions(jobs=2, save=None))
    assert [e.policy for e in one] == [e.policy for e in two] == policies
    assert [facts(e) for e in one] == [facts(e) for e in two]
    assert all(e.complete for e in two)
    assert [f.invariant for f in two[2].findings] == ["munmap-incomplete"]
