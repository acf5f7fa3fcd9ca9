"""`vmactors explore --json` exactly as docs/design.md#commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmactors.log.schema import INVARIANTS
from vmactors.mm.layout import MMAP_BASE, PAGE_SIZE

KEYS = ["scenario", "policy", "strategy", "complete", "counts", "runs", "states", "exists", "violations"]

SCENARIO = """\
name = "json"
exists = "0:r0 = segv"
[[map]]
name = "A"
fill = 1
prefault = [0]
[[thread]]
ops = ["r0 = load A", "store A 2"]
[[thread]]
ops = ["munmap A", "B = mmap"]
"""


@pytest.fixture
def scen(tmp_path: Path) -> Path:
    path = tmp_path / "json.toml"
    path.write_text(SCENARIO)
    return path


def explore_json(vmcli, scen: Path, *args: str):
    p = vmcli("explore", scen.name, "--json", "--save", "runs", *args, cwd=scen.parent)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def value_key(v):
    assert isinstance(v, int) and not isinstance(v, bool) or v == "segv", v
    return (0, v, "") if isinstance(v, int) else (1, 0, v)


def regs_key(regs: dict) -> list:
    out = []
    for k, v in regs.items():
        t, r = k.split(":", 1)
        out.append((int(t), r, value_key(v)))
    return out


def check_object(doc: dict, *, policy: str, strategy: str = "exhaustive") -> None:
    assert list(doc) == KEYS
    assert doc["scenario"] == "json" and doc["policy"] == policy and doc["strategy"] == strategy
    assert isinstance(doc["complete"], bool)
    assert doc["counts"] in ("exact", "reduced", "sampled")
    assert isinstance(doc["runs"], int) and doc["runs"] > 0
    assert doc["exists"] in ("never", "sometimes", "always", None)
    assert isinstance(doc["states"], list) and doc["states"]
    for st in doc["states"]:
        assert list(st) == ["regs", "end", "count"]
        assert st["end"] in ("ok", "deadlock", "step-limit")
        assert isinstance(st["count"], int) and st["count"] > 0
        for k, v in st["regs"].items():
            assert k.split(":")[0].isdigit()
            value_key(v)
        # Registers are listed in thread, then name order.
        assert [(int(k.split(":")[0]), k.split(":")[1]) for k in st["regs"]] == \
            sorted((int(k.split(":")[0]), k.split(":")[1]) for k in st["regs"])
    keys = [regs_key(st["regs"]) for st in doc["states"]]
    assert keys == sorted(keys), "states are not sorted by their registers"
    assert len({json.dumps(st["regs"]) + st["end"] for st in doc["states"]}) == len(doc["states"])
    assert isinstance(doc["violations"], dict)
    for name, v in doc["violations"].items():
        assert name in INVARIANTS
        assert list(v) == ["runs", "replay"]
        assert isinstance(v["runs"], int) and v["runs"] > 0
        assert isinstance(v["replay"], str)


def test_one_policy_one_object(vmcli, scen) -> None:
    doc = explore_json(vmcli, scen, "--policy", "mmap_sem")
    assert isinstance(doc, dict)
    check_object(doc, policy="mmap_sem")
    assert doc["complete"] is True and doc["counts"] == "reduced"  # the default: partial-order and symmetry reduction
    assert doc["runs"] == sum(st["count"] for st in doc["states"])
    assert doc["exists"] == "sometimes" and doc["violations"] == {}
    regs = [st["regs"] for st in doc["states"]]
    # Label registers hold addresses as integers; a freed top range is reused.
    assert {r["1:B"] for r in regs} <= {MMAP_BASE - PAGE_SIZE, MMAP_BASE - 2 * PAGE_SIZE}
    # `fault` appears only when a store faulted; an unwritten register never does.
    assert any("0:fault" in r for r in regs) and any("0:fault" not in r for r in regs)
    assert all(r.get("0:fault", "segv") == "segv" for r in regs)
    assert all(set(r) <= {"0:r0", "0:fault", "1:B"} for r in regs)
    # Integers before "segv" among states that differ only there.
    r0s = [r["0:r0"] for r in regs if "0:fault" not in r and r["1:B"] == MMAP_BASE - PAGE_SIZE]
    assert r0s == sorted(r0s, key=value_key) and r0s[-1] == "segv" and len(r0s) > 1


def test_the_default_policy_is_mmap_sem(vmcli, scen) -> None:
    assert explore_json(vmcli, scen)["policy"] == "mmap_sem"


def test_several_policies_a_list_in_the_order_given_with_replays(vmcli, scen) -> None:
    docs = explore_json(vmcli, scen, "--policy", "wilcox-early-return", "--policy", "mmap_sem")
    assert isinstance(docs, list) and [d["policy"] for d in docs] == ["wilcox-early-return", "mmap_sem"]
    for d in docs:
        check_object(d, policy=d["policy"])
    v = docs[0]["violations"]
    assert list(v) == ["munmap-incomplete"]
    replay = scen.parent / v["munmap-incomplete"]["replay"]
    saved = json.loads(replay.read_text())
    assert saved["policy"] == "wilcox-early-return" and saved["format"] == 1
    assert (replay.parent / saved["scenario"]).resolve() == scen.resolve()


def test_all_policies_in_the_documented_order(vmcli, tmp_path) -> None:
    path = tmp_path / "small.toml"
    path.write_text('name = "json"\n[[map]]\nname = "A"\nfill = 1\nprefault = [0, 1]\n'
                    '[[thread]]\nops = ["r0 = load A"]\n[[thread]]\nops = ["munmap A"]\n')
    docs = explore_json(vmcli, path, "--all-policies")
    assert [d["policy"] for d in docs] == ["mmap_sem", "wilcox", "glisse", "pervma"]
    for d in docs:
        check_object(d, policy=d["policy"])
        assert d["complete"] is True


def test_sampling_says_sampled(vmcli, scen) -> None:
    doc = explore_json(vmcli, scen, "--policy", "wilcox", "--strategy", "pct", "--runs", "25")
    check_object(doc, policy="wilcox", strategy="pct")
    assert doc["counts"] == "sampled" and doc["complete"] is False and doc["runs"] == 25
    assert sum(st["count"] for st in doc["states"]) == 25


def test_no_exists_clause_gives_null(vmcli, tmp_path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text('name = "json"\n[[map]]\nname = "A"\n[[thread]]\nops = ["r0 = load A"]\n')
    doc = explore_json(vmcli, path)
    check_object(doc, policy="mmap_sem")
    assert doc["exists"] is None
    # One interleaving of the reduced graph (the exact count is 2: the restarted load and
    # the rwsem's up_read commute).
    assert doc["states"] == [{"regs": {"0:r0": 0}, "end": "ok", "count": 1}]


def test_an_incomplete_exploration_says_so(vmcli, scen) -> None:
    doc = explore_json(vmcli, scen, "--policy", "wilcox", "--max-states", "10")
    assert doc["complete"] is False


def test_counts_beyond_64_bits_are_exact_json_integers(tmp_path) -> None:
    """Interleaving counts are exact big integers (docs/design.md#reproducible-runs); --json must print them
    as JSON integers even past 2**64."""
    import json
    import subprocess
    import sys

    path = tmp_path / "big.toml"
    # Three threads of 16 TLB-hitting loads each: 48! / (16!)^3, about 2e21 interleavings.
    threads = "".join(
        "[[thread]]\nops = [" + ", ".join(f'"r{i} = load A"' for i in range(16)) + "]\n" for _ in range(3)
    )
    path.write_text('name = "big"\n[[map]]\nname = "A"\nprefault = [0, 1, 2]\n' + threads)
    p = subprocess.run([sys.executable, "-m", "vmactors", "explore", str(path), "--json", "--save", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["complete"] and doc["runs"] == sum(s["count"] for s in doc["states"])
    assert doc["runs"] > 2**64
