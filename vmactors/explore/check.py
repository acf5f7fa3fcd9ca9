"""`vmactors check`: every scenario's `[expect]` table against exhaustive exploration.

`run_checks` explores each (scenario, policy) pair an `[expect]` table names and
compares; a result that was not expected gets its counterexample saved as a replay
file (an unexpected violation: its shortest run; an `exists` verdict of `sometimes`
where `never` or `always` was expected: a run that ends in a state that contradicts
it). The report renders as text (`render_text`), as Markdown tables (`render_markdown`:
one per scenario, as docs/scenarios.md embeds them), as JSON (`to_json`) and as JUnit
XML (`to_junit`: one test case per scenario x policy) for CI systems.

Each case is `ok`, a `mismatch`, or `incomplete`: its search was cut (by
`--max-states`, `--time-limit`, `--max-memory`) before it could say, and nothing it
found contradicts the expectation. What a cut search found can still contradict
it — a violation `[expect]` does not list, a final state where `exists` holds when
`never` was expected (or fails when `always` was) — and that is a mismatch. Both
make `check` exit 1.

Cases run one after the other, or side by side over `--jobs N` processes or the
workers of a Dask cluster (`--cluster`); results come in the same order.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable
from xml.etree import ElementTree as ET

import attrs

from ..errors import UsageError
from ..library import library_dir
from ..policies import POLICY_NAMES, get_policy
from ..scenario.model import Expectation, Scenario
from ..scenario.parse import load_scenario
from ..signals import reraise
from .exhaustive import DEFAULT_MAX_STATES
from .parallel import Exhaustive, cluster, pool
from .replay_file import save_counterexample
from .results import Exploration
from .runner import _show, save_findings

#: The default of `check` and `matrix`: the library folder of the working directory.
DEFAULT_PATH = "scenarios"


def default_paths(paths: list[str]) -> list[str]:
    """`paths`, or the default: `scenarios/` where the working directory has one, else
    the scenario library installed with vmactors."""
    if paths:
        return paths
    if Path(DEFAULT_PATH).is_dir():
        return [DEFAULT_PATH]
    folder = library_dir()
    if folder is None:
        raise UsageError(f"{DEFAULT_PATH}: no such directory, and no scenario library is installed")
    return [str(folder)]


def scenario_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(path.glob("*.toml")))
        elif path.exists():
            out.append(path)
        else:
            from ..library import resolve

            out.append(resolve(p))  # a library scenario's name, or a UsageError
    return out


@attrs.frozen
class CaseResult:
    """One (scenario, policy) pair of an `[expect]` table, explored and compared."""

    scenario: Scenario
    policy: str
    want: Expectation
    exploration: Exploration
    problems: tuple[str, ...]
    #: Replay files of what was not expected: invariant (or `exists`) -> path.
    replays: tuple[tuple[str, str], ...]
    seconds: float
    #: "ok", "mismatch" or "incomplete" (a cut search that contradicts nothing).
    status: str = "ok"

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def violations(self) -> list[str]:
        return sorted(f.invariant for f in self.exploration.findings)

    @property
    def shortest(self) -> dict[str, int]:
        """Each violated invariant -> the step at which its shortest counterexample
        violates it."""
        return {f.invariant: f.steps for f in sorted(self.exploration.findings, key=lambda f: f.invariant)}

    def found(self) -> str:
        """The violated invariants, each with its shortest counterexample's step:
        `orphan-pte at step 19, wrong-vma at step 25`."""
        return ", ".join(f"{inv} at step {step}" for inv, step in self.shortest.items())

    def summary(self) -> str:
        e = self.exploration
        counted = "interleavings" if e.counts == "exact" else "interleavings (reduced)"
        found = self.found()
        if not e.complete:
            return (f"{e.exists or '-'}; violations [{found}] so far; {e.runs:,} {counted} "
                    f"seen, {e.distinct_states:,} states, {e.frontier:,} left unexplored")
        return f"{e.exists or '-'}; violations [{found}]; {e.runs:,} {counted}, {e.distinct_states:,} states"


@attrs.frozen
class CheckReport:
    results: tuple[CaseResult, ...]
    #: Scenario files without an `[expect]` table.
    skipped: tuple[Scenario, ...]
    #: Every scenario, in the order checked (with and without `[expect]`).
    scenarios: tuple[Scenario, ...] = ()

    @property
    def failures(self) -> int:
        """Mismatches."""
        return sum(r.status == "mismatch" for r in self.results)

    @property
    def incomplete(self) -> int:
        return sum(r.status == "incomplete" for r in self.results)

    @property
    def status(self) -> int:
        return 1 if self.failures or self.incomplete else 0


def compare(want: Expectation, e: Exploration) -> list[str]:
    """What differs between an `[expect]` entry and an exploration, in words (for a
    cut search: what it found that contradicts the entry)."""
    if not e.complete:
        return contradictions(want, e)
    got_v = frozenset(f.invariant for f in e.findings)
    problems = []
    if want.exists is not None and e.exists != want.exists:
        problems.append(f"exists: expected {want.exists}, got {e.exists}")
    if got_v != want.violations:
        extra = sorted(got_v - want.violations)
        missing = sorted(want.violations - got_v)
        diff = ", ".join([f"+{x}" for x in extra] + [f"-{x}" for x in missing])
        problems.append(f"violations: expected [{', '.join(sorted(want.violations))}], "
                        f"got [{', '.join(sorted(got_v))}] ({diff})")
    return problems


def contradictions(want: Expectation, e: Exploration) -> list[str]:
    """What a cut search found that its expectation rules out, whatever the rest of
    the search would find: an unexpected violation, a final state where `exists`
    holds (`never` expected) or fails (`always` expected)."""
    problems = []
    extra = sorted(frozenset(f.invariant for f in e.findings) - want.violations)
    if extra:
        problems.append(f"violations: expected [{', '.join(sorted(want.violations))}], "
                        f"seen [{', '.join(extra)}] already ({', '.join('+' + x for x in extra)})")
    if want.exists == "never" and any(s.exists for s in e.states):
        problems.append("exists: expected never, seen sometimes already")
    if want.exists == "always" and any(s.exists is False for s in e.states):
        problems.append("exists: expected always, seen a final state where it fails already")
    return problems


def status_of(e: Exploration, problems: list[str]) -> str:
    """A case's status: a mismatch if anything contradicts the expectation, else
    incomplete if the search was cut, else ok."""
    return "mismatch" if problems else "incomplete" if not e.complete else "ok"


def save_unexpected(want: Expectation, e: Exploration, witnesses: dict[str, tuple[int, ...]],
                    folder: Path) -> tuple[tuple[str, str], ...]:
    """Save replay files for what `want` did not expect: each unexpected violation's
    shortest run, and for an `exists` of `sometimes` against `never` (`always`) a run
    that ends where `exists` holds (fails)."""
    saved: list[tuple[str, str]] = []
    unexpected = [f for f in e.findings if f.invariant not in want.violations]
    if unexpected:
        part = attrs.evolve(e, findings=tuple(unexpected))
        for f in save_findings(part, witnesses, folder).findings:
            assert f.replay is not None
            saved.append((f.invariant, f.replay))
    if want.exists in ("never", "always") and e.exists != want.exists:
        contrary = want.exists == "never"  # the state to show: one where exists holds
        state = next((s for s in e.states if s.exists is contrary and s.choices is not None), None)
        if state is not None and state.choices is not None:
            what = "exists" if contrary else "not-exists"
            s = save_counterexample(folder, e.scenario, e.policy, what, state.choices, state.steps,
                                    f"`exists` is {'true' if contrary else 'false'} at the end "
                                    f"(expected {want.exists})", e.strategy)
            saved.append((what, _show(s.path)))
    return tuple(saved)


def _explore_case(scenario: Scenario, policy: str, search: Exhaustive
                  ) -> tuple[Exploration, dict[str, tuple[int, ...]], float]:
    t0 = time.perf_counter()
    e, witnesses = search.explore(scenario, policy)
    return e, witnesses, time.perf_counter() - t0


def run_checks(paths: list[str], max_states: int = DEFAULT_MAX_STATES, save: Path | None = Path("vmactors-runs"),
               progress: Callable[[str], None] | None = None,
               on_result: Callable[[CaseResult], None] | None = None,
               on_skip: Callable[[Scenario], None] | None = None,
               done: list[CaseResult] | None = None, *,
               search: Exhaustive | None = None, jobs: int = 1,
               cluster_address: str | None = None) -> CheckReport:
    """Check every scenario under `paths` (bad input anywhere: `UsageError` before
    any exploration). Each result is also appended to `done` as it comes, so that a
    caller interrupted by a signal (`vmactors.signals.Interrupted`, which this lets
    through) still has what finished.

    `search` sets the reductions and limits of every exploration (default: the
    default reductions, `max_states`); `jobs` > 1 runs the cases in that many
    processes, `cluster_address` on the workers of that Dask cluster."""
    search = search if search is not None else Exhaustive(max_states=max_states)
    files = scenario_files(paths)
    scenarios: list[Scenario] = [load_scenario(f) for f in files]
    results: list[CaseResult] = [] if done is None else done
    skipped: list[Scenario] = []
    cases = [(scen, policy) for scen in scenarios for policy, _ in scen.expect]
    with cluster(cluster_address) as client, pool(jobs, client) as workers:
        futures = iter([] if workers is None else [workers.submit(_explore_case, s, p, search) for s, p in cases])
        for scen in scenarios:
            if not scen.expect:
                skipped.append(scen)
                if on_skip is not None:
                    on_skip(scen)
                continue
            for policy, want in scen.expect:
                if progress is not None:
                    progress(f"{scen.name} [{policy}]")
                if workers is None:
                    e, witnesses, seconds = _explore_case(scen, policy, search)
                    # The search stops at a signal and returns what it explored: that
                    # is not a result to compare, and the check stops.
                    reraise()
                else:
                    e, witnesses, seconds = next(futures).result()
                problems = compare(want, e)
                replays: tuple[tuple[str, str], ...] = ()
                if problems and save is not None:
                    replays = save_unexpected(want, e, witnesses, save)
                status = status_of(e, problems)
                if not e.complete:
                    problems.append(f"exploration incomplete: {e.cut}" + (
                        "; nothing found so far contradicts [expect]" if status == "incomplete" else ""))
                r = CaseResult(scen, policy, want, e, tuple(problems), replays, seconds, status)
                results.append(r)
                if on_result is not None:
                    on_result(r)
    return CheckReport(tuple(results), tuple(skipped), tuple(scenarios))


# --- renderings ------------------------------------------------------------------------

#: The policy column's width: the longest policy name, so that the columns after it line up.
POLICY_WIDTH = max(len(p) for p in POLICY_NAMES)


def render_result(r: CaseResult, first_of_scenario: bool) -> str:
    lines = [f"{r.scenario.path}"] if first_of_scenario else []
    mark = {"ok": "ok        ", "mismatch": "MISMATCH  ", "incomplete": "INCOMPLETE"}[r.status]
    lines.append(f"  {r.policy:<{POLICY_WIDTH}} {mark} {r.summary()}")
    for p in r.problems:
        lines.append(f"      {p}")
    for what, path in r.replays:
        lines.append(f"      {what}: vmactors replay {path}")
    return "\n".join(lines)


def render_text(report: CheckReport) -> str:
    """The text report, as `check` prints it."""
    lines = []
    by_scenario: dict[int, list[CaseResult]] = {}
    for r in report.results:
        by_scenario.setdefault(id(r.scenario), []).append(r)
    for scen in report.scenarios:
        if not scen.expect:
            lines.append(f"{scen.path}: no [expect] table, skipped")
            continue
        for i, r in enumerate(by_scenario.get(id(scen), [])):
            lines.append(render_result(r, i == 0))
    lines.append(closing_line(report))
    return "\n".join(lines)


def render_markdown(report: CheckReport) -> str:
    """`check --markdown`: per scenario, a table with a row per policy of its
    `[expect]` table: the `exists` verdict, the violated invariants (each at the step
    its shortest counterexample reaches it), the interleavings
    and distinct states explored. Counts of a reduced search say so in the header (in
    the cell where a table mixes kinds); a case that is not `ok` says so in the cell
    that differs (`exists`, `violations`; an incomplete search: `exists`), and what
    differs follows the table. With several scenarios, each table comes after its
    scenario's path."""
    by_scenario: dict[int, list[CaseResult]] = {}
    for r in report.results:
        by_scenario.setdefault(id(r.scenario), []).append(r)
    several = len(report.scenarios) > 1
    parts = []
    for scen in report.scenarios:
        head = [f"`{scen.path}`", ""] if several else []
        cases = by_scenario.get(id(scen), [])
        if not cases:
            parts.append("\n".join(head + ["no `[expect]` table"]))
            continue
        kinds = {r.exploration.counts for r in cases}
        label = "" if len(kinds) > 1 else " (reduced)" if kinds == {"reduced"} else ""
        lines = head + [f"| policy | exists | violations | interleavings{label} | states{label} |",
                        "|---|---|---|---:|---:|"]
        notes = []
        for r in cases:
            e = r.exploration
            exists, found = e.exists or "—", r.found() or "—"
            if r.status != "ok":
                tag = f" ({r.status.upper()})"
                # The cells the problems name ("exists: …", "violations: …"); else the verdict's.
                off = {p.split(":", 1)[0] for p in r.problems} & {"exists", "violations"} or {"exists"}
                exists += tag if "exists" in off else ""
                found += tag if "violations" in off else ""
                notes += [f"- `{r.policy}`: {p}" for p in r.problems]
                notes += [f"- `{r.policy}`: {what}: `vmactors replay {path}`" for what, path in r.replays]
            mark = f" ({e.counts})" if len(kinds) > 1 else ""
            seen = "" if e.complete else " seen"
            lines.append(f"| `{r.policy}` | {exists} | {found} | "
                         f"{e.runs:,}{mark}{seen} | {e.distinct_states:,}{mark} |")
        parts.append("\n".join(lines + ([""] + notes if notes else [])))
    return "\n\n".join(parts)


