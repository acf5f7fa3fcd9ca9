"""The pytest plugin and `vmactors.testing`: the `vm` fixture, inline scenarios, runs
by seed or choice list, stepping by hand, log queries, exploration, the Hypothesis
strategies, and the plugin as a user sees it (through `pytester`)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import HealthCheck, find, given, settings

from vmactors.errors import ScenarioError, UsageError
from vmactors.explore.results import Exploration
from vmactors.policies import MAIN_POLICIES
from vmactors.scenario.model import Scenario
from vmactors.testing import (
    VM,
    SimError,
    choice_lists,
    match_events,
    outcomes,
    render_toml,
    small_scenarios,
)

pytest_plugins = ["pytester"]

MUNMAP_VS_READER = """
name = "munmap-vs-reader"
[[map]]
name = "A"
fill = 1
prefault = [0, 1]

[[map]]
name = "B"
fill = 5

[[thread]]
ops = ["munmap A"]

[[thread]]
ops = ["r0 = load B", "r1 = load A"]
"""


@pytest.fixture
def s(vm: VM) -> Scenario:
    return vm.scenario(MUNMAP_VS_READER)


def without_start(log: bytes) -> list[bytes]:
    """A log without its `run.start` line (which names the strategy and seed)."""
    return log.splitlines()[1:]


# --- building scenarios ------------------------------------------------------------


def test_fixture_is_a_vm(vm: VM) -> None:
    assert isinstance(vm, VM)
    assert vm.runs == []


def test_scenario_from_toml_text(s: Scenario) -> None:
    assert s.name == "munmap-vs-reader"
    assert [m.name for m in s.maps] == ["A", "B"]
    assert len(s.threads) == 2
    assert len(s.sha256) == 64


def test_scenario_from_a_dict_equals_the_toml_text(vm: VM, s: Scenario) -> None:
    d = vm.scenario({
        "name": "munmap-vs-reader",
        "map": [{"name": "A", "fill": 1, "prefault": [0, 1]}, {"name": "B", "fill": 5}],
        "thread": [{"ops": ["munmap A"]}, ["r0 = load B", "r1 = load A"]],  # a bare op list is a thread
    })
    assert (d.maps, d.threads, d.cpus) == (s.maps, s.threads, s.cpus)


def test_dict_tables_come_after_top_level_keys_whatever_the_dict_order() -> None:
    text = render_toml({"thread": [["r0 = load A"]], "map": [{"name": "A"}], "name": "t",
                        "exists": "0:r0 = 0", "expect": {"mmap_sem": "never", "wilcox": {"exists": "never"}}})
    assert text.index('name = "t"') < text.index("[[map]]") < text.index("[[thread]]") < text.index("[expect]")
    assert 'wilcox = { exists = "never" }' in text


def test_dict_errors_are_the_parsers_errors(vm: VM) -> None:
    bad = {"name": "t", "map": [{"name": "A"}], "thread": [["r0 = lod A"]]}
    with pytest.raises(ScenarioError) as got:
        vm.scenario(bad, path="bad.toml")
    with pytest.raises(ScenarioError) as same:
        vm.scenario(render_toml(bad), path="bad.toml")
    assert str(got.value) == str(same.value)
    assert str(got.value).startswith("bad.toml:")
    assert "unknown op 'r0 = lod A'" in str(got.value)
    # An unknown key is written out, so the parser names it.
    with pytest.raises(ScenarioError, match="unknown key 'mapz'"):
        vm.scenario({"name": "t", "mapz": [{"name": "A"}], "thread": [["r0 = load 0x10000"]]})


def test_inline_errors_name_the_test(vm: VM) -> None:
    with pytest.raises(ScenarioError, match=r"^<test_inline_errors_name_the_test>\.toml"):
        vm.scenario('name = "t"\n')


def test_load_a_library_scenario(vm: VM) -> None:
    s = vm.load("scenarios/mapfixed-two-readers.toml")
    assert s.name == "mapfixed-two-readers"
    assert vm.run("scenarios/mapfixed-two-readers.toml", "glisse", seed=1).outcome == "ok"


# --- runs ----------------------------------------------------------------------------


def test_run_reports_outcome_regs_and_violations(vm: VM, s: Scenario) -> None:
    r = vm.run(s, policy="mmap_sem", seed=3)
    assert r.outcome == "ok"
    assert r.violations == ()
    assert r.regs["1:r0"] == 5
    assert r.regs["1:r1"] in (1, "segv")
    assert r.exists is None
    assert r.events(event="run.end")[0]["regs"] == r.regs


def test_same_seed_same_log(vm: VM, s: Scenario) -> None:
    assert vm.run(s, "wilcox", seed=7).log == vm.run(s, "wilcox", seed=7).log


def test_a_choice_list_replays_a_run(vm: VM, s: Scenario) -> None:
    r = vm.run(s, "pervma", seed=11)
    again = vm.run(s, "pervma", choices=r.choices)
    assert again.choices == r.choices
    assert without_start(again.log) == without_start(r.log)


def test_pct_strategy(vm: VM, s: Scenario) -> None:
    r = vm.run(s, "glisse", strategy="pct", seed=2, depth=2)
    assert r.events(event="run.start")[0]["strategy"] == "pct"
    assert r.outcome == "ok"


def test_out_of_range_choices_fail_unless_wrapped(vm: VM, s: Scenario) -> None:
    with pytest.raises(ValueError, match="replay choice 9"):
        vm.run(s, "mmap_sem", choices=[9])
    r = vm.run(s, "mmap_sem", choices=[9, 9, 9], wrap=True)
    assert r.outcome == "ok"
    # The recorded choices are the ones taken, so they replay without wrapping.
    assert without_start(vm.run(s, "mmap_sem", choices=r.choices).log) == without_start(r.log)


def test_choices_and_a_strategy_do_not_mix(vm: VM, s: Scenario) -> None:
    with pytest.raises(UsageError):
        vm.run(s, "mmap_sem", choices=[0], strategy="pct")


def test_trio_runtime_gives_the_same_log(vm: VM, s: Scenario) -> None:
    for policy in MAIN_POLICIES:
        direct = vm.run(s, policy, seed=5)
        trio_run = vm.run(s, policy, seed=5, runtime="trio")
        assert trio_run.log == direct.log
        assert trio_run.runtime == "trio"


async def test_run_trio_inside_a_trio_test(vm: VM, s: Scenario) -> None:
    # This project runs async tests under pytest-trio (trio_mode): trio.run cannot
    # nest, so an async test awaits the Trio runtime directly.
    r = await vm.run_trio(s, "glisse", seed=2)
    assert r.runtime == "trio"
    assert r.log == vm.run(s, "glisse", seed=2).log


def test_unknown_runtime(vm: VM, s: Scenario) -> None:
    with pytest.raises(UsageError, match="runtime"):
        vm.run(s, runtime="asyncio")


def test_deadlock_is_an_outcome(vm: VM) -> None:
    # cpu1 faults on B while cpu0 holds mmap_sem for mprotect (which, unlike munmap,
    # keeps it for write across its flush); with interrupts off while it waits, cpu1
    # never acks the shootdown: an ABBA deadlock.
    s = vm.scenario(MUNMAP_VS_READER.replace('"munmap A"', '"mprotect A prot=none"'))
    sim = vm.start(s, "mmap_sem-irqs-off-wait")
    sim.run_until("lock.acquire", only=["cpu0", "mmap_sem"], cpu=0, mode="write")
    sim.run_until("lock.wait", only=["cpu1", "mmap_sem"], cpu=1)
    r = sim.finish()
    assert r.outcome == "deadlock"
    assert "deadlock" in r.violations
    assert r.waiting["cpu0"].startswith("flush_done")
    assert r.waiting["cpu1"].startswith("grant")


# --- querying the log -------------------------------------------------------------


def test_events_filter_by_glob_and_fields(vm: VM, s: Scenario) -> None:
    r = vm.run(s, "mmap_sem", seed=3)
    ipis = r.events(event="ipi.*", cpu=1)
    assert [e["event"] for e in ipis] == ["ipi.send", "ipi.ack"]
    assert all(e["cpu"] == 1 for e in ipis)
    assert r.events(event="lock.*", lock="mmap_sem", mode="write")
    assert r.events(actor="cpu*", event="op.end") == [e for e in r.all_events
                                                      if e["event"] == "op.end"]
    assert r.events(event="no.such.event") == []
    assert r.events(event="tlb.flush", nonexistent_field=1) == []


def test_match_events_keeps_bools_and_ints_apart() -> None:
    evs = [{"event": "x", "v": True}, {"event": "x", "v": 1}, {"event": "x", "v": [1, 2]}]
    assert match_events(evs, v=1) == [{"event": "x", "v": 1}]
    assert match_events(evs, v=True) == [{"event": "x", "v": True}]
    assert match_events(evs, v=(1, 2)) == [{"event": "x", "v": [1, 2]}]


def test_write_log(vm: VM, s: Scenario, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = vm.run(s, "wilcox", seed=1)
    path = r.write_log(tmp_path / "run.jsonl")
    assert path.read_bytes() == r.log
    assert r.log.endswith(b"\n")


# --- stepping by hand ------------------------------------------------------------


def test_step_takes_choice_zero_or_an_actor(vm: VM) -> None:
    s = vm.scenario({"name": "warm", "map": [{"name": "A", "fill": 1, "prefault": [0, 1]}],
                     "thread": [["r0 = load A"], ["r1 = load A", "r2 = load A"]]})
    sim = vm.start(s, policy="mmap_sem")
    assert sim.enabled() == ["cpu0 runs", "cpu1 runs"]
    first = sim.step("cpu1")
    assert [e["event"] for e in first] == ["op.begin", "mem.load", "op.end"]
    assert first[0]["actor"] == "cpu1"
    # Choice 0 is "the actor that ran last goes on".
    assert sim.enabled() == ["cpu1 runs", "cpu0 runs"]
    assert sim.step()[0]["actor"] == "cpu1"
    assert sim.choices == (1, 0)
    # cpu1 is done: choice 0 falls to the next actor.
    assert sim.step()[0]["actor"] == "cpu0"
    assert sim.regs == {"0:r0": 1, "1:r1": 1, "1:r2": 1}


def test_step_by_index(vm: VM, s: Scenario) -> None:
    sim = vm.start(s, policy="mmap_sem")
    assert sim.step(1)[0]["actor"] == "cpu1"
    with pytest.raises(SimError, match="only 2 steps"):
        sim.step(5)


def test_step_of_a_blocked_actor_says_what_it_waits_for(vm: VM, s: Scenario) -> None:
    sim = vm.start(s, policy="mmap_sem")
    sim.step("cpu0")  # munmap: down_write sent
    with pytest.raises(SimError, match=r"cpu0 has no enabled step.*cpu0 waits for grant"):
        sim.step("cpu0")


def test_deliver_run_until_and_finish(vm: VM, s: Scenario) -> None:
    sim = vm.start(s, policy="mmap_sem")
    acquired = sim.run_until("lock.acquire", only=["cpu0", "mmap_sem"], cpu=0)
    assert acquired["mode"] == "write"
    ipi = sim.run_until_message("ipi", to="cpu1", only=["cpu0", "tree", "shootdown"])
    assert ipi["src"] == "shootdown" and ipi["addr"] == sim.run.program.maps["A"][0]
    assert sim.pending(kind="ipi") == [ipi]
    events = sim.deliver("ipi", to="cpu1")
    assert [e["event"] for e in events] == ["msg.recv", "tlb.flush", "msg.send", "ipi.ack"]
    assert sim.events(event="ipi.ack", cpu=1)
    with pytest.raises(SimError, match="no 'ipi' message to cpu1 is in flight"):
        sim.deliver("ipi", to="cpu1")
    r = sim.finish()
    assert r.outcome == "ok" and sim.done
    assert sim.finish() is r
    with pytest.raises(SimError, match="finished"):
        sim.step()
    # The hand-made schedule replays as a choice list.
    assert without_start(vm.run(s, "mmap_sem", choices=sim.choices).log) == without_start(r.log)


def test_run_until_that_never_happens(vm: VM, s: Scenario) -> None:
    sim = vm.start(s, policy="mmap_sem")
    with pytest.raises(SimError, match="no event matching"):
        sim.run_until("fault.segv", cpu=0)
    with pytest.raises(SimError, match="no 'fence_open' message"):
        vm.start(s, "mmap_sem").run_until_message("fence_open")


def test_regs_and_violations_while_stepping(vm: VM, s: Scenario) -> None:
    sim = vm.start(s, policy="mmap_sem")
    assert sim.regs == {}
    sim.run_until("op.end", only="cpu1")
    assert sim.regs == {"1:r0": 5}
    assert sim.violations == ()


# --- exploration ----------------------------------------------------------------


def test_explore_is_exhaustive(vm: VM, s: Scenario) -> None:
    e = vm.explore(s, "mmap_sem")
    assert isinstance(e, Exploration)
    assert e.complete and e.counts == "reduced"
    assert {o["1:r1"] for o in outcomes(e)} == {1, "segv"}
    assert e.findings == ()
    exact = vm.explore(s, "mmap_sem", reduction=False)
    assert exact.counts == "exact" and exact.runs >= e.runs
    assert outcomes(exact) and {o["1:r1"] for o in outcomes(exact)} == {1, "segv"}


def test_explore_findings_replay(vm: VM, s: Scenario) -> None:
    e = vm.explore(s, "mmap_sem-free-before-flush")
    (finding,) = e.findings
    assert finding.invariant == "frame-uaf"
    r = vm.run(s, "mmap_sem-free-before-flush", choices=finding.choices)
    assert "frame-uaf" in r.violations


# --- Hypothesis strategies --------------------------------------------------------


def test_choice_lists_shrink_toward_zeros() -> None:
    assert find(choice_lists(), lambda cs: len(cs) >= 5) == [0, 0, 0, 0, 0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios())
def test_small_scenarios_are_small_and_valid(scenario: Scenario) -> None:
    assert 1 <= len(scenario.maps) <= 2
    assert 2 <= len(scenario.threads) <= 3
    assert all(1 <= len(t.ops) <= 3 for t in scenario.threads)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=small_scenarios(), choices=choice_lists())
def test_every_run_ends_and_trio_agrees(scenario: Scenario, choices: list[int]) -> None:
    vm = VM()
    for policy in MAIN_POLICIES:
        direct = vm.run(scenario, policy, choices=choices, wrap=True)
        assert direct.outcome in ("ok", "violation", "deadlock"), direct.describe()
        trio_run = vm.run(scenario, policy, choices=choices, wrap=True, runtime="trio")
        assert trio_run.log == direct.log, policy


# --- the plugin as a user sees it ---------------------------------------------------


USER_TEST = '''
def test_munmap_then_load_segfaults(vm):
    s = vm.scenario({
        "name": "munmap-then-load",
        "map": [{"name": "A", "fill": 1}],
        "thread": [["munmap A", "r0 = load A"]],
    })
    for policy in ("mmap_sem", "wilcox", "glisse", "pervma"):
        r = vm.run(s, policy=policy, seed=0)
        assert r.outcome == "ok"
        assert r.regs["0:r0"] == "segv"
        assert r.events(event="fault.segv", cpu=0)


def test_step_by_hand(vm):
    s = vm.scenario("""
