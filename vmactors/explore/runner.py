"""`vmactors explore`: one or more policies, any strategy, optional worker processes
or a Dask cluster, progress on stderr, counterexamples saved as replay files.

Where the work goes (docs/usage.md):

- exhaustive, one policy, `--jobs N`: one search sharded over N processes
  (`parallel`); several policies, `--jobs N`: the policies side by side, one process
  each;
- exhaustive, `--cluster ADDRESS`: each policy's search sharded over the cluster's
  workers (or over `--jobs N` shards);
- random and PCT: batches of runs over the processes or the cluster's workers.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, TextIO

import attrs

from ..scenario.model import Scenario
from .exhaustive import DEFAULT_MAX_STATES
from .parallel import Exhaustive, cluster, pool, workers_of
from .replay_file import save_counterexample
from .results import INTERRUPTED, Exploration, verdict
from .sampling import RunSummary, aggregate, sample_runs
from .space import Options, reducible

#: A progress line on a non-terminal stderr comes this often (and only once a run
#: has lasted this long, so that short runs print nothing).
LINE_EVERY = 5.0


@attrs.frozen
class ExploreOptions:
    strategy: str = "exhaustive"
    runs: int = 1000
    seed: int = 0
    depth: int = 3
    max_states: int = DEFAULT_MAX_STATES
    max_steps: int = 100_000
    jobs: int = 1
    save: Path | None = Path("vmactors-runs")
    #: A progress bar on stderr (a terminal).
    progress: bool = False
    #: Without a bar, a progress line on stderr every `LINE_EVERY` s (CI logs).
    lines: bool = False
    #: Seconds per exhaustive search (None: no limit).
    time_limit: float | None = None
    #: Bytes of resident memory per process (None: no limit).
    max_memory: int | None = None
    #: The reductions of exhaustive search (`--no-reduction`, `--no-symmetry`).
    search: Options = Options()
    #: A Dask scheduler's address (`tcp://HOST:PORT`), or None.
    cluster: str | None = None

    @property
    def exhaustive(self) -> Exhaustive:
        return Exhaustive(self.search, self.max_states, self.max_steps, self.time_limit, self.max_memory)


class ProgressBar:
    """Progress on stderr: a rich bar on a terminal; elsewhere, with `lines`, a line
    every `every` seconds once a task has run that long (CI logs show progress, short
    runs print nothing); else nothing."""

    def __init__(self, enabled: bool, lines: bool = False, every: float = LINE_EVERY,
                 stream: TextIO | None = None) -> None:
        self._progress: Any = None
        self._lines = lines and not enabled
        self._every = every
        self._stream = stream
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True)

    def __enter__(self) -> "ProgressBar":
        if self._progress is not None:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def task(self, description: str, total: int | None) -> Callable[..., None]:
        """An `update(completed=None, info="", advance=0)` for one task."""
        if self._progress is not None:
            tid = self._progress.add_task(description, total=total, info="")

            def update(completed: int | None = None, info: str = "", advance: int = 0) -> None:
                if completed is not None:
                    self._progress.update(tid, completed=completed, info=info)
                else:
                    self._progress.update(tid, advance=advance, info=info)

            return update
        if self._lines:
            return _Lines(description, total, self._every, self._stream)
        return lambda *a, **k: None


class _Lines:
    """Progress as a line on stderr every few seconds."""

    def __init__(self, description: str, total: int | None, every: float, stream: TextIO | None) -> None:
        self.description, self.total, self.every, self.stream = description, total, every, stream
        self.start = time.monotonic()
        self.next = self.start + every
        self.done = 0

    def __call__(self, completed: int | None = None, info: str = "", advance: int = 0) -> None:
        self.done = completed if completed is not None else self.done + advance
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + self.every
        of = f"/{self.total:,}" if self.total is not None else ""
        text = f"{self.description}: {self.done:,}{of}{', ' + info if info else ''} ({now - self.start:.0f} s)"
        print(text, file=self.stream or sys.stderr, flush=True)


def search_progress(update: Callable[..., None]) -> Callable[[int, int], None]:
    """A search's progress callback (states, frontier) feeding `update` with the
    states, the frontier and the rate."""
    start = time.monotonic()

    def progress(states: int, frontier: int) -> None:
        rate = states / max(time.monotonic() - start, 1e-9)
        update(states, f"frontier {frontier:,}, {rate:,.0f} states/s")

    return progress


def _expected_cost(policy: str) -> int:
    """A rough ordering of how long an exhaustive exploration takes (pervma's extra
    lock steps make the largest state spaces, mmap_sem's the smallest)."""
    return {"pervma": 3, "mmap_sem": 0}.get(policy.split("-")[0], 2)


def _batches(runs: int, jobs: int) -> list[range]:
    size = max(1, min(250, -(-runs // (jobs * 4))))
    return [range(i, min(i + size, runs)) for i in range(0, runs, size)]


def _exhaustive_job(scenario: Scenario, policy: str, search: Exhaustive
                    ) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
    return search.explore(scenario, policy)


def explore(scenario: Scenario, policies: list[str], opts: ExploreOptions) -> tuple[list[Exploration], bool]:
    """Explore `scenario` under each policy; returns the explorations (in the order
    given) and whether the user interrupted."""
    results: dict[str, tuple[Exploration, dict[str, tuple[int, ...]]]] = {}
    interrupted = False
    search = opts.exhaustive
    with ProgressBar(opts.progress, lines=opts.lines) as bar, cluster(opts.cluster) as client:
        shards = opts.jobs if opts.jobs > 1 or client is None else workers_of(client)
        side_by_side = client is None and opts.jobs > 1 and len(policies) > 1
        try:
            if opts.strategy == "exhaustive" and not side_by_side:
                for p in policies:
                    update = bar.task(f"{scenario.name} [{p}] states", None)
                    results[p] = search.explore(scenario, p, shards=shards, client=client,
                                                progress=search_progress(update))
                    if results[p][0].cut == INTERRUPTED:
                        interrupted = True
                        break
            elif opts.strategy == "exhaustive":
                with pool(opts.jobs) as workers:
                    assert workers is not None
                    update = bar.task(f"{scenario.name} policies", len(policies))
                    # Longest first, so the last worker to finish does not start late.
                    futs = {workers.submit(_exhaustive_job, scenario, p, search): p
                            for p in sorted(policies, key=_expected_cost, reverse=True)}
                    for fut in _as_done(futs):
                        results[futs[fut]] = fut.result()
                        update(advance=1)
            else:
                for p in policies:
                    summaries, interrupted = _sample(scenario, p, opts, bar, client)
                    results[p] = aggregate(scenario, p, opts.strategy, summaries, interrupted)
                    if interrupted:
                        break
        except KeyboardInterrupt:
            interrupted = True
    out = []
    for p in policies:
        if p not in results:
            if interrupted:  # never started, or its worker was stopped: nothing is known
                out.append(not_explored(scenario, p, opts))
            continue
        e, choices = results[p]
        if opts.save is not None and e.findings:
            e = save_findings(e, choices, opts.save)
        out.append(e)  # a search that finished before the interrupt keeps its answer
    return out, interrupted


def not_explored(scenario: Scenario, policy: str, opts: ExploreOptions) -> Exploration:
    """What an interrupted command says of a policy whose search it has nothing from:
    incomplete, cut by the interrupt, its initial state left unexplored, every
    verdict `unknown`."""
    exhaustive = opts.strategy == "exhaustive"
    counts = "sampled" if not exhaustive else opts.exhaustive.options.counts if reducible(scenario) else "exact"
    return Exploration(scenario=scenario, policy=policy, strategy=opts.strategy, complete=False, counts=counts,
                       runs=0, states=(), exists=verdict((), scenario.exists is not None, complete=False),
                       findings=(), distinct_states=1 if exhaustive else 0, cut=INTERRUPTED if exhaustive else None,
                       interrupted=True, frontier=1 if exhaustive else 0)


def _sample(scenario: Scenario, policy: str, opts: ExploreOptions, bar: ProgressBar,
            client: Any) -> tuple[list[RunSummary], bool]:
    """Sampling runs, here or in batches over processes or the cluster; what finished
    (in run order, whatever the batches) and whether the user interrupted."""
    summaries: list[RunSummary] = []
    update = bar.task(f"{scenario.name} [{policy}] {opts.strategy} runs", opts.runs)
    done: dict[int, list[RunSummary]] = {}
    interrupted = False
    try:
        with pool(opts.jobs, client) as workers:
            if workers is None:
                sample_runs(scenario, policy, opts.strategy, opts.seed, range(opts.runs), opts.depth,
                            opts.max_steps, progress=lambda n: update(n), sink=summaries)
            else:
                jobs = max(opts.jobs, workers_of(client) if client is not None else 1)
                futs = {workers.submit(sample_runs, scenario, policy, opts.strategy, opts.seed, b, opts.depth,
                                       opts.max_steps): b for b in _batches(opts.runs, jobs)}
                for fut in _as_done(futs):
                    done[futs[fut].start] = fut.result()
                    update(advance=len(futs[fut]))
    except KeyboardInterrupt:
        interrupted = True
    if done:
        # What finished, in run order, so --jobs does not change the result.
        summaries = [s for k in sorted(done) for s in done[k]]
    return summaries, interrupted


def _as_done(futs: dict[Future[Any], Any]) -> Iterator[Future[Any]]:
    pending = set(futs)
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        yield from done


def save_findings(e: Exploration, choices: dict[str, tuple[int, ...]], folder: Path) -> Exploration:
    """Save each finding's shortest counterexample as a replay file, unless the file
    already holds one violated at the same or an earlier step: then the finding
    becomes that one (its choices, step and detail), so the output and the file agree."""
    findings = []
    for f in e.findings:
        saved = save_counterexample(folder, e.scenario, e.policy, f.invariant, choices[f.invariant], f.steps,
                                    f.detail, e.strategy)
        if saved.replaced:
            findings.append(attrs.evolve(f, replay=_show(saved.path)))
        else:
            findings.append(attrs.evolve(f, replay=_show(saved.path), choices=saved.choices,
                                         steps=saved.violated_at_step, detail=saved.detail or f.detail,
                                         found_steps=f.steps if saved.violated_at_step < f.steps else None))
    return attrs.evolve(e, findings=tuple(findings))


def _show(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else str(path.resolve())
    except ValueError:
        return str(path)


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()
