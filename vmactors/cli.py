"""The `vmactors` command line (docs/design.md#commands). Thin: parse, call the
library, print.

Each command is one `add_NAME(subparsers)` function that declares its options (every
one with a help text that states its default) and points at its `cmd_NAME(args)`;
`COMMANDS` lists them in the order `--help` shows them. To add a command, write the
pair and append the adder to `COMMANDS`.

Exit status: 2 on bad input or usage for every command (one line on stderr, never
argparse's usage block); see each command's help for the rest.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError
from .library import did_you_mean
from .log.sink import log_output
from .output import reason, silence_stdout, write_output
from .policies import ABLATIONS, MAIN_POLICIES, POLICY_NAMES
from .signals import find_interrupt, handle_signals, under_trio
from .version import __version__

DEFAULT_MAX_STEPS = 100_000
DEFAULT_MAX_STATES = 200_000
DEFAULT_SAVE = "vmactors-runs"
STRATEGIES = ("random", "pct", "exhaustive")


# --- parsing: one-line errors, with "did you mean" ---------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2), with the
    closest valid word where one is close."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = _suggest(message, self)
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<word>[^']*)' \(choose from (?P<choices>.*)\)")


def _suggest(message: str, parser: argparse.ArgumentParser) -> str:
    m = _INVALID_CHOICE.search(message)
    if m:
        choices = re.findall(r"'([^']*)'", m.group("choices"))
        return message + did_you_mean(m.group("word"), choices)
    if message.startswith("unrecognized arguments: "):
        # `parse` hands what a command did not take to that command's parser: offer its options.
        options = sorted({o for a in parser._actions for o in a.option_strings if o.startswith("--")})
        hints = [did_you_mean(w.split("=", 1)[0], options) for w in message.split(": ", 1)[1].split()
                 if w.startswith("-")]
        return message + next((h for h in hints if h), "")
    return message


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """`parser.parse_args`, except that words a command does not take are reported by
    that command's parser (`vmactors run: error: … --runs …`, its own options offered),
    not by the top-level one, which knows every command's options."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


