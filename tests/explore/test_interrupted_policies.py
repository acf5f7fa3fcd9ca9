"""Ctrl-C in an `explore` of several policies (docs/design.md#commands): the output is
still one exploration per policy, in the order given; a search that finished before
the interrupt keeps its answer (complete, its verdict), the one interrupted reports
what it found, and one that never ran is incomplete with every verdict `unknown`."""

from __future__ import annotations

from pathlib import Path

from vmactors.explore import runner
from vmactors.explore.results import INTERRUPTED
from vmactors.explore.runner import ExploreOptions, explore
from vmactors.scenario import load_scenario

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


def test_an_interrupt_keeps_what_finished_and_says_unknown_for_the_rest(monkeypatch) -> None:
    real = runner.Exhaustive.explore

    def interrupted_in_wilcox(self, scenario, policy, **kw):  # type: ignore[no-untyped-def]
        if policy == "wilcox":
            def ctrl_c(states: int, frontier: int) -> None:
                if states > 20:
                    raise KeyboardInterrupt
            kw["progress"] = ctrl_c
        return real(self, scenario, policy, **kw)

    monkeypatch.setattr(runner.Exhaustive, "explore", interrupted_in_wilcox)
    s = load_scenario(LIBRARY / "mapfixed-two-readers.toml")
    out, interrupted = explore(s, ["mmap_sem", "wilcox", "glisse"], ExploreOptions(save=None))
    assert interrupted
    assert [e.policy for e in out] == ["mmap_sem", "wilcox", "glisse"]
    first, cut, never_ran = out
    assert first.complete and not first.interrupted and first.exists == "never" and first.cut is None
    assert not cut.complete and cut.cut == INTERRUPTED and cut.distinct_states > 20
    assert not never_ran.complete and never_ran.cut == INTERRUPTED and never_ran.exists == "unknown"
    assert never_ran.to_json()["states"] == [] and never_ran.to_json()["frontier"] == 1
