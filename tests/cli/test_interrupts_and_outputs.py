"""What a user sees when a command is interrupted or cannot write what it was told to
(docs/reliability.md): exit 130 (SIGINT) or 143 (SIGTERM) with one line on stderr, a
log that is a valid JSON Lines prefix ended by `run.end` with outcome `interrupted`, no
temporary file; a log or output that cannot be written is exit 2 naming the path, and
a device or symlink given as `--log` is still one afterwards."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from vmactors.log import schema as LS


def long_scenario(loads: int = 3000) -> str:
    """Three CPUs, thousands of loads, a munmap and an mmap: a run of a few seconds."""
    ops = ", ".join(f'"r{i} = load A+{8 * (i % 500)}"' for i in range(loads))
    return (f'name = "long"\n[[map]]\nname = "A"\npages = 4\nprefault = [0, 1]\n'
            f'[[thread]]\nops = [{ops}]\n[[thread]]\nops = [{ops}]\n'
            f'[[thread]]\nops = ["munmap A", "A2 = mmap 2", "store A2 5", {ops}]\n')


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vmactors", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def check_interrupted_log(data: bytes) -> list[dict]:  # type: ignore[type-arg]
    """The log is whole lines of JSON, run.start first, run.end interrupted last."""
    assert data.endswith(b"\n")
    events = [orjson.loads(line) for line in data.splitlines()]
    assert events[0]["event"] == "run.start"
    end = events[-1]
    assert end["event"] == "run.end" and end["outcome"] == "interrupted", end
    assert [e["event"] for e in events].count("run.end") == 1
    assert end["outcome"] in LS.OUTCOMES and end["step"] == events[-2]["step"]
    return events


@pytest.mark.parametrize("sig, status, runtime", [(signal.SIGINT, 130, "trio"), (signal.SIGTERM, 143, "direct")])
def test_an_interrupted_run_ends_its_log_and_leaves_no_temporary_file(tmp_path: Path, sig: int, status: int,
                                                                      runtime: str) -> None:
    (tmp_path / "long.toml").write_text(long_scenario())
    proc = _start(["run", "long.toml", "--log", "run.jsonl", "--runtime", runtime], tmp_path)
    # Interrupt once the run is under way: its temporary log has grown.
    _wait_for(lambda: any(p.name.endswith(".tmp") and p.stat().st_size > 50_000 for p in tmp_path.iterdir()))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == status
    assert err == f"vmactors run: interrupted by {signal.Signals(sig).name}\n"
    check_interrupted_log((tmp_path / "run.jsonl").read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.toml", "run.jsonl"]


def test_an_interrupted_run_logging_to_a_pipe_ends_the_stream(tmp_path: Path) -> None:
    (tmp_path / "long.toml").write_text(long_scenario())
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    started = threading.Event()

    def read() -> None:
        with open(fifo, "rb") as f:
            while chunk := f.read(65536):
                got.append(chunk)
                started.set()

    reader = threading.Thread(target=read)
    reader.start()
    proc = _start(["run", "long.toml", "--log", "pipe"], tmp_path)
    assert started.wait(30)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    reader.join(30)
    assert proc.returncode == 143
    check_interrupted_log(b"".join(got))
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_an_interrupted_inspect_exits_with_the_signals_status(tmp_path: Path) -> None:
    fifo = tmp_path / "log.jsonl"
    os.mkfifo(fifo)
    proc = _start(["inspect", "log.jsonl", "--timeline"], tmp_path)
    with open(fifo, "wb") as w:  # a writer that never finishes its log
        w.write(b'{"step":0,"vtime_ns":0,"actor":"sim","event":"run.start","format":1}\n')
        w.flush()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, "vmactors inspect: interrupted by SIGINT\n")


def full_device(folder: Path) -> str:
    """A private /dev/full node where we may make one (a broken writer then replaces
    that node, not the system's), else /dev/full."""
    if os.geteuid() != 0:
        return "/dev/full"
    path = folder / "full"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return str(path)


def test_a_log_to_a_full_device_fails_loudly(vmcli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    full = full_device(tmp_path)
    r = vmcli("run", "mapfixed-two-readers", "--log", full)
    assert (r.returncode, r.stderr) == (2, f"cannot write log {full}: No space left on device\n")
    assert stat.S_ISCHR(os.stat(full).st_mode)


def test_a_log_naming_a_directory_is_refused_before_the_run(vmcli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = vmcli("run", "mapfixed-two-readers", "--log", tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"cannot write log {tmp_path}: is a directory\n")


def test_a_symlink_given_as_log_is_still_a_link_afterwards(vmcli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    link = tmp_path / "run.jsonl"
    link.symlink_to("real.jsonl")
    assert vmcli("run", "mapfixed-two-readers", "--log", link).returncode == 0
    assert link.is_symlink() and (tmp_path / "real.jsonl").read_bytes().startswith(b'{"step":0')


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_device_node_given_as_log_is_still_one_afterwards(vmcli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    assert vmcli("run", "mapfixed-two-readers", "--log", null).returncode == 0
    assert stat.S_ISCHR(null.stat().st_mode) and null.stat().st_rdev == os.makedev(1, 3)


def test_standard_output_on_a_full_device_is_an_error(tmp_path: Path) -> None:
    with open(full_device(tmp_path), "w") as full:
        r = subprocess.run([sys.executable, "-m", "vmactors", "policies", "--protocols"], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (2, "vmactors policies: cannot write standard output: no space left on device\n")