class _Help(argparse.RawDescriptionHelpFormatter):
    """Examples and descriptions as written; option help wrapped as usual."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


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


def _seconds(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not n > 0 or n == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return n


def _cluster(text: str) -> str:
    if not re.fullmatch(r"(tcp|tls|ucx|inproc)://\S+", text):
        raise argparse.ArgumentTypeError(f"not a Dask scheduler address (tcp://HOST:PORT): {text!r}")
    return text


def _policy(text: str) -> str:
    if text not in POLICY_NAMES:
        raise argparse.ArgumentTypeError(f"unknown policy {text!r}{did_you_mean(text, POLICY_NAMES)} "
                                         f"(`vmactors policies` lists them)")
    return text


def _choice_list(text: str) -> tuple[int, ...]:
    words = [w for w in re.split(r"[,\s]+", text.strip().strip("[]")) if w]
    try:
        out = tuple(int(w, 10) for w in words)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of choices: {text!r}") from None
    if any(c < 0 for c in out):
        raise argparse.ArgumentTypeError(f"choices are non-negative: {text!r}")
    return out


def _sub(sub: Any, name: str, help: str, epilog: str, description: str | None = None) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:],
                                                epilog=epilog, formatter_class=_Help)
    return p


def _scenario_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", metavar="SCENARIO",
                   help="a scenario file, or the name of a library scenario (`mapfixed-two-readers`)")


def _runtime_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=("trio", "direct"), default="trio",
                   help="trio: one Trio task per actor, messages over Trio channels; direct: the pure step "
                        "relation in a loop (faster, the same log) (default: %(default)s)")


def _max_steps_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-steps", type=_positive, default=DEFAULT_MAX_STEPS, metavar="N",
                   help="a run that reaches N steps ends as `step-limit` (default: %(default)s)")


def _max_states_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-states", type=_positive, default=DEFAULT_MAX_STATES, metavar="N",
                   help="stop an exhaustive exploration after N distinct states; it is then reported "
                        "incomplete (default: %(default)s)")


def _search_options(p: argparse.ArgumentParser, each: str) -> None:
    """The options of exhaustive search shared by explore, check and matrix; `each`
    says what a limit applies to ("the search", "each search")."""
    p.add_argument("--time-limit", type=_seconds, metavar="SECONDS",
                   help=f"stop {each} after SECONDS of wall time; it is then reported incomplete, with what it "
                        f"found so far (default: no limit)")
    p.add_argument("--max-memory", type=_positive, metavar="MB",
                   help=f"stop {each} once a process of it holds more than MB MiB of resident memory; it is then "
                        f"reported incomplete (default: no limit)")
    p.add_argument("--no-reduction", action="store_true",
                   help="follow every interleaving: no partial-order and no symmetry reduction, so the counts are "
                        "exact interleaving counts (slower, far more states) (default: both reductions, counts "
                        "`reduced`)")
    p.add_argument("--no-symmetry", action="store_true",
                   help="no symmetry reduction over interchangeable CPUs; partial-order reduction stays on "
                        "(default: on)")
    p.add_argument("--cluster", type=_cluster, metavar="tcp://HOST:PORT",
                   help="run on the Dask cluster whose scheduler listens there (`dask scheduler`, then `dask worker "
                        "tcp://HOST:PORT` on each machine): exhaustive searches are sharded over its workers, "
                        "sampling batches, check cases and matrix cells run on them; needs the `distributed` "
                        "package (default: this machine only)")


def _exhaustive(args: argparse.Namespace) -> Any:
    """The search settings the options of `_search_options` ask for."""
    from .explore.parallel import Exhaustive
    from .explore.space import Options

    options = Options(reduction=not args.no_reduction, symmetry=not (args.no_reduction or args.no_symmetry))
    return Exhaustive(options, args.max_states, getattr(args, "max_steps", DEFAULT_MAX_STEPS), args.time_limit,
                      None if args.max_memory is None else args.max_memory * 2**20)


# --- the commands, in the order --help lists them ----------------------------------------


RUN_EPILOG = """examples:
  vmactors run mapfixed-two-readers --policy wilcox --seed 3
  vmactors run scenarios/munmap-concurrent-fault.toml --log run.jsonl
  vmactors run mapfixed-two-readers --policy wilcox --choices 0,0,2,1
exit status: 0 clean run; 1 an invariant was violated, deadlock or step limit; 2 bad input"""


def add_run(sub: Any) -> None:
    p = _sub(sub, "run", "one run: final registers, exists, invariant verdicts", RUN_EPILOG,
             "One run of a scenario under a policy, chosen by a seeded random scheduler or by a "
             "choice list. Prints the policy and seed, the final registers, the `exists` verdict, the "
             "invariants violated, and the command that replays the run.")
    _scenario_argument(p)
    p.add_argument("--policy", type=_policy, default="mmap_sem", metavar="P",
                   help="the locking design (`vmactors policies` lists them) (default: %(default)s)")
    p.add_argument("--seed", type=_int, metavar="N", help="seed of the random scheduler (default: 0)")
    p.add_argument("--choices", type=_choice_list, metavar="LIST",
                   help="run this choice list instead (`2,0,1`: the index of the step taken at each "
                        "scheduler decision among those enabled; after its end, choice 0); replaces --seed "
                        "(default: none)")
    p.add_argument("--log", metavar="FILE", help="write the run's JSON Lines log to FILE (default: no log)")
    _max_steps_option(p)
    _runtime_option(p)
    p.set_defaults(func=cmd_run)


EXPLORE_EPILOG = """examples:
  vmactors explore mapfixed-two-readers --all-policies
  vmactors explore scenarios/mapfixed-two-readers.toml --policy wilcox --json
  vmactors explore big.toml --strategy pct --runs 5000 --depth 3 --jobs 2
  vmactors explore big.toml --policy wilcox --jobs 2 --time-limit 600
  vmactors explore big.toml --policy pervma --cluster tcp://10.0.0.5:8786
  vmactors explore mapfixed-two-readers --policy wilcox --no-reduction    # exact interleaving counts
