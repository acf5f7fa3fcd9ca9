"""The streamed views (`inspect --timeline`, `--diagram`) write exactly what the views
built in memory write, for real logs of every library scenario under the main policies
and for every kind of filter: streaming changed the memory a view takes, not a character
of what it shows (docs/performance.md#inspect-memory)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vmactors.inspect.filters import EventFilter
from vmactors.inspect.reader import open_log
from vmactors.inspect.timeline import build_timeline, render_timeline, stream_timeline
from vmactors.scenario import load_scenario
from vmactors.sim.run import run_scenario

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))
FILTERS = [EventFilter(), EventFilter(cpu=1), EventFilter(actor="cpu0"), EventFilter(event="msg.*"),
           EventFilter(from_step=5, to_step=15), EventFilter(to_step=8), EventFilter(from_step=30)]


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> list[Path]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("logs")
    out = []
    for path in LIBRARY:
        for policy, seed in (("wilcox", 1), ("pervma", 2), ("mmap_sem", 3)):
            log = folder / f"{path.stem}.{policy}.jsonl"
            run_scenario(load_scenario(path), policy, seed=seed, log_path=log)
            out.append(log)
    return out


def test_the_streamed_timeline_is_the_timeline(logs: list[Path]) -> None:
    for log in logs:
        for filt in FILTERS:
            with open_log(log) as reader:
                want = render_timeline(build_timeline(reader, filt))
            got = io.StringIO()
            with open_log(log, rewindable=True) as reader:
                stream_timeline(reader, reader.rewind(), got, filt)
            assert got.getvalue() == want, (log.name, filt)
