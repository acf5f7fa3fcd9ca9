"""Writing what the user named: completely or not at all, and never over something
that is not a file.

Every file vmactors writes at a path the user gave or chose — a run's log, replay
files, `check --junit`, `bench --plot` — goes through `open_output` (a stream) or
`write_output` (bytes at once):

- **a regular file, or a path where nothing is yet**: written to a temporary file
  beside it (`.NAME.PID.RANDOM.tmp`), flushed, fsync'ed and renamed over it, so the
  path holds either its old contents or the complete new ones, never a part;
- **through symlinks**: the link is followed and its target is written (the link
  stays a link);
- **a device, a FIFO or anything else that is not a regular file**: opened and written
  as a stream, in place (`--log /dev/null`, `--log /dev/stdout`, a named pipe): such
  a node is never replaced;
- **what cannot be written** (no such directory, a directory, no permission, a full
  disk, a reader that went away) is an `OutputError` naming the path and the reason —
  the command's one-line error, exit status 2 — and the temporary file is removed.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_output(d / "x.json", b"{}\\n", "replay file")
>>> (d / "x.json").read_bytes(), sorted(p.name for p in d.iterdir())
(b'{}\\n', ['x.json'])
>>> with open_output(d / "run.jsonl", "log") as out:
...     _ = out.stream.write(b"line\\n")
>>> (d / "run.jsonl").read_bytes()
b'line\\n'
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from .errors import UsageError
from .signals import deferred


class OutputError(UsageError):
    """An output the user named cannot be written completely: one line, `cannot write
    WHAT PATH: REASON`; the command exits 2.

    >>> str(OutputError("log", "/dev/full", "No space left on device"))
    'cannot write log /dev/full: No space left on device'
    """

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(f"cannot write {what} {path}: {reason}")
        self.what = what
        self.path = path
        self.reason = reason


def reason(exc: OSError) -> str:
    """An OS error in a few words (`No space left on device`)."""
    if exc.errno is not None and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class Output:
    """One output being written: `stream` takes the bytes; `commit` publishes them,
    `abort` throws them away (see the module docstring). `regular` says whether the
    path is (or will be) a regular file, written through a temporary one."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = os.fspath(path)
        self.what = what
        #: Where the bytes go: the path with every symlink followed.
        self.target = os.path.realpath(self.path)
        self.tmp: str | None = None
        try:
            st: os.stat_result | None = os.stat(self.target)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise self.error(e) from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(what, self.path, "is a directory")
        self.regular = st is None or stat.S_ISREG(st.st_mode)
        try:
            if self.regular:
                fd = self._open_temporary(st)
            else:
                # A device, FIFO or socket: written in place, as a shell's `>` would
                # (opening a FIFO waits for its reader).
                fd = os.open(self.target, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as e:
            raise self.error(e) from None
        self.stream: BinaryIO = os.fdopen(fd, "wb")

    def _open_temporary(self, st: os.stat_result | None) -> int:
        folder, name = os.path.split(self.target)
        if not os.path.isdir(folder or "."):
            raise OutputError(self.what, self.path, "no such directory")
        if st is not None and not os.access(self.target, os.W_OK):
            # Renaming over a read-only file would succeed; the user said not to.
            raise OutputError(self.what, self.path, os.strerror(errno.EACCES))
        self.tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        if st is not None:
            os.chmod(self.tmp, stat.S_IMODE(st.st_mode))  # keep the file's permissions
        return fd

    def error(self, exc: OSError) -> OutputError:
        return OutputError(self.what, self.path, reason(exc))

    def commit(self) -> None:
        """Publish what was written: flush; for a regular file fsync it and rename it
        into place (no signal can cut this short); close. An error: `OutputError`,
        and nothing published."""
        with deferred():
            try:
                self.stream.flush()
                if self.tmp is not None:
                    os.fsync(self.stream.fileno())
                self.stream.close()
                if self.tmp is not None:
                    os.replace(self.tmp, self.target)
                    self.tmp = None
                    _fsync_folder(os.path.dirname(self.target))
            except OSError as e:
                self.abort()
                raise self.error(e) from None

    def abort(self) -> None:
        """Throw away what was written (a stream keeps what already went out)."""
        try:
            self.stream.close()
        except OSError:
            pass
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.tmp = None

    def broken(self) -> OSError | None:
        """Whether the stream cannot take what it was given: the error flushing it
        gives now, if any (used to tell a write error of this output from another
        one that ended the work)."""
        try:
            self.stream.flush()
        except OSError as e:
            return e
        except ValueError:  # closed
            return None
        return None


def _fsync_folder(folder: str) -> None:
    """Make the rename durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def silence_stdout() -> None:
    """After a write error on stdout (a closed pipe, a full disk), point it at
    /dev/null so that the interpreter's last flush at exit is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation: no real fd
        pass


def as_output_error(out: Output, exc: BaseException) -> OutputError | None:
    """`exc` as an error of `out`, if it is one: an OS error without a file name (a
    write or flush) while `out`'s stream is broken too."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, OSError) and exc.filename is None:
        now = out.broken()
        if now is not None:
            return out.error(now)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EPIPE):
            return out.error(exc)
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            found = as_output_error(out, e)
            if found is not None:
                return found
    return None


@contextmanager
def open_output(path: str | os.PathLike[str], what: str) -> Iterator[Output]:
    """Write `path` (see the module docstring): the block writes `out.stream`; at its
    end the output is committed, or, if the block raised, thrown away. A write error
    of this output inside the block comes out as `OutputError`."""
    out = Output(path, what)
    try:
        yield out
    except BaseException as exc:
        out.abort()
        mine = as_output_error(out, exc)
        if mine is not None and mine is not exc:
            raise mine from None
        raise
    out.commit()


def write_output(path: str | os.PathLike[str], data: bytes, what: str) -> None:
    """Write `data` as the whole contents of `path`, atomically where it is a file."""
    with open_output(path, what) as out:
        try:
            out.stream.write(data)
        except OSError as e:
            raise out.error(e) from None


__all__ = ["Output", "OutputError", "as_output_error", "open_output", "reason", "silence_stdout", "write_output"]
