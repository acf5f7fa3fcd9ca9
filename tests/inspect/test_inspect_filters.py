"""Filters: each alone, combined with "and", inclusive step bounds, page ranges; the
default output is the log's own lines, byte for byte (what jq would select)."""

from __future__ import annotations

import fnmatch
import json
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmactors.inspect.command import print_lines
from vmactors.inspect.filters import EventFilter
from vmactors.inspect.reader import open_log


A = 0x7EFFFFFFE000  # the munmap story's two-page mapping (conftest.A)
PAGE = 4096


def select(path: Path, pred) -> str:
    """The reference: lines whose JSON satisfies `pred`, as `jq -c 'select(...)'` would
    print them (the log is compact JSON, so jq -c reproduces each line)."""
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if pred(json.loads(line)):
            out.append(line)
    return "".join(out)


def steps(out: str) -> list[int]:
    return [json.loads(line)["step"] for line in out.splitlines()]


def test_no_filter_prints_the_log_unchanged(inspect, munmap_log):
    assert inspect.ok(munmap_log) == munmap_log.read_text()


def test_lines_are_unchanged_byte_for_byte(inspect, tmp_path, logs):
    # Spacing and key order that no serializer of ours would produce survive as they are.
    b = logs.LogBuilder()
    b.step()
    b.add("cpu0", "mem.load", cpu=0, addr=A, pages=1, frame=1, vma="A", vaddr=A, reg="r0", value=1)
    text = b.text().replace('"event":"mem.load"', '"event" : "mem.load"  ')
    text = text.replace('"value":1}', '"value":1.0, "note":"caf\\u00e9 \u00e9"}')
    path = tmp_path / "odd.jsonl"
    path.write_bytes(text.encode())
    out = inspect.ok(path, "--cpu", 0)
    assert out.encode() == text.encode().splitlines(keepends=True)[1]


