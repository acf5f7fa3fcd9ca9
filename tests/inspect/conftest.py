"""Synthetic logs in the format of docs/log-schema.md, and a way to run `inspect`.

The simulator is built in parallel, so these tests write the logs themselves: a
`LogBuilder` emits events with the schema's key order, compact JSON, one a line.

Two stories:

- `munmap_log`: 3 CPUs, `mmap_sem`; cpu2 munmaps A (2 pages) while cpu1 reads it (before
  the zap) and cpu0 reads it through a stale TLB entry (after the zap, before its IPI).
- `mapfixed_log`: `wilcox`; cpu2 replaces A with MAP_FIXED; cpu0 faults the new page in
  and reads 2, cpu1 still reads 1 through its stale (prefaulted) TLB entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vmactors.errors import UsageError
from vmactors.inspect.command import register

KEY_ORDER = ["step", "vtime_ns", "actor", "event", "cpu", "addr", "pages", "frame", "vma",
             "msg_id", "src", "dst", "kind", "cause"]

A = 0x7EFFFFFFE000  # two pages: A and A + 0x1000, ending at the mmap base
PAGE = 4096


class LogBuilder:
    """Writes a log event by event. `step()` starts the next actor step."""

    def __init__(self, scenario: str = "test", policy: str = "mmap_sem", seed: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.cur = 0
        self.next_msg = 1
        self.sent: dict[int, dict[str, Any]] = {}
        self.add("sim", "run.start", format=1, vmactors="0.1.0", scenario=scenario,
                 scenario_sha256="0" * 64, policy=policy, strategy="random", seed=seed)

    def step(self) -> int:
        self.cur += 1
        return self.cur

    def add(self, actor: str, event: str, **fields: Any) -> dict[str, Any]:
        ev: dict[str, Any] = {"step": self.cur, "vtime_ns": self.cur * 100, "actor": actor, "event": event}
        for key in KEY_ORDER[4:]:
            if key in fields:
                ev[key] = fields.pop(key)
        ev.update(fields)
        self.events.append(ev)
        return ev

    def send(self, src: str, dst: str, kind: str, cause: int | None = None, **payload: Any) -> int:
        msg_id = self.next_msg
        self.next_msg += 1
        fields = dict(msg_id=msg_id, src=src, dst=dst, kind=kind, cause=cause, **payload)
        self.sent[msg_id] = fields
        self.add(src, "msg.send", **dict(fields))
        return msg_id

    def recv(self, msg_id: int) -> None:
        fields = dict(self.sent[msg_id])
        self.add(fields["dst"], "msg.recv", **fields)

    def end(self, outcome: str, regs: dict[str, Any], violations: list[str]) -> None:
        self.step()
        self.add("sim", "run.end", outcome=outcome, regs=regs, violations=violations)

    def text(self) -> str:
        return "".join(json.dumps(ev, separators=(",", ":")) + "\n" for ev in self.events)

    def write(self, path: Path) -> Path:
        path.write_text(self.text())
        return path


def build_munmap() -> LogBuilder:
    b = LogBuilder("munmap-stale", "mmap_sem")
    rng = dict(addr=A, pages=2)
    b.step()  # 1
    b.add("cpu2", "op.begin", cpu=2, thread=2, index=0, text="munmap A")
    b.add("cpu2", "syscall.begin", cpu=2, vma="A", op="munmap", text="munmap A", **rng)
    m1 = b.send("cpu2", "mmap_sem", "down_write")
    b.step()  # 2
    b.recv(m1)
    m2 = b.send("mmap_sem", "cpu2", "grant", cause=m1)
    b.step()  # 3
    b.recv(m2)
    b.add("cpu2", "lock.acquire", cpu=2, lock="mmap_sem", mode="write")
    m3 = b.send("cpu2", "tree", "store", cause=m2, entry="null", **rng)
    b.step()  # 4
    b.recv(m3)
    b.add("tree", "tree.store", vma=None, entry="null", **rng)
    m4 = b.send("tree", "cpu2", "stored", cause=m3)
    b.step()  # 5
    b.add("cpu1", "op.begin", cpu=1, thread=1, index=0, text="r1 = load A+0x1008")
    b.add("cpu1", "mem.load", cpu=1, addr=A + PAGE, pages=1, frame=4, vma="A",
          vaddr=A + PAGE + 8, reg="r1", value=1)
    b.add("cpu1", "op.end", cpu=1, thread=1, index=0, text="r1 = load A+0x1008", result=1)
    b.step()  # 6
    b.recv(m4)
    b.add("cpu2", "pte.zap", cpu=2, addr=A, pages=1, frame=3, vma="A")
    b.add("cpu2", "pte.zap", cpu=2, addr=A + PAGE, pages=1, frame=4, vma="A")
    b.add("cpu2", "tlb.flush", cpu=2, reason="local", **rng)
    m5 = b.send("cpu2", "shootdown", "flush", cause=m4, **rng)
    b.step()  # 7
    b.add("cpu0", "op.begin", cpu=0, thread=0, index=0, text="r0 = load A+0x1008")
    b.add("cpu0", "mem.load", cpu=0, addr=A + PAGE, pages=1, frame=4, vma="A",
          vaddr=A + PAGE + 8, reg="r0", value=1)
    b.add("cpu0", "op.end", cpu=0, thread=0, index=0, text="r0 = load A+0x1008", result=1)
    b.add("sim", "invariant.violated", cpu=0, addr=A + PAGE, pages=1, frame=4, vma="A",
          invariant="coherence", detail="cpu0's TLB maps frame 4, the page table nothing")
    b.step()  # 8
    b.recv(m5)
    m6 = b.send("shootdown", "cpu0", "ipi", cause=m5, **rng)
    b.add("shootdown", "ipi.send", cpu=0, msg_id=m6, **rng)
    m7 = b.send("shootdown", "cpu1", "ipi", cause=m5, **rng)
    b.add("shootdown", "ipi.send", cpu=1, msg_id=m7, **rng)
    b.step()  # 9
    b.recv(m6)
    b.add("cpu0", "tlb.flush", cpu=0, reason="ipi", **rng)
    m8 = b.send("cpu0", "shootdown", "ack", cause=m6)
    b.add("cpu0", "ipi.ack", cpu=0, msg_id=m8, **rng)
    b.step()  # 10
    b.recv(m7)
    b.add("cpu1", "tlb.flush", cpu=1, reason="ipi", **rng)
    m9 = b.send("cpu1", "shootdown", "ack", cause=m7)
    b.add("cpu1", "ipi.ack", cpu=1, msg_id=m9, **rng)
    b.step()  # 11
    b.recv(m8)
    b.step()  # 12
    b.recv(m9)
    m10 = b.send("shootdown", "cpu2", "done", cause=m9)
    b.step()  # 13
    b.recv(m10)
    b.add("cpu2", "frame.free", cpu=2, frame=3)
    b.add("cpu2", "frame.free", cpu=2, frame=4)
    b.step()  # 14
    b.add("cpu2", "vma.free", cpu=2, vma="A")
    b.add("cpu2", "lock.release", cpu=2, lock="mmap_sem", mode="write")
    m11 = b.send("cpu2", "mmap_sem", "up_write")
    b.add("cpu2", "syscall.end", cpu=2, vma="A", op="munmap", text="munmap A", ret=0, **rng)
    b.add("cpu2", "op.end", cpu=2, thread=2, index=0, text="munmap A", result=0)
    b.step()  # 15
    b.recv(m11)
    b.end("violation", {"0:r0": 1, "1:r1": 1}, ["coherence"])
    return b


B = 0x7EFFFFFFF000  # one page


def build_mapfixed() -> LogBuilder:
    b = LogBuilder("mapfixed-stale", "wilcox", seed=7)
    one = dict(addr=B, pages=1)
    b.step()  # 1
    b.add("cpu2", "syscall.begin", cpu=2, vma="A", op="mmap-fixed",
          text="mmap A fixed kind=file file=f2 fill=2", **one)
    m1 = b.send("cpu2", "tree", "store", entry="vma", vma="2.0", **one)
    b.step()  # 2
    b.recv(m1)
    b.add("tree", "tree.store", vma="2.0", entry="vma", **one)
    m2 = b.send("tree", "cpu2", "stored", cause=m1)
    b.step()  # 3
    b.recv(m2)
    b.add("cpu2", "pte.zap", cpu=2, frame=3, vma="A", **one)
    b.add("cpu2", "tlb.flush", cpu=2, reason="local", **one)
    m3 = b.send("cpu2", "shootdown", "flush", cause=m2, **one)
    b.step()  # 4
    b.add("cpu0", "fault.begin", cpu=0, vaddr=B, access="load", **one)
    b.step()  # 5
    b.add("cpu0", "pte.install", cpu=0, frame=5, vma="2.0", prot="rw", **one)
    b.add("cpu0", "fault.end", cpu=0, vma="2.0", **one)
    b.step()  # 6
    b.add("cpu0", "tlb.fill", cpu=0, frame=5, vma="2.0", prot="rw", **one)
    b.add("cpu0", "mem.load", cpu=0, frame=5, vma="2.0", vaddr=B, reg="r0", value=2, **one)
    b.step()  # 7
    b.add("cpu1", "mem.load", cpu=1, frame=3, vma="A", vaddr=B, reg="r1", value=1, **one)
    b.add("sim", "invariant.violated", cpu=1, frame=3, vma="A", invariant="coherence",
          detail="cpu1's TLB maps frame 3, the page table frame 5", **one)
    b.step()  # 8
    b.recv(m3)
    m4 = b.send("shootdown", "cpu0", "ipi", cause=m3, **one)
    b.add("shootdown", "ipi.send", cpu=0, msg_id=m4, **one)
    m5 = b.send("shootdown", "cpu1", "ipi", cause=m3, **one)
    b.add("shootdown", "ipi.send", cpu=1, msg_id=m5, **one)
    b.step()  # 9
    b.recv(m5)
    b.add("cpu1", "tlb.flush", cpu=1, reason="ipi", **one)
    m6 = b.send("cpu1", "shootdown", "ack", cause=m5)
    b.add("cpu1", "ipi.ack", cpu=1, msg_id=m6, **one)
    b.step()  # 10
    b.recv(m4)
    b.add("cpu0", "tlb.flush", cpu=0, reason="ipi", **one)
    m7 = b.send("cpu0", "shootdown", "ack", cause=m4)
    b.add("cpu0", "ipi.ack", cpu=0, msg_id=m7, **one)
    b.step()  # 11
    b.recv(m6)
    b.step()  # 12
    b.recv(m7)
    m8 = b.send("shootdown", "cpu2", "done", cause=m7)
    b.step()  # 13
    b.recv(m8)
    m9 = b.send("cpu2", "rcu", "call_rcu", cause=m8, vma="A")
    b.add("cpu2", "syscall.end", cpu=2, vma="A", op="mmap-fixed",
          text="mmap A fixed kind=file file=f2 fill=2", ret=B, **one)
    b.step()  # 14
    b.recv(m9)
    b.add("rcu", "rcu.gp.start", gp=1)
    b.step()  # 15
    b.add("rcu", "rcu.gp.end", gp=1)
    b.add("rcu", "vma.free", vma="A")
    b.end("violation", {"0:r0": 2, "1:r1": 1}, ["coherence"])
    return b


@pytest.fixture
def logs() -> SimpleNamespace:
    """The builders and addresses, for tests that write their own logs (this module is
    not imported by name: another conftest.py may own that name)."""
    return SimpleNamespace(
        LogBuilder=LogBuilder, build_munmap=build_munmap, build_mapfixed=build_mapfixed,
        A=A, B=B, PAGE=PAGE,
    )


@pytest.fixture
def munmap_log(tmp_path: Path) -> Path:
    return build_munmap().write(tmp_path / "munmap.jsonl")


@pytest.fixture
def mapfixed_log(tmp_path: Path) -> Path:
    return build_mapfixed().write(tmp_path / "mapfixed.jsonl")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmactors")
    register(parser.add_subparsers())
    return parser


class Inspect:
    """Runs `vmactors inspect ARGS` as the CLI would: parse, call `run`, and turn
    `UsageError` into a one-line message on stderr and exit status 2."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: object) -> tuple[int, str, str]:
        self.capsys.readouterr()
        parser = make_parser()
        try:
            args = parser.parse_args(["inspect", *map(str, argv)])
            status = args.func(args)
        except UsageError as exc:
            print(exc, file=sys.stderr)
            status = 2
        except SystemExit as exc:  # argparse
            status = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return status, out, err

    def ok(self, *argv: object) -> str:
        status, out, err = self(*argv)
        assert status == 0, err
        assert err == ""
        return out


@pytest.fixture
def inspect(capsys: pytest.CaptureFixture[str]) -> Inspect:
    return Inspect(capsys)
