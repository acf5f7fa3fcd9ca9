"""vmactors.signals: SIGINT and SIGTERM become one typed exception with the exit status,
held inside critical sections, passed to Trio at its safe points, and not re-raised
during the clean-up of the first."""

from __future__ import annotations

import os
import signal

import pytest
import trio

from vmactors.signals import (Interrupted, deferred, find_interrupt, handle_signals, received, reraise,
                              under_trio)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_raises_interrupted_with_its_exit_status(sig: int, status: int) -> None:
    with handle_signals():
        with pytest.raises(Interrupted) as e:
            os.kill(os.getpid(), sig)
    assert e.value.status == status and isinstance(e.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


def test_a_critical_section_is_never_cut_the_signal_comes_at_its_end() -> None:
    steps = []
    with handle_signals():
        with pytest.raises(Interrupted):
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("rename")  # still runs
            steps.append("after")  # does not
    assert steps == ["rename"]


def test_a_second_signal_does_not_interrupt_the_clean_up_of_the_first() -> None:
    cleaned = False
    with handle_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except Interrupted:
            os.kill(os.getpid(), signal.SIGINT)  # recorded, not raised
            cleaned = True
    assert cleaned


def test_a_search_that_swallowed_the_interrupt_can_raise_it_again() -> None:
    with handle_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            pass  # what explore_exhaustive does: stop and return what it has
        assert received() is not None
        with pytest.raises(Interrupted) as e:
            reraise()
    assert e.value.status == 143
    with handle_signals():
        reraise()  # nothing came: nothing raised


def test_trio_unwinds_its_tasks_and_the_signal_is_kept() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            await trio.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)
            await trio.sleep_forever()

    with handle_signals():
        with pytest.raises(Interrupted) as e:
            with under_trio():
                trio.run(main)
    assert e.value.status == 143


def test_an_interrupt_is_found_inside_exception_groups_and_chains() -> None:
    inner = Interrupted(signal.SIGTERM)
    group = BaseExceptionGroup("tasks", [ValueError("x"), BaseExceptionGroup("more", [inner])])
    assert find_interrupt(group) is inner
    try:
        try:
            raise inner
        except Interrupted:
            raise OSError("while cleaning up")
    except OSError as chained:
        assert find_interrupt(chained) is inner
    assert find_interrupt(ValueError("no")) is None
