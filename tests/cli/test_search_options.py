"""The options of exhaustive search on explore, check and matrix (docs/usage.md):
`--time-limit`, `--max-memory`, `--no-reduction`, `--no-symmetry`, `--cluster`, and
`--jobs N` sharding one search over N processes; progress on stderr; Ctrl-C and a
killed parent stop the shard processes."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmactors.explore.runner import ProgressBar, search_progress

COMMANDS = ("explore", "check", "matrix")
OPTIONS = ["--time-limit SECONDS", "--max-memory MB", "--no-reduction", "--no-symmetry", "--cluster tcp://HOST:PORT",
           "--jobs N"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_that_explores_has_the_options(vmcli, command) -> None:
    p = vmcli(command, "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for option in OPTIONS:
        assert option in text, option
    assert "default: no limit" in text and "default: this machine only" in text


@pytest.mark.parametrize("args, word", [
    (["--time-limit", "0"], "--time-limit"),
    (["--time-limit", "soon"], "--time-limit"),
    (["--max-memory", "0"], "--max-memory"),
    (["--cluster", "localhost:8786"], "tcp://HOST:PORT"),
    (["--jobs", "0"], "--jobs"),
])
@pytest.mark.parametrize("command", COMMANDS)
def test_bad_values_are_one_line_and_exit_2(vmcli, command, args, word) -> None:
    target = ["mapfixed-two-readers"]
    p = vmcli(command, *target, *args)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and word in p.stderr


def explore_json(vmcli, tmp_path, *args):  # type: ignore[no-untyped-def]
    p = vmcli("explore", "mapfixed-two-readers", "--policy", "wilcox", "--json", "--save", tmp_path, *args)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_reductions_switch_off_and_counts_say_so(vmcli, tmp_path) -> None:
    reduced = explore_json(vmcli, tmp_path)
    exact = explore_json(vmcli, tmp_path, "--no-reduction")
    no_sym = explore_json(vmcli, tmp_path, "--no-symmetry")
    assert (reduced["counts"], exact["counts"], no_sym["counts"]) == ("reduced", "exact", "reduced")
    for doc in (reduced, exact, no_sym):
        assert doc["complete"] and doc["exists"] == "sometimes" and list(doc["violations"]) == ["coherence"]
        assert [s["regs"] for s in doc["states"]] == [s["regs"] for s in exact["states"]]
    # The exact count is the number of interleavings (docs/design.md: 543,635,960,161 before the
    # reductions); the reduced one counts representatives only.
    assert exact["runs"] > 100 * reduced["runs"]


def test_jobs_2_gives_the_answer_of_one_process(vmcli, tmp_path) -> None:
    args = ["explore", "madvise-dontneed-vs-reader", "--policy", "wilcox", "--json", "--save", tmp_path,
            "--no-reduction"]
    one, two = vmcli(*args), vmcli(*args, "--jobs", "2")
    assert one.returncode == two.returncode == 0
    assert json.loads(two.stdout) == json.loads(one.stdout)
    assert json.loads(two.stdout)["counts"] == "exact"


@pytest.mark.parametrize("args, reason, cut", [
    (["--time-limit", "0.1", "--no-reduction"], "time-limit", "--time-limit 0.1s reached"),
    (["--max-memory", "1"], "max-memory", "--max-memory 1 MiB reached"),
    (["--max-states", "50", "--jobs", "2"], "max-states", "--max-states 50 reached"),
    (["--max-states", "50"], "max-states", "--max-states 50 reached"),
])
def test_a_cut_search_is_reported_with_what_it_found(vmcli, tmp_path, args, reason, cut) -> None:
    doc = explore_json(vmcli, tmp_path, *args)
    assert doc["complete"] is False and doc["exists"] in ("unknown", "sometimes") and doc["frontier"] > 0
    assert doc["cut"] == {"reason": reason, "text": cut}  # why, for a program to tell the cases apart
    p = vmcli("explore", "mapfixed-two-readers", "--policy", "wilcox", "--save", tmp_path, "--no-trace", *args)
    assert p.returncode == 0
    assert f"INCOMPLETE ({cut})" in p.stdout and "Exists: never" not in p.stdout


def test_sampling_warns_that_it_ignores_the_search_options(vmcli, tmp_path) -> None:
    p = vmcli("explore", "mapfixed-two-readers", "--strategy", "pct", "--runs", "5", "--save", tmp_path,
              "--time-limit", "5", "--no-reduction")
    assert p.returncode == 0
    assert "--time-limit is ignored by the pct strategy" in p.stderr
    assert "--no-reduction is ignored by the pct strategy" in p.stderr


# --- progress ------------------------------------------------------------------------------------


def test_progress_lines_come_every_few_seconds_and_not_for_short_runs() -> None:
    out = io.StringIO()
    with ProgressBar(False, lines=True, every=0.0, stream=out) as bar:
        update = search_progress(bar.task("s [wilcox] states", None))
        update(1200, 340)
        update(2400, 10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("s [wilcox] states: 1,200, frontier 340, ") and "states/s" in lines[0]
    quiet = io.StringIO()
    with ProgressBar(False, lines=True, stream=quiet) as bar:
        search_progress(bar.task("s", None))(5, 5)
        bar.task("runs", 10)(advance=3)
    assert quiet.getvalue() == ""
    with ProgressBar(False, stream=quiet) as bar:  # no lines asked for
        bar.task("s", None)(5)
    assert quiet.getvalue() == ""


# --- stopping the shards -------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    try:
        return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except OSError:
        return set()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_long_search(tmp_path: Path, text: str) -> tuple[subprocess.Popen[str], set[int]]:
    path = tmp_path / "readers.toml"
    path.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "vmactors", "explore", str(path), "--policy", "wilcox",
                             "--no-reduction", "--jobs", "2", "--save", str(tmp_path), "--no-trace"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    shards: set[int] = set()
    while len(shards) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
        shards = children(proc.pid)
    assert len(shards) == 2, "the shard processes did not start"
    time.sleep(1.5)
    return proc, shards


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_a_sharded_search_and_its_shards(tmp_path, sig, readers_text) -> None:
    """As without --jobs: the table of what was explored, exit 1 (docs/design.md#commands)."""
    proc, shards = start_long_search(tmp_path, readers_text)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "INCOMPLETE (interrupted)" in out and "states" in out
    time.sleep(0.5)
    assert not any(alive(pid) for pid in shards)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")
def test_shards_die_with_a_killed_parent(tmp_path, readers_text) -> None:
    proc, shards = start_long_search(tmp_path, readers_text)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in shards) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in shards)
