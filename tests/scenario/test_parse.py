"""Scenario files that are right parse to the values docs/scenario-format.md describes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vmactors.scenario import ScenarioError, load_scenario, parse_scenario
from vmactors.scenario.model import (
    Addr,
    And,
    Atom,
    Expectation,
    Load,
    Madvise,
    MapSpec,
    Mmap,
    MmapFixed,
    Mprotect,
    Munmap,
    Not,
    Or,
    Store,
)

# The example of docs/scenario-format.md, verbatim.
DESIGN_EXAMPLE = """\
name = "mapfixed-two-readers"
about = "Thread 2 replaces A with MAP_FIXED while threads 0 and 1 read it."
cpus = 3                      # optional; default: enough for every thread's CPU
exists = "0:r0 = 2 and 1:r1 = 1 and 1:r2 = 1"   # top-level keys come before any table

[[map]]                       # the address space before the threads start
name = "A"                    # global label, usable in ops and in `exists`
pages = 1                     # default 1
kind = "file"                 # "anon" (default) | "file"
file = "f1"                   # kind=file: two maps of one file share frames
fill = 1                      # value of every unwritten word (default 0)
# at = 0x7e0000000000         # optional page-aligned address; default: top-down
prefault = [1]                # CPUs whose TLB already maps every page (see §1)

[[map]]
name = "F"
prefault = [0, 1, 2]

[[thread]]                    # thread i runs on CPU i unless `cpu = N` is given;
ops = ["r0 = load A", "store F 1"]   # a CPU runs at most one thread

[[thread]]
ops = ["r1 = load F", "r2 = load A"]

[[thread]]
ops = ["mmap A fixed kind=file file=f2 fill=2"]

[expect]                      # optional: per policy, the `exists` verdict and the exact
mmap_sem = "never"            # set of invariants violated somewhere in the exploration
glisse = "never"              # (a bare verdict means: no invariant violated)
pervma = "never"
wilcox = { exists = "sometimes", violations = ["coherence"] }
"""


def parse(text: str):
    return parse_scenario(text, "t.toml")


def test_design_example(tmp_path: Path) -> None:
    path = tmp_path / "mapfixed.toml"
    path.write_text(DESIGN_EXAMPLE)
    s = load_scenario(path)

    assert s.name == "mapfixed-two-readers"
    assert s.about == "Thread 2 replaces A with MAP_FIXED while threads 0 and 1 read it."
    assert s.cpus == 3
    assert s.path == str(path)
    assert s.sha256 == hashlib.sha256(DESIGN_EXAMPLE.encode()).hexdigest()
    assert s.maps == (
        MapSpec(name="A", pages=1, kind="file", file="f1", fill=1, at=None, prot="rw", prefault=(1,)),
        MapSpec(name="F", pages=1, kind="anon", file=None, fill=0, at=None, prot="rw", prefault=(0, 1, 2)),
    )
    assert [t.cpu for t in s.threads] == [0, 1, 2]
    assert s.threads[0].ops == (Load("r0", Addr("A", 0)), Store(Addr("F", 0), 1))
    assert s.threads[0].texts == ("r0 = load A", "store F 1")
    assert s.threads[1].ops == (Load("r1", Addr("F", 0)), Load("r2", Addr("A", 0)))
    assert s.threads[2].ops == (MmapFixed("A", pages=1, kind="file", file="f2", fill=2),)
    assert s.exists_text == "0:r0 = 2 and 1:r1 = 1 and 1:r2 = 1"
    assert s.exists == And(
        (
            Atom(0, "r0", False, 2),
            Atom(1, "r1", False, 1),
            Atom(1, "r2", False, 1),
        )
    )
    assert s.expect == (
        ("mmap_sem", Expectation("never")),
        ("glisse", Expectation("never")),
        ("pervma", Expectation("never")),
        ("wilcox", Expectation("sometimes", frozenset({"coherence"}))),
    )
    assert s.files == (("f1", 1), ("f2", 2))


def test_defaults() -> None:
    s = parse('name = "d"\n[[map]]\nname = "A"\n[[thread]]\nops = ["r0 = load A"]\n')
    assert s.about == ""
    assert s.cpus == 1
    assert s.maps == (MapSpec(name="A"),)
    assert s.maps[0] == MapSpec("A", 1, "anon", None, 0, None, "rw", None)
    assert s.exists is None and s.exists_text is None
    assert s.expect == ()
    assert s.files == ()
    assert s.sha256 == ""


def test_default_cpus_follow_the_highest_thread_cpu() -> None:
    s = parse('name = "c"\n[[thread]]\ncpu = 3\nops = ["r0 = load 0x10000"]\n[[thread]]\nops = ["r1 = load 0x10000"]\n')
    assert [t.cpu for t in s.threads] == [3, 1]
    assert s.cpus == 4


def test_explicit_cpus_may_leave_cpus_idle() -> None:
    s = parse('name = "c"\ncpus = 4\n[[map]]\nname = "A"\nprefault = [3]\n[[thread]]\nops = ["r0 = load A"]\n')
    assert s.cpus == 4
    assert s.maps[0].prefault == (3,)


def test_prefault_empty_means_populated_but_no_tlb() -> None:
    s = parse('name = "p"\n[[map]]\nname = "A"\nprefault = []\n[[thread]]\nops = ["r0 = load A"]\n')
    assert s.maps[0].prefault == ()


def test_hex_numbers_everywhere() -> None:
    s = parse(
        """\
