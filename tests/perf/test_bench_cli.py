"""`vmactors bench`: the table, the JSON document, the plots, the documents, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vmactors.cli import main

SMALL = ["--cpus", "1,2", "--faults", "6"]


def bench(capsys: Any, *args: str) -> tuple[int, str, str]:
    status = main(["bench", *args])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_a_workload_prints_a_table_per_policy(capsys: Any) -> None:
    status, out, _ = bench(capsys, "pft", *SMALL)
    assert status == 0
    for p in ("mmap_sem", "wilcox", "glisse", "pervma"):
        assert f"policy {p}" in out
    assert "faults/s" in out and "p99 ns" in out


@pytest.mark.parametrize("workload", ["pft", "pft-vmas", "churn", "fixed-other", "fixed-same", "file-map-pages"])
def test_every_workload_runs_to_the_end_under_every_policy(capsys: Any, workload: str) -> None:
    status, out, _ = bench(capsys, workload, *SMALL, "--json", "--policy", "mmap_sem", "--policy", "wilcox",
                           "--policy", "glisse", "--policy", "pervma", "--policy", "wilcox-no-map-pages")
    doc = json.loads(out)
    assert status == 0 and doc["workload"] == workload
    for r in doc["results"]:
        assert r["outcome"] == "ok" and r["faults"] > 0 and r["faults_per_s"] > 0, r
        assert r["latency_ns"]["p50"] <= r["latency_ns"]["p99"]


def test_json_carries_the_costs_and_a_toml_file_overrides_them(capsys: Any, tmp_path: Path) -> None:
    costs = tmp_path / "costs.toml"
    costs.write_text("line_transfer_ns = 500\n")
    _, out, _ = bench(capsys, "pft", *SMALL, "--json", "--policy", "wilcox")
    _, slow, _ = bench(capsys, "pft", *SMALL, "--json", "--policy", "wilcox", "--costs", str(costs))
    a, b = json.loads(out), json.loads(slow)
    assert a["costs"]["line_transfer_ns"] == 51 and b["costs"]["line_transfer_ns"] == 500
    assert b["results"][1]["faults_per_s"] < a["results"][1]["faults_per_s"]  # 2 CPUs share the refcount


@pytest.mark.parametrize("suffix, magic", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_the_plot_renders(capsys: Any, tmp_path: Path, suffix: str, magic: bytes) -> None:
    path = tmp_path / f"pft.{suffix}"
    status, out, _ = bench(capsys, "pft", *SMALL, "--plot", str(path))
    assert status == 0 and path.read_bytes().startswith(magic) and path.stat().st_size > 5000
    if suffix == "svg":
        first = path.read_bytes()
        bench(capsys, "pft", *SMALL, "--plot", str(path))
        assert path.read_bytes() == first  # the same SVG each time


def test_the_costs_document_lists_every_parameter_with_a_source(capsys: Any) -> None:
    status, out, _ = bench(capsys, "costs")
    assert status == 0 and "| `line_transfer_ns` | 51 |" in out and "core-to-core-latency" in out


def test_the_report_has_every_claim_and_measurement(capsys: Any) -> None:
    status, out, _ = bench(capsys, "report", "--cpus", "1,2", "--faults", "4")
    assert status == 0
    for n in ("| 1 |", "| 2 |", "| 3 |", "| 4 |"):
        assert n in out
    assert out.count("holds") + out.count("does not hold") >= 4
    assert "per-VMA locks" in out and "speculative page faults" in out and "62%" in out


@pytest.mark.parametrize("args, message", [
    (["pft", "--cpus", "1,x"], "--cpus"),
    (["pft", "--cpus", "0"], "at least 1"),
    (["pft", "--faults", "0"], "--faults"),
    (["pft", "--plot", "out.pdf"], ".png or .svg"),
    (["pft", "--costs", "/nonexistent.toml"], "cannot read"),
])
def test_bad_input_is_one_line_and_exit_2(capsys: Any, tmp_path: Path, args: list[str], message: str) -> None:
    args = [a if a != "out.pdf" else str(tmp_path / "out.pdf") for a in args]
    status, _, err = bench(capsys, *args, "--faults", "2") if "--faults" not in args else bench(capsys, *args)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unknown_workload_and_policy_are_usage_errors(capsys: Any) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "pft-threads"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["bench", "pft", "--policy", "nope"])
    assert e.value.code == 2
