"""SIGINT and SIGTERM: one typed exception, one place that installs the handlers.

Every command runs inside `handle_signals()`. A SIGINT or SIGTERM then raises
`Interrupted` in the main thread, wherever it is; the command lets it unwind (closing
what it opened, keeping what it finished), and `vmactors.cli.main` prints one line and
exits with `Interrupted.status`: 130 for SIGINT, 143 for SIGTERM (128 + the signal
number, as a shell reports a process killed by it).

`Interrupted` is a `KeyboardInterrupt`, so code written for Ctrl-C (`except
KeyboardInterrupt:` to stop and report what finished) handles SIGTERM the same way.

>>> import os, signal
>>> with handle_signals():
...     try:
...         os.kill(os.getpid(), signal.SIGTERM)
...     except Interrupted as e:
...         print(e, e.status)
interrupted by SIGTERM 143

Rules the handlers keep:

- **One raise per command.** After the first signal has raised `Interrupted`, a
  second one is only recorded, so the clean-up under way (removing a temporary file,
  ending a log) is not itself interrupted; a third ends the process at once
  (`os._exit` with the status), for a clean-up that hangs.
- **Critical sections.** Inside `deferred()` a signal is held and raised when the
  block ends: for the few lines that must not be cut (fsync and rename of a file, the
  last line of a log).
- **Code that swallowed an interrupt** (a search that returns what it explored so
  far) calls `reraise()` once it has kept what it wants, so the command still ends
  with the signal's status.
- **Worker processes** call `worker_init()` first (it is a `ProcessPoolExecutor`
  initializer): SIGINT is ignored there, because a Ctrl-C reaches the whole process
  group and the parent decides what to stop, SIGTERM kills at once, and on Linux the
  worker gets SIGTERM when its parent dies, even by SIGKILL (`PR_SET_PDEATHSIG`).
  The parent, interrupted, calls `stop_workers(pool)`: terminate and reap them now.

Handlers are installed only in the main thread of the main interpreter (Python allows
no other); elsewhere `handle_signals()` changes nothing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from types import FrameType

import attrs

#: Exit status of a command stopped by SIGINT (Ctrl-C): 128 + 2.
SIGINT_STATUS = 128 + signal.SIGINT
#: Exit status of a command stopped by SIGTERM: 128 + 15.
SIGTERM_STATUS = 128 + signal.SIGTERM
#: The signals a command handles.
HANDLED: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM reached the process: unwind and exit with `status`.

    >>> Interrupted(signal.SIGINT).status
    130
    >>> str(Interrupted(signal.SIGTERM))
    'interrupted by SIGTERM'
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def status(self) -> int:
        """The process's exit status: 128 + the signal number."""
        return 128 + self.signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return f"interrupted by {self.signame}"


@attrs.define
class _State:
    installed: bool = False
    #: The process that installed them.
    pid: int = 0
    #: The signal that raised `Interrupted` (0: none yet).
    raised: int = 0
    #: Signals received after it (held, or ignored during clean-up).
    later: int = 0
    #: Depth of `deferred()` blocks, and the signal held in them.
    deferring: int = 0
    held: int = 0
    #: The signal passed on to Trio inside `under_trio()`.
    trio_signal: int = 0


_state = _State()


