"""Every log line follows docs/log-schema.md (DESIGN §8): the library scenarios under
each main policy, and tiny scenarios covering every op, under every policy.

The checker is `log_schema` in tests/conftest.py; the first test checks that its
list of events is the page's own table, so the two cannot drift apart."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.policies import ABLATIONS, MAIN_POLICIES
from vmactors.scenario import load_scenario
from vmactors.sim.run import Run
from vmactors.sim.strategies import ReplayStrategy, make

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))
DOC = (ROOT / "docs" / "log-schema.md").read_text()


def log_lines(scen, policy, strategy, seed=0, max_steps=100_000) -> list[bytes]:
    buf = io.BytesIO()
    Run(scen, policy, strategy, seed, buf, max_steps).run()
    data = buf.getvalue()
    assert data.endswith(b"\n")
    return data.split(b"\n")[:-1]


def test_the_checker_knows_exactly_the_documented_events(log_schema) -> None:
    events_table = DOC.split("## Events")[1]
    documented = set()
    for first_cell in re.findall(r"^\| ([^|]+) \|", events_table, re.M):
        documented |= set(re.findall(r"`([a-z]+\.[a-z.]+)`", first_cell))
    assert {"run.start", "lock.wait", "lock.release", "syscall.end", "op.begin", "rcu.gp.end"} <= documented
    problems = log_schema.problems([
        json.dumps({"step": 0, "vtime_ns": 0, "actor": "sim", "event": name}) for name in sorted(documented)])
    unknown = [m for code, m in problems if code == "unknown-event"]
    assert unknown == []
    # ... and an undocumented name is refused.
    problems = log_schema.problems([json.dumps({"step": 0, "vtime_ns": 0, "actor": "sim", "event": "vma.oops"})])
    assert [code for code, _ in problems if code == "unknown-event"] == ["unknown-event"]
    # Every event DESIGN §8 names is documented on the page.
    design = (ROOT.parent / "shared" / "DESIGN.md")
    if design.exists():
        section = design.read_text().split("## 8.")[1].split("## 9.")[0]
        names = set(re.findall(r"`([a-z]+\.[a-z.]+)`", section))
        assert names <= documented, names - documented


@pytest.mark.parametrize("path", LIBRARY, ids=[p.stem for p in LIBRARY])
@pytest.mark.parametrize("policy", MAIN_POLICIES)
def test_library_scenarios_under_each_main_policy(log_schema, path, policy) -> None:
    scen = load_scenario(path)
    for strategy, seed in [("random", s) for s in range(6)] + [("pct", s) for s in range(3)]:
        lines = log_schema.check(log_lines(scen, policy, make(strategy, seed), seed))
        first = lines[0]
        assert (first["scenario"], first["policy"], first["strategy"], first["seed"]) == \
            (scen.name, policy, strategy, seed)
        assert first["scenario_sha256"] == scen.sha256
        assert first["vmactors"] == __import__("vmactors").__version__


COVERAGE = """
    name = "coverage"
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
    [[map]]
    name = "R"
    prot = "r"
    [[thread]]
    ops = ["r0 = load A", "store A+8 7", "r1 = load F", "store R 1", "r2 = load A+0x1008"]
    [[thread]]
    ops = ["munmap A", "B = mmap 2 fill=3", "store B 5", "mprotect F prot=r", "mmap F fixed kind=file file=g fill=9"]
    [[thread]]
    ops = ["r3 = load F", "store F 2", "r4 = load A", "r5 = load 0x10000"]
"""


@pytest.mark.parametrize("policy", MAIN_POLICIES + ABLATIONS)
def test_every_op_under_every_policy(log_schema, scenario, policy) -> None:
    scen = scenario(COVERAGE)
    seen: set[str] = set()
    for seed in range(4):
        lines = log_schema.check(log_lines(scen, policy, make("random", seed), seed))
        seen |= {ev["event"] for ev in lines}
    if policy == "mmap_sem-irqs-off-wait":
        return  # its runs tend to deadlock early
    assert {"syscall.begin", "syscall.end", "tree.store", "pte.zap", "pte.protect", "tlb.flush", "ipi.send",
            "ipi.ack", "fault.segv", "mem.store", "frame.free"} <= seen


def test_deadlock_and_step_limit_runs(log_schema, scenario) -> None:
    scen = scenario("""
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
    _, choices = explore_exhaustive(scen, "mmap_sem-irqs-off-wait")
    lines = log_schema.check(log_lines(scen, "mmap_sem-irqs-off-wait", ReplayStrategy(choices["deadlock"])))
    assert lines[-1]["outcome"] == "deadlock" and isinstance(lines[-1]["waiting"], dict)
    lines = log_schema.check(log_lines(scen, "wilcox", make("random", 0), max_steps=5))
    assert lines[-1]["outcome"] == "step-limit" and lines[-1]["step"] == 5


# --- IPIs and documented events ---------------------------------------------------


def test_ipi_events_follow_their_messages(log_schema, scenario) -> None:
    """ipi.send follows the msg.send of that IPI, ipi.ack the msg.send of the ack; one
    of each per target CPU."""
    scen = scenario("""
        name = "ipi"
        cpus = 3
        [[map]]
        name = "A"
        pages = 2
        prefault = [0, 1, 2]
        [[thread]]
        ops = ["r0 = load A"]
        [[thread]]
        ops = ["munmap A"]
    """)
    for seed in range(3):
        lines = log_schema.check(log_lines(scen, "mmap_sem", make("random", seed), seed))
        sends = [(ev["cpu"], ev["addr"], ev["pages"]) for ev in lines if ev["event"] == "ipi.send"]
        acks = sorted((ev["cpu"], ev["addr"], ev["pages"]) for ev in lines if ev["event"] == "ipi.ack")
        assert len(sends) == 2 and sorted(sends) == acks
        assert {c for c, _, _ in sends} == {0, 2}
        assert all(p == 2 for _, _, p in sends)


@pytest.mark.parametrize("policy", MAIN_POLICIES + ABLATIONS)
def test_only_documented_events(log_schema, policy) -> None:
    scen = load_scenario(ROOT / "scenarios" / "mapfixed-two-readers.toml")
    for seed in range(3):
        problems = log_schema.problems(log_lines(scen, policy, make("random", seed), seed))
        assert [m for code, m in problems if code == "unknown-event"] == []