exit status: 0 when it finished, whatever it found, even cut by a limit (then it says
so); 1 if interrupted; 2 bad input"""


def add_explore(sub: Any) -> None:
    p = _sub(sub, "explore", "every (or sampled) interleaving: outcome table, violations, counterexamples",
             EXPLORE_EPILOG,
             "Explore a scenario's interleavings under one or more policies: a herd7-style table of final "
             "states with counts, the `exists` verdict, each violated invariant with its shortest "
             "counterexample (the run that violates it at the earliest step) saved as a replay file and "
             "drawn as a race chart.")
    _scenario_argument(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--policy", type=_policy, action="append", dest="policies", metavar="P",
                   help="a policy to explore under; repeat for several (default: mmap_sem)")
    g.add_argument("--all-policies", action="store_true",
                   help=f"explore under the four main policies, {', '.join(MAIN_POLICIES)}, and compare them "
                        f"(default: only the --policy ones)")
    p.add_argument("--strategy", choices=STRATEGIES, default="exhaustive",
                   help="exhaustive: every interleaving (a stateful search); random or pct: sample --runs "
                        "runs (default: %(default)s)")
    p.add_argument("--runs", type=_positive, metavar="N",
                   help="how many runs random and pct sample (default: 1000)")
    p.add_argument("--seed", type=_int, metavar="N", help="seed of random and pct sampling (default: 0)")
    p.add_argument("--depth", type=_positive, metavar="D",
                   help="pct's bug depth: D-1 priority change points per run (default: 3)")
    _max_states_option(p)
    _max_steps_option(p)
    p.add_argument("--jobs", type=_positive, default=1, metavar="N",
                   help="worker processes: one policy's exhaustive search sharded over N processes (the same "
                        "result as one); several policies side by side; sampling: batches of runs in parallel "
                        "(with --cluster: N shards per search) (default: %(default)s)")
    _search_options(p, "each exhaustive search")
    p.add_argument("--json", action="store_true",
                   help="print JSON instead of the table: one object for one policy, a list for several "
                        "(default: the table)")
    p.add_argument("--save", metavar="DIR", default=DEFAULT_SAVE,
                   help="where counterexamples are saved, one replay file per scenario, policy and "
                        "invariant, keeping the shortest (default: %(default)s)")
    p.add_argument("--no-trace", action="store_true",
                   help="do not draw the race chart of each shortest counterexample (default: draw it)")
    p.set_defaults(func=cmd_explore)


REPLAY_EPILOG = """examples:
  vmactors replay vmactors-runs/mapfixed-two-readers.wilcox.coherence.json --log cx.jsonl
exit status as for `run`; a scenario changed since the replay was saved is refused (2) unless --force"""


def add_replay(sub: Any) -> None:
    p = _sub(sub, "replay", "re-run a saved run exactly", REPLAY_EPILOG,
             "Re-run a saved run (a replay file that explore or check wrote) exactly: the same log every "
             "time, from any directory. The scenario is saved in the replay file; if the scenario file it "
             "names is there and has changed since, the replay is refused unless --force.")
    p.add_argument("file", metavar="FILE", help="a replay file, as `explore` and `check` save them")
    p.add_argument("--log", metavar="FILE", help="write the run's JSON Lines log to FILE (default: no log)")
    p.add_argument("--force", action="store_true",
                   help="replay even though the scenario changed since the run was saved: the scenario file "
                        "as it is now (default: refuse)")
    _runtime_option(p)
    p.set_defaults(func=cmd_replay)


CHECK_EPILOG = """examples:
  vmactors check                 # every scenarios/*.toml (or the installed library)
  vmactors check scenarios/mapfixed-two-readers.toml
  vmactors check scenarios/ --junit check.xml --jobs 2
  vmactors check scenarios/mapfixed-two-readers.toml --markdown   # as in docs/scenarios.md
  vmactors check scenarios/ --ablations --markdown   # what each ablation breaks where its policy is clean
  vmactors check scenarios/ --time-limit 60 --cluster tcp://10.0.0.5:8786
