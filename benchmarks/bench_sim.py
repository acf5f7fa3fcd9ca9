"""Simulator speed (docs/design.md#performance-goals): actor steps per second with the JSONL log written to
a file, against raw Trio memory-channel round trips per second in the same process.
Goal: ratio >= 0.5.

Runs the library scenarios plus two small inline ones under the four main policies,
random strategy, seeds 0, 1, 2, … round-robin, for a fixed time per mode; each mode is
measured `--repeat` times and the best rate kept (the machine may be shared).

    .venv/bin/python benchmarks/bench_sim.py [--seconds 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import trio

from _common import MAIN_POLICIES, inline, library, machine, table, verdict

from vmactors.sim.run import Run
from vmactors.sim.strategies import make
from vmactors.sim.trio_runtime import run_trio

EXTRA = [
    inline("""
name = "munmap-with-reader"
[[map]]
name = "A"
fill = 1
prefault = [1]
[[thread]]
ops = ["munmap A"]
[[thread]]
ops = ["r0 = load A", "r1 = load A"]
""", "munmap-with-reader"),
    inline("""
name = "mmap-store-load"
[[map]]
name = "A"
fill = 1
[[thread]]
ops = ["B = mmap 2", "store B 3", "r0 = load B", "munmap B"]
[[thread]]
ops = ["store A 2", "r1 = load A"]
[[thread]]
ops = ["r2 = load A", "mprotect A prot=r"]
""", "mmap-store-load"),
]


#: Log files go here; removed when the script exits.
_TMP = tempfile.TemporaryDirectory(prefix="vmactors-bench-")


def workload() -> list:
    return [(s, p) for s in library() + EXTRA for p in MAIN_POLICIES]


def direct(work, seconds: float, log_mode: str) -> tuple[int, int, float]:
    """log_mode: none | file (one open file, runs appended) | per-run (a fresh file per run)."""
    folder = _TMP.name
    shared = open(os.path.join(folder, "all.jsonl"), "wb") if log_mode == "file" else None

    def one(i: int) -> int:
        s, p = work[i % len(work)]
        seed = i // len(work)
        if log_mode == "per-run":
            with open(os.path.join(folder, "run.jsonl"), "wb") as f:
                return Run(s, p, make("random", seed), seed, f).run().steps
        return Run(s, p, make("random", seed), seed, shared).run().steps

    t = time.perf_counter()
    calls = steps = 0
    while time.perf_counter() - t < seconds:
        steps += one(calls)
        calls += 1
    el = time.perf_counter() - t
    if shared is not None:
        shared.close()
    return calls, steps, el


def trio_runtime(work, seconds: float) -> tuple[int, int, float]:
    async def main() -> tuple[int, int, float]:
        with open(os.path.join(_TMP.name, "trio.jsonl"), "wb") as f:
            t = time.perf_counter()
            calls = steps = 0
            while time.perf_counter() - t < seconds:
                s, p = work[calls % len(work)]
                seed = calls // len(work)
                steps += (await run_trio(s, p, make("random", seed), seed, f)).steps
                calls += 1
            return calls, steps, time.perf_counter() - t

    return trio.run(main)


def ping_pong(seconds: float) -> tuple[int, float]:
    """Round trips between two tasks over unbuffered memory channels."""

    async def main() -> tuple[int, float]:
        to_echo, echo_in = trio.open_memory_channel[int](0)
        to_main, main_in = trio.open_memory_channel[int](0)

        async def echo() -> None:
            async with echo_in, to_main:
                async for x in echo_in:
                    await to_main.send(x)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            n = 0
            t = time.perf_counter()
            while True:
                for _ in range(1000):
                    await to_echo.send(n)
                    await main_in.receive()
                n += 1000
                el = time.perf_counter() - t
                if el >= seconds:
                    break
            await to_echo.aclose()
        return n, el

    return trio.run(main)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="per mode and repeat (default 3)")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per mode; the best is kept (default 3)")
    args = ap.parse_args()
    work = workload()
    print(f"bench_sim  {machine()}")
    print(f"workload: {len(work) // len(MAIN_POLICIES)} scenarios x {len(MAIN_POLICIES)} policies, random strategy, "
          f"{args.seconds:g} s per measurement, best of {args.repeat}\n")

    best: dict[str, tuple[int, int, float]] = {}
    rt_best = 0.0
    modes = {
        "direct, log to a file": lambda: direct(work, args.seconds, "file"),
        "direct, log to a fresh file per run": lambda: direct(work, args.seconds, "per-run"),
        "direct, no log": lambda: direct(work, args.seconds, "none"),
        "Trio runtime, log to a file": lambda: trio_runtime(work, args.seconds),
    }
    for _ in range(args.repeat):  # interleave modes so a busy spell hits all of them
        for name, fn in modes.items():
            calls, steps, el = fn()
            if name not in best or steps / el > best[name][1] / best[name][2]:
                best[name] = (calls, steps, el)
        n, el = ping_pong(args.seconds)
        rt_best = max(rt_best, n / el)

    rows = []
    for name, (calls, steps, el) in best.items():
        rate = steps / el
        rows.append((name, calls, steps, rate, 1e6 / rate, rate / rt_best))
    rows.append(("raw Trio memory-channel round trips", "", "", rt_best, 1e6 / rt_best, 1.0))
    print(table(("mode", "runs", "steps", "steps/s", "us/step", "ratio to Trio"), rows))
    ratio = best["direct, log to a file"][1] / best["direct, log to a file"][2] / rt_best
    print(f"\nsteps/s with the log to a file / Trio round trips/s = {ratio:.3f}  "
          f"(goal >= 0.5: {verdict(ratio >= 0.5)})")


if __name__ == "__main__":
    main()
