"""The `vmactors` command line (DESIGN §7). Thin: parse, call the library, print.

Exit status: 2 on bad input or usage for every command; see each command's help.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence


from .errors import UsageError
from .policies import ABLATIONS, MAIN_POLICIES, POLICY_NAMES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own exit status for usage errors is already 2; keep it one line.
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _positive(text: str) -> int:
    n = _int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return n


def _policy(text: str) -> str:
    if text not in POLICY_NAMES:
        raise argparse.ArgumentTypeError(f"unknown policy {text!r} (known: {', '.join(POLICY_NAMES)})")
    return text


def _runtime_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=("trio", "direct"), default="trio",
                   help="trio: one Trio task per actor, messages over Trio channels (default); "
                        "direct: the pure step relation in a loop (faster, the same log)")


RUN_EPILOG = """examples:
  vmactors run scenarios/mapfixed-two-readers.toml --policy wilcox --seed 3
  vmactors run scenarios/munmap-concurrent-fault.toml --log run.jsonl
exit status: 0 clean run; 1 an invariant was violated, deadlock or step limit; 2 bad input"""

EXPLORE_EPILOG = """examples:
  vmactors explore scenarios/mapfixed-two-readers.toml --all-policies
  vmactors explore scenarios/mapfixed-two-readers.toml --policy wilcox --json
  vmactors explore big.toml --strategy pct --runs 5000 --depth 3 --jobs 2
exit status: 0 when it finished, whatever it found; 1 if interrupted; 2 bad input"""

REPLAY_EPILOG = """examples:
  vmactors replay vmactors-runs/mapfixed-two-readers.wilcox.coherence.json --log cx.jsonl
exit status as for `run`; a scenario changed since the replay was saved is refused (2) unless --force"""

CHECK_EPILOG = """examples:
  vmactors check                 # every scenarios/*.toml
  vmactors check scenarios/mapfixed-two-readers.toml