exit status: 0 all as expected; 1 a mismatch, or a search cut by --max-states, --time-limit or
--max-memory before it could say (INCOMPLETE); 2 bad input"""


def add_check(sub: Any) -> None:
    p = _sub(sub, "check", "check scenarios' [expect] tables by exhaustive exploration", CHECK_EPILOG,
             "Explore every scenario under every policy its [expect] table names and compare the `exists` "
             "verdict and the set of violated invariants; a result that was not expected gets a replay "
             "file. Expected violations are not failures.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="scenario files, folders of them, or library scenario names (default: scenarios/, "
                        "or the installed library where there is no scenarios/ folder)")
    _max_states_option(p)
    p.add_argument("--jobs", type=_positive, default=1, metavar="N",
                   help="worker processes: that many cases side by side, results in the same order "
                        "(default: %(default)s)")
    _search_options(p, "each search")
    p.add_argument("--save", metavar="DIR", default=DEFAULT_SAVE,
                   help="where replay files of unexpected results go (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text (default: text)")
    p.add_argument("--markdown", action="store_true",
                   help="print a Markdown table per scenario instead of text: policy, exists, violations, "
                        "interleavings, states, as docs/scenarios.md shows them (default: text)")
    p.add_argument("--ablations", action="store_true",
                   help="print, instead of the per-scenario results, what each variant of a main policy "
                        "(ablation) violates in the scenarios where its main policy violates nothing, as "
                        "docs/scenarios.md#ablation-coverage shows it (default: off)")
    p.add_argument("--junit", metavar="FILE",
                   help="also write a JUnit XML report to FILE: one test case per scenario x policy "
                        "(default: none)")
    p.set_defaults(func=cmd_check)


def add_inspect(sub: Any) -> None:
    from .inspect.command import register

    register(sub)


MATRIX_EPILOG = """examples:
  vmactors matrix                       # every scenarios/*.toml under the four main policies
  vmactors matrix scenarios/ --markdown --jobs 2
  vmactors matrix scenarios/munmap-zero-entry.toml --policy wilcox --policy wilcox-no-zero
  vmactors matrix scenarios/ --time-limit 30 --cluster tcp://10.0.0.5:8786
a cell whose search was cut says `incomplete` and only what it saw: `unknown; incomplete`,
`sometimes; coherence; incomplete` (never `never`)"""


def add_matrix(sub: Any) -> None:
    p = _sub(sub, "matrix", "scenario x policy table of exists verdicts and violated invariants", MATRIX_EPILOG,
             "The scenario x policy table: each cell is the exhaustive `exists` verdict and the "
             "invariants violated, e.g. `sometimes; coherence`.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="scenario files, folders of them, or library scenario names (default: scenarios/, "
                        "or the installed library where there is no scenarios/ folder)")
    p.add_argument("--policy", type=_policy, action="append", dest="policies", metavar="P",
                   help=f"a column; repeat for several (default: {', '.join(MAIN_POLICIES)})")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (default: plain text)")
    p.add_argument("--jobs", type=_positive, default=1, metavar="N",
                   help="worker processes: that many cells side by side (default: %(default)s)")
    _max_states_option(p)
    _search_options(p, "each search")
    p.set_defaults(func=cmd_matrix)


POLICIES_EPILOG = """examples:
  vmactors policies                 # one line per policy and ablation
  vmactors policies --protocols     # each policy's fault and syscall protocols, step by step
  vmactors policies --markdown      # the same as Markdown tables, as in docs/policies/
  vmactors policies --protocols --policy wilcox-early-return
the rules of each design: docs/design.md#policies"""


def add_policies(sub: Any) -> None:
    p = _sub(sub, "policies", "each policy and ablation with what it models", POLICIES_EPILOG)
    p.add_argument("--protocols", action="store_true",
                   help="also print each policy's protocols: every step, the steps it may hand over to, the "
                        "messages it sends and the shared objects it touches (the tables the code dispatches "
                        "on) (default: the list only)")
    p.add_argument("--markdown", action="store_true",
                   help="print only the protocol tables, as Markdown (as docs/policies/*.md embed them) "
                        "(default: text)")
    p.add_argument("--policy", type=_policy, action="append", dest="policies", metavar="P",
                   help=f"a policy whose protocols to print; repeat for several (default: "
                        f"{', '.join(MAIN_POLICIES)})")
    p.set_defaults(func=cmd_policies)