def _handler(signum: int, _frame: FrameType | None) -> None:
    if os.getpid() != _state.pid:
        # A process forked while the handlers were installed (a worker that did not
        # call `worker_init`): the signal does what it would do without them.
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _state.raised:
        _state.later += 1
        if _state.later >= 2:
            # The clean-up of the first signal hangs: the user insists.
            os._exit(128 + _state.raised)
        return
    if _state.deferring:
        _state.held = _state.held or signum
        return
    _state.raised = signum
    raise Interrupted(signum)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handle_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise `Interrupted`; the previous handlers
    come back afterwards. Re-entering (a command calling another) is harmless."""
    if not _main_thread() or _state.installed:
        yield
        return
    previous = {s: signal.getsignal(s) for s in HANDLED}
    _state.installed, _state.raised, _state.later, _state.deferring, _state.held = True, 0, 0, 0, 0
    _state.pid = os.getpid()
    try:
        for s in HANDLED:
            signal.signal(s, _handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.installed = False


@contextmanager
def deferred() -> Iterator[None]:
    """A critical section: a signal arriving inside is raised when the block ends
    (normally or not), never in the middle of it.

    >>> with deferred():
    ...     pass  # e.g. fsync a file and rename it into place
    """
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
        if not _state.deferring and _state.held and not _state.raised:
            signum, _state.held = _state.held, 0
            _state.raised = signum
            if sys.exc_info()[1] is None:
                raise Interrupted(signum)


@contextmanager
def under_trio() -> Iterator[None]:
    """Around a `trio.run` inside `handle_signals()`: let Trio deliver the interrupt.

    An exception raised at an arbitrary point inside Trio's scheduler leaves the run
    abandoned (and the interpreter complaining at exit); Trio instead delivers
    SIGINT as a `KeyboardInterrupt` at a safe point and unwinds its tasks, but only
    when it finds Python's default SIGINT handler at its start. So within this block
    SIGINT has that handler and SIGTERM is passed on to whatever handles SIGINT
    (Trio's own, once it runs); what comes out is `Interrupted` with the signal that
    came.

    >>> import trio
    >>> with handle_signals(), under_trio():
    ...     trio.run(trio.sleep, 0)
    """
    if not _state.installed or not _main_thread():
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _term_as_int)
    try:
        yield
    except BaseException as exc:
        if find_interrupt(exc) is None:
            raise
        signum = _state.trio_signal or signal.SIGINT
        _state.raised = signum
        raise Interrupted(signum) from None
    finally:
        for s in HANDLED:
            signal.signal(s, _handler)
        _state.trio_signal = 0


def _term_as_int(signum: int, frame: FrameType | None) -> None:
    _state.trio_signal = signum
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)  # Trio's: raise here, or at its next safe point
        return
    raise KeyboardInterrupt


def received() -> Interrupted | None:
    """The interrupt this command received (raised already, or held), if any."""
    signum = _state.raised or _state.held
    return Interrupted(signum) if signum else None


def reraise() -> None:
    """Raise `Interrupted` again if a signal came (for code under a search that caught
    the first one and returned a partial result); else do nothing."""
    exc = received()
    if exc is not None:
        _state.raised = exc.signum
        raise exc


def find_interrupt(exc: BaseException | None) -> Interrupted | None:
    """The `Interrupted` inside `exc`: itself, in an exception group (Trio wraps what
    its tasks raise), or as the cause or context of another exception (an interrupt
    that surfaced inside a library's error handling). A bare `KeyboardInterrupt` (a
    signal that came before the handlers were installed) counts as SIGINT.

    >>> find_interrupt(BaseExceptionGroup("g", [Interrupted(signal.SIGTERM)])).status
    143
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc] if exc is not None else []
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, Interrupted):
            return e
        if isinstance(e, KeyboardInterrupt):
            return Interrupted(signal.SIGINT)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        for linked in (e.__cause__, e.__context__):
            if linked is not None:
                todo.append(linked)
    return None


_PR_SET_PDEATHSIG = 1


def worker_init() -> None:
    """Make this (worker) process leave Ctrl-C to its parent and die with it.

    Use as `ProcessPoolExecutor(initializer=worker_init)`, or call it first thing in a
    worker. SIGINT is ignored (the terminal sends it to the whole process group; the
    parent stops the workers it still needs to stop), SIGTERM has its default action,
    and on Linux the kernel sends this process SIGTERM when its parent exits, however
    the parent died.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the pool's own clean-up must do
            pass
        # The parent may have died before prctl took effect: then this process has
        # been adopted by another.
        parent = multiprocessing.parent_process()
        if parent is not None and parent.pid is not None and os.getppid() != parent.pid:
            os._exit(SIGTERM_STATUS)


def stop_workers(pool: Executor) -> None:
    """Stop a `ProcessPoolExecutor`'s workers now, without waiting for the work queued
    (what a command interrupted by a signal wants: its own clean-up, not the pool's
    orderly drain). Safe to call on a pool already shut down.

    >>> from concurrent.futures import ProcessPoolExecutor
    >>> pool = ProcessPoolExecutor(1, initializer=worker_init)
    >>> stop_workers(pool)
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        try:
            proc.terminate()
        except (OSError, ValueError):
            pass
    # The queue's feeder thread may be blocked writing jobs no worker will read (a
    # full pipe): the interpreter would join it at exit and hang (1 run in many, under
    # load, with thousands of sampling batches queued).
    calls = getattr(pool, "_call_queue", None)
    if calls is not None:
        calls.cancel_join_thread()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        try:
            proc.join(timeout=5)
        except (OSError, ValueError, AssertionError):
            pass


__all__ = ["HANDLED", "Interrupted", "SIGINT_STATUS", "SIGTERM_STATUS", "deferred", "find_interrupt",
           "handle_signals", "received", "reraise", "stop_workers", "under_trio", "worker_init"]