exit status: 0 all as expected; 1 a mismatch or an incomplete exploration; 2 bad input"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vmactors",
        description="Run the Linux mmap_sem-splitting designs (mmap_sem, wilcox, glisse, pervma) on small "
        "scenarios, explore their interleavings, and see which outcomes and invariant violations each allows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run `vmactors COMMAND --help` for a command's options and examples",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="one run: final registers, exists, invariant verdicts",
                       epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", metavar="SCENARIO")
    p.add_argument("--policy", type=_policy, default="mmap_sem")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--log", metavar="FILE")
    p.add_argument("--max-steps", type=_positive, default=100_000)
    _runtime_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("explore", help="every (or sampled) interleaving: outcome table, violations, counterexamples",
                       epilog=EXPLORE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", metavar="SCENARIO")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--policy", type=_policy, action="append", dest="policies", metavar="P")
    g.add_argument("--all-policies", action="store_true")
    p.add_argument("--strategy", choices=("random", "pct", "exhaustive"), default="exhaustive")
    p.add_argument("--runs", type=_positive, default=1000)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--depth", type=_positive, default=3)
    p.add_argument("--max-states", type=_positive, default=200_000)
    p.add_argument("--max-steps", type=_positive, default=100_000)
    p.add_argument("--jobs", type=_positive, default=1)
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", metavar="DIR", default="vmactors-runs")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("replay", help="re-run a saved run exactly",
                       epilog=REPLAY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--log", metavar="FILE")
    p.add_argument("--force", action="store_true")
    _runtime_option(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("check", help="check scenarios' [expect] tables by exhaustive exploration",
                       epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", default=["scenarios"])
    p.add_argument("--max-states", type=_positive, default=200_000)
    p.set_defaults(func=cmd_check)

    try:
        from .inspect.command import register
    except ImportError:  # pragma: no cover
        pass
    else:
        register(sub)

    p = sub.add_parser("matrix", help="scenario x policy table of exists verdicts and violated invariants",
                       epilog="""examples:
  vmactors matrix                       # every scenarios/*.toml under the four main policies
  vmactors matrix scenarios/ --markdown --jobs 2
  vmactors matrix scenarios/munmap-zero-entry.toml --policy wilcox --policy wilcox-no-zero""",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", default=["scenarios"])
    p.add_argument("--policy", type=_policy, action="append", dest="policies", metavar="P")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--jobs", type=_positive, default=1)
    p.add_argument("--max-states", type=_positive, default=200_000)
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("policies", help="each policy and ablation with what it models",
                       epilog="""examples:
  vmactors policies                 # one line per policy and ablation
  vmactors policies --protocols     # each policy's fault and syscall protocols, step by step
  vmactors policies --markdown      # the same as Markdown tables, as in docs/policies/
  vmactors policies --protocols --policy wilcox-early-return""",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocols", action="store_true",
                   help="also print each policy's protocols: every step, the steps it may hand over to, the "
                        "messages it sends and the shared objects it touches (the tables the code dispatches on)")
    p.add_argument("--markdown", action="store_true",
                   help="print only the protocol tables, as Markdown (as docs/policies/*.md embed them)")
    p.add_argument("--policy", type=_policy, action="append", dest="policies", metavar="P",
                   help="the policies whose protocols to print (repeatable; default: the four main ones)")
    p.set_defaults(func=cmd_policies)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vmactors inspect … | head`
        return 0
    return int(status)


# --- commands ---------------------------------------------------------------------


def _write_log_atomically(path: str | None):  # type: ignore[no-untyped-def]
    """A log file that appears only if the run completes (nothing written on error)."""
    from contextlib import contextmanager

    @contextmanager
    def cm():  # type: ignore[no-untyped-def]
        if path is None:
            yield None
            return
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            f = open(tmp, "wb")
        except OSError as e:
            raise UsageError(f"cannot write log {path}: {e.strerror}") from None
        try:
            with f:
                yield f
            tmp.replace(target)
        finally:
            if tmp.exists():
                tmp.unlink()

    return cm()


def _print_run(result, scenario) -> None:  # type: ignore[no-untyped-def]
    from .explore.results import _fmt_value

    print(f"{scenario.name}: {result.outcome} after {result.steps} steps")
    for k, v in result.regs.items():
        print(f"  {k} = {_fmt_value(v)}")
    if scenario.exists_text is not None:
        print(f"exists ({scenario.exists_text}): {'true' if result.exists else 'false'}")
    if result.violations:
        for v in result.first_violations:
            print(f"violated {v.invariant}: {v.detail}")
    else:
        print("invariants: all held")
    if result.waiting:
        for actor, what in result.waiting.items():
            print(f"  {actor} waits for {what}")


def _run(runtime: str, scenario, policy, strategy, seed, log, max_steps):  # type: ignore[no-untyped-def]
    """One run with the chosen runtime: Trio tasks (the default) or the direct driver."""
    if runtime == "direct":
        from .sim.run import Run

        return Run(scenario, policy, strategy, seed, log, max_steps).run()
    from .sim.trio_runtime import run_with_trio

    return run_with_trio(scenario, policy, strategy, seed, log, max_steps)


def cmd_run(args: argparse.Namespace) -> int:
    from .scenario.parse import load_scenario
    from .sim.strategies import make

    scenario = load_scenario(args.scenario)
    with _write_log_atomically(args.log) as log:
        result = _run(args.runtime, scenario, args.policy, make("random", args.seed), args.seed, log, args.max_steps)
    _print_run(result, scenario)
    return 0 if result.outcome == "ok" else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from .explore.replay_file import read_replay
    from .scenario.parse import load_scenario
    from .sim.strategies import make

    doc = read_replay(args.file)
    if not doc["sha_ok"] and not args.force:
        raise UsageError(f"{args.file}: scenario {doc['scenario']} changed since this run was saved "
                         f"(sha256 differs); use --force to replay it anyway")
    scenario = load_scenario(doc["scenario"])
    if doc["policy"] not in POLICY_NAMES:
        raise UsageError(f"{args.file}: unknown policy {doc['policy']!r}")
    max_steps = max(100_000, len(doc["choices"]))
    with _write_log_atomically(args.log) as log:
        try:
            result = _run(args.runtime, scenario, doc["policy"], make("replay", 0, choices=doc["choices"]), 0, log,
                          max_steps)
        except ValueError as e:
            raise UsageError(f"{args.file}: {e}") from None
    _print_run(result, scenario)
    return 0 if result.outcome == "ok" else 1


def cmd_explore(args: argparse.Namespace) -> int:
    from .explore.results import render_table
    from .explore.runner import ExploreOptions, explore, stderr_is_tty
    from .scenario.parse import load_scenario

    scenario = load_scenario(args.scenario)
    policies = list(MAIN_POLICIES) if args.all_policies else (args.policies or ["mmap_sem"])
    opts = ExploreOptions(strategy=args.strategy, runs=args.runs, seed=args.seed, depth=args.depth,
                          max_states=args.max_states, max_steps=args.max_steps, jobs=args.jobs,
                          save=Path(args.save), progress=stderr_is_tty())
    explorations, interrupted = explore(scenario, policies, opts)
    if args.json:
        docs = [e.to_json() for e in explorations]
        out = docs[0] if len(policies) == 1 and docs else docs
        # The standard json module: interleaving counts are exact and may exceed 64 bits.
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        print("\n\n".join(render_table(e) for e in explorations))
        if len(explorations) > 1:
            print()
            print(comparison(explorations))
    return 1 if interrupted else 0


def comparison(explorations) -> str:  # type: ignore[no-untyped-def]
    """One line per policy: exists verdict and violations."""
    lines = ["Comparison:", f"  {'policy':<28} {'exists':<10} {'complete':<9} violations"]
    for e in explorations:
        v = ", ".join(f"{f.invariant} ({f.runs:,})" for f in e.findings) or "none"
        lines.append(f"  {e.policy:<28} {str(e.exists or '-'):<10} {str(e.complete).lower():<9} {v}")
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    from .explore.check import check

    return check(args.paths, sys.stdout, max_states=args.max_states)


def cmd_matrix(args: argparse.Namespace) -> int:
    from .explore.check import scenario_files
    from .explore.matrix import matrix
    from .explore.runner import ProgressBar, stderr_is_tty

    policies = args.policies or list(MAIN_POLICIES)
    cells = len(scenario_files(args.paths)) * len(policies)
    with ProgressBar(stderr_is_tty()) as bar:
        advance = bar.task("scenario x policy", cells)
        table = matrix(args.paths, policies, jobs=args.jobs, markdown=args.markdown, max_states=args.max_states,
                       progress=lambda: advance(advance=1))
    print(table)
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    from .policies.registry import POLICIES
    from .policies.render import protocol_tables

    chosen = args.policies or list(MAIN_POLICIES)
    if args.markdown:  # the tables only, as docs/policies/*.md embed them
        print("\n\n".join(protocol_tables(name, POLICIES[name].protocol, markdown=True) for name in chosen))
        return 0
    print("policies:")
    for name in MAIN_POLICIES:
        print(f"  {name:<28} {POLICIES[name].summary}")
    print("ablations (each removes one safeguard):")
    for name in ABLATIONS:
        print(f"  {name:<28} {POLICIES[name].summary}")
    if args.protocols:
        for name in chosen:
            print()
            print(protocol_tables(name, POLICIES[name].protocol))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
