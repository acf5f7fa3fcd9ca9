"""docs/scenario-format.md#limits: a scenario too big, or an integer out of range, is a
one-line error naming the key or op and the limit, before anything runs (the numbers
here once ran out of memory or for minutes)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vmactors.errors import ScenarioError
from vmactors.scenario import parse_scenario
from vmactors.scenario.limits import MAX_MAP_PAGES, MAX_SCENARIO_BYTES
from vmactors.scenario.parse import load_scenario

ONE_LOAD = '[[thread]]\nops = ["r0 = load 0x10000"]\n'


@pytest.mark.parametrize("text, message", [
    (f'name = "x"\ncpus = {10**30}\n' + ONE_LOAD, "2:1: cpus = 1000000000000000000000000000000 exceeds the limit of 256 CPUs"),
    ('name = "x"\n[[thread]]\ncpu = 18446744073709551616\nops = ["r0 = load 0x10000"]\n',
     "3:1: [[thread]] 0 runs on CPU 18446744073709551616, past the limit of 256 CPUs"),
    (f'name = "x"\n[[map]]\nname = "A"\nfill = {10**30}\n' + ONE_LOAD,
     "4:1: fill of [[map]] 0 ('A') (1000000000000000000000000000000) does not fit in a 64-bit word"),
    (f'name = "x"\n[[map]]\nname = "A"\npages = {MAX_MAP_PAGES + 1}\n' + ONE_LOAD,
     f"4:1: pages of [[map]] 0 ('A') ({MAX_MAP_PAGES + 1}) exceed the limit of {MAX_MAP_PAGES} pages per mapping"),
    ('name = "x"\n[[thread]]\nops = ["A = mmap 200000"]\n', "3:9: bad op 'A = mmap 200000' in [[thread]] 0: "
                                                             "200000 pages exceed the limit"),
    ('name = "x"\n[[map]]\nname = "A"\npages = 10000\nprefault = [0, 1]\n' + ONE_LOAD + ONE_LOAD,
     ": prefault fills 20000 page translations (pages x CPUs), past the limit of 16384"),
    ('name = "x"\nexists = "0:r0 = 0x10000000000000000"\n' + ONE_LOAD,
     "2:18: the value 18446744073709551616 in exists does not fit in a 64-bit word"),
    ('name = "x"\n' + ONE_LOAD * 257, "[[thread]] 256 runs on CPU 256, past the limit of 256 CPUs"),
])
def test_a_scenario_past_a_limit_is_refused_naming_it(text: str, message: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "s.toml")
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert time.perf_counter() - t0 < 2


def test_an_endless_file_is_refused_after_a_few_megabytes() -> None:
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match=r"^/dev/zero: larger than 8 MiB: not a scenario file"):
        load_scenario("/dev/zero")
    assert time.perf_counter() - t0 < 5


def test_a_big_file_under_the_limit_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    padding = "# " + "x" * 1000 + "\n"
    path.write_text('name = "x"\n' + padding * ((MAX_SCENARIO_BYTES - 4096) // len(padding)) + ONE_LOAD)
    assert load_scenario(path).name == "x"