def test_event_glob(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--event", "ipi.*")
    assert out == select(munmap_log, lambda e: e["event"].startswith("ipi."))
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["ipi.send"] * 2 + ["ipi.ack"] * 2


def test_event_exact_and_character_class(inspect, munmap_log):
    assert steps(inspect.ok(munmap_log, "--event", "tree.store")) == [4]
    out = inspect.ok(munmap_log, "--event", "[pt][tl][eb].*")
    assert {json.loads(line)["event"] for line in out.splitlines()} == {"pte.zap", "tlb.flush"}


def test_cpu(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--cpu", 1)
    assert out == select(munmap_log, lambda e: e.get("cpu") == 1)
    # ipi.send from the shootdown actor names its target CPU: it is about cpu1 too.
    assert any(json.loads(line)["actor"] == "shootdown" for line in out.splitlines())


def test_actor(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--actor", "shootdown")
    assert out == select(munmap_log, lambda e: e["actor"] == "shootdown")
    assert inspect.ok(munmap_log, "--actor", "shoot") == ""  # exact, not a prefix


def test_step_bounds_are_inclusive(inspect, munmap_log):
    assert set(steps(inspect.ok(munmap_log, "--from-step", 4, "--to-step", 6))) == {4, 5, 6}
    assert set(steps(inspect.ok(munmap_log, "--from-step", 15))) == {15, 16}
    assert set(steps(inspect.ok(munmap_log, "--to-step", 1))) == {0, 1}
    assert set(steps(inspect.ok(munmap_log, "--from-step", 7, "--to-step", 7))) == {7}


def test_addr_matches_every_page_of_a_range(inspect, munmap_log):
    # A spans two pages; tree.store, tlb.flush and the IPIs cover both (pages=2), each
    # pte.zap and load one.
    second = inspect.ok(munmap_log, "--addr", hex(A + PAGE + 8))
    names = [json.loads(line)["event"] for line in second.splitlines()]
    assert "tree.store" in names and "tlb.flush" in names and "ipi.send" in names
    zapped = [json.loads(line)["frame"] for line in second.splitlines() if '"pte.zap"' in line]
    assert zapped == [4]
    first = inspect.ok(munmap_log, "--addr", str(A))  # decimal works too
    assert [json.loads(line)["frame"] for line in first.splitlines() if '"pte.zap"' in line] == [3]
    assert "mem.load" not in first
    # One byte before A and the first byte after the range: nothing.
    assert inspect.ok(munmap_log, "--addr", hex(A - 1)) == ""
    assert inspect.ok(munmap_log, "--addr", hex(A + 2 * PAGE)) == ""
    # The last byte of the range still matches the 2-page events.
    last = inspect.ok(munmap_log, "--addr", hex(A + 2 * PAGE - 1))
    assert '"tree.store"' in last


def test_filters_combine_with_and(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--cpu", 0, "--event", "tlb.*", "--from-step", 9, "--to-step", 9)
    assert out == select(
        munmap_log, lambda e: e.get("cpu") == 0 and e["event"].startswith("tlb.") and e["step"] == 9
    )
    assert len(out.splitlines()) == 1
    assert inspect.ok(munmap_log, "--cpu", 0, "--actor", "cpu1") == ""
    out = inspect.ok(munmap_log, "--actor", "cpu2", "--addr", hex(A + PAGE))
    assert [json.loads(line)["event"] for line in out.splitlines()] == [
        "syscall.begin", "msg.send", "pte.zap", "tlb.flush", "msg.send", "syscall.end"
    ]


def reference(ev, cpu, actor, glob, addr, lo, hi) -> bool:
    """What each option means, written independently of EventFilter."""
    if cpu is not None and ev.get("cpu") != cpu:
        return False
    if actor is not None and ev["actor"] != actor:
        return False
    if glob is not None and not fnmatch.fnmatchcase(ev["event"], glob):
        return False
    if addr is not None:
        if "addr" not in ev or not (ev["addr"] <= addr < ev["addr"] + ev.get("pages", 1) * 4096):
            return False
    if lo is not None and ev["step"] < lo:
        return False
    return hi is None or ev["step"] <= hi


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cpu=st.none() | st.integers(0, 3),
    actor=st.none() | st.sampled_from(["cpu0", "cpu2", "tree", "shootdown", "sim"]),
    glob=st.none() | st.sampled_from(["msg.*", "ipi.*", "*.flush", "mem.load", "*", "tlb.?lush"]),
    addr=st.none() | st.sampled_from([A, A + 8, A + PAGE, A + 2 * PAGE - 8, A + 2 * PAGE]),
    lo=st.none() | st.integers(0, 17),
    hi=st.none() | st.integers(0, 17),
)
def test_output_equals_a_json_select_on_the_raw_log(inspect, munmap_log, cpu, actor, glob, addr, lo, hi):
    path = munmap_log
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    argv: list[object] = [path]
    for option, value in (("--cpu", cpu), ("--actor", actor), ("--event", glob), ("--addr", addr),
                          ("--from-step", lo), ("--to-step", hi)):
        if value is not None:
            argv += [option, value]
    out = inspect.ok(*argv)
    assert out == select(path, lambda e: reference(e, cpu, actor, glob, addr, lo, hi))


def test_filtering_streams_in_constant_memory(tmp_path, logs):
    # 60,000 events, about 7 MB: the filter must not hold the log.
    path = tmp_path / "big.jsonl"
    b = logs.LogBuilder()
    with path.open("w") as f:
        f.write(b.text())
        for step in range(1, 60_001):
            ev = {"step": step, "vtime_ns": step * 10, "actor": f"cpu{step % 4}", "event": "mem.load",
                  "cpu": step % 4, "addr": A + (step % 64) * PAGE, "pages": 1, "frame": step % 97,
                  "vma": "A", "vaddr": A + (step % 64) * PAGE, "reg": "r0", "value": step}
            f.write(json.dumps(ev, separators=(",", ":")) + "\n")

    class Sink:
        count = 0

        def write(self, text: str) -> None:
            self.count += 1

        def flush(self) -> None:
            pass

    sink = Sink()
    tracemalloc.start()
    try:
        with open_log(path) as log:
            n = print_lines(log, EventFilter(addr=A + 5 * PAGE), sink)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == sink.count == 60_000 // 64 + (1 if 60_000 % 64 >= 5 else 0)
    assert peak < 1_000_000, f"peak {peak} bytes while filtering a {path.stat().st_size} byte log"


def test_table_is_plain_and_fixed_width_off_a_terminal(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--table", "--event", "tlb.flush")
    lines = out.splitlines()
    assert lines[0].split() == ["step", "vtime", "actor", "event", "cpu", "addr", "details"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert len(lines) == 2 + 3  # header, rule, three flushes
    assert "\x1b" not in out and out.isascii()
    assert all(line == line.rstrip() for line in lines)
    assert lines[2] == (
        "      6         600  cpu2       tlb.flush             2  0x7effffffe000+2p    reason=local"
    )
    # columns start where their headers do
    for name in ("actor", "event", "addr", "details"):
        col = lines[0].index(name)
        assert all(line[col - 2:col] == "  " and line[col] != " " for line in lines[2:])
    assert inspect.ok(munmap_log, "--table", "--event", "tlb.flush") == out


def test_table_honours_every_filter(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--table", "--actor", "cpu0", "--from-step", 9)
    rows = out.splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["9", "9", "9", "9"]
    assert "ipi.ack" in out and "reason=ipi" in out


def test_table_has_one_line_per_event_with_all_details(inspect, munmap_log):
    out = inspect.ok(munmap_log, "--table")
    rows = out.splitlines()[2:]
    assert len(rows) == len(munmap_log.read_text().splitlines())
    assert rows[-1].endswith('outcome=violation regs={"0:r0":1,"1:r1":1} violations=["coherence"]')
    assert "scenario_sha256=" + "0" * 64 in rows[0]


def test_rich_table_on_a_terminal(munmap_log):
    import io

    from rich.console import Console

    from vmactors.inspect.reader import open_log
    from vmactors.inspect.table import print_rich_table

    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=True, color_system="standard")
    with open_log(munmap_log) as log:
        n = print_rich_table(log, EventFilter(event="invariant.violated"), console)
    assert n == 1
    text = buf.getvalue()
    assert "\x1b[" in text  # colour
    assert "invariant.violated" in text and "coherence" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cpu", "x"], "--cpu: 'x' is not a non-negative integer"),
        (["--cpu", "-1"], "--cpu: '-1' is not a non-negative integer"),
        (["--from-step", "1.5"], "--from-step: '1.5' is not a non-negative integer"),
        (["--to-step", ""], "--to-step: '' is not a non-negative integer"),
        (["--addr", "0xzz"], "--addr: '0xzz' is not an address (decimal or 0x hex)"),
        (["--addr", "A"], "--addr: 'A' is neither an address (decimal or 0x hex) nor a map label of this run "
                          "(its maps: none)"),
        (["--event", "tlb.fil"], "--event: unknown event 'tlb.fil'; did you mean 'tlb.fill' or 'tlb.flush'? "
                                 "(docs/log-schema.md lists them)"),
        (["--event", "tlx.*"], "--event: 'tlx.*' matches no event name (docs/log-schema.md lists them)"),
        (["--history", "0x"], "--history: '0x' is not an address (decimal or 0x hex)"),
        (["--from-step", "9", "--to-step", "3"], "--from-step 9 is after --to-step 3"),
        (["--table", "--timeline"], "--table and --timeline cannot be combined: choose one view"),
    ],
)
def test_bad_option_values_exit_2_with_one_line(inspect, munmap_log, argv, message):
    status, out, err = inspect(munmap_log, *argv)
    assert (status, out) == (2, "")
    assert err == message + "\n"


def test_bad_diagram_kind_is_an_argparse_error(inspect, munmap_log):
    status, out, err = inspect(munmap_log, "--diagram", "svg")
    assert status == 2 and out == ""
    assert "invalid choice: 'svg'" in err
