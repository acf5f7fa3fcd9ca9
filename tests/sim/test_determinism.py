"""Determinism (docs/design.md#reproducible-runs): a run is a function of (scenario, policy, strategy, seed)
or of its choice list; the log is byte-identical in any process and any
PYTHONHASHSEED."""

from __future__ import annotations

import io

import pytest

from vmactors.scenario import load_scenario
from vmactors.sim.run import Run, run_scenario
from vmactors.sim.strategies import make

HEADLINE = "scenarios/mapfixed-two-readers.toml"

MIXED = """
    name = "mixed"
    cpus = 3
    [[map]]
    name = "A"
    pages = 2
    fill = 1
    prefault = [0, 2]
    [[map]]
    name = "F"
    kind = "file"
    file = "f"
    fill = 4
    prefault = []
    [[thread]]
    ops = ["r0 = load A", "store A+8 7", "r1 = load F", "r2 = load A+0x1008"]
    [[thread]]
    ops = ["munmap A", "B = mmap 2 fill=3", "store B 5", "mprotect F prot=r", "mmap F fixed kind=file file=g fill=9"]
    [[thread]]
    ops = ["r3 = load F", "store F 2", "r4 = load A"]
"""


def log_bytes(scen, policy: str, strategy: str = "random", seed: int = 0, choices=()) -> bytes:
    buf = io.BytesIO()
    strat = make(strategy, seed, choices=choices)
    Run(scen, policy, strat, seed, buf).run()
    return buf.getvalue()


def test_two_processes_with_different_hash_seeds_write_the_same_log(cli, h, tmp_path) -> None:
    logs = []
    for hashseed in ("0", "4242"):
        out = tmp_path / f"run-{hashseed}.jsonl"
        p = cli("run", HEADLINE, "--policy", "wilcox", "--seed", "3", "--log", out, cwd=h.ROOT,
                env={"PYTHONHASHSEED": hashseed})
        assert p.returncode in (0, 1), p.stderr
        logs.append(out.read_bytes())
    assert logs[0] == logs[1]
    assert logs[0].count(b"\n") > 20
    # ... and the library, in this process, writes the very same bytes.
    assert log_bytes(load_scenario(h.ROOT / HEADLINE), "wilcox", seed=3) == logs[0]


@pytest.mark.parametrize("policy", ["mmap_sem", "wilcox", "glisse", "pervma", "wilcox-early-return"])
@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_same_inputs_same_log(scenario, policy, strategy) -> None:
    s = scenario(MIXED)
    first = log_bytes(s, policy, strategy, seed=11)
    # Other runs in between leave no trace (no state carried between runs).
    log_bytes(s, policy, strategy, seed=12)
    assert log_bytes(s, policy, strategy, seed=11) == first


def test_different_seeds_take_different_paths(scenario) -> None:
    s = scenario(MIXED)
    assert len({log_bytes(s, "wilcox", seed=n) for n in range(5)}) > 1


@pytest.mark.parametrize("policy", ["mmap_sem", "wilcox", "glisse", "pervma"])
def test_a_recorded_choice_list_replays_the_same_run(scenario, policy) -> None:
    s = scenario(MIXED)
    first = run_scenario(s, policy, seed=5)
    again = run_scenario(s, policy, strategy="replay", choices=first.choices)
    assert (again.regs, again.outcome, again.violations, again.choices) == \
        (first.regs, first.outcome, first.violations, first.choices)
    # The logs differ only in the run.start line's strategy and seed.
    a = log_bytes(s, policy, "random", 5).splitlines()
    b = log_bytes(s, policy, "replay", 0, first.choices).splitlines()
    assert a[1:] == b[1:]
    assert b'"strategy":"replay"' in b[0] and b'"strategy":"random"' in a[0]


def as_json(events):
    """Events as the log would hold them (tuples become lists, attrs values dicts)."""
    import orjson

    from vmactors.log import _default

    return orjson.loads(orjson.dumps(events, default=_default))


def test_events_kept_in_memory_are_the_lines_of_the_same_runs_log(scenario) -> None:
    import orjson

    s = scenario(MIXED)
    buf = io.BytesIO()
    Run(s, "wilcox", make("random", 1), 1, buf).run()
    run = Run(s, "wilcox", make("random", 1), 1)
    run.keep_events()
    run.run()
    assert [orjson.loads(line) for line in buf.getvalue().splitlines()] == as_json(run.events)


def test_events_kept_in_memory_are_the_log_lines(scenario) -> None:
    import orjson

    s = scenario(MIXED)
    buf = io.BytesIO()
    run = Run(s, "wilcox", make("random", 1), 1, buf)
    run.keep_events()
    run.run()
    assert [orjson.loads(line) for line in buf.getvalue().splitlines()] == as_json(run.events)


@pytest.mark.parametrize("policy", ["mmap_sem", "pervma"])
def test_choice_0_lets_the_last_actor_go_on(scenario, policy) -> None:
    """docs/design.md#reproducible-runs: choice 0 means "let the actor that ran last go on", so a choice list
    of zeros has no preemptions."""
    s = scenario(MIXED)
    for seed in range(3):
        run = Run(s, policy, make("random", seed), seed)
        while True:
            steps = run.enabled()
            if not steps:
                break
            last = run.system.last
            if last is not None and any(st.actor == last for st in steps):
                assert steps[0].actor == last
            run.take(run.strategy.choose(steps, run.system.step + 1))
        assert run.finish().outcome in ("ok", "violation", "deadlock")
