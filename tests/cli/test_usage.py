"""The command line as a new user meets it: every option of every command documented
in `--help` with its default, `--version`, one-line errors with "did you mean", a
warning for options the chosen strategy ignores, and `run` saying what it ran and
how to run it again."""

from __future__ import annotations

import argparse
import re

import pytest

from vmactors.cli import COMMANDS, build_parser
from vmactors.version import __version__

SUBCOMMANDS = ["run", "explore", "replay", "check", "inspect", "matrix", "policies", "bench"]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_is_registered_once() -> None:
    assert list(_subparsers()) == SUBCOMMANDS
    assert len(COMMANDS) == len(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_option_has_help_that_states_its_default(command) -> None:
    """Each option's help text says what it does and what happens without it."""
    undocumented = []
    for action in _subparsers()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = action.help or ""
        if len(text) < 15:
            undocumented.append(f"{'/'.join(action.option_strings) or action.dest}: no help")
        elif action.option_strings and "default" not in text:
            undocumented.append(f"{'/'.join(action.option_strings)}: no default in {text!r}")
    assert undocumented == []


@pytest.mark.parametrize("command, shown", [
    ("explore", ["--max-states N", "default: 200000", "default: 1000", "default: exhaustive", "--no-trace"]),
    ("run", ["--choices LIST", "default: 100000", "default: mmap_sem", "default: 0"]),
    ("check", ["--junit FILE", "--json", "--markdown", "--save DIR", "default: vmactors-runs", "default: 200000"]),
    ("replay", ["--force", "--runtime", "default: trio"]),
    ("matrix", ["--markdown", "default: 1"]),
])
def test_help_shows_the_defaults(vmcli, command, shown) -> None:
    p = vmcli(command, "--help")
    assert p.returncode == 0
    text = " ".join(p.stdout.split())
    for s in shown:
        assert s in text, s


def test_version(vmcli, cli) -> None:
    p = vmcli("--version")
    assert p.returncode == 0 and p.stdout == f"vmactors {__version__}\n"
    assert cli("--version").stdout == f"vmactors {__version__}\n"


@pytest.mark.parametrize("argv, hint", [
    (["explore", "mapfixed-two-readers", "--policy", "wilcx"], "unknown policy 'wilcx'; did you mean 'wilcox'?"),
    (["run", "mapfixed-two-readers", "--policy", "pervm"], "did you mean 'pervma'?"),
    (["matrix", "--policy", "glise"], "did you mean 'glisse'?"),
    (["explore", "mapfixed-two-readers", "--strategy", "pc"], "did you mean 'pct'?"),
    (["explor", "mapfixed-two-readers"], "did you mean 'explore'?"),
    (["explore", "mapfixed-two-readers", "--rnus", "3"], "did you mean '--runs'"),
    (["explore", "mapfixed-two-reader"], "no library scenario of that name; did you mean 'mapfixed-two-readers'"),
    # An option of another command: this command says so, and offers only its own options.
    (["run", "mapfixed-two-readers", "--polcy", "wilcox"], "vmactors run: error: unrecognized arguments: --polcy "
                                                             "wilcox; did you mean '--policy'? (see `vmactors run --help`)"),
    (["inspect", "x.jsonl", "--runs", "3"], "vmactors inspect: error: unrecognized arguments: --runs 3 (see"),
    (["run", "mapfixed-two-readers", "--seed", "x"], "not an integer: 'x'"),
])
def test_usage_errors_are_one_line_with_a_suggestion(vmcli, argv, hint) -> None:
    p = vmcli(*argv)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1, p.stderr
    assert hint in p.stderr
    assert "usage:" not in p.stderr and "Traceback" not in p.stderr


def test_an_unknown_op_in_a_scenario_gets_a_suggestion(vmcli, tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[[map]]\nname = "A"\n[[thread]]\nops = ["r0 = lod A"]\n')
    p = vmcli("run", path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "did you mean" in p.stderr and "load" in p.stderr


@pytest.mark.parametrize("args, warned", [
    (["--runs", "10"], ["--runs is ignored by the exhaustive strategy"]),
    (["--depth", "2", "--seed", "4"], ["--seed is ignored by the exhaustive strategy",
                                       "--depth is ignored by the exhaustive strategy"]),
    (["--strategy", "random", "--runs", "5", "--depth", "2"], ["--depth is ignored by the random strategy"]),
    (["--strategy", "pct", "--runs", "5", "--max-states", "10"], ["--max-states is ignored by the pct strategy"]),
    (["--strategy", "pct", "--runs", "5", "--depth", "2", "--seed", "1"], []),
    (["--max-states", "50000"], []),
])
def test_options_the_strategy_ignores_are_warned_about(vmcli, tmp_path, args, warned) -> None:
    p = vmcli("explore", "mapfixed-two-readers", "--policy", "mmap_sem", "--save", tmp_path, *args)
    assert p.returncode == 0
    got = [line for line in p.stderr.splitlines() if line]
    assert len(got) == len(warned), p.stderr
    for line, want in zip(got, warned):
        assert line.startswith("vmactors explore: warning: ") and want in line
    assert "Test mapfixed-two-readers" in p.stdout


def test_run_prints_the_policy_the_seed_and_the_command_that_replays_it(vmcli, tmp_path) -> None:
    p = vmcli("run", "mapfixed-two-readers", "--policy", "wilcox", "--seed", "3", "--log", tmp_path / "a.jsonl")
    lines = p.stdout.splitlines()
    assert lines[0] == "policy wilcox, seed 3"
    assert lines[-1] == "replay: vmactors run mapfixed-two-readers --policy wilcox --seed 3"
    again = vmcli(*lines[-1].split(": ", 1)[1].split()[1:], "--log", tmp_path / "b.jsonl")
    assert again.stdout == p.stdout
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_help_examples_run(vmcli, tmp_path) -> None:
    """The first example of each command's --help that reads a library scenario works
    as shown, from an empty folder."""
    for command in ("run", "explore"):
        text = vmcli(command, "--help").stdout.split("examples:")[1]
        example = next(line.split() for line in text.splitlines() if line.strip().startswith("vmactors "))
        p = vmcli(*example[1:], cwd=tmp_path)
        assert p.returncode in (0, 1) and p.stderr == "", (example, p.stderr)
        assert re.search(r"mapfixed-two-readers", p.stdout)


def test_policies_markdown_prints_only_the_tables(vmcli) -> None:
    p = vmcli("policies", "--markdown", "--policy", "wilcox")
    assert p.returncode == 0
    assert "policies:" not in p.stdout and "ablations" not in p.stdout.split("|", 1)[0]
    assert p.stdout.lstrip().startswith(("#", "|", "**"))


def test_run_warns_that_choices_replace_the_seed(vmcli) -> None:
    p = vmcli("run", "mapfixed-two-readers", "--seed", "3", "--choices", "0,1")
    assert p.returncode == 0
    assert p.stderr == "vmactors run: warning: --seed is ignored with --choices (the choice list is the schedule)\n"
    assert p.stdout.splitlines()[0] == "policy mmap_sem, choices 0,1"
