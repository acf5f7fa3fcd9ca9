"""A counterexample drawn: replay a choice list in memory and render its race chart
(`vmactors explore` prints one under each violation).

The run is replayed with the direct driver, its events kept in memory (no log file)
and fed to `vmactors.inspect`'s race chart, the same code as `vmactors inspect LOG
--diagram ascii`. It sits above both `explore` and `inspect`, which do not know each
other.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from .inspect.filters import EventFilter
from .inspect.racechart import build_race_chart, render_race_chart
from .inspect.reader import Record
from .scenario.model import Scenario
from .sim.run import Run
from .sim.strategies import make


def replay_events(scenario: Scenario, policy: str, choices: Sequence[int],
                  max_steps: int = 100_000) -> list[dict[str, Any]]:
    """The events of the run that follows `choices` (then choice 0), as the log would
    hold them."""
    run = Run(scenario, policy, make("replay", 0, choices=choices), 0, None, max(max_steps, len(choices)))
    run.keep_events()
    run.run()
    assert run.events is not None
    return run.events


def _records(events: list[dict[str, Any]]) -> Iterator[Record]:
    for n, ev in enumerate(events, 1):
        yield Record(n, orjson.dumps(ev), ev)


def race_chart(scenario: Scenario, policy: str, choices: Sequence[int], *, to_step: int | None = None,
               max_steps: int = 100_000) -> str:
    """The ASCII race chart of the run that follows `choices`, up to `to_step` (the
    whole run if None)."""
    events = replay_events(scenario, policy, choices, max_steps)
    filt = EventFilter(to_step=to_step)
    return render_race_chart(build_race_chart(_records(events), filt, limit=None))  # in memory already


__all__ = ["race_chart", "replay_events"]
