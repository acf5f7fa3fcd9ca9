"""Every command shown in the docs runs, and shows what the docs say it shows.

In README.md and docs/*.md, a fenced block whose info string is `sh` holds commands,
one a line (`\\` continues a line, `#` starts a comment). They run in order, one
document at a time, with bash, from a scratch folder holding a copy of `scenarios/`
and with this checkout's `vmactors` first on PATH (and as `.venv/bin/vmactors`); files one block writes are there
for the next block of the same document.

A fenced `text` block that follows an `sh` block (nothing but blank lines between)
is the standard output of that block's last command. It must match line for line,
trailing spaces aside, except that a line holding only `...` stands for any number
of lines (the docs elide long output that way).

A block that cannot run here is marked on the line before it, with the reason:

    <!-- docs-test: skip (installs the package) -->

A command may exit 0 or 1 (a run that violates an invariant exits 1); anything else,
or a traceback, fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)\s*$", re.M | re.S)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<why>[^)]*)\)\s*-->\s*$")


@attrs.frozen
class Block:
    doc: Path
    line: int
    commands: tuple[str, ...]
    expected: str | None  # the `text` block after it
    skip: str | None


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    fences = list(FENCE.finditer(text))
    out = []
    for i, m in enumerate(fences):
        if m.group("info").strip() != "sh":
            continue
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        expected = None
        if i + 1 < len(fences):
            nxt = fences[i + 1]
            if nxt.group("info").strip() == "text" and not text[m.end():nxt.start()].strip():
                expected = nxt.group("body")
        out.append(Block(doc, text[: m.start()].count("\n") + 1, tuple(commands(m.group("body"))), expected,
                         skip.group("why") if skip else None))
    return out


def commands(body: str) -> list[str]:
    out, current = [], ""
    for line in body.splitlines():
        if current:
            current += "\n" + line
        elif line.strip() and not line.lstrip().startswith("#"):
            current = line
        else:
            continue
        if not current.endswith("\\"):
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def matches(expected: list[str], got: list[str]) -> bool:
    """Line by line; a `...` line matches any number of lines."""
    if not expected:
        return not got
    head = expected[0]
    if head.strip() == "...":
        return any(matches(expected[1:], got[i:]) for i in range(len(got) + 1))
    return bool(got) and head.rstrip() == got[0].rstrip() and matches(expected[1:], got[1:])


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("COLUMNS", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _ids(doc: Path) -> str:
    return str(doc.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_ids)
def test_commands_in_the_docs_run_and_show_what_the_docs_show(doc: Path, tmp_path: Path) -> None:
    found = blocks(doc)
    if not any(b.skip is None for b in found):
        pytest.skip("no sh block to run")
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    # Commands written as `.venv/bin/vmactors` (the README's set-up) find this one.
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent, target_is_directory=True)
    problems = []
    for b in found:
        if b.skip is not None:
            continue
        last = None
        for command in b.commands:
            last = p = _run(command, tmp_path)
            if p.returncode not in (0, 1) or "Traceback" in p.stderr:
                problems.append(f"{_ids(doc)}:{b.line}: `{command}` exited {p.returncode}: {p.stderr.strip()[-500:]}")
        if b.expected is not None and last is not None:
            want, got = b.expected.splitlines(), last.stdout.splitlines()
            if not matches(want, got):
                problems.append(f"{_ids(doc)}:{b.line}: `{b.commands[-1]}` printed\n" + last.stdout
                                + "\n--- but the doc shows ---\n" + b.expected)
    assert not problems, "\n\n".join(problems)


# --- the checker itself --------------------------------------------------------------------


def test_the_parser_finds_commands_outputs_and_skips(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(
        "intro\n\n```sh\necho one\n# a comment\necho two \\\n  three\n```\n\n```text\ntwo three\n```\n\n"
        "<!-- docs-test: skip (installs things) -->\n```sh\npip install x\n```\n\n```python\nx = 1\n```\n"
    )
    a, b = blocks(doc)
    assert a.commands == ("echo one", "echo two \\\n  three") and a.expected == "two three\n" and a.skip is None
    assert b.commands == ("pip install x",) and b.expected is None and b.skip == "installs things"
    assert _run(a.commands[-1], tmp_path).stdout.splitlines() == ["two three"]


def test_elision_and_mismatch() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "d"], ["a", "d"])
    assert matches(["a  "], ["a"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])
    assert not matches(["a", "b"], ["a", "c"])
    assert not matches(["a"], ["a", "extra"])


def test_every_doc_with_a_shown_output_is_checked() -> None:
    """The README's walk-through and docs/inspect.md show output: they have sh blocks
    that run (not all skipped), each followed by the output it prints."""
    for name in ("README.md", "docs/inspect.md"):
        runnable = [b for b in blocks(ROOT / name) if b.skip is None]
        assert runnable and any(b.expected is not None for b in runnable), name
