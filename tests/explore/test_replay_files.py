"""Replay files are self-contained and keep the shortest counterexample
(docs/design.md#reproducible-runs): the scenario text and its sha256 are inside, so a
replay file copied to an empty folder replays; files from before (a path only) still
replay; one file per scenario, policy and invariant holds the run violated earliest,
and a sampled run never replaces a shorter or exhaustive one; "shortest" is the step
at which the invariant is first violated, in every strategy, and the output says so."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.sampling import aggregate, sample_runs
from vmactors.scenario import load_scenario
from vmactors.sim.run import Run
from vmactors.sim.strategies import make

# munmap returns while cpu1's TLB still maps A: wilcox-early-return violates
# munmap-incomplete in every run, at a step that depends on the interleaving.
STALE = """\
name = "stale"
[[map]]
name = "A"
fill = 1
prefault = [0, 1]
[[thread]]
ops = ["munmap A"]
[[thread]]
ops = ["r0 = load A", "r1 = load A"]
"""
POLICY, INVARIANT = "wilcox-early-return", "munmap-incomplete"


@pytest.fixture
def scen(tmp_path: Path) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    path = folder / "stale.toml"
    path.write_text(STALE)
    return path


def explore_json(vmcli, scen: Path, cwd: Path, *args: object) -> dict:
    p = vmcli("explore", scen, "--policy", POLICY, "--json", *args, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def first_violation_step(scen: Path, choices: list[int]) -> int:
    """Replay `choices` step by step: the step at which INVARIANT is first violated."""
    run = Run(load_scenario(scen), POLICY, make("replay", 0, choices=choices), 0, None)
    loop = run.loop()
    try:
        _, step = next(loop)
        while INVARIANT not in run.violated:
            _, step = loop.send(run.machine.apply(run.system, step))
    except StopIteration:
        pass
    assert INVARIANT in run.violated
    return run.system.step


def test_a_replay_file_holds_the_scenario_text_and_its_sha256(vmcli, scen, tmp_path) -> None:
    doc = explore_json(vmcli, scen, tmp_path)
    saved = json.loads((tmp_path / doc["violations"][INVARIANT]["replay"]).read_text())
    assert list(saved)[:5] == ["format", "scenario", "scenario_sha256", "policy", "choices"]
    assert saved["scenario_text"] == STALE
    assert saved["scenario_sha256"] == hashlib.sha256(STALE.encode()).hexdigest()
    assert saved["invariant"] == INVARIANT and saved["strategy"] == "exhaustive"
    assert saved["violated_at_step"] == first_violation_step(scen, saved["choices"])
    assert saved["detail"]


def test_a_replay_file_copied_to_an_empty_folder_replays(vmcli, cli, scen, tmp_path) -> None:
    doc = explore_json(vmcli, scen, tmp_path)
    replay = tmp_path / doc["violations"][INVARIANT]["replay"]
    here = vmcli("replay", replay, "--log", tmp_path / "here.jsonl", cwd=tmp_path)
    assert here.returncode == 1, here.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(replay, empty / "cx.json")
    shutil.rmtree(scen.parent)  # the scenario is gone, too
    # In another process and another folder: the same run, byte for byte.
    there = cli("replay", "cx.json", "--log", "there.jsonl", cwd=empty)
    assert there.returncode == 1, there.stderr
    assert (empty / "there.jsonl").read_bytes() == (tmp_path / "here.jsonl").read_bytes()
    assert INVARIANT in there.stdout and there.stderr == ""


def test_an_old_replay_file_with_only_a_path_still_replays(vmcli, scen, tmp_path) -> None:
    doc = explore_json(vmcli, scen, tmp_path)
    replay = tmp_path / doc["violations"][INVARIANT]["replay"]
    saved = json.loads(replay.read_text())
    old = {k: saved[k] for k in ("format", "scenario", "scenario_sha256", "policy", "choices")}
    old.update(invariant=INVARIANT, steps=7, strategy="exhaustive")  # as files were written before
    replay.write_text(json.dumps(old))
    p = vmcli("replay", replay, cwd=tmp_path / "..")
    assert p.returncode == 1 and INVARIANT in p.stdout, p.stderr
    scen.unlink()
    p = vmcli("replay", replay)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "cannot be read" in p.stderr


def test_an_edited_scenario_text_in_a_replay_file_is_refused(vmcli, scen, tmp_path) -> None:
    doc = explore_json(vmcli, scen, tmp_path)
    replay = tmp_path / doc["violations"][INVARIANT]["replay"]
    saved = json.loads(replay.read_text())
    saved["scenario_text"] = saved["scenario_text"].replace("fill = 1", "fill = 2")
    replay.write_text(json.dumps(saved))
    scen.unlink()
    p = vmcli("replay", replay)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "sha256" in p.stderr and "--force" in p.stderr
    p = vmcli("replay", replay, "--force")
    assert p.returncode == 1 and INVARIANT in p.stdout
    assert "warning" in p.stderr and "edited" in p.stderr


def test_a_sampled_run_never_replaces_a_shorter_counterexample(vmcli, scen, tmp_path) -> None:
    exhaustive = explore_json(vmcli, scen, tmp_path)
    replay = tmp_path / exhaustive["violations"][INVARIANT]["replay"]
    before = replay.read_bytes()
    shortest = json.loads(before)["violated_at_step"]
    for strategy in ("random", "pct"):
        p = vmcli("explore", scen, "--policy", POLICY, "--strategy", strategy, "--runs", "40", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        assert replay.read_bytes() == before, f"{strategy} replaced the exhaustive counterexample"
        # The output names the kept file and the step at which it violates the invariant.
        assert f"shortest violates it at step {shortest}:" in p.stdout
        assert f"vmactors replay {replay.relative_to(tmp_path)}" in p.stdout
    assert [x.name for x in replay.parent.iterdir()] == [replay.name]


@pytest.mark.parametrize("strategy", ["random", "pct"])
@pytest.mark.parametrize("scenario, policy, invariant", [
    ("rwsem-irqs-off", "mmap_sem-irqs-off-wait", "deadlock"),
    ("fault-after-zap", "mmap_sem-free-before-flush", "frame-uaf"),
    ("mapfixed-two-readers", "wilcox", "coherence"),
])
def test_a_sampled_counterexample_replays(vmcli, tmp_path, strategy, scenario, policy, invariant) -> None:
    """A sampled run's counterexample is shrunk toward zeros; the file still holds a
    choice for every step up to the violation, so `replay` takes it and shows it."""
    p = vmcli("explore", scenario, "--policy", policy, "--strategy", strategy, "--runs", "300", "--seed", "1",
              "--save", tmp_path, "--no-trace")
    assert p.returncode == 0 and f"{invariant}:" in p.stdout, p.stdout + p.stderr
    path = tmp_path / f"{scenario}.{policy}.{invariant}.json"
    saved = json.loads(path.read_text())
    assert len(saved["choices"]) == saved["violated_at_step"]
    r = vmcli("replay", path, "--log", tmp_path / "r.jsonl")
    assert r.returncode == 1 and r.stderr == "" and invariant in r.stdout
    violated = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()
                if '"invariant.violated"' in x and f'"{invariant}"' in x]
    assert violated[0]["step"] == saved["violated_at_step"]


def test_a_shorter_run_replaces_a_longer_one_and_a_changed_scenario_replaces_any(vmcli, scen, tmp_path) -> None:
    exhaustive = explore_json(vmcli, scen, tmp_path)
    replay = tmp_path / exhaustive["violations"][INVARIANT]["replay"]
    saved = json.loads(replay.read_text())
    saved["violated_at_step"] += 100  # pretend a longer run was saved first
    replay.write_text(json.dumps(saved))
    explore_json(vmcli, scen, tmp_path)
    assert json.loads(replay.read_text())["violated_at_step"] == saved["violated_at_step"] - 100
    scen.write_text(STALE.replace("fill = 1", "fill = 3"))
    explore_json(vmcli, scen, tmp_path, "--strategy", "random", "--runs", "5")
    now = json.loads(replay.read_text())
    assert now["strategy"] == "random" and "fill = 3" in now["scenario_text"]


def test_shortest_means_the_violating_step_in_every_strategy(scen) -> None:
    s = load_scenario(scen)
    e, choices = explore_exhaustive(s, POLICY)
    (f,) = e.findings
    assert f.steps == first_violation_step(scen, list(choices[INVARIANT]))
    for strategy in ("random", "pct"):
        summaries = sample_runs(s, POLICY, strategy, 0, range(30))
        sampled, sampled_choices = aggregate(s, POLICY, strategy, summaries)
        (g,) = sampled.findings
        # The step of the first violation, not the length of the whole run ...
        assert g.steps == first_violation_step(scen, list(sampled_choices[INVARIANT]))
        full = Run(s, POLICY, make("replay", 0, choices=sampled_choices[INVARIANT]), 0, None).run()
        assert g.steps < full.steps
        # ... and never earlier than the exhaustive shortest.
        assert g.steps >= f.steps


def test_run_takes_a_choice_list_and_prints_how_to_replay_it(vmcli, scen, tmp_path) -> None:
    doc = explore_json(vmcli, scen, tmp_path)
    saved = json.loads((tmp_path / doc["violations"][INVARIANT]["replay"]).read_text())
    text = ",".join(map(str, saved["choices"]))
    a = vmcli("run", scen, "--policy", POLICY, "--choices", text, "--log", tmp_path / "a.jsonl")
    b = vmcli("replay", tmp_path / doc["violations"][INVARIANT]["replay"], "--log", tmp_path / "b.jsonl")
    assert a.returncode == b.returncode == 1
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert a.stdout.splitlines()[0] == f"policy {POLICY}, choices {text}"
    assert a.stdout.splitlines()[-1] == f"replay: vmactors run {scen} --policy {POLICY} --choices {text}"
    bad = vmcli("run", scen, "--choices", "7,7,7", "--log", tmp_path / "c.jsonl")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--choices" in bad.stderr
    assert not (tmp_path / "c.jsonl").exists()