name = "hex"
[[map]]
name = "A"
pages = 0x2
at = 0x7e0000000000
fill = 0xff
[[thread]]
ops = ["r0 = load A+0x1ff8", "store 0x7e0000000008 0xdead", "store A+16 -5", "r1 = load 4096",
       "B = mmap 0x3 fill=0x10 at=0x100000"]
"""
    )
    assert s.maps[0].pages == 2
    assert s.maps[0].at == 0x7E0000000000
    assert s.maps[0].fill == 0xFF
    assert s.threads[0].ops == (
        Load("r0", Addr("A", 0x1FF8)),
        Store(Addr(None, 0x7E0000000008), 0xDEAD),
        Store(Addr("A", 16), -5),
        Load("r1", Addr(None, 4096)),
        Mmap("B", pages=3, kind="anon", file=None, fill=0x10, at=0x100000),
    )


def test_ops_are_whitespace_tolerant() -> None:
    s = parse(
        'name = "ws"\n[[map]]\nname = "A"\npages = 2\n[[thread]]\n'
        'ops = ["r0=load A+8", "  store   A + 16   1 ", "L =  mmap  2 kind = file  file=f fill=3", '
        '"mprotect L prot = r", "mmap   L fixed", " madvise  L  dontneed", "munmap L"]\n'
    )
    assert s.threads[0].ops == (
        Load("r0", Addr("A", 8)),
        Store(Addr("A", 16), 1),
        Mmap("L", pages=2, kind="file", file="f", fill=3),
        Mprotect("L", "r"),
        MmapFixed("L", pages=2, kind="anon", file=None, fill=0),
        Madvise("L"),
        Munmap("L"),
    )
    # texts keep the ops as written
    assert s.threads[0].texts[1] == "  store   A + 16   1 "


def test_thread_local_labels() -> None:
    s = parse(
        """\
name = "local"
exists = "0:B = 0x7f0000000000 and 0:r0 = 0 and 0:fault = segv and 1:B != segv"
[[thread]]
ops = ["B = mmap 2", "store B+4104 7", "r0 = load B+8", "mprotect B prot=r", "mmap B fixed", "munmap B"]
[[thread]]
ops = ["B = mmap kind=file file=g"]
"""
    )
    t0 = s.threads[0].ops
    assert t0[0] == Mmap("B", pages=2)
    assert t0[1] == Store(Addr("B", 4104), 7)
    assert t0[4] == MmapFixed("B", pages=2)  # default PAGES: what B's mmap asked for
    assert s.threads[1].ops == (Mmap("B", pages=1, kind="file", file="g", fill=0),)
    assert s.files == (("g", 0),)


def test_fixed_default_pages_of_a_global_label() -> None:
    s = parse('name = "f"\n[[map]]\nname = "A"\npages = 3\n[[thread]]\nops = ["mmap A fixed kind=file file=x"]\n')
    assert s.threads[0].ops == (MmapFixed("A", pages=3, kind="file", file="x", fill=0),)


def test_offset_may_reach_into_a_larger_map_fixed() -> None:
    # Thread 1 replaces A (1 page) with 2 pages; thread 0 reading the second
    # page is a fair question about the race, not a typo.
    s = parse(
        'name = "grow"\n[[map]]\nname = "A"\n[[thread]]\nops = ["r0 = load A+4096"]\n'
        '[[thread]]\nops = ["mmap A fixed 2"]\n'
    )
    assert s.threads[0].ops == (Load("r0", Addr("A", 4096)),)


def test_file_fill_inheritance() -> None:
    s = parse(
        """\
