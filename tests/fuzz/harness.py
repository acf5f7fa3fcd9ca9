"""Feed one input to the command that reads it, in this process, and check what a user
would get: a result, or one line on stderr with exit status 2 — never a traceback
(an exception out of `vmactors.cli.main`), a hang (an alarm after `timeout` s), or
running out of memory.

`Finding` is raised for anything else; the fuzz tests and benchmarks/fuzz.py let it
fail the example (Hypothesis then shrinks the input)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs

#: The scenario every replay file is built around (replays need a valid one).
REPLAY_SCENARIO = """name = "fuzz-replay"
exists = "0:r0 = 1"
[[map]]
name = "A"
fill = 1
prefault = [1]
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["munmap A"]
"""


class Finding(AssertionError):
    """An input that did not get a result or a one-line error."""


class Hang(BaseException):
    """The alarm rang: the command took longer than the harness allows."""


@attrs.frozen
class Outcome:
    status: int
    stdout: str
    stderr: str
    seconds: float


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def ring(_signum: int, _frame: object) -> None:
        raise Hang()

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 30.0) -> Outcome:
    """`vmactors ARGS` in this process, in `cwd`; a Finding for an exception, a hang."""
    from vmactors.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    t0 = time.perf_counter()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _alarm(timeout):
            try:
                status = main(list(args))
            except SystemExit as e:  # argparse
                status = e.code if isinstance(e.code, int) else 2
    except Hang:
        raise Finding(f"vmactors {' '.join(args)}: no answer after {timeout} s") from None
    except Exception as e:  # noqa: BLE001 - what a user would see as a traceback
        raise Finding(f"vmactors {' '.join(args)}: {type(e).__name__}: {e}") from e
    finally:
        os.chdir(old)
    outcome = Outcome(status, out.getvalue(), err.getvalue(), time.perf_counter() - t0)
    _judge(args, outcome)
    return outcome


def _judge(args: Sequence[str], o: Outcome) -> None:
    command = args[0]
    allowed = {"run": {0, 1, 2}, "replay": {0, 1, 2}, "inspect": {0, 2}}[command]
    if o.status not in allowed:
        raise Finding(f"vmactors {' '.join(args)}: exit status {o.status} (stderr: {o.stderr!r})")
    if o.status == 2:
        if o.stderr.count("\n") != 1 or not o.stderr.endswith("\n"):
            raise Finding(f"vmactors {' '.join(args)}: the error is not one line: {o.stderr!r}")
        if "internal error" in o.stderr or "out of memory" in o.stderr or "Traceback" in o.stderr:
            raise Finding(f"vmactors {' '.join(args)}: {o.stderr.strip()}")
    elif "Traceback" in o.stderr:
        raise Finding(f"vmactors {' '.join(args)}: a traceback on stderr: {o.stderr[-500:]!r}")


def check_scenario(data: bytes, folder: Path) -> Outcome:
    """A scenario file: `vmactors run` (the direct driver, a short step bound)."""
    (folder / "s.toml").write_bytes(data)
    return run_cli(["run", "s.toml", "--runtime", "direct", "--max-steps", "300"], folder)


def check_log(data: bytes, view: Sequence[str], folder: Path) -> Outcome:
    """A log: `vmactors inspect` with one of its views."""
    (folder / "log.jsonl").write_bytes(data)
    return run_cli(["inspect", "log.jsonl", *view], folder)


def check_replay(data: bytes, folder: Path, scenario: str = REPLAY_SCENARIO) -> Outcome:
    """A replay file beside the scenario it names (`s.toml`)."""
    (folder / "s.toml").write_text(scenario)
    (folder / "cx.json").write_bytes(data)
    return run_cli(["replay", "cx.json", "--runtime", "direct"], folder)


#: kind -> (file suffix, checker taking (bytes, folder)) for the corpus.
def check_corpus_file(path: Path, folder: Path) -> Outcome:
    """Replay one corpus file by the folder it is in (scenario/, log/, replay/); a log
    file's first line may be `#inspect ARGS` to choose the view."""
    kind = path.parent.name
    data = path.read_bytes()
    if kind == "scenario":
        return check_scenario(data, folder)
    if kind == "replay":
        return check_replay(data, folder)
    view: list[str] = []
    if data.startswith(b"#inspect"):
        first, _, data = data.partition(b"\n")
        view = first.decode().split()[1:]
    return check_log(data, view, folder)
