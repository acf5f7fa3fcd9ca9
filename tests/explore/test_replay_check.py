"""Counterexample replay files and `vmactors check` (docs/design.md#reproducible-runs, docs/design.md#commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCENARIO = """\
name = "uaf"
exists = "0:r0 = segv"
[[map]]
name = "A"
fill = 5
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["munmap A"]
"""


@pytest.fixture
def scen(tmp_path: Path) -> Path:
    path = tmp_path / "uaf.toml"
    path.write_text(SCENARIO)
    return path


@pytest.mark.parametrize("policy, invariant", [
    ("wilcox-no-grace", "vma-uaf"),
    ("wilcox-no-recheck", "orphan-pte"),
    ("mmap_sem-irqs-off-wait", "deadlock"),
])
def test_a_counterexample_replays_to_the_same_violation_twice(vmcli, cli, scen, tmp_path, policy, invariant,
                                                               log_schema) -> None:
    if invariant == "deadlock":  # munmap downgrades mmap_sem before its flush; mprotect keeps it for write
        scen.write_text(SCENARIO.replace('"munmap A"', '"mprotect A prot=none"'))
    p = vmcli("explore", scen, "--policy", policy, "--json", "--save", tmp_path / "runs", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    replay = tmp_path / doc["violations"][invariant]["replay"]
    assert replay.exists()
    saved = json.loads(replay.read_text())
    assert list(saved)[:5] == ["format", "scenario", "scenario_sha256", "policy", "choices"]
    assert saved["policy"] == policy

    first = vmcli("replay", replay, "--log", tmp_path / "a.jsonl")
    # The second replay runs from another directory (and, once, in another process).
    again = cli if policy == "wilcox-no-grace" else vmcli
    second = again("replay", replay, "--log", tmp_path / "b.jsonl", cwd=Path("/"))
    assert first.returncode == second.returncode == 1, (first.stderr, second.stderr)
    a, b = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert a == b
    lines = log_schema.check(a.splitlines())
    assert invariant in lines[-1]["violations"]
    assert any(ev["event"] == "invariant.violated" and ev["invariant"] == invariant for ev in lines)
    assert lines[0]["policy"] == policy
    assert f"violated {invariant}" in first.stdout or invariant == "deadlock" and "deadlock" in first.stdout


def test_a_replay_without_log_prints_the_run(vmcli, scen, tmp_path) -> None:
    vmcli("explore", scen, "--policy", "wilcox-no-grace", "--save", tmp_path / "runs", cwd=tmp_path)
    [replay] = (tmp_path / "runs").glob("*.json")
    p = vmcli("replay", replay)
    assert p.returncode == 1
    assert "0:r0" in p.stdout and "vma-uaf" in p.stdout


def check_file(tmp_path: Path, expect: str, name: str = "expect.toml") -> Path:
    path = tmp_path / name
    path.write_text(SCENARIO + "\n[expect]\n" + expect)
    return path


def test_check_passes_on_matching_expectations(vmcli, tmp_path) -> None:
    path = check_file(tmp_path, """\
mmap_sem = "sometimes"
glisse = "sometimes"
wilcox-no-grace = { exists = "sometimes", violations = ["vma-uaf"] }
""")
    p = vmcli("check", path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 passed, 0 failed" in p.stdout


def test_check_fails_with_a_readable_diff(vmcli, tmp_path) -> None:
    path = check_file(tmp_path, """\
mmap_sem = "never"
wilcox = "sometimes"
wilcox-no-recheck = { exists = "sometimes", violations = ["vma-uaf"] }
""")
    p = vmcli("check", path)
    assert p.returncode == 1
    out = p.stdout
    assert "1 passed, 2 failed" in out
    mmap_line = next(line for line in out.splitlines() if line.strip().startswith("mmap_sem"))
    assert "MISMATCH" in mmap_line
    assert "exists: expected never, got sometimes" in out
    assert "+orphan-pte" in out and "-vma-uaf" in out
    wilcox_line = next(line for line in out.splitlines() if line.strip().startswith("wilcox "))
    assert "ok" in wilcox_line and "MISMATCH" not in wilcox_line


def test_check_fails_when_an_exploration_is_incomplete(vmcli, tmp_path) -> None:
    path = check_file(tmp_path, 'wilcox = "sometimes"\n')
    p = vmcli("check", path, "--max-states", "5")
    assert p.returncode == 1
    assert "incomplete" in p.stdout and "max-states" in p.stdout


def test_check_refuses_an_unknown_policy(vmcli, tmp_path) -> None:
    path = check_file(tmp_path, 'mmap-sem = "never"\n')
    p = vmcli("check", path)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "mmap-sem" in lines[0] and lines[0].startswith(str(path) + ":")
    assert "Traceback" not in p.stderr


def test_check_checks_a_folder_and_parses_everything_first(vmcli, tmp_path) -> None:
    check_file(tmp_path, 'mmap_sem = "sometimes"\n', "a.toml")
    check_file(tmp_path, 'nobody = "never"\n', "b.toml")
    p = vmcli("check", tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    (tmp_path / "b.toml").unlink()
    p = vmcli("check", tmp_path)
    assert p.returncode == 0 and "1 passed, 0 failed" in p.stdout
