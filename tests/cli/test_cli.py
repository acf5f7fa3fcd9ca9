"""The command line (docs/design.md#commands): exit statuses, replay refusing a
changed scenario, bad input as one line on stderr, `policies`, and `--help` with
examples."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from vmactors.policies import ABLATIONS, POLICY_NAMES

CLEAN = """\
name = "clean"
exists = "0:r0 = 1"
[[map]]
name = "A"
fill = 1
[[thread]]
ops = ["r0 = load A"]
"""

STALE = """\
name = "stale"
[[map]]
name = "A"
prefault = [0, 1]
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["munmap A"]
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- run ----------------------------------------------------------------------------


def test_run_exit_0_on_a_clean_run(vmcli, tmp_path, log_schema) -> None:
    path = write(tmp_path, CLEAN)
    log = tmp_path / "out.jsonl"
    p = vmcli("run", path, "--log", log)
    assert p.returncode == 0, p.stderr
    assert "0:r0 = 1" in p.stdout and "true" in p.stdout
    lines = log_schema.check(log.read_bytes().splitlines())
    assert lines[0]["policy"] == "mmap_sem" and lines[0]["seed"] == 0 and lines[0]["strategy"] == "random"
    assert lines[-1]["outcome"] == "ok"


def test_run_writes_no_log_unless_asked(vmcli, tmp_path) -> None:
    path = write(tmp_path, CLEAN)
    before = set(tmp_path.iterdir())
    assert vmcli("run", path, cwd=tmp_path).returncode == 0
    assert set(tmp_path.iterdir()) == before


def test_run_exit_1_on_a_violation(vmcli, tmp_path) -> None:
    # munmap returns while cpu0's TLB still maps A: every run of the ablation violates.
    path = write(tmp_path, STALE)
    for seed in (0, 1):
        p = vmcli("run", path, "--policy", "wilcox-early-return", "--seed", seed)
        assert p.returncode == 1
        assert "munmap-incomplete" in p.stdout
    assert vmcli("run", path, "--policy", "wilcox").returncode == 0


def test_run_exit_1_on_a_deadlock_and_on_the_step_limit(vmcli, tmp_path) -> None:
    path = write(tmp_path, """\
name = "blocked"
[[map]]
name = "A"
[[map]]
name = "B"
prefault = [0, 1]
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["mprotect B prot=none"]
""")
    codes = {}
    for seed in range(12):
        p = vmcli("run", path, "--policy", "mmap_sem-irqs-off-wait", "--seed", seed)
        codes[seed] = p.returncode
        if "deadlock" in p.stdout.splitlines()[0]:
            assert p.returncode == 1 and "waits for" in p.stdout
    assert set(codes.values()) == {0, 1}
    p = vmcli("run", path, "--max-steps", "3")
    assert p.returncode == 1 and "step-limit" in p.stdout
    # The command it prints to replay the run keeps the step limit, so it replays it.
    again = p.stdout.splitlines()[-1]
    assert again.endswith(" --max-steps 3")
    q = vmcli(*shlex.split(again.removeprefix("replay: vmactors ")))
    assert q.returncode == 1 and q.stdout == p.stdout


@pytest.mark.parametrize("args", [
    ["--policy", "no-such-policy"],
    ["--seed", "x"],
    ["--max-steps", "0"],
])
def test_run_exit_2_on_bad_usage(vmcli, tmp_path, args) -> None:
    path = write(tmp_path, CLEAN)
    p = vmcli("run", path, *args, "--log", tmp_path / "out.jsonl")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and p.stderr.strip()
    assert not (tmp_path / "out.jsonl").exists()


def test_run_exit_2_on_a_missing_file(vmcli, tmp_path) -> None:
    p = vmcli("run", tmp_path / "nope.toml")
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "nope.toml" in p.stderr


# --- bad scenarios --------------------------------------------------------------------

HEAD = 'name = "bad"\n'
THREAD = '[[thread]]\nops = ["r0 = load A"]\n'
MAP = '[[map]]\nname = "A"\n'

