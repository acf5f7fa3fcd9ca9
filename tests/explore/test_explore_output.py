"""What `vmactors explore` prints: herd7's `Observation` line closing each outcome
table, and under each violation the race chart of its shortest counterexample
(`--no-trace` leaves it out)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmactors.cli import load
from vmactors.counterexample import race_chart
from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.results import observation

SB = """\
name = "sb"
exists = "0:r0 = 0 and 1:r1 = 0"
[[map]]
name = "X"
prefault = [0, 1]
[[map]]
name = "Y"
prefault = [0, 1]
[[thread]]
ops = ["store X 1", "r0 = load Y"]
[[thread]]
ops = ["store Y 1", "r1 = load X"]
"""


@pytest.fixture
def sb(tmp_path: Path) -> Path:
    path = tmp_path / "sb.toml"
    path.write_text(SB)
    return path


def test_the_observation_line_counts_final_states_with_and_without_exists(vmcli, sb, tmp_path) -> None:
    # Plain memory is sequentially consistent: store buffering's outcome never happens,
    # and of the three other final states none satisfies `exists`.
    p = vmcli("explore", sb, "--save", tmp_path / "runs")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "Observation sb Never 0 3" in lines
    states = int(next(line for line in lines if line.startswith("States ")).split()[1])
    assert states == 3
    # It closes the outcome table: right after the `Exists:` summary, before the violations.
    i = lines.index("Observation sb Never 0 3")
    assert lines[i - 1].startswith("Exists: never") and lines[i + 1].startswith("Violations")


@pytest.mark.parametrize("policy, verdict", [("wilcox", "Sometimes"), ("glisse", "Never")])
def test_the_observation_line_of_the_headline_scenario(policy, verdict) -> None:
    e, _ = explore_exhaustive(load("mapfixed-two-readers"), policy)
    positive = sum(1 for s in e.states if s.exists)
    assert observation(e) == f"Observation mapfixed-two-readers {verdict} {positive} {len(e.states) - positive}"
    assert (positive > 0) == (verdict != "Never") and len(e.states) - positive > 0


def test_no_observation_without_exists(tmp_path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text(SB.replace('exists = "0:r0 = 0 and 1:r1 = 0"\n', ""))
    e, _ = explore_exhaustive(load(str(path)), "mmap_sem")
    assert observation(e) is None


def test_each_violation_is_followed_by_the_race_chart_of_its_shortest_run(vmcli, tmp_path) -> None:
    p = vmcli("explore", "mapfixed-two-readers", "--policy", "wilcox", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    head, chart = out.split("vmactors replay vmactors-runs/mapfixed-two-readers.wilcox.coherence.json\n", 1)
    assert re.search(r"coherence: [\d,]+ runs; shortest violates it at step \d+: ", head)
    lines = chart.splitlines()
    assert lines[0] == ""
    assert lines[1].split() == ["CPU", "0", "CPU", "1", "CPU", "2"]
    # The race itself: cpu0 faults the new page in, cpu1 then loads the old one.
    assert any("do_page_fault(" in line for line in lines)
    assert any("(stale TLB)" in line for line in lines)
    assert any(line.strip().startswith("!! step") and "coherence" in line for line in lines)
    # It is the chart `vmactors inspect --diagram ascii` draws of the replay, indented.
    replay = tmp_path / "vmactors-runs/mapfixed-two-readers.wilcox.coherence.json"
    assert vmcli("replay", replay, "--log", tmp_path / "cx.jsonl").returncode == 1
    drawn = vmcli("inspect", tmp_path / "cx.jsonl", "--diagram", "ascii").stdout
    assert [line.strip() for line in drawn.splitlines() if line.strip()] == \
        [line.strip() for line in lines if line.strip()]


def test_no_trace_leaves_the_charts_out(vmcli, tmp_path) -> None:
    p = vmcli("explore", "mapfixed-two-readers", "--policy", "wilcox", "--no-trace", "--save", tmp_path / "r")
    assert p.returncode == 0
    assert "CPU 0" not in p.stdout and "stale TLB" not in p.stdout
    assert p.stdout.rstrip().endswith("mapfixed-two-readers.wilcox.coherence.json")


def test_the_chart_replays_the_saved_choices_in_memory() -> None:
    s = load("mapfixed-two-readers")
    e, choices = explore_exhaustive(s, "wilcox")
    chart = race_chart(s, "wilcox", choices["coherence"])
    assert chart.isascii() and "(stale TLB)" in chart
    assert race_chart(s, "wilcox", choices["coherence"]) == chart
