"""A search cut by a limit, in `check` and `matrix` (docs/usage.md): what it found is
reported as found, never as the whole answer. `check` calls a cut case
`INCOMPLETE` (exit 1) unless what it found already contradicts `[expect]` — an
unexpected violation, `exists` seen to hold where `never` was expected — which is a
`MISMATCH`; `matrix` cells say `incomplete` and never `never`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import attrs
import pytest

from vmactors.explore.check import compare, contradictions, status_of
from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.matrix import Matrix, compute
from vmactors.explore.parallel import Exhaustive
from vmactors.explore.results import Cut
from vmactors.library import resolve
from vmactors.scenario import load_scenario
from vmactors.scenario.model import Expectation

TWO_READERS = resolve("mapfixed-two-readers").read_text()
BODY = TWO_READERS.split("[expect]")[0]


def check_file(tmp_path: Path, expect: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(BODY + "[expect]\n" + expect)
    return path


def line_of(out: str, policy: str) -> str:
    return next(line for line in out.splitlines() if line.strip().startswith(policy + " "))


def test_a_cut_search_that_contradicts_nothing_is_incomplete_not_a_mismatch(vmcli, tmp_path) -> None:
    path = check_file(tmp_path, 'wilcox = { exists = "sometimes", violations = ["coherence"] }\nmmap_sem = "never"\n')
    p = vmcli("check", path, "--max-states", "300", "--save", tmp_path / "runs")
    assert p.returncode == 1
    for policy in ("wilcox", "mmap_sem"):
        line = line_of(p.stdout, policy)
        assert "INCOMPLETE" in line and "MISMATCH" not in line and "so far" in line and "left unexplored" in line
    assert "exploration incomplete: --max-states 300 reached; nothing found so far contradicts [expect]" in p.stdout
    assert "0 passed, 0 failed, 2 incomplete" in p.stdout
    assert "expected sometimes" not in p.stdout and "got never" not in p.stdout
    assert not (tmp_path / "runs").exists()  # nothing unexpected to save
    doc = json.loads(vmcli("check", path, "--max-states", "300", "--json", "--save", tmp_path / "runs").stdout)
    assert [r["got"]["cut"] for r in doc["results"]] == [
        {"reason": "max-states", "text": "--max-states 300 reached"}] * 2


def test_a_cut_search_that_saw_an_unexpected_violation_is_a_mismatch(vmcli, tmp_path) -> None:
    path = check_file(tmp_path, 'wilcox = "never"\n')
    p = vmcli("check", path, "--max-states", "300", "--save", tmp_path / "runs")
    assert p.returncode == 1
    line = line_of(p.stdout, "wilcox")
    assert "MISMATCH" in line
    assert "violations: expected [], seen [coherence] already (+coherence)" in p.stdout
    assert "exploration incomplete: --max-states 300 reached" in p.stdout
    assert "0 passed, 1 failed" in p.stdout and "incomplete (" not in p.stdout.splitlines()[-1]
    assert "coherence: vmactors replay" in p.stdout  # its counterexample, saved


def test_exists_seen_where_never_was_expected_is_a_mismatch_even_cut() -> None:
    s = load_scenario(resolve("mapfixed-two-readers"))
    e, _ = explore_exhaustive(s, "wilcox")
    assert e.exists == "sometimes" and any(st.exists for st in e.states)
    cut = attrs.evolve(e, complete=False, cut=Cut.time_limit(1), exists="sometimes")
    never = Expectation(exists="never", violations=frozenset({"coherence"}))
    assert compare(never, cut) == ["exists: expected never, seen sometimes already"]
    assert status_of(cut, compare(never, cut)) == "mismatch"
    sometimes = Expectation(exists="sometimes", violations=frozenset({"coherence"}))
    assert compare(sometimes, cut) == [] and status_of(cut, []) == "incomplete"
    always = Expectation(exists="always", violations=frozenset({"coherence"}))
    assert contradictions(always, cut) == ["exists: expected always, seen a final state where it fails already"]
    # A missing violation or an `exists` not seen yet is no contradiction.
    unseen = attrs.evolve(cut, findings=(), states=(), exists="unknown")
    assert compare(sometimes, unseen) == [] and compare(never, unseen) == []


def test_check_json_and_junit_say_incomplete(vmcli, tmp_path) -> None:
    path = check_file(tmp_path, 'wilcox = { exists = "sometimes", violations = ["coherence"] }\n')
    p = vmcli("check", path, "--max-states", "300", "--json", "--junit", tmp_path / "j.xml")
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert (doc["passed"], doc["failed"], doc["incomplete"]) == (0, 0, 1)
    (r,) = doc["results"]
    assert r["status"] == "incomplete" and r["ok"] is False and r["got"]["complete"] is False
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.get("failures") == "1"
    failure = root.find(".//failure")
    assert failure is not None and failure.get("type") == "incomplete"


def test_check_cases_in_processes_come_in_order(vmcli, tmp_path) -> None:
    check_file(tmp_path, 'wilcox = { exists = "sometimes", violations = ["coherence"] }\nmmap_sem = "never"\n',
               "a.toml")
    check_file(tmp_path, 'pervma = "never"\nglisse = "never"\n', "b.toml")
    one = vmcli("check", tmp_path, "--save", tmp_path / "runs")
    two = vmcli("check", tmp_path, "--save", tmp_path / "runs", "--jobs", "2")
    assert one.returncode == two.returncode == 0
    assert two.stdout == one.stdout and "4 passed, 0 failed" in two.stdout


@pytest.mark.parametrize("max_states", [1, 300, 550])
def test_matrix_cells_of_cut_searches_say_what_they_saw(max_states) -> None:
    s = load_scenario(resolve("mapfixed-two-readers"))
    cells = compute(Matrix([s], ["mmap_sem", "wilcox"]), search=Exhaustive(max_states=max_states)).cells
    assert all(c.endswith("; incomplete") and not c.startswith("never") for c in cells), cells
    assert cells[0] == "unknown; incomplete"
    assert cells[1] in ("unknown; coherence; incomplete", "sometimes; coherence; incomplete") or \
        (max_states == 1 and cells[1] == "unknown; incomplete")


def test_matrix_with_a_time_limit(vmcli) -> None:
    p = vmcli("matrix", resolve("mapfixed-two-readers"), "--policy", "wilcox", "--time-limit", "0.05",
              "--no-reduction")
    assert p.returncode == 0
    row = p.stdout.splitlines()[2]
    assert row.endswith("incomplete") and "never" not in row