MALFORMED = {
    "toml-syntax": 'name = "bad\n' + MAP + THREAD,
    "no-name": MAP + THREAD,
    "no-thread": HEAD + MAP,
    "unknown-key": HEAD + "colour = 3\n" + MAP + THREAD,
    "exists-in-thread-table": HEAD + MAP + THREAD + 'exists = "0:r0 = 1"\n',
    "unknown-op": HEAD + MAP + '[[thread]]\nops = ["r0 = lod A"]\n',
    "undefined-label": HEAD + MAP + '[[thread]]\nops = ["r0 = load Z"]\n',
    "overlapping-at": HEAD + '[[map]]\nname = "A"\nat = 0x7e0000000000\n[[map]]\nname = "B"\n'
                      'at = 0x7e0000000000\n' + THREAD,
    "unaligned-at": HEAD + '[[map]]\nname = "A"\nat = 0x7e0000000008\n' + THREAD,
    "unaligned-address": HEAD + MAP + '[[thread]]\nops = ["r0 = load A+3"]\n',
    "outside-mapping": HEAD + MAP + '[[thread]]\nops = ["r0 = load A+4096"]\n',
    "exists-unwritten-register": 'name = "bad"\nexists = "0:r9 = 1"\n' + MAP + THREAD,
    "two-threads-one-cpu": HEAD + MAP + THREAD + '[[thread]]\ncpu = 0\nops = ["r1 = load A"]\n',
    "zero-pages": HEAD + '[[map]]\nname = "A"\npages = 0\n' + THREAD,
    "file-without-kind": HEAD + '[[map]]\nname = "A"\nfile = "f"\n' + THREAD,
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_scenario_is_one_line_on_stderr_and_nothing_written(vmcli, tmp_path, name) -> None:
    path = write(tmp_path, MALFORMED[name], "bad.toml")
    log = tmp_path / "out.jsonl"
    p = vmcli("run", path, "--log", log)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.endswith("\n") and p.stderr.count("\n") == 1, p.stderr
    assert re.match(re.escape(str(path)) + r"(:\d+:\d+)?: \S", p.stderr), p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["bad.toml"]


def test_a_malformed_scenario_in_a_real_process(cli, tmp_path) -> None:
    for name in ("unknown-op",):
        path = write(tmp_path, MALFORMED[name], "bad.toml")
        p = cli("run", path, "--log", tmp_path / "out.jsonl")
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
        assert not (tmp_path / "out.jsonl").exists()


def test_not_utf8(vmcli, tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "\xff"\n' + THREAD.encode())
    p = vmcli("explore", path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "UTF-8" in p.stderr


# --- replay -----------------------------------------------------------------------------


@pytest.fixture
def saved(vmcli, tmp_path) -> tuple[Path, Path]:
    scen = write(tmp_path, STALE, "stale.toml")
    p = vmcli("explore", scen, "--policy", "wilcox-early-return", "--json", "--save", tmp_path / "runs",
              cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    replay = tmp_path / json.loads(p.stdout)["violations"]["munmap-incomplete"]["replay"]
    return scen, replay


def test_replay_refuses_a_changed_scenario_unless_forced(vmcli, tmp_path, saved) -> None:
    scen, replay = saved
    assert vmcli("replay", replay).returncode == 1
    scen.write_text(scen.read_text() + "# edited\n")
    log = tmp_path / "r.jsonl"
    p = vmcli("replay", replay, "--log", log)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "--force" in p.stderr and "changed" in p.stderr
    assert not log.exists()
    p = vmcli("replay", replay, "--force", "--log", log)
    assert p.returncode == 1 and "munmap-incomplete" in p.stdout
    assert log.exists()


def test_replay_finds_its_scenario_relative_to_the_replay_file(vmcli, tmp_path, saved) -> None:
    _, replay = saved
    doc = json.loads(replay.read_text())
    assert not Path(doc["scenario"]).is_absolute()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert vmcli("replay", replay, cwd=elsewhere).returncode == 1


@pytest.mark.parametrize("content", [None, "not json", '{"format": 1}', '{"format": 2}'])
def test_replay_exit_2_on_a_bad_replay_file(vmcli, tmp_path, content) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    p = vmcli("replay", path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


# --- policies and help ------------------------------------------------------------------


def test_policies_lists_every_policy_and_ablation(vmcli) -> None:
    p = vmcli("policies")
    assert p.returncode == 0
    entries = [line for line in p.stdout.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert [line.split()[0] for line in entries] == list(POLICY_NAMES)
    for line in entries:
        assert len(line.split(None, 1)) == 2  # a name and what it models
    # every design (not the ablations) names the kernel it models
    kernels = [line.split("kernel: ", 1)[1] for line in p.stdout.splitlines() if line.startswith("   ")
               and "kernel: " in line]
    assert len(kernels) == len(POLICY_NAMES) - len(ABLATIONS) and all(kernels)


COMMANDS = ["run", "explore", "replay", "check", "inspect", "matrix", "policies"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_examples(vmcli, command) -> None:
    p = vmcli(command, "--help")
    assert p.returncode == 0
    assert "examples:" in p.stdout
    examples = p.stdout.split("examples:")[1]
    assert f"vmactors {command}" in examples


def test_every_command_is_listed_in_the_top_level_help(vmcli) -> None:
    p = vmcli("--help")
    assert p.returncode == 0
    for c in COMMANDS:
        assert c in p.stdout


def test_no_command_is_a_usage_error(vmcli) -> None:
    p = vmcli()
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "COMMAND" in p.stderr and "vmactors --help" in p.stderr


def test_help_examples_name_scenarios_that_exist(vmcli, h) -> None:
    """A user copies an example from --help: the library scenarios it names are there."""
    missing = []
    for command in COMMANDS:
        text = vmcli(command, "--help").stdout
        for path in re.findall(r"\bscenarios/[\w.-]+\.toml\b", text):
            if not (h.ROOT / path).exists():
                missing.append(f"{command}: {path}")
    assert missing == []


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_explore_and_reports_what_finished(h, jobs) -> None:
    """docs/design.md#commands: explore exits 1 only if interrupted; Ctrl-C stops the workers and
    prints what was explored so far."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "vmactors", "explore", str(h.ROOT / "scenarios/munmap-zero-entry.toml"),
         "--strategy", "random", "--runs", "1000000", "--jobs", jobs],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=h.ROOT,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "interrupted" in out
    assert "random runs" in out
