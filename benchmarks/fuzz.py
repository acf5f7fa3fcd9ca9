"""A long fuzz of every input kind, reporting inputs per second and findings.

The same strategies and checks as tests/fuzz (a short run of them is in CI), run for
`--seconds` per kind with fresh random examples: scenario files (generated from the
format, and library scenarios cut and spliced), `exists` clauses, logs under every
`inspect` view, replay files. A finding is an input that got a traceback, a hang, an
exit status outside the documented ones, or an error of more than one line; each
distinct one is printed and, with `--save`, written to tests/fuzz/corpus/KIND/ so the
test-suite replays it from then on.

    .venv/bin/python benchmarks/fuzz.py                      # 60 s per kind
    .venv/bin/python benchmarks/fuzz.py --seconds 600 --save
    .venv/bin/python benchmarks/fuzz.py --engine atheris --seconds 300   # coverage-guided, scenario bytes

`--engine atheris` (if the `atheris` package is installed: `pip install -e .[fuzz]`)
fuzzes the raw bytes of a scenario file with libFuzzer's coverage-guided mutations,
starting from the library; it runs in a process of its own per kind.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _common import machine  # noqa: E402

from fuzz.harness import REPLAY_SCENARIO, Finding, check_log, check_replay, check_scenario  # noqa: E402
from fuzz.strategies import (INSPECT_VIEWS, exists_texts, log_texts, mutated_texts, replay_texts,  # noqa: E402
                             scenario_texts)

CORPUS = ROOT / "tests" / "fuzz" / "corpus"
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))


def _exists_scenario(clause: str) -> bytes:
    import json

    return (f'name = "e"\nexists = {json.dumps(clause)}\n[[map]]\nname = "A"\n'
            f'[[thread]]\nops = ["r0 = load A", "r1 = load A"]\n[[thread]]\nops = ["r0 = load A"]\n').encode()


def kinds() -> dict[str, tuple[str, Any, Callable[[Any, Path], Any]]]:
    """name -> (corpus folder, strategy, check(example, folder))."""
    from hypothesis import strategies as st

    library = st.sampled_from(LIBRARY).flatmap(lambda p: mutated_texts(p.read_text()))
    return {
        "scenario": ("scenario", scenario_texts(),
                     lambda t, d: check_scenario(t.encode("utf-8", "surrogateescape"), d)),
        "scenario-mutated": ("scenario", library, lambda t, d: check_scenario(t.encode("utf-8", "surrogateescape"), d)),
        "exists": ("scenario", exists_texts(), lambda c, d: check_scenario(_exists_scenario(c), d)),
        "log": ("log", st.tuples(log_texts(), st.sampled_from(INSPECT_VIEWS)),
                lambda x, d: check_log(x[0], x[1], d)),
        "replay": ("replay", replay_texts(REPLAY_SCENARIO), lambda b, d: check_replay(b, d)),
    }


def _as_bytes(kind: str, example: Any) -> bytes:
    if kind == "log":
        data, view = example
        return (b"#inspect " + " ".join(view).encode() + b"\n" + data) if view else data
    if kind == "exists":
        return _exists_scenario(example)
    if isinstance(example, str):
        return example.encode("utf-8", "surrogateescape")
    return bytes(example)


def fuzz_kind(kind: str, seconds: float, seed: int, save: bool) -> dict[str, Any]:
    """Run one kind for `seconds`: inputs, inputs/s, distinct findings."""
    from hypothesis import HealthCheck, Phase, given, seed as hseed, settings

    folder_name, strategy, check = kinds()[kind]
    findings: dict[str, bytes] = {}
    count = 0
    deadline = time.monotonic() + seconds
    batch = 0
    t0 = time.perf_counter()
    while time.monotonic() < deadline:
        @hseed(seed * 1000 + batch)
        @settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(example: Any) -> None:
            nonlocal count
            if time.monotonic() >= deadline:
                return
            count += 1
            with tempfile.TemporaryDirectory(prefix="vmactors-fuzz-") as d:
                try:
                    check(example, Path(d))
                except Finding as f:
                    key = str(f).split("\n")[0][:200]
                    if key not in findings:
                        findings[key] = _as_bytes(kind, example)
                        print(f"  finding ({kind}): {key}", flush=True)

        one()
        batch += 1
    elapsed = time.perf_counter() - t0
    if save:
        for key, data in findings.items():
            suffix = {"scenario": ".toml", "log": ".jsonl", "replay": ".json"}[folder_name]
            name = hashlib.sha256(data).hexdigest()[:12] + suffix
            (CORPUS / folder_name).mkdir(parents=True, exist_ok=True)
            (CORPUS / folder_name / name).write_bytes(data)
    return {"kind": kind, "inputs": count, "seconds": elapsed, "per_s": count / elapsed if elapsed else 0.0,
            "findings": list(findings)}


def run_atheris(seconds: float, save: bool) -> int:
    """Coverage-guided fuzzing of scenario bytes with atheris (libFuzzer)."""
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install -e '.[fuzz]'); use the default engine", file=sys.stderr)
        return 2
    import vmactors.cli  # noqa: F401 - everything a scenario goes through, loaded ...
    import vmactors.scenario.parse  # noqa: F401
    import vmactors.sim.run  # noqa: F401

    atheris.instrument_all()  # ... then instrumented for coverage (already-imported code included)
    seeds = Path(tempfile.mkdtemp(prefix="vmactors-atheris-seeds-"))
    for p in LIBRARY:
        (seeds / p.name).write_bytes(p.read_bytes())
    for p in (CORPUS / "scenario").glob("*"):
        (seeds / p.name).write_bytes(p.read_bytes())
    stats = {"inputs": 0, "findings": 0, "t0": time.perf_counter()}
    work = Path(tempfile.mkdtemp(prefix="vmactors-atheris-"))

    def one_input(data: bytes) -> None:
        stats["inputs"] += 1
        try:
            check_scenario(data, work)
        except Finding as f:
            stats["findings"] += 1
            print(f"  finding (scenario bytes): {str(f).splitlines()[0][:200]}", flush=True)
            if save:
                (CORPUS / "scenario" / (hashlib.sha256(data).hexdigest()[:12] + ".toml")).write_bytes(data)

    import atexit

    def report() -> None:
        elapsed = time.perf_counter() - stats["t0"]
        print(f"atheris: {stats['inputs']} inputs in {elapsed:.0f} s, {stats['inputs'] / max(elapsed, 1e-9):.0f}/s, "
              f"{stats['findings']} findings", flush=True)

    atexit.register(report)
    atheris.Setup([sys.argv[0], f"-max_total_time={int(seconds)}", "-max_len=4096", str(seeds)], one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60, help="seconds per input kind (default: 60)")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="seed (default: the time)")
    ap.add_argument("--only", action="append", help="an input kind; repeat (default: all)")
    ap.add_argument("--save", action="store_true", help="write each distinct finding to tests/fuzz/corpus/")
    ap.add_argument("--engine", choices=("hypothesis", "atheris"), default="hypothesis")
    args = ap.parse_args(argv)
    print(machine())
    if args.engine == "atheris":
        return run_atheris(args.seconds, args.save)
    print(f"seed {args.seed}, {args.seconds:.0f} s per kind")
    rows = [fuzz_kind(k, args.seconds, args.seed, args.save) for k in (args.only or list(kinds()))]
    print(f"\n{'kind':<18} {'inputs':>8} {'inputs/s':>9} {'findings':>9}")
    for r in rows:
        print(f"{r['kind']:<18} {r['inputs']:>8} {r['per_s']:>9.1f} {len(r['findings']):>9}")
    total = sum(r["inputs"] for r in rows)
    found = sum(len(r["findings"]) for r in rows)
    print(f"{'all':<18} {total:>8} {total / sum(r['seconds'] for r in rows):>9.1f} {found:>9}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
