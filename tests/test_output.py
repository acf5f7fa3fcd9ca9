"""vmactors.output: what the user named is written completely or not at all, through
symlinks, in place when it is not a regular file, and never replaced when it is a
device or a pipe. Every failure is one `OutputError` naming the path and the reason."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from vmactors.output import OutputError, open_output, write_output


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_file_is_replaced_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    path.write_bytes(b"old\n")
    path.chmod(0o640)
    write_output(path, b"new\n", "replay file")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"old\n")
    with pytest.raises(RuntimeError):
        with open_output(path, "log") as out:
            out.stream.write(b"half a new file\n")
            raise RuntimeError("the run failed")
    assert path.read_bytes() == b"old\n"
    assert _leftovers(tmp_path) == []


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.jsonl"
    target.write_bytes(b"old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target.name)
    write_output(link, b"new\n", "log")
    assert link.is_symlink() and os.readlink(link) == "real.jsonl"
    assert target.read_bytes() == b"new\n"
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to("made.jsonl")
    write_output(dangling, b"x\n", "log")
    assert dangling.is_symlink() and (tmp_path / "made.jsonl").read_bytes() == b"x\n"


def test_a_fifo_is_written_as_a_stream_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    write_output(fifo, b"streamed\n", "log")
    reader.join(10)
    assert got == [b"streamed\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_device_node_is_written_in_place_never_replaced(tmp_path: Path) -> None:
    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    write_output(null, b"into the void\n", "log")
    st = null.stat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


def full_device(folder: Path) -> str:
    """A device that is always full: a private /dev/full node where we may make one
    (so that a broken writer replaces that node, not the system's), else /dev/full."""
    if os.geteuid() != 0:
        return "/dev/full"
    path = folder / "full"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return str(path)


def test_a_full_device_is_an_error_naming_the_path(tmp_path: Path) -> None:
    full = full_device(tmp_path)
    with pytest.raises(OutputError) as e:
        write_output(full, b"x" * 100_000, "log")
    assert str(e.value) == f"cannot write log {full}: No space left on device"
    assert stat.S_ISCHR(os.stat(full).st_mode)


@pytest.mark.parametrize("case, reason", [
    ("directory", "is a directory"),
    ("missing folder", "no such directory"),
])
def test_what_cannot_be_a_file_is_an_error_before_anything_is_written(tmp_path: Path, case: str,
                                                                      reason: str) -> None:
    path = tmp_path if case == "directory" else tmp_path / "gone" / "run.jsonl"
    with pytest.raises(OutputError, match=f"^cannot write log {path}: {reason}$"):
        with open_output(path, "log"):
            pytest.fail("opened")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anything")
def test_a_read_only_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "keep.json"
    path.write_bytes(b"keep\n")
    path.chmod(0o444)
    with pytest.raises(OutputError, match="Permission denied"):
        write_output(path, b"new\n", "replay file")
    assert path.read_bytes() == b"keep\n"