def ablation_coverage(report: CheckReport) -> tuple[list[tuple[str, str, list[str]]], list[str]]:
    """What each variant of a main policy (`Policy.base`) is shown to break: per
    (variant, invariant) it violates, the scenarios where it does so and its main
    policy, checked in the same scenario, violates nothing; and the variants checked
    that break nothing anywhere. Policies in the library's order, scenarios in the
    report's."""
    clean: set[tuple[int, str]] = {(id(r.scenario), r.policy) for r in report.results if r.exploration.complete
                                   and not r.exploration.findings}
    where: dict[tuple[str, str], list[str]] = {}
    variants: set[str] = set()
    for r in report.results:
        base = get_policy(r.policy).base
        if base is None:
            continue
        variants.add(r.policy)
        if (id(r.scenario), base) in clean:
            for inv in r.violations:
                where.setdefault((r.policy, inv), []).append(r.scenario.name)
    order = {name: i for i, name in enumerate(POLICY_NAMES)}
    rows = [(p, inv, names) for (p, inv), names in sorted(where.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))]
    tripping = {p for p, _, _ in rows}
    return rows, sorted(variants - tripping, key=order.__getitem__)


def render_ablations(report: CheckReport, markdown: bool = False) -> str:
    """`check --ablations`: the table of `ablation_coverage`, one row per variant and
    invariant, then the variants that break nothing.

    >>> print(render_ablations(CheckReport((), ())))
    ablation  invariant  tripped in (main policy clean there)
    (no variant of a main policy was checked)
    """
    rows, quiet = ablation_coverage(report)
    header = ("ablation", "invariant", "tripped in (main policy clean there)")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---|---|"]
        lines += [f"| `{p}` | `{inv}` | {', '.join(names)} |" for p, inv, names in rows]
    else:
        cells = [header] + [(p, inv, ", ".join(names)) for p, inv, names in rows]
        widths = [max(len(c[i]) for c in cells) for i in range(2)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in cells]
    if not report.results or not (rows or quiet):
        lines.append("(no variant of a main policy was checked)")
    elif quiet:
        names = ", ".join(f"`{p}`" if markdown else p for p in quiet)
        lines += ([""] if markdown else []) + [f"Checked, and tripping nothing where its main policy was checked "
                                               f"and clean: {names}."]
    return "\n".join(lines)