#: The sub-commands, in the order `vmactors --help` lists them.
COMMANDS: list[Callable[[Any], None]] = [add_run, add_explore, add_replay, add_check, add_inspect, add_matrix,
                                         add_policies]


def add_bench(sub: Any) -> None:
    from .perf.command import register  # modelled performance: vmactors/perf

    register(sub)


COMMANDS.append(add_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vmactors",
        description="Run the Linux mmap_sem-splitting designs (mmap_sem, wilcox, glisse, pervma) on small "
        "scenarios, explore their interleavings, and see which outcomes and invariant violations each allows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run `vmactors COMMAND --help` for a command's options and examples; the model and its rules: "
               "docs/design.md",
    )
    parser.add_argument("--version", action="version", version=f"vmactors {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status. Whatever happens, the user gets a
    result or one line on stderr, never a traceback: bad input, an output that cannot
    be written (2), SIGINT (130) or SIGTERM (143), after the command has kept what it
    finished (`vmactors.signals`)."""
    with handle_signals():
        try:
            parser = build_parser()
            args = parse(parser, argv)
            status = _call(args)
            _flush_stdout()
            return status
        except BaseException as exc:  # noqa: BLE001 - sorted out below, re-raised if unknown
            return _failed(exc, argv)


def _call(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `vmactors inspect … | head`
        silence_stdout()
        return 0


def _flush_stdout() -> None:
    """Write out what is still buffered for stdout: a full disk or a closed pipe shows
    here (as an error, not as the interpreter's complaint at exit)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except OSError as e:
        silence_stdout()
        raise UsageError(f"cannot write standard output: {reason(e).lower()}") from None


def _failed(exc: BaseException, argv: Sequence[str] | None) -> int:
    """The exit status (and the one line on stderr) for a command that raised `exc`."""
    if isinstance(exc, SystemExit):  # argparse: --help, --version, a usage error
        raise exc
    command = _command_name(argv)
    interrupt = find_interrupt(exc)
    if interrupt is not None:
        _try_flush_stdout()
        print(f"{command}: {interrupt}", file=sys.stderr)
        return interrupt.status
    if isinstance(exc, UsageError) or (isinstance(exc, BaseExceptionGroup) and _leaf(exc, UsageError)):
        err = exc if isinstance(exc, UsageError) else _leaf(exc, UsageError)
        _try_flush_stdout()
        print(err, file=sys.stderr)
        return 2
    oserror = exc if isinstance(exc, OSError) else _leaf(exc, OSError) if isinstance(exc, BaseExceptionGroup) else None
    if isinstance(oserror, OSError):
        if oserror.filename is None and (_stdout_broken() or oserror.errno in _STREAM_ERRORS):
            # Every file vmactors writes reports its own errors with its path
            # (`OutputError`); a write error without one is standard output's.
            silence_stdout()
            if isinstance(oserror, BrokenPipeError):
                return 0
            print(f"{command}: cannot write standard output: {reason(oserror).lower()}", file=sys.stderr)
            return 2
        where = f"{oserror.filename}: " if oserror.filename is not None else ""
        print(f"{command}: {where}{reason(oserror)}", file=sys.stderr)
        return 2
    if isinstance(exc, MemoryError) or (isinstance(exc, BaseExceptionGroup) and _leaf(exc, MemoryError)):
        print(f"{command}: out of memory (a smaller scenario, or a lower --max-states, may fit)", file=sys.stderr)
        return 2
    raise exc


#: Write errors of a stream: a full disk, a closed pipe, a device error.
_STREAM_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE})


def _command_name(argv: Sequence[str] | None) -> str:
    words = list(sys.argv[1:] if argv is None else argv)
    names = {a.__name__[len("add_"):] for a in COMMANDS}
    command = next((w for w in words if w in names), None)
    return f"vmactors {command}" if command else "vmactors"


def _stdout_broken() -> bool:
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return False


