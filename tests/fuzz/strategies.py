"""Hypothesis strategies for every input a user hands vmactors: scenario files (their
TOML structure, the ops of docs/scenario-format.md and the `exists` grammar), logs for
`inspect`, and replay files. Used by tests/fuzz/test_fuzz.py (a short run in CI) and by
benchmarks/fuzz.py (a long one).

The ops come from the op table of docs/scenario-format.md itself (`rN = load ADDR`,
`L = mmap [PAGES] [kind=anon|file] ...`): a new op documented there is fuzzed without
a change here. The values lean on the edges (0, -1, 2^63, 2^64, 10^30, unaligned
addresses) and every structure is sometimes of the wrong type, missing, or doubled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
FORMAT_DOC = ROOT / "docs" / "scenario-format.md"

LABELS = ("A", "B", "C", "L", "M2", "x")
REGISTERS = ("r0", "r1", "r2", "fault", "and", "segv", "A")
FILES = ("f1", "f2", "f")
EDGE_INTS = (0, 1, -1, 2, 7, 8, 4096, 0x10000, 0x7EFFFFFFF000, 0x7F0000000000, 2**63 - 1, 2**63, 2**64 - 1,
             2**64, -(2**63), -(2**63) - 1, 10**30, 256, 257, 131072, 131073)

small_ints = st.integers(-3, 12)
edge_ints = st.sampled_from(EDGE_INTS)
any_ints = st.one_of(small_ints, edge_ints, st.integers())


def _int_text(value: int, hexa: bool) -> str:
    if hexa and value >= 0:
        return hex(value)
    return str(value)


int_words = st.builds(_int_text, any_ints, st.booleans())


def op_forms(doc: Path = FORMAT_DOC) -> list[str]:
    """The op forms of docs/scenario-format.md's op table (its first column)."""
    forms = []
    for line in doc.read_text().splitlines():
        m = re.match(r"\| `([^`]+)` \|", line)
        if m and re.search(r"\b(load|store|mmap|munmap|mprotect|madvise|fork|mremap|truncate)\b", m.group(1)):
            forms.append(m.group(1).replace("\\|", "|"))
    return forms


OP_FORMS = op_forms()


@st.composite
def addresses(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["label", "offset", "int", "below", "junk"]))
    label = draw(st.sampled_from(LABELS))
    if kind == "label":
        return label
    if kind == "offset":
        return f"{label}+{draw(int_words)}"
    if kind == "below":
        return f"{label}-{draw(int_words)}"
    if kind == "int":
        return draw(int_words)
    return draw(st.sampled_from(["+", "=", "A+", "0x", "--", "A++8", "é"]))


def _placeholder(word: str, draw: st.DrawFn) -> str:
    if word == "ADDR":
        return draw(addresses())
    if word in ("VALUE", "V", "PAGES", "N", "OFFSET"):
        return draw(int_words)
    if word in ("L", "LABEL"):
        return draw(st.sampled_from(LABELS))
    if word == "rN":
        return draw(st.sampled_from(REGISTERS))
    if word in ("NAME", "FILE"):
        return draw(st.sampled_from(FILES + LABELS))
    if word == "…":
        return draw(st.sampled_from(["anon", "file", "f2", "1", ""]))
    return word


@st.composite
def ops(draw: st.DrawFn) -> str:
    """One op string: a documented form with its placeholders filled, optional parts
    in or out, and now and then a token dropped, doubled or replaced."""
    form = draw(st.sampled_from(OP_FORMS))
    words: list[str] = []
    for part in re.findall(r"\[[^\]]*\]|\S+", form):
        if part.startswith("["):
            if not draw(st.booleans()):
                continue
            part = part[1:-1]
        for token in part.split():
            key, eq, rest = token.partition("=")
            if eq and rest:
                choice = draw(st.sampled_from(rest.split("|")))
                words.append(f"{key}={_placeholder(choice, draw)}")
            elif "|" in token:
                words.append(draw(st.sampled_from(token.split("|"))))
            else:
                words.append(_placeholder(token, draw))
    mutation = draw(st.sampled_from(["none", "none", "none", "drop", "double", "replace"]))
    if mutation != "none" and words:
        i = draw(st.integers(0, len(words) - 1))
        if mutation == "drop":
            del words[i]
        elif mutation == "double":
            words.insert(i, words[i])
        else:
            words[i] = draw(st.sampled_from(["=", "+", "fixed", "to", "kind=file", "prot=r", "0x8", "\t", "#"]))
    return " ".join(words)