name = "two-loads"
[[map]]
name = "A"
fill = 3
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["r1 = load A"]
""")
    sim = vm.start(s, policy="wilcox")
    sim.run_until("op.end", only="cpu1")
    assert sim.regs == {"1:r1": 3}
    assert sim.finish().regs == {"0:r0": 3, "1:r1": 3}
'''


def test_plugin_in_a_fresh_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_failing_test_shows_how_to_replay_its_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=textwrap.dedent('''
        def test_wrong_expectation(vm):
            s = vm.scenario({"name": "one", "map": [{"name": "A", "fill": 1}], "thread": [["r0 = load A"]]})
            r = vm.run(s, policy="glisse", seed=4)
            assert r.regs["0:r0"] == 2
    '''))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*vmactors runs*",
        "one [[]glisse, direct, seed=4[]]: ok after * steps; regs {'0:r0': 1}*",
        "*replay: vm.run(s, 'glisse', choices=[[]*[]])",
    ])


def test_the_testing_guides_first_example_passes_in_an_empty_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """docs/testing.md's complete test file, copied into an empty folder (no conftest,
    no scenarios/ beside it), passes: the headline scenario comes from the installed
    library by name."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    code = re.search(r"```python\n(# test_fence.py\n.*?)```", doc, re.S)
    assert code is not None
    (tmp_path / "test_fence.py").write_text(code.group(1))
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_fence.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 passed" in p.stdout


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_scenarios(ops=("load", "munmap")))
def test_small_scenarios_draw_only_the_op_kinds_asked_for(scenario: Scenario) -> None:
    assert {type(op).__name__ for t in scenario.threads for op in t.ops} <= {"Load", "Munmap"}


def test_small_scenarios_refuse_an_unknown_op_kind() -> None:
    with pytest.raises(ValueError, match="ops must be some of"):
        small_scenarios(ops=("load", "fork"))
