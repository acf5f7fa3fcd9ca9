"""Fuzzing as tests (docs/reliability.md#fuzzing): every scenario file, log and replay
file gives a result or a one-line error with exit 2 — never a traceback, a hang, or
unbounded memory. A short run here (a few dozen examples per input kind, the same ones
every time in CI); benchmarks/fuzz.py runs a long one. Inputs that ever failed are
kept in tests/fuzz/corpus/ and replayed below."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .harness import REPLAY_SCENARIO, check_corpus_file, check_log, check_replay, check_scenario
from .strategies import INSPECT_VIEWS, OP_FORMS, exists_texts, log_texts, mutated_texts, replay_texts, scenario_texts

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = int(os.environ.get("VMACTORS_FUZZ_EXAMPLES", "25" if os.environ.get("CI") else "60"))
CI = bool(os.environ.get("CI"))
# CI: the same examples every run, and no shrinking (a failure prints its input as is,
# within the time budget); elsewhere new examples each run, shrunk.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=CI, suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.reuse, Phase.generate] if CI else list(Phase))
LIBRARY = sorted((ROOT / "scenarios").glob("*.toml"))


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="vmactors-fuzz-"))


def test_the_op_forms_come_from_the_format_page() -> None:
    assert len(OP_FORMS) >= 7 and "rN = load ADDR" in OP_FORMS


@FUZZ
@given(scenario_texts())
def test_any_scenario_gives_a_result_or_one_line(text: str) -> None:
    check_scenario(text.encode("utf-8", "surrogateescape"), _folder())


@FUZZ
@given(st.data())
def test_a_library_scenario_cut_or_spliced_gives_a_result_or_one_line(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(LIBRARY)).read_text()
    text = data.draw(mutated_texts(base))
    check_scenario(text.encode("utf-8", "surrogateescape"), _folder())


@FUZZ
@given(exists_texts())
def test_any_exists_clause_gives_a_result_or_one_line(clause: str) -> None:
    text = f'name = "e"\nexists = {__import__("json").dumps(clause)}\n[[map]]\nname = "A"\n' \
           f'[[thread]]\nops = ["r0 = load A", "r1 = load A"]\n[[thread]]\nops = ["r0 = load A"]\n'
    check_scenario(text.encode(), _folder())


@FUZZ
@given(log_texts(), st.sampled_from(INSPECT_VIEWS))
def test_any_log_gives_a_result_or_one_line(data: bytes, view: tuple[str, ...]) -> None:
    check_log(data, view, _folder())


@FUZZ
@given(replay_texts(REPLAY_SCENARIO))
def test_any_replay_file_gives_a_result_or_one_line(data: bytes) -> None:
    check_replay(data, _folder())


@pytest.mark.parametrize("path", sorted(p for p in CORPUS.glob("*/*") if p.is_file()),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_inputs_that_once_failed_still_pass(path: Path) -> None:
    check_corpus_file(path, _folder())