def closing_line(report: CheckReport) -> str:
    passed = len(report.results) - report.failures - report.incomplete
    line = f"{passed} passed, {report.failures} failed"
    if report.incomplete:
        line += (f", {report.incomplete} incomplete (a search was cut before it could say: raise --max-states "
                 f"or --time-limit)")
    return line


def _expect_json(want: Expectation) -> dict[str, Any]:
    return {"exists": want.exists, "violations": sorted(want.violations)}


def to_json(report: CheckReport) -> dict[str, Any]:
    """`check --json`: one object; `results` has one entry per scenario x policy."""
    return {
        "passed": len(report.results) - report.failures - report.incomplete,
        "failed": report.failures,
        "incomplete": report.incomplete,
        "results": [
            {
                "scenario": r.scenario.name,
                "path": r.scenario.path,
                "policy": r.policy,
                "ok": r.ok,
                "status": r.status,
                "expected": _expect_json(r.want),
                "got": {"exists": r.exploration.exists, "violations": r.violations,
                        "shortest": r.shortest,
                        "complete": r.exploration.complete, "runs": r.exploration.runs,
                        "states": r.exploration.distinct_states,
                        **({"cut": r.exploration.cut.to_json()} if r.exploration.cut is not None else {})},
                "problems": list(r.problems),
                "replays": dict(r.replays),
            }
            for r in report.results
        ],
        "skipped": [s.path for s in report.skipped],
    }