@st.composite
def exists_texts(draw: st.DrawFn, depth: int = 3) -> str:
    """An `exists` clause from its grammar (docs/scenario-format.md#exists), with
    herd7's spellings, deep parentheses and stray tokens now and then."""
    kind = draw(st.sampled_from(["atom", "atom", "not", "and", "or", "paren", "junk", "deep"] if depth > 0
                                else ["atom", "junk"]))
    if kind == "atom":
        thread = draw(st.sampled_from(["0", "1", "2", "9", "-1", "x", "99999999999999999999"]))
        op = draw(st.sampled_from(["=", "!=", "==", ""]))
        value = draw(st.one_of(int_words, st.sampled_from(["segv", "A", "B", "zz", ""])))
        return f"{thread}:{draw(st.sampled_from(REGISTERS))} {op} {value}"
    if kind == "not":
        return f"{draw(st.sampled_from(['not ', '~']))}{draw(exists_texts(depth - 1))}"
    if kind in ("and", "or"):
        word = draw(st.sampled_from(["and", "/\\"] if kind == "and" else ["or", "\\/"]))
        return f"{draw(exists_texts(depth - 1))} {word} {draw(exists_texts(depth - 1))}"
    if kind == "paren":
        return f"({draw(exists_texts(depth - 1))})"
    if kind == "deep":
        n = draw(st.sampled_from([50, 200, 1000, 5000]))
        return "(" * n + "0:r0 = 1" + ")" * draw(st.sampled_from([n, n - 1, 0]))
    return draw(st.sampled_from(["(", ")", "and", "0:", ":r0", "0:r0 =", "!", "\\", "0:r0 = 1 2", "ü"]))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return json.dumps(value)  # TOML's basic strings and integers read as JSON writes them
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "nan"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


wrong_types = st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
                        st.lists(small_ints, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), small_ints,
                                                                          max_size=2))


def _maybe_wrong(draw: st.DrawFn, good: st.SearchStrategy[Any]) -> Any:
    return draw(wrong_types) if draw(st.integers(0, 9)) == 0 else draw(good)


