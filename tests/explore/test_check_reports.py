"""`vmactors check` for CI systems: replay files for unexpected results, `--json`,
`--markdown` (the tables docs/scenarios.md embeds) and `--junit FILE` (one test case per scenario x policy), read back by a JUnit XML
parser and validated against a JUnit schema."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]

SCENARIO = """\
name = "uaf"
exists = "0:r0 = segv"
[[map]]
name = "A"
fill = 5
[[thread]]
ops = ["r0 = load A"]
[[thread]]
ops = ["munmap A"]
"""

# mmap_sem: as expected. wilcox: `exists` is sometimes, not never. wilcox-no-grace:
# vma-uaf is violated, orphan-pte is not.
MIXED = SCENARIO + """
[expect]
mmap_sem = "sometimes"
wilcox = "never"
wilcox-no-grace = { exists = "sometimes", violations = ["orphan-pte"] }
"""
PLAIN = SCENARIO.replace('name = "uaf"', 'name = "plain"')


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "scen"
    d.mkdir()
    (d / "mixed.toml").write_text(MIXED)
    (d / "plain.toml").write_text(PLAIN)
    return d


def test_unexpected_results_get_replay_files(vmcli, folder, tmp_path) -> None:
    p = vmcli("check", folder, cwd=tmp_path)
    assert p.returncode == 1
    runs = tmp_path / "vmactors-runs"
    saved = sorted(x.name for x in runs.iterdir())
    # The unexpected violation and a run where `exists` holds although `never` was
    # expected; nothing for what was expected.
    assert saved == ["uaf.wilcox-no-grace.vma-uaf.json", "uaf.wilcox.exists.json"]
    assert "vma-uaf: vmactors replay vmactors-runs/uaf.wilcox-no-grace.vma-uaf.json" in p.stdout
    assert "exists: vmactors replay vmactors-runs/uaf.wilcox.exists.json" in p.stdout
    r = vmcli("replay", runs / "uaf.wilcox-no-grace.vma-uaf.json")
    assert r.returncode == 1 and "violated vma-uaf" in r.stdout
    r = vmcli("replay", runs / "uaf.wilcox.exists.json")
    assert "exists (0:r0 = segv): true" in r.stdout
    assert p.stdout.splitlines()[-1] == "1 passed, 2 failed"
    assert f"{folder / 'plain.toml'}: no [expect] table, skipped" in p.stdout


def test_nothing_is_saved_when_all_is_as_expected(vmcli, tmp_path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(SCENARIO + '\n[expect]\nwilcox-no-grace = { exists = "sometimes", violations = ["vma-uaf"] }\n')
    p = vmcli("check", path, cwd=tmp_path)
    assert p.returncode == 0, p.stdout
    assert not (tmp_path / "vmactors-runs").exists()


def test_json(vmcli, folder, tmp_path) -> None:
    p = vmcli("check", folder, "--json", cwd=tmp_path)
    assert p.returncode == 1
    doc = json.loads(p.stdout)
    assert (doc["passed"], doc["failed"]) == (1, 2)
    assert doc["skipped"] == [str(folder / "plain.toml")]
    by = {r["policy"]: r for r in doc["results"]}
    assert list(by) == ["mmap_sem", "wilcox", "wilcox-no-grace"]
    assert by["mmap_sem"]["ok"] and by["mmap_sem"]["problems"] == [] and by["mmap_sem"]["replays"] == {}
    w = by["wilcox"]
    assert not w["ok"] and w["expected"] == {"exists": "never", "violations": []}
    assert w["got"]["exists"] == "sometimes" and w["got"]["complete"] is True
    assert w["problems"] == ["exists: expected never, got sometimes"]
    assert w["replays"] == {"exists": "vmactors-runs/uaf.wilcox.exists.json"}
    r = by["wilcox-no-grace"]
    assert r["got"]["violations"] == ["vma-uaf"] and r["expected"]["violations"] == ["orphan-pte"]
    assert set(r["replays"]) == {"vma-uaf"}


def test_markdown(vmcli, folder, tmp_path) -> None:
    """A table per scenario, a row per policy of its [expect] table; what was not
    expected is marked in the row and told after the table; the exit status is as for
    text."""
    p = vmcli("check", folder, "--markdown", cwd=tmp_path)
    assert p.returncode == 1
    mixed, plain = p.stdout.rstrip("\n").split("\n\n`")
    lines = mixed.splitlines()
    assert lines[:4] == [f"`{folder / 'mixed.toml'}`", "",
                         "| policy | exists | violations | interleavings (reduced) | states (reduced) |",
                         "|---|---|---|---:|---:|"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[4:7]]
    # The mark is in the cell that differs: wilcox's verdict, wilcox-no-grace's violations.
    assert [r[:3] for r in rows] == [["`mmap_sem`", "sometimes", "—"], ["`wilcox`", "sometimes (MISMATCH)", "—"],
                                     ["`wilcox-no-grace`", "sometimes", "vma-uaf at step 17 (MISMATCH)"]]
    assert all(int(r[3].replace(",", "")) > 0 and int(r[4].replace(",", "")) > 0 for r in rows)
    assert "- `wilcox`: exists: expected never, got sometimes" in lines
    assert "- `wilcox`: exists: `vmactors replay vmactors-runs/uaf.wilcox.exists.json`" in lines
    assert plain == f"{folder / 'plain.toml'}`\n\nno `[expect]` table"


def test_markdown_of_one_scenario_as_docs_show_it(vmcli, tmp_path) -> None:
    """One scenario: the table alone, exact counts unmarked; as expected: exit 0."""
    path = tmp_path / "ok.toml"
    path.write_text(SCENARIO + '\n[expect]\nwilcox-no-grace = { exists = "sometimes", violations = ["vma-uaf"] }\n')
    p = vmcli("check", path, "--markdown", "--no-reduction", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    header, rule, row = p.stdout.splitlines()
    assert header == "| policy | exists | violations | interleavings | states |" and rule == "|---|---|---|---:|---:|"
    assert row.startswith("| `wilcox-no-grace` | sometimes | vma-uaf at step 17 | ")
    assert vmcli("check", path, "--markdown", "--json").returncode == 2


def test_ablations_table_counts_only_scenarios_where_the_main_policy_is_clean(vmcli, tmp_path) -> None:
    """`--ablations`: a row per ablation and invariant it violates where its main
    policy, checked in the same scenario, violates nothing; the ablations that show
    nothing that way are named after the table."""
    d = tmp_path / "scen"
    d.mkdir()
    (d / "uaf.toml").write_text(SCENARIO + '\n[expect]\nwilcox = "sometimes"\n'
                                'wilcox-no-grace = { exists = "sometimes", violations = ["vma-uaf"] }\n'
                                'wilcox-free-before-flush = "sometimes"\n')
    # Here wilcox itself violates coherence: wilcox-no-zero's coherence shows nothing.
    reader = (ROOT / "scenarios" / "madvise-dontneed-vs-reader.toml").read_text().split("[expect]")[0]
    (d / "reader.toml").write_text(reader + '[expect]\nwilcox = { exists = "sometimes", violations = ["coherence"] }\n'
                                   'wilcox-no-zero = { exists = "sometimes", violations = ["coherence"] }\n')
    p = vmcli("check", d, "--ablations", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.splitlines() == [
        "ablation         invariant  tripped in (main policy clean there)",
        "wilcox-no-grace  vma-uaf    uaf",
        "Checked, and tripping nothing where its main policy was checked and clean: wilcox-no-zero, "
        "wilcox-free-before-flush."]
    md = vmcli("check", d, "--ablations", "--markdown", cwd=tmp_path).stdout.splitlines()
    assert md[:3] == ["| ablation | invariant | tripped in (main policy clean there) |", "|---|---|---|",
                      "| `wilcox-no-grace` | `vma-uaf` | uaf |"]
    assert vmcli("check", d, "--ablations", "--json").returncode == 2


def _junit(vmcli, folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "report" / "check.xml"
    out.parent.mkdir()
    p = vmcli("check", folder, "--junit", out, cwd=tmp_path)
    assert p.returncode == 1
    assert p.stdout.splitlines()[-1] == "1 passed, 2 failed"  # the text report as usual
    return out


def test_junit_is_read_by_a_junit_parser(vmcli, folder, tmp_path) -> None:
    junitparser = pytest.importorskip("junitparser")
    xml = junitparser.JUnitXml.fromfile(str(_junit(vmcli, folder, tmp_path)))
    suites = {s.name: s for s in xml}
    assert set(suites) == {"uaf", "plain"}
    uaf = suites["uaf"]
    assert (uaf.tests, uaf.failures, uaf.errors) == (3, 2, 0)
    cases = {c.name: c for c in uaf}
    assert list(cases) == ["mmap_sem", "wilcox", "wilcox-no-grace"]
    assert all(c.classname == "uaf" for c in cases.values())
    assert cases["mmap_sem"].is_passed
    (fail,) = cases["wilcox"].result
    assert isinstance(fail, junitparser.Failure)
    assert fail.message == "exists: expected never, got sometimes"
    assert "vmactors replay vmactors-runs/uaf.wilcox.exists.json" in fail.text
    (fail,) = cases["wilcox-no-grace"].result
    assert "+vma-uaf" in fail.message and "-orphan-pte" in fail.message
    (plain,) = list(suites["plain"])
    assert plain.is_skipped
    assert float(uaf.time) > 0


def test_junit_is_valid_against_a_junit_schema(vmcli, folder, tmp_path) -> None:
    xmlschema = pytest.importorskip("xmlschema")
    report = _junit(vmcli, folder, tmp_path)
    xmlschema.XMLSchema(str(DATA / "junit.xsd")).validate(str(report))
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "2", "1")


def test_the_schema_catches_what_ci_systems_reject(tmp_path) -> None:
    """The schema is not vacuous: a test case without a name, or a failure count that
    is not a number, is rejected."""
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(DATA / "junit.xsd"))
    good = '<testsuites><testsuite name="s" tests="1"><testcase classname="s" name="p"/></testsuite></testsuites>'
    assert schema.is_valid(good)
    assert not schema.is_valid(good.replace(' name="p"', ""))
    assert not schema.is_valid(good.replace('tests="1"', 'tests="one"'))
    assert not schema.is_valid(good.replace("<testcase", "<case"))


def test_junit_to_a_missing_folder_is_bad_usage(vmcli, folder, tmp_path) -> None:
    p = vmcli("check", folder, "--junit", tmp_path / "no" / "such" / "c.xml")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stdout == ""


def test_each_violation_shows_the_step_its_replay_file_reaches_it(vmcli, folder, tmp_path) -> None:
    """The text line and the JSON give each violated invariant's shortest
    counterexample as the step at which it is violated: the step the saved replay
    file reaches it at, whichever of the two a user reads."""
    p = vmcli("check", folder, cwd=tmp_path)
    line = next(x for x in p.stdout.splitlines() if x.lstrip().startswith("wilcox-no-grace"))
    doc = json.loads(vmcli("check", folder, "--json", cwd=tmp_path).stdout)
    step = next(r for r in doc["results"] if r["policy"] == "wilcox-no-grace")["got"]["shortest"]["vma-uaf"]
    assert f"violations [vma-uaf at step {step}]" in line
    r = vmcli("replay", tmp_path / "vmactors-runs" / "uaf.wilcox-no-grace.vma-uaf.json")
    assert f"saved for vma-uaf, violated at step {step}" in r.stdout


def test_the_columns_line_up_whatever_the_policy_names(vmcli, tmp_path) -> None:
    path = tmp_path / "long.toml"
    path.write_text(SCENARIO + '\n[expect]\nmmap_sem = "sometimes"\n'
                    'mmap_sem-mremap-flush-after-unlock = "sometimes"\n')
    p = vmcli("check", path, cwd=tmp_path)
    rows = [x for x in p.stdout.splitlines() if x.startswith("  mmap_sem")]
    assert len(rows) == 2 and len({x.index(" ok ") for x in rows}) == 1, p.stdout