name = "fills"
[[map]]
name = "A"
kind = "file"
file = "f"
[[map]]
name = "B"
kind = "file"
file = "f"
fill = 7
[[map]]
name = "C"
kind = "file"
file = "new"
[[map]]
name = "D"
fill = 9
[[thread]]
ops = ["mmap A fixed kind=file file=f", "X = mmap kind=file file=h fill=4", "mmap X fixed kind=file file=h",
       "mmap D fixed", "mmap C fixed kind=file file=new fill=0"]
"""
    )
    # A takes the file's fill, given by B; a new file starts at 0; D is anon.
    assert [m.fill for m in s.maps] == [7, 7, 0, 9]
    ops = s.threads[0].ops
    assert ops[0] == MmapFixed("A", pages=1, kind="file", file="f", fill=7)
    assert ops[1] == Mmap("X", pages=1, kind="file", file="h", fill=4)
    assert ops[2] == MmapFixed("X", pages=1, kind="file", file="h", fill=4)
    assert ops[3] == MmapFixed("D", pages=1, kind="anon", file=None, fill=0)
    assert s.files == (("f", 7), ("h", 4), ("new", 0))


def test_exists_with_labels_segv_and_herd7_operators() -> None:
    s = parse(
        r"""
name = "ex"
exists = '~(0:r0 = segv \/ 0:r0 = A) /\ 0:r1 != -1'
[[map]]
name = "A"
[[thread]]
ops = ["r0 = load A", "r1 = load A+8"]
"""
    )
    assert s.exists == And(
        (
            Not(Or((Atom(0, "r0", False, "segv"), Atom(0, "r0", False, "A", value_is_label=True)))),
            Atom(0, "r1", True, -1),
        )
    )


def test_expect_without_exists_gives_violations_only() -> None:
    s = parse(
        'name = "v"\n[[thread]]\nops = ["store 0x10000 1"]\n[expect]\n'
        'wilcox = { violations = ["coherence", "frame-uaf"] }\nmmap_sem = {}\n'
        "[expect.wilcox-no-zero]\nviolations = []\n"
    )
    assert s.exists is None
    assert s.expect == (
        ("wilcox", Expectation(None, frozenset({"coherence", "frame-uaf"}))),
        ("mmap_sem", Expectation(None, frozenset())),
        ("wilcox-no-zero", Expectation(None, frozenset())),
    )


def test_ops_in_a_multiline_array_and_literal_strings() -> None:
    s = parse(
        """\
name = 'multi'
[[map]]
name = 'A'
prot = "r"
at = 0x10000
[[thread]]
ops = [
  'r0 = load A',   # a comment
  "store A 1",
]
"""
    )
    assert s.maps[0].prot == "r"
    assert s.maps[0].at == 0x10000
    assert len(s.threads[0].ops) == 2


def test_bom_and_crlf_are_accepted() -> None:
    s = parse('\ufeffname = "w"\r\n[[thread]]\r\nops = ["r0 = load 0x10000"]\r\n')
    assert s.name == "w"


def test_load_scenario_reads_bytes_and_hashes_them(tmp_path: Path) -> None:
    data = 'name = "h"\n[[thread]]\nops = ["r0 = load 8"]\n'.encode()
    path = tmp_path / "h.toml"
    path.write_bytes(data)
    assert load_scenario(str(path)).sha256 == hashlib.sha256(data).hexdigest()


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}: cannot read file: ")


def test_expect_entry_without_a_verdict_leaves_it_unchecked() -> None:
    s = parse(
        'name = "v"\nexists = "0:r0 = 1"\n[[thread]]\nops = ["r0 = load 0x10000"]\n[expect]\n'
        'pervma = { violations = ["deadlock"] }\n'
    )
    assert s.expect == (("pervma", Expectation(None, frozenset({"deadlock"}))),)