def _try_flush_stdout() -> None:
    """Before a last line on stderr: what the command printed goes out first."""
    if _stdout_broken():
        silence_stdout()


# --- helpers ----------------------------------------------------------------------------


def warn(command: str, message: str) -> None:
    print(f"vmactors {command}: warning: {message}", file=sys.stderr)


def load(arg: str):  # type: ignore[no-untyped-def]
    """A scenario from a path or a library name."""
    from .library import resolve
    from .scenario.parse import load_scenario

    return load_scenario(resolve(arg))


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
    """One run with the chosen runtime: Trio tasks (the default) or the direct driver.
    A choice list that does not fit the run is a `ValueError` from either."""
    if runtime == "direct":
        from .sim.run import Run

        return Run(scenario, policy, strategy, seed, log, max_steps).run()
    from .sim.trio_runtime import run_with_trio

    try:
        with under_trio():  # Trio unwinds its tasks itself at a signal
            return run_with_trio(scenario, policy, strategy, seed, log, max_steps)
    except BaseExceptionGroup as group:  # Trio's nursery wraps what a task raised
        bad = _leaf(group, ValueError)
        if bad is None:
            raise
        raise bad from None


def _leaf(group: BaseExceptionGroup, kind: type[BaseException]) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _leaf(exc, kind)
            if found is not None:
                return found
        elif isinstance(exc, kind):
            return exc
    return None


def _choices_text(choices: Sequence[int]) -> str:
    return ",".join(map(str, choices)) if choices else "0"


# --- the commands' bodies ------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .sim.strategies import make

    scenario = load(args.scenario)
    if args.choices is not None and args.seed is not None:
        warn("run", "--seed is ignored with --choices (the choice list is the schedule)")
    if args.seed is None:
        args.seed = 0
    if args.choices is not None:
        strategy = make("replay", 0, choices=args.choices)
        how = f"choices {_choices_text(args.choices)}"
        again = f"--choices {_choices_text(args.choices)}"
    else:
        strategy = make("random", args.seed)
        how, again = f"seed {args.seed}", f"--seed {args.seed}"
    max_steps = max(args.max_steps, len(args.choices or ()))
    if args.max_steps != DEFAULT_MAX_STEPS:  # a step limit is part of the run
        again += f" --max-steps {args.max_steps}"
    with log_output(args.log) as log:
        try:
            result = _run(args.runtime, scenario, args.policy, strategy, 0 if args.choices is not None else args.seed,
                          log, max_steps)
        except ValueError as e:  # a choice out of range
            raise UsageError(f"--choices: {e}") from None
    print(f"policy {args.policy}, {how}")
    _print_run(result, scenario)
    print(f"replay: vmactors run {shlex.quote(args.scenario)} --policy {args.policy} {again}")
    return 0 if result.outcome == "ok" else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from .explore.replay_file import read_replay, replay_problem
    from .sim.strategies import make

    replay = read_replay(args.file, force=args.force)
    if replay.policy not in POLICY_NAMES:
        raise UsageError(f"{args.file}: unknown policy {replay.policy!r}{did_you_mean(replay.policy, POLICY_NAMES)}")
    if replay.changed:
        warn("replay", f"{replay.changed}: the run may differ from the one saved")
    max_steps = max(DEFAULT_MAX_STEPS, len(replay.choices))
    with log_output(args.log) as log:
        try:
            result = _run(args.runtime, replay.scenario, replay.policy, make("replay", 0, choices=replay.choices), 0,
                          log, max_steps)
        except ValueError as e:
            raise UsageError(f"{args.file}: {e}") from None
        # A replay that is not the run saved must not pass for it (no log either).
        problem = replay_problem(replay, len(result.choices), result.violations, result.exists)
        if problem and not replay.changed:
            raise UsageError(f"{args.file}: {problem}")
        if problem:
            warn("replay", problem)
    what = replay.doc.get("invariant")
    at = replay.doc.get("violated_at_step", replay.doc.get("steps"))
    saved = f"; saved for {what}" + (f", violated at step {at}" if isinstance(at, int) else "") if what else ""
    print(f"policy {replay.policy}, choices {_choices_text(replay.choices)}{saved}")
    _print_run(result, replay.scenario)
    return 0 if result.outcome == "ok" else 1


