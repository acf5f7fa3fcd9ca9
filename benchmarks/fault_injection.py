"""Fault injection: SIGINT and SIGTERM at random moments into real commands.

For each case (a command line) and each signal, `--trials` times (20 by default): start
the command in a process group of its own, wait a random time (uniform in the case's
window, seeded), send the signal to the command's main process, and check what a user
would see (docs/reliability.md):

- **status**: the documented exit status (130 for SIGINT, 143 for SIGTERM; `explore`:
  1, docs/design.md#commands, or 130/143 when the signal lands outside its search), or
  0/1 when the command finished before the signal; a signal in the first milliseconds,
  before Python runs any of vmactors, kills the process by its default action (the
  same 130/143 for a shell);
- **traceback**: no Python traceback (nor "Exception ignored") on stderr;
- **stderr**: one line (the interruption) when interrupted;
- **leftovers**: no temporary file (`*.tmp`) and nothing unexpected in the folder;
- **orphans**: no process of its group alive once it exited (workers included);
- **valid log** (run): the log is whole JSON lines from `run.start` to one `run.end`
  (`interrupted` when interrupted), or absent when nothing was written;
- **valid replay files** (explore, check): every replay file saved parses.

    .venv/bin/python benchmarks/fault_injection.py                # every case, 20 trials
    .venv/bin/python benchmarks/fault_injection.py --trials 3 --only run --only inspect
    .venv/bin/python benchmarks/fault_injection.py --json results.json

Prints one row per case and signal, then the totals; exits 1 if any trial failed a
check. Takes about 10 minutes with the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import machine  # noqa: E402

LONG_RUN_LOADS = 3000


def long_scenario(loads: int = LONG_RUN_LOADS) -> str:
    """Three CPUs, thousands of loads, a munmap and an mmap: a run of about 4 s."""
    ops = ", ".join(f'"r{i} = load A+{8 * (i % 500)}"' for i in range(loads))
    return (f'name = "long"\n[[map]]\nname = "A"\npages = 4\nprefault = [0, 1]\n'
            f'[[thread]]\nops = [{ops}]\n[[thread]]\nops = [{ops}]\n'
            f'[[thread]]\nops = ["munmap A", "A2 = mmap 2", "store A2 5", {ops}]\n')


#: Three readers and a MAP_FIXED writer: an exhaustive search of over a minute.
SLOW = """name = "slow"
exists = "0:r0 = 2"
[[map]]
name = "A"
kind = "file"
file = "f1"
fill = 1
prefault = [0, 1, 2]
[[map]]
name = "B"
[[thread]]
ops = ["r0 = load A", "r1 = load B"]
[[thread]]
ops = ["r0 = load A", "r1 = load B"]
[[thread]]
ops = ["r0 = load A", "r1 = load B"]
[[thread]]
ops = ["mmap A fixed kind=file file=f2 fill=2"]
[expect]
pervma = "sometimes"
"""


def prepare(folder: Path) -> None:
    """The inputs every trial copies: the scenarios and a long log for inspect."""
    (folder / "long.toml").write_text(long_scenario())
    (folder / "slow.toml").write_text(SLOW)
    subprocess.run([sys.executable, "-m", "vmactors", "run", "long.toml", "--log", "long.jsonl",
                    "--runtime", "direct"], cwd=folder, check=True, stdout=subprocess.DEVNULL)


#: name -> (arguments, (earliest, latest) signal time in s, interrupted status or None for 130/143, outputs)
CASES: dict[str, tuple[list[str], tuple[float, float], int | None]] = {
    "run": (["run", "long.toml", "--log", "run.jsonl"], (0.3, 3.0), None),
    "explore": (["explore", "slow.toml", "--policy", "pervma"], (0.5, 4.0), 1),
    "explore --jobs 2": (["explore", "slow.toml", "--all-policies", "--jobs", "2"], (0.5, 4.0), 1),
    "explore random --jobs 2": (["explore", "mapfixed-two-readers", "--all-policies", "--strategy", "random",
                                 "--runs", "1000000", "--jobs", "2"], (0.5, 4.0), 1),
    "check": (["check", "slow.toml"], (0.5, 4.0), None),
    "inspect": (["inspect", "long.jsonl", "--timeline"], (0.2, 2.0), None),
}
INPUTS = ("long.toml", "slow.toml", "long.jsonl")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_log(path: Path) -> str:
    """'' if the log at `path` is a valid JSON Lines prefix ended by one run.end."""
    if not path.exists():
        return ""  # nothing was written: no log at all is correct
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        return "log does not end with a newline"
    try:
        events = [json.loads(line) for line in data.splitlines()]
    except ValueError as e:
        return f"log line is not JSON: {e}"
    if events[0].get("event") != "run.start":
        return "log does not start with run.start"
    names = [e.get("event") for e in events]
    if names[-1] != "run.end" or names.count("run.end") != 1:
        return "log does not end with exactly one run.end"
    return ""


def trial(case: str, sig: signal.Signals, delay: float, base: Path, work: Path) -> dict[str, Any]:
    args, _window, explore_status = CASES[case]
    for name in INPUTS:
        shutil.copy(base / name, work / name)
    before = {p.name for p in work.iterdir()}
    out = open(work / "stdout.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "vmactors", *args], cwd=work, stdout=out,
                            stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(delay)
    finished_first = proc.poll() is not None
    if not finished_first:
        proc.send_signal(sig)
    try:
        _, err_bytes = proc.communicate(timeout=60)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err_bytes = proc.communicate()
        hung = True
    out.close()
    time.sleep(0.2)  # workers get their PR_SET_PDEATHSIG signal
    orphans = _group_alive(proc.pid)
    if orphans:
        os.killpg(proc.pid, signal.SIGKILL)
    err = err_bytes.decode("utf-8", "replace")
    status = proc.returncode
    # Interrupted: 128 + the signal number; `explore` documents 1, and gives 130/143
    # when the signal lands outside its search (the worker pool starting). A signal in
    # the first milliseconds, before Python has started, kills with the signal's own
    # default action: -N here, and the same 128 + N for a shell.
    want = {0, 1} if finished_first else {128 + sig, -sig}
    if not finished_first and explore_status is not None:
        want |= {explore_status}
    after = {p.name for p in work.iterdir()} - before - {"stdout.txt"}
    expected = {"run.jsonl", "vmactors-runs"}
    leftovers = sorted(n for n in after if n.endswith(".tmp") or n not in expected)
    saved = work / "vmactors-runs"
    if saved.is_dir():
        leftovers += [f"vmactors-runs/{p.name}" for p in saved.iterdir() if p.name.endswith(".tmp")]
    bad_replays = []
    if saved.is_dir():
        for p in saved.glob("*.json"):
            try:
                json.loads(p.read_text())
            except ValueError:
                bad_replays.append(p.name)
    log_problem = check_log(work / "run.jsonl") if case == "run" else ""
    result = {
        "case": case, "signal": sig.name, "delay": round(delay, 3), "status": status,
        "finished_first": finished_first, "hung": hung,
        "status_ok": status in want,
        "traceback": "Traceback" in err or "Exception ignored" in err,
        "before_start": status == -sig,
        "stderr_lines": err.count("\n"),
        "leftovers": leftovers, "orphans": orphans,
        "log_problem": log_problem, "log_present": (work / "run.jsonl").exists() if case == "run" else None,
        "bad_replays": bad_replays,
    }
    result["ok"] = (result["status_ok"] and not result["traceback"] and not hung and not leftovers
                    and not orphans and not log_problem and not bad_replays
                    and (finished_first or result["stderr_lines"] == 1 or result["before_start"]
                         or case.startswith("explore")))
    if not result["ok"]:
        result["stderr"] = err[-2000:]
    for p in list(work.iterdir()):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20, help="trials per case and signal (default: 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the signal times (default: 0)")
    ap.add_argument("--only", action="append", choices=list(CASES), help="a case to run; repeat (default: all)")
    ap.add_argument("--json", metavar="FILE", help="also write every trial as JSON to FILE")
    args = ap.parse_args(argv)
    print(machine())
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vmactors-faults-") as tmp:
        base, work = Path(tmp) / "base", Path(tmp) / "work"
        base.mkdir()
        work.mkdir()
        prepare(base)
        print(f"{'case':<26} {'signal':<8} {'trials':>6} {'before':>6} {'status':>6} {'trace':>6} "
              f"{'files':>6} {'orphan':>6} {'log':>6} {'ok':>6}")
        for case in args.only or list(CASES):
            lo, hi = CASES[case][1]
            for sig in (signal.SIGINT, signal.SIGTERM):
                rows = [trial(case, sig, rng.uniform(lo, hi), base, work) for _ in range(args.trials)]
                results += rows

                def count(pred: Callable[[dict[str, Any]], bool]) -> int:
                    return sum(1 for r in rows if pred(r))

                print(f"{case:<26} {sig.name:<8} {len(rows):>6} {count(lambda r: r['finished_first']):>6} "
                      f"{count(lambda r: not r['status_ok']):>6} {count(lambda r: r['traceback']):>6} "
                      f"{count(lambda r: bool(r['leftovers'])):>6} {count(lambda r: r['orphans']):>6} "
                      f"{count(lambda r: bool(r['log_problem'])):>6} {count(lambda r: r['ok']):>6}", flush=True)
                for r in rows:
                    if not r["ok"]:
                        print(f"    failed: {json.dumps({k: v for k, v in r.items() if k != 'stderr'})}")
                        print("      " + r.get("stderr", "").strip().replace("\n", "\n      ")[-600:])
    total = len(results)
    failed = [r for r in results if not r["ok"]]
    logs = [r for r in results if r["case"] == "run"]
    print(f"\n{total} trials: {sum(r['traceback'] for r in results)} tracebacks, "
          f"{sum(bool(r['leftovers']) for r in results)} with leftover files, "
          f"{sum(r['orphans'] for r in results)} with orphan processes, "
          f"{sum(not r['status_ok'] for r in results)} with another exit status "
          f"({sum(r['before_start'] for r in results)} killed before Python started), "
          f"{len(logs) - sum(bool(r['log_problem']) for r in logs)}/{len(logs)} valid logs "
          f"({sum(1 for r in logs if r['log_present'])} present); {total - len(failed)} handled")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