@st.composite
def scenario_texts(draw: st.DrawFn) -> str:
    """A scenario file: the TOML structure of docs/scenario-format.md with values
    drawn around their valid ranges, the ops above, an `exists` clause, an `[expect]`
    table, and now and then an unknown key, a wrong type, a missing one."""
    lines = []
    if draw(st.integers(0, 19)):
        lines.append(f"name = {_toml_value(_maybe_wrong(draw, st.sampled_from(['s', 'fuzz', ''])))}")
    if draw(st.booleans()):
        lines.append(f"cpus = {_toml_value(_maybe_wrong(draw, st.one_of(small_ints, edge_ints)))}")
    if draw(st.booleans()):
        lines.append(f"exists = {_toml_value(_maybe_wrong(draw, exists_texts()))}")
    if draw(st.integers(0, 9)) == 0:
        lines.append(f"{draw(st.sampled_from(['nmae', 'ops', 'pages', 'wilcox', 'about']))} = 1")
    for i in range(draw(st.integers(0, 3))):
        lines.append("[[map]]")
        lines.append(f"name = {_toml_value(_maybe_wrong(draw, st.sampled_from(LABELS)))}")
        if draw(st.booleans()):
            lines.append(f"pages = {_toml_value(_maybe_wrong(draw, st.one_of(small_ints, edge_ints)))}")
        if draw(st.booleans()):
            kind = draw(st.sampled_from(["anon", "file", "file", "stack"]))
            lines.append(f'kind = "{kind}"')
            if kind == "file" or draw(st.integers(0, 4)) == 0:
                lines.append(f'file = "{draw(st.sampled_from(FILES))}"')
        if draw(st.booleans()):
            lines.append(f"fill = {_toml_value(_maybe_wrong(draw, any_ints))}")
        if draw(st.integers(0, 3)) == 0:
            lines.append(f"at = {_toml_value(_maybe_wrong(draw, st.one_of(edge_ints, st.integers(0, 2**48))))}")
        if draw(st.integers(0, 2)) == 0:
            lines.append(f"prot = {_toml_value(_maybe_wrong(draw, st.sampled_from(['none', 'r', 'rw', 'w'])))}")
        if draw(st.booleans()):
            lines.append(f"prefault = {_toml_value(_maybe_wrong(draw, st.lists(st.one_of(small_ints, edge_ints), max_size=4)))}")
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"growsdown = {_toml_value(_maybe_wrong(draw, st.booleans()))}")
    for k in range(draw(st.integers(0 if draw(st.integers(0, 19)) == 0 else 1, 4))):
        lines.append("[[thread]]")
        if draw(st.integers(0, 3)) == 0:
            lines.append(f"cpu = {_toml_value(_maybe_wrong(draw, st.one_of(small_ints, edge_ints)))}")
        if draw(st.integers(0, 19)):
            lines.append(f"ops = {_toml_value(_maybe_wrong(draw, st.lists(ops(), max_size=5)))}")
    if draw(st.integers(0, 2)) == 0:
        lines.append("[expect]")
        for policy in draw(st.lists(st.sampled_from(["mmap_sem", "wilcox", "glisse", "pervma", "wilcx"]),
                                    max_size=3, unique=True)):
            value = draw(st.one_of(st.sampled_from(["never", "sometimes", "always", "maybe"]),
                                   st.fixed_dictionaries({"violations": st.lists(
                                       st.sampled_from(["coherence", "frame-uaf", "deadlock", "nope"]),
                                       max_size=2)}), wrong_types))
            lines.append(f"{json.dumps(policy)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


@st.composite
def mutated_texts(draw: st.DrawFn, base: str) -> str:
    """`base` with a few byte-level edits: chunks cut, repeated, or replaced by TOML
    punctuation, control characters or invalid UTF-8 (returned as surrogate-escaped
    text: write it with `encode('utf-8', 'surrogateescape')`)."""
    data = bytearray(base.encode())
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        j = min(len(data), i + draw(st.integers(0, 12)))
        what = draw(st.sampled_from(["cut", "repeat", "insert"]))
        if what == "cut":
            del data[i:j]
        elif what == "repeat":
            data[i:i] = data[i:j] * draw(st.integers(1, 3))
        else:
            data[i:i] = draw(st.sampled_from([b"[", b"]]", b"=", b'"', b"\n", b"\x00", b"\xff\xfe", b"{", b"#", b"'''",
                                              b"[[thread]]\n", b"\\u0000", b"1e999", b"0x"]))
    return bytes(data).decode("utf-8", "surrogateescape")


# --- logs --------------------------------------------------------------------------


def _event_fields(draw: st.DrawFn, name: str) -> dict[str, Any]:
    from vmactors.log.schema import EVENTS, key_order

    fields: dict[str, Any] = {}
    for key in key_order(EVENTS[name]):
        if draw(st.integers(0, 9)) == 0:
            continue  # a key left out
        if key in ("cpu", "pages", "frame", "msg_id", "cause", "thread", "index", "value", "seed", "format"):
            fields[key] = draw(st.one_of(st.integers(-1, 4), edge_ints, wrong_types))
        elif key in ("addr", "vaddr"):
            fields[key] = draw(st.one_of(st.sampled_from([0x7EFFFFFFF000, 0x7EFFFFFFE000, 0, -4096]), edge_ints,
                                         wrong_types))
        elif key in ("regs",):
            fields[key] = draw(st.one_of(st.dictionaries(st.sampled_from(["0:r0", "1:r1", "x"]),
                                                         st.one_of(small_ints, st.just("segv"))), wrong_types))
        elif key in ("violations",):
            fields[key] = draw(st.one_of(st.lists(st.sampled_from(["coherence", "deadlock", ""])), wrong_types))
        else:
            fields[key] = draw(st.one_of(st.sampled_from(["cpu0", "cpu1", "tree", "shootdown", "A", "2.0", "read",
                                                          "write", "ipi", "local", "mmap_sem", "vma", "munmap A",
                                                          "load", "store", "zero", "null", "ok"]), wrong_types))
    return fields


@st.composite
def log_lines(draw: st.DrawFn, step: int) -> bytes:
    from vmactors.log.schema import EVENT_NAMES

    name = draw(st.sampled_from(EVENT_NAMES))
    ev: dict[str, Any] = {"step": step, "vtime_ns": draw(st.integers(0, 10**6)),
                          "actor": draw(st.sampled_from(["cpu0", "cpu1", "cpu2", "tree", "shootdown", "rcu",
                                                         "mmap_sem", "sim", "cpu99999999999"])),
                          "event": name}
    ev.update(_event_fields(draw, name))
    line = json.dumps(ev).encode() + b"\n"
    corrupt = draw(st.integers(0, 29))
    if corrupt == 0:
        return line[: draw(st.integers(0, len(line) - 1))]  # cut short
    if corrupt == 1:
        return draw(st.sampled_from([b"\n", b"[]\n", b"null\n", b"{}\n", b'{"step": true}\n', b"\xff\n",
                                     b'{"step": 1e400, "actor": "x", "event": "y"}\n']))
    return line


@st.composite
def log_texts(draw: st.DrawFn) -> bytes:
    """A log: a `run.start` line (sometimes wrong), events of every kind in the
    schema with edge values and wrong types, steps that now and then go backwards,
    and a corrupted line here and there."""
    header: dict[str, Any] = {"step": 0, "vtime_ns": 0, "actor": "sim", "event": "run.start", "format": 1,
                              "vmactors": "0.1.0", "scenario": "s", "scenario_sha256": "0" * 64,
                              "policy": "wilcox", "strategy": "random", "seed": 0}
    spoil = draw(st.integers(0, 9))
    if spoil == 0:
        header[draw(st.sampled_from(list(header)))] = draw(wrong_types)
    elif spoil == 1:
        header.pop(draw(st.sampled_from(list(header))))
    out = [json.dumps(header).encode() + b"\n"] if draw(st.integers(0, 19)) else []
    step = 0
    for _ in range(draw(st.integers(0, 40))):
        step += draw(st.sampled_from([0, 0, 1, 1, 2, -1]))
        out.append(draw(log_lines(max(step, 0))))
    return b"".join(out)


INSPECT_VIEWS: tuple[tuple[str, ...], ...] = (
    (), ("--table",), ("--timeline",), ("--diagram", "ascii"), ("--diagram", "mermaid"), ("--diagram", "html"),
    ("--history", "0x7efffffff000"), ("--history", "A"), ("--cpu", "1", "--event", "tlb.*"),
    ("--addr", "0x7efffffff000", "--from-step", "2", "--to-step", "9"), ("--timeline", "--actor", "cpu0"),
)


# --- replay files ------------------------------------------------------------------


@st.composite
def replay_texts(draw: st.DrawFn, scenario_text: str) -> bytes:
    """A replay file around `scenario_text` (a valid scenario): every key sometimes
    missing or of the wrong type, choice lists of every length with booleans, floats,
    negative and huge numbers."""
    import hashlib

    doc: dict[str, Any] = {
        "format": draw(st.one_of(st.just(1), st.just(1), wrong_types, small_ints)),
        "scenario": draw(st.sampled_from(["s.toml", "missing.toml", "/dev/zero", ".", "", "../s.toml"])),
        "scenario_sha256": draw(st.one_of(st.just(hashlib.sha256(scenario_text.encode()).hexdigest()),
                                          st.just("0" * 64), wrong_types)),
        "policy": draw(st.one_of(st.sampled_from(["mmap_sem", "wilcox", "glisse", "pervma", "wilcx"]), wrong_types)),
        "choices": draw(st.one_of(st.lists(st.integers(0, 3), max_size=60),
                                  st.lists(st.one_of(st.integers(-1, 3), st.booleans(), st.just(1.0), edge_ints),
                                           max_size=20), wrong_types)),
    }
    if draw(st.booleans()):
        doc["scenario_text"] = draw(st.one_of(st.just(scenario_text), mutated_texts(scenario_text), wrong_types))
    if draw(st.booleans()):
        doc["invariant"] = draw(st.one_of(st.sampled_from(["coherence", "exists", "not-exists", "frame-uaf", "x"]),
                                          wrong_types))
    if draw(st.booleans()):
        doc["violated_at_step"] = draw(st.one_of(st.integers(-1, 40), edge_ints, wrong_types))
    for key in draw(st.lists(st.sampled_from(list(doc)), max_size=2, unique=True)):
        del doc[key]
    text = json.dumps(doc).encode()
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text