_EXPLORE_DEFAULTS = {"runs": 1000, "seed": 0, "depth": 3}
_EXHAUSTIVE_ONLY = {"max_states": "--max-states bounds exhaustive exploration",
                    "time_limit": "--time-limit bounds exhaustive exploration",
                    "max_memory": "--max-memory bounds exhaustive exploration",
                    "no_reduction": "the reductions are exhaustive exploration's",
                    "no_symmetry": "the reductions are exhaustive exploration's"}
#: Options each strategy does not use, with why.
_IGNORED = {
    "exhaustive": {"runs": "it explores every interleaving", "seed": "it makes no random choice",
                   "depth": "--depth is pct's"},
    "random": {"depth": "--depth is pct's", **_EXHAUSTIVE_ONLY},
    "pct": dict(_EXHAUSTIVE_ONLY),
}


def _given(args: argparse.Namespace, option: str) -> bool:
    if option == "max_states":
        return bool(args.max_states != DEFAULT_MAX_STATES)
    value = getattr(args, option)
    return value is not None and value is not False


def cmd_explore(args: argparse.Namespace) -> int:
    from .explore.results import render_table
    from .explore.runner import ExploreOptions, explore, stderr_is_tty

    scenario = load(args.scenario)
    for option, why in _IGNORED[args.strategy].items():
        if _given(args, option):
            warn("explore", f"--{option.replace('_', '-')} is ignored by the {args.strategy} strategy ({why})")
    values = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in _EXPLORE_DEFAULTS.items()}
    policies = list(MAIN_POLICIES) if args.all_policies else (args.policies or ["mmap_sem"])
    search = _exhaustive(args)
    opts = ExploreOptions(strategy=args.strategy, runs=values["runs"], seed=values["seed"], depth=values["depth"],
                          max_states=args.max_states, max_steps=args.max_steps, jobs=args.jobs,
                          save=Path(args.save), progress=stderr_is_tty(), lines=not stderr_is_tty(),
                          time_limit=search.time_limit, max_memory=search.max_memory, search=search.options,
                          cluster=args.cluster)
    explorations, interrupted = explore(scenario, policies, opts)
    if args.json:
        docs = [e.to_json() for e in explorations]
        out = docs[0] if len(policies) == 1 and docs else docs
        # The standard json module: interleaving counts are exact and may exceed 64 bits.
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        tables = []
        for e in explorations:
            traces = None if args.no_trace else _traces(e, args.max_steps)
            tables.append(render_table(e, traces))
        print("\n\n".join(tables))
        if len(explorations) > 1:
            print()
            print(comparison(explorations))
    return 1 if interrupted else 0