def to_junit(report: CheckReport) -> bytes:
    """JUnit XML: a `testsuite` per scenario file, a `testcase` per policy of its
    `[expect]` table (classname the scenario, name the policy); a mismatch is a
    `failure` whose text says what differs and how to replay it, an incomplete case
    a `failure` of type `incomplete` (a CI run must not pass on a search that was
    cut). A scenario without `[expect]` is one skipped test case."""
    total = sum(r.seconds for r in report.results)
    root = ET.Element("testsuites", {
        "name": "vmactors check",
        "tests": str(len(report.results) + len(report.skipped)),
        "failures": str(report.failures + report.incomplete),
        "errors": "0",
        "skipped": str(len(report.skipped)),
        "time": f"{total:.3f}",
    })
    by_scenario: dict[int, list[CaseResult]] = {}
    for r in report.results:
        by_scenario.setdefault(id(r.scenario), []).append(r)
    for scen in report.scenarios:
        cases = by_scenario.get(id(scen), [])
        failures = sum(not r.ok for r in cases)
        suite = ET.SubElement(root, "testsuite", {
            "name": scen.name,
            "tests": str(len(cases) or 1),
            "failures": str(failures),
            "errors": "0",
            "skipped": "0" if cases else "1",
            "time": f"{sum(r.seconds for r in cases):.3f}",
            "file": scen.path,
        })
        if not cases:
            case = ET.SubElement(suite, "testcase", {"classname": scen.name, "name": "(no [expect] table)",
                                                     "time": "0.000", "file": scen.path})
            ET.SubElement(case, "skipped", {"message": "no [expect] table"})
            continue
        for r in cases:
            case = ET.SubElement(suite, "testcase", {"classname": scen.name, "name": r.policy,
                                                     "time": f"{r.seconds:.3f}", "file": scen.path})
            if not r.ok:
                fail = ET.SubElement(case, "failure", {"message": "; ".join(r.problems), "type": r.status})
                body = [f"{scen.name} under {r.policy}: {r.summary()}"] + list(r.problems)
                body += [f"{what}: vmactors replay {path}" for what, path in r.replays]
                fail.text = "\n".join(body)
            out = ET.SubElement(case, "system-out")
            out.text = r.summary()
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


__all__ = ["CaseResult", "CheckReport", "compare", "contradictions", "status_of", "default_paths", "render_markdown",
           "render_text", "run_checks", "scenario_files", "to_json", "to_junit"]
