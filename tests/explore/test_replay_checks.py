"""A replay file that is not the run it claims to be is an error (exit 2, nothing
logged), never an "ok" (docs/design.md#reproducible-runs): a choice list cut before the
step where its invariant is violated, one that goes past the end of the run, choices
that are not integers, a claim the run does not reproduce, an endless file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCENARIO = "mapfixed-two-readers"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """The shortest coherence counterexample of mapfixed-two-readers under wilcox."""
    from vmactors.cli import main

    folder = tmp_path_factory.mktemp("saved")
    assert main(["explore", SCENARIO, "--policy", "wilcox", "--save", str(folder), "--no-trace"]) == 0
    doc: dict = json.loads((folder / f"{SCENARIO}.wilcox.coherence.json").read_text())  # type: ignore[type-arg]
    return doc


def _edit(doc: dict, **changes) -> dict:  # type: ignore[no-untyped-def,type-arg]
    out = dict(doc)
    for key, value in changes.items():
        out[key] = value(doc[key]) if callable(value) else value
    return out


@pytest.mark.parametrize("case, edit, message", [
    ("cut to 4 choices", dict(choices=lambda c: c[:4]),
     "its choice list is cut short: 4 choices do not reach step"),
    ("cut to none", dict(choices=[]), "its choice list is cut short: 0 choices do not reach step"),
    ("a boolean choice", dict(choices=lambda c: [True] + c[1:]), "'choices' must be non-negative integers"),
    ("a float choice", dict(choices=lambda c: [1.0] + c[1:]), "'choices' must be non-negative integers"),
    ("past the end", dict(choices=lambda c: c + [0] * 200), "choices go past the end of the run"),
    ("another invariant", dict(invariant="frame-uaf"), "the run does not violate frame-uaf, as saved"),
    ("a step that is not a number", dict(violated_at_step="10"), "'violated_at_step' must be a non-negative integer"),
])
def test_a_replay_that_is_not_the_saved_run_is_an_error(vmcli, saved, tmp_path: Path, case: str,  # type: ignore[no-untyped-def]
                                                        edit: dict, message: str) -> None:  # type: ignore[type-arg]
    path = tmp_path / "cx.json"
    path.write_text(json.dumps(_edit(saved, **edit)))
    r = vmcli("replay", path, "--log", tmp_path / "cx.jsonl")
    assert r.returncode == 2, (case, r.stdout, r.stderr)
    assert r.stderr.startswith(f"{path}: ") and message in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "cx.jsonl").exists()


@pytest.mark.parametrize("key", ["invariant", "violated_at_step"])
def test_a_counterexample_without_its_claim_says_what_it_lacks(vmcli, saved, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                              key: str) -> None:
    """A saved counterexample stops at its violation; without the key that says where,
    it must reach the end of the run, and the message names the missing key."""
    path = tmp_path / "cx.json"
    path.write_text(json.dumps({k: v for k, v in saved.items() if k != key}))
    r = vmcli("replay", path)
    assert r.returncode == 2 and "its choice list is cut short" in r.stderr
    assert r.stderr.endswith(f"this one lacks {key!r})\n")


def test_the_saved_run_itself_replays(vmcli, saved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cx.json"
    path.write_text(json.dumps(saved))
    r = vmcli("replay", path)
    assert r.returncode == 1 and "violated coherence" in r.stdout and r.stderr == ""


def test_an_endless_replay_file_is_refused(vmcli) -> None:  # type: ignore[no-untyped-def]
    r = vmcli("replay", "/dev/zero")
    assert (r.returncode, r.stderr) == (2, "/dev/zero: larger than 64 MiB: not a replay file\n")