def _traces(e, max_steps: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The race chart of each finding's shortest counterexample: the run its replay
    file replays (to the violating step, then choice 0 to the end), so the chart
    shows what the violation led to (the stale load after a coherence violation)."""
    from .counterexample import race_chart

    return {f.invariant: race_chart(e.scenario, e.policy, f.choices, max_steps=max_steps) for f in e.findings}


def comparison(explorations) -> str:  # type: ignore[no-untyped-def]
    """One line per policy: exists verdict and violations."""
    lines = ["Comparison:", f"  {'policy':<28} {'exists':<10} {'complete':<9} violations"]
    for e in explorations:
        v = ", ".join(f"{f.invariant} ({f.runs:,})" for f in e.findings) or "none"
        lines.append(f"  {e.policy:<28} {str(e.exists or '-'):<10} {str(e.complete).lower():<9} {v}")
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    from .explore import check

    paths = check.default_paths(args.paths)
    if args.json and args.markdown:
        raise UsageError("--json and --markdown: choose one")
    if args.json and args.ablations:
        raise UsageError("--json and --ablations: choose one (the JSON holds every case's violations)")
    if args.junit is not None and not Path(args.junit).resolve().parent.is_dir():
        raise UsageError(f"--junit: cannot write {args.junit}: no such directory")
    seen: set[int] = set()

    def stream(r: check.CaseResult) -> None:
        first = id(r.scenario) not in seen
        seen.add(id(r.scenario))
        print(check.render_result(r, first), flush=True)

    def skip(s: Any) -> None:
        print(f"{s.path}: no [expect] table, skipped", flush=True)

    quiet = args.json or args.markdown or args.ablations
    finished: list[check.CaseResult] = []
    try:
        report = check.run_checks(paths, max_states=args.max_states, save=Path(args.save),
                                  on_result=None if quiet else stream, on_skip=None if quiet else skip,
                                  done=finished, search=_exhaustive(args), jobs=args.jobs,
                                  cluster_address=args.cluster)
    except KeyboardInterrupt:
        # What finished is printed already (text) or printed now (JSON); no JUnit file,
        # which would pass for a complete run.
        partial = check.CheckReport(tuple(finished), ())
        if args.json:
            sys.stdout.write(json.dumps({**check.to_json(partial), "interrupted": True}, indent=2) + "\n")
        else:
            if args.ablations:  # what the cases that finished show
                print(check.render_ablations(partial, args.markdown) + "\n")
            elif args.markdown:
                seen_scenarios = tuple({id(r.scenario): r.scenario for r in finished}.values())
                print(check.render_markdown(check.CheckReport(tuple(finished), (), seen_scenarios)) + "\n")
            print(check.closing_line(partial) + " (interrupted)")
        raise
    if args.json:
        sys.stdout.write(json.dumps(check.to_json(report), indent=2) + "\n")
    elif args.ablations:  # the table only; the exit status says whether all was as expected
        print(check.render_ablations(report, args.markdown))
    elif args.markdown:  # the tables only; the exit status says whether all was as expected
        print(check.render_markdown(report))
    else:
        print(check.closing_line(report))
    if args.junit is not None:
        write_output(args.junit, check.to_junit(report), "JUnit report")
    return report.status


def cmd_matrix(args: argparse.Namespace) -> int:
    from .explore.check import default_paths, scenario_files
    from .explore.matrix import Matrix, compute
    from .explore.runner import ProgressBar, stderr_is_tty
    from .scenario.parse import load_scenario

    paths = default_paths(args.paths)
    table = Matrix([load_scenario(f) for f in scenario_files(paths)], args.policies or list(MAIN_POLICIES))
    try:
        with ProgressBar(stderr_is_tty(), lines=True) as bar:
            advance = bar.task("matrix: scenario x policy", len(table.scenarios) * len(table.policies))
            compute(table, jobs=args.jobs, progress=lambda: advance(advance=1), search=_exhaustive(args),
                    cluster_address=args.cluster)
    except KeyboardInterrupt:
        print(table.render(args.markdown))  # the cells that finished; the others say so
        raise
    print(table.render(args.markdown))
    return 0


def cmd_policies(args: argparse.Namespace) -> int:
    from .policies.registry import POLICIES
    from .policies.render import protocol_tables

    chosen = args.policies or list(MAIN_POLICIES)
    if args.markdown:  # the tables only, as docs/policies/*.md embed them
        print("\n\n".join(protocol_tables(name, POLICIES[name].protocol, markdown=True, kernel=POLICIES[name])
                          for name in chosen))
        return 0
    others = [n for n in POLICY_NAMES if n not in MAIN_POLICIES and n not in ABLATIONS]
    print("policies:")
    for name in MAIN_POLICIES:
        print(f"  {name:<28} {POLICIES[name].summary}")
        print(f"  {'':<28} kernel: {POLICIES[name].kernel}")
    if others:
        print("other designs:")
        for name in others:
            print(f"  {name:<28} {POLICIES[name].summary}")
            print(f"  {'':<28} kernel: {POLICIES[name].kernel}")
    print("ablations (each removes one safeguard):")
    for name in ABLATIONS:
        print(f"  {name:<28} {POLICIES[name].summary}")
    print("(their rules: docs/design.md#policies and #ablations; each protocol step by step: --protocols)")
    if args.protocols:
        for name in chosen:
            print()
            print(protocol_tables(name, POLICIES[name].protocol, kernel=POLICIES[name]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
