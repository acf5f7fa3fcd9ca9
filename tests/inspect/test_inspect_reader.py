"""A bad log is one line on stderr and exit status 2, never a traceback; a log cut short
still shows the good lines before the bad one."""

from __future__ import annotations

import json

import pytest

from vmactors.errors import UsageError
from vmactors.inspect.reader import open_log

VIEWS = [[], ["--table"], ["--history", "0x7efffffff000"], ["--timeline"],
         ["--diagram", "mermaid"], ["--diagram", "html"], ["--diagram", "ascii"]]


def one_line_error(inspect, *argv) -> str:
    status, _out, err = inspect(*argv)
    assert status == 2
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


@pytest.mark.parametrize("view", VIEWS)
def test_missing_file(inspect, tmp_path, view):
    path = tmp_path / "nope.jsonl"
    assert one_line_error(inspect, path, *view) == f"{path}: no such file"


def test_directory(inspect, tmp_path):
    assert one_line_error(inspect, tmp_path) == f"{tmp_path}: is a directory, not a log"


@pytest.mark.parametrize("view", VIEWS)
def test_empty_file(inspect, tmp_path, view):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    assert one_line_error(inspect, path, *view) == f"{path}: empty log"


def test_first_line_not_json(inspect, tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("hello\n")
    assert one_line_error(inspect, path) == f"{path}:1: not JSON (not a vmactors log)"


def test_first_line_not_run_start(inspect, tmp_path, munmap_log):
    path = tmp_path / "x.jsonl"
    path.write_text("".join(munmap_log.read_text().splitlines(keepends=True)[1:]))
    assert one_line_error(inspect, path) == f"{path}: not a vmactors log (line 1 is not a run.start event)"
    path.write_text('["run.start"]\n')
    assert one_line_error(inspect, path) == f"{path}: not a vmactors log (line 1 is not a run.start event)"


@pytest.mark.parametrize("fmt, shown", [(2, "2"), ("1", '"1"'), (None, "null"), (True, "true")])
def test_wrong_format(inspect, tmp_path, munmap_log, fmt, shown):
    lines = munmap_log.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    if fmt is None:
        del header["format"]
    else:
        header["format"] = fmt
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    assert one_line_error(inspect, path) == (
        f"{path}: log format {shown} is not supported (this vmactors reads format 1)"
    )


def test_truncated_last_line_prints_the_good_lines_then_fails(inspect, tmp_path, munmap_log):
    text = munmap_log.read_text()
    lines = text.splitlines(keepends=True)
    cut = "".join(lines[:-1]) + lines[-1][:25]  # a crash mid-write: no newline
    path = tmp_path / "cut.jsonl"
    path.write_text(cut)
    status, out, err = inspect(path)
    assert status == 2
    assert out == "".join(lines[:-1])
    n = len(lines)
    assert err == f"{path}:{n}: not JSON: the line is cut short (truncated log?)\n"
    # Filtered, likewise: what matched before the bad line is out.
    status, out, err = inspect(path, "--event", "run.*")
    assert status == 2 and out == lines[0]
    assert f":{n}:" in err


@pytest.mark.parametrize("view", VIEWS[1:])
def test_truncated_log_fails_in_every_view(inspect, tmp_path, munmap_log, view):
    lines = munmap_log.read_text().splitlines(keepends=True)
    path = tmp_path / "cut.jsonl"
    path.write_text("".join(lines[:-1]) + lines[-1][:10])
    assert one_line_error(inspect, path, *view).startswith(f"{path}:{len(lines)}: not JSON")


def test_bad_line_in_the_middle(inspect, tmp_path, munmap_log):
    lines = munmap_log.read_text().splitlines(keepends=True)
    lines[5] = '{"step": 3, "actor": "cpu2", \n'
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(lines))
    status, out, err = inspect(path)
    assert status == 2
    assert out == "".join(lines[:5])
    assert err == f"{path}:6: not JSON\n"


@pytest.mark.parametrize(
    "line, message",
    [
        ("\n", "empty line"),
        ("[1, 2]\n", "not a JSON object"),
        ('{"actor": "cpu0", "event": "mem.load"}\n', "event has no integer 'step'"),
        ('{"step": "3", "actor": "cpu0", "event": "mem.load"}\n', "event has no integer 'step'"),
        ('{"step": 3, "actor": "cpu0"}\n', "event has no string 'event'"),
        ('{"step": 3, "event": "mem.load"}\n', "event has no string 'actor'"),
    ],
)
def test_malformed_events(inspect, tmp_path, munmap_log, line, message):
    lines = munmap_log.read_text().splitlines(keepends=True)
    path = tmp_path / "bad.jsonl"
    path.write_text(lines[0] + line + "".join(lines[1:]))
    assert one_line_error(inspect, path) == f"{path}:2: {message}"


def test_a_valid_last_line_without_newline_is_fine(inspect, tmp_path, munmap_log):
    text = munmap_log.read_text()
    path = tmp_path / "nonl.jsonl"
    path.write_text(text.rstrip("\n"))
    assert inspect.ok(path) == text


def test_reader_keeps_line_numbers_and_bytes(munmap_log):
    with open_log(munmap_log) as log:
        assert log.header["policy"] == "mmap_sem"
        records = list(log)
    raw = munmap_log.read_bytes().splitlines(keepends=True)
    assert [r.lineno for r in records] == list(range(1, len(raw) + 1))
    assert [r.raw for r in records] == raw
    assert records[0].event == log.header


def test_open_log_raises_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        open_log(tmp_path / "missing.jsonl")
