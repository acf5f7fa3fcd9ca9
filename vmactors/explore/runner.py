"""`vmactors explore`: one or more policies, any strategy, optional worker processes,
a progress bar on a terminal, counterexamples saved as replay files."""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Iterator

import attrs

from ..scenario.model import Scenario
from .exhaustive import DEFAULT_MAX_STATES, explore_exhaustive
from .replay_file import save_counterexample
from .results import Exploration
from .sampling import RunSummary, aggregate, sample_runs


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
    progress: bool = False


class ProgressBar:
    """A rich progress bar on stderr when it is a terminal, else nothing."""

    def __init__(self, enabled: bool) -> None:
        self._progress: Any = None
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
        if self._progress is None:
            return lambda *a, **k: None
        tid = self._progress.add_task(description, total=total, info="")

        def update(completed: int | None = None, info: str = "", advance: int = 0) -> None:
            if completed is not None:
                self._progress.update(tid, completed=completed, info=info)
            else:
                self._progress.update(tid, advance=advance, info=info)

        return update


def _ignore_sigint() -> None:
    # Workers leave Ctrl-C to the parent, which stops them and reports what finished.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exhaustive_job(scenario: Scenario, policy: str, opts: ExploreOptions) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
    return explore_exhaustive(scenario, policy, max_states=opts.max_states, max_steps=opts.max_steps)


def _expected_cost(policy: str) -> int:
    """A rough ordering of how long an exhaustive exploration takes (pervma's extra
    lock steps make the largest state spaces, mmap_sem's the smallest)."""
    return {"pervma": 3, "mmap_sem": 0}.get(policy.split("-")[0], 2)


def _batches(runs: int, jobs: int) -> list[range]:
    size = max(1, min(250, -(-runs // (jobs * 4))))
    return [range(i, min(i + size, runs)) for i in range(0, runs, size)]


def explore(scenario: Scenario, policies: list[str], opts: ExploreOptions) -> tuple[list[Exploration], bool]:
    """Explore `scenario` under each policy; returns the explorations (in the order
    given) and whether the user interrupted."""
    results: dict[str, tuple[Exploration, dict[str, tuple[int, ...]]]] = {}
    interrupted = False
    with ProgressBar(opts.progress) as bar, ExitStack() as stack:
        pool = None
        if opts.jobs > 1:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=opts.jobs, initializer=_ignore_sigint))
        try:
            if opts.strategy == "exhaustive":
                if pool is None or len(policies) == 1:
                    for p in policies:
                        update = bar.task(f"{scenario.name} [{p}] states", None)
                        results[p] = explore_exhaustive(
                            scenario, p, max_states=opts.max_states, max_steps=opts.max_steps,
                            progress=lambda n, q: update(n, f"queue {q}"),
                        )
                        if results[p][0].cut == "interrupted":
                            interrupted = True
                            break
                else:
                    update = bar.task(f"{scenario.name} policies", len(policies))
                    # Longest first, so the last worker to finish does not start late.
                    futs = {pool.submit(_exhaustive_job, scenario, p, opts): p
                            for p in sorted(policies, key=_expected_cost, reverse=True)}
                    for fut in _as_done(futs):
                        results[futs[fut]] = fut.result()
                        update(advance=1)
            else:
                for p in policies:
                    summaries: list[RunSummary] = []
                    update = bar.task(f"{scenario.name} [{p}] {opts.strategy} runs", opts.runs)
                    done: dict[int, list[RunSummary]] = {}
                    try:
                        if pool is None:
                            sample_runs(scenario, p, opts.strategy, opts.seed, range(opts.runs), opts.depth,
                                        opts.max_steps, progress=lambda n: update(n), sink=summaries)
                        else:
                            futs2 = {pool.submit(sample_runs, scenario, p, opts.strategy, opts.seed, b,
                                                 opts.depth, opts.max_steps): b for b in _batches(opts.runs, opts.jobs)}
                            for fut in _as_done(futs2):
                                done[futs2[fut].start] = fut.result()
                                update(advance=len(futs2[fut]))
                    except KeyboardInterrupt:
                        interrupted = True
                        _stop(pool, stack)
                        pool = None
                    if done:
                        # What finished, in run order, so --jobs does not change the result.
                        summaries = [s for k in sorted(done) for s in done[k]]
                    results[p] = aggregate(scenario, p, opts.strategy, summaries, interrupted)
                    if interrupted:
                        break
        except KeyboardInterrupt:
            interrupted = True
            _stop(pool, stack)
    out = []
    for p in policies:
        if p not in results:
            continue
        e, choices = results[p]
        if opts.save is not None and e.findings:
            e = save_findings(e, choices, opts.save)
        if interrupted:
            e = attrs.evolve(e, interrupted=True, complete=False)
        out.append(e)
    return out, interrupted


def _stop(pool: ProcessPoolExecutor | None, stack: ExitStack) -> None:
    """Ctrl-C: stop the workers now (they ignore SIGINT) rather than letting the pool
    finish the queued batches on its way out."""
    if pool is None:
        return
    for proc in list(getattr(pool, "_processes", {}).values()):
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    stack.pop_all()


def _as_done(futs: dict[Future, Any]) -> Iterator[Future]:
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
