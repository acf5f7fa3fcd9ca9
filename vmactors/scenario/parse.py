"""Scenario files (docs/scenario-format.md): TOML text -> a validated `Scenario`.

Everything a user can get wrong is a `ScenarioError` with the best position
known (`FILE:LINE:COL: message`, or `FILE: message` when nothing in the text can
be pointed at) and a message that names the culprit: the key, the op string, the
label, the register.  No other exception leaves `load_scenario` or
`parse_scenario`.

Positions: an error about a key or its value points at the key; about an array
element (a prefault CPU, an invariant name) at the element; about an op at the
op's text (inside the quotes); about the `exists` clause at the culprit
character inside the string; about a missing key of a table at its header.

The checks run in this order, so a misplaced key is reported before whatever it
makes look missing: key names of every table, then the top-level values, the
maps, the threads and their ops, CPUs, file fills, `exists`, `[expect]`.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import attrs

from vmactors.errors import ScenarioError
from vmactors.log.schema import INVARIANTS
from vmactors.policies import POLICY_NAMES
from vmactors.scenario.exists import KEYWORDS, ExistsSyntaxError, parse_exists_located
from vmactors.scenario import limits
from vmactors.scenario.locate import Locator, Position
from vmactors.scenario.model import (
    Addr,
    Expectation,
    Expr,
    Fork,
    Load,
    Madvise,
    MapSpec,
    Mmap,
    MmapFixed,
    Mprotect,
    Mremap,
    Munmap,
    Op,
    Scenario,
    Store,
    ThreadSpec,
    Truncate,
)

__all__ = ["INVARIANT_NAMES", "load_scenario", "parse_scenario"]

PAGE_SIZE = 4096
WORD_SIZE = 8
#: User mappings live in [MMAP_MIN, MMAP_BASE) (docs/design.md#the-world).
MMAP_MIN = 0x10000
MMAP_BASE = 0x7F0000000000
MAX_PAGES = (MMAP_BASE - MMAP_MIN) // PAGE_SIZE
#: A word holds a 64-bit value, written signed or unsigned.
WORD_MIN = -(2**63)
WORD_LIMIT = 2**64

#: The invariants, in the order of their table (vmactors.log.schema).
INVARIANT_NAMES: tuple[str, ...] = tuple(INVARIANTS)
VERDICTS: tuple[str, ...] = ("never", "sometimes", "always")
PROTS: tuple[str, ...] = ("none", "r", "rw")
KINDS: tuple[str, ...] = ("anon", "file")

TOP_KEYS: tuple[str, ...] = ("name", "about", "cpus", "exists", "free_pgtables")
TABLES: tuple[str, ...] = ("map", "thread", "expect")
MAP_KEYS: tuple[str, ...] = ("name", "pages", "kind", "file", "fill", "at", "prot", "prefault", "growsdown")
THREAD_KEYS: tuple[str, ...] = ("ops", "cpu", "mm")
EXPECT_ENTRY_KEYS: tuple[str, ...] = ("exists", "violations")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)")
_OP_TOKEN = re.compile(r"=|\+|[^\s=+]+")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")

#: Register names with a fixed meaning: a faulting store sets `fault`; `segv`,
#: `and`, `or`, `not` are words of `exists`.
RESERVED_REGISTERS = KEYWORDS | {"fault"}

OP_FORMS = ("rN = load ADDR, store ADDR VALUE, LABEL = mmap ..., mmap LABEL fixed ..., munmap LABEL, "
            "mprotect LABEL prot=none|r|rw, madvise LABEL dontneed, fork [NAME], mremap LABEL to LABEL, "
            "truncate FILE")
#: The words an op starts with (after `REG =` or `LABEL =` for load and mmap).
OP_VERBS = ("load", "store", "mmap", "munmap", "mprotect", "madvise", "fork", "mremap", "truncate")
#: The name a `fork` without one gives its child address space.
DEFAULT_CHILD = "child"
#: `LABEL-OFFSET`: an address below a (grows-down) map.
_BELOW = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)-(.+)")
#: The advice `madvise` takes.
ADVICE: tuple[str, ...] = ("dontneed",)


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and parse a scenario file; `sha256` is the digest of its bytes."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            # Bounded: `vmactors run /dev/zero` must stop at once, not fill memory.
            data = f.read(limits.MAX_SCENARIO_BYTES + 1)
    except IsADirectoryError:
        raise ScenarioError(name, "is a directory, not a scenario file") from None
    except OSError as exc:
        raise ScenarioError(name, f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > limits.MAX_SCENARIO_BYTES:
        raise ScenarioError(name, f"larger than {limits.MAX_SCENARIO_BYTES >> 20} MiB: not a scenario file "
                                  "(docs/scenario-format.md#limits)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise ScenarioError(name, f"not UTF-8 text: byte 0x{data[exc.start]:02x}", line, col) from None
    return parse_scenario(text, name, digest)


def parse_scenario(text: str, path: str, sha256: str = "") -> Scenario:
    """Parse scenario `text`; `path` is used in messages and kept in the result."""
    try:
        return _Parser(text, path, sha256).parse()
    except ScenarioError:
        raise
    except Exception as exc:  # a bug here must still not show the user a traceback
        raise ScenarioError(path, f"internal error while reading the scenario: {type(exc).__name__}: {exc}") from exc


# --- small helpers ------------------------------------------------------------


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(word: str) -> int | None:
    """A decimal or 0x hex integer, possibly negative; None if `word` is not one."""
    if not _NUMBER.fullmatch(word):
        return None
    negative = word.startswith("-")
    body = word[1:] if negative else word
    value = int(body, 16) if body[:2].lower() == "0x" else int(body, 10)
    return -value if negative else value


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@attrs.define
class _RawOp:
    """One op after its own syntax is checked, before labels are resolved."""

    thread: int
    index: int
    text: str
    verb: str  # load | store | mmap | fixed | munmap | mprotect | madvise | fork | mremap | truncate
    name: str | None = None  # the register (load), new label (mmap) or child's name (fork)
    label: str | None = None  # the label operated on (fixed, munmap, mprotect, madvise, mremap)
    dest: str | None = None  # mremap's destination label
    dest_addr: int | None = None  # or its destination address
    truncated: str | None = None  # the file truncate names
    addr: Addr | None = None
    value: int = 0
    pages: int | None = None
    kind: str = "anon"
    file: str | None = None
    fill: int | None = None
    at: int | None = None
    prot: str = "rw"


@attrs.define
class _RawMap:
    index: int
    name: str
    pages: int
    kind: str
    file: str | None
    fill: int | None
    at: int | None
    prot: str
    prefault: tuple[int, ...] | None
    growsdown: bool = False


class _Parser:
    def __init__(self, text: str, path: str, sha256: str) -> None:
        if text.startswith("\ufeff"):
            text = text[1:]
        self.text = text
        self.path = path
        self.sha256 = sha256
        self.loc = Locator("")

    # --- errors -----------------------------------------------------------------

    def fail(self, message: str, where: Position | None = None) -> NoReturn:
        if where is None:
            raise ScenarioError(self.path, message)
        raise ScenarioError(self.path, message, where[0], where[1])

    def at_key(self, *path: str | int) -> Position | None:
        return self.loc.nearest(*path)

    def at_op(self, op: _RawOp) -> Position | None:
        lead = len(op.text) - len(op.text.lstrip())
        return self.loc.op(op.thread, op.index, lead if lead < len(op.text) else 0)

    # --- the whole file -----------------------------------------------------------

    def parse(self) -> Scenario:
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            self.toml_error(exc)
        except RecursionError:
            self.fail("TOML syntax error: arrays or tables nested too deeply")
        self.loc = Locator(self.text)

        self.check_key_names(data)

        if "name" not in data:
            self.fail("missing required key 'name'")
        name = self.want_str(data["name"], ("name",), "name")
        if not name.strip():
            self.fail("name must not be empty", self.at_key("name"))
        about = self.want_str(data.get("about", ""), ("about",), "about")

        free_pgtables = False
        if "free_pgtables" in data:
            free_pgtables = self.want_bool(data["free_pgtables"], ("free_pgtables",), "free_pgtables")

        maps = [self.parse_map(i, raw) for i, raw in enumerate(data.get("map", []))]
        self.check_maps(maps)
        self.map_pages = {m.name: m.pages for m in maps}
        self.map_growsdown = {m.name for m in maps if m.growsdown}

        raw_threads = data.get("thread", [])
        if not raw_threads:
            self.fail("no [[thread]]: a scenario needs at least one [[thread]] with ops")
        cpus_of, texts = self.parse_threads(raw_threads)
        raw_ops = [[self.parse_op(k, i, text) for i, text in enumerate(ts)] for k, ts in enumerate(texts)]
        forks, mm_of = self.resolve_forks(raw_threads, raw_ops)
        registers = self.resolve_labels(raw_ops)

        cpus = self.check_cpus(data, cpus_of, maps)
        self.check_size(maps, raw_ops)
        fills = self.resolve_fills(maps, raw_ops)
        self.check_truncates(raw_ops, fills)

        exists_text: str | None = None
        exists: Expr | None = None
        if "exists" in data:
            exists_text = self.want_str(data["exists"], ("exists",), "exists")
            exists = self.parse_exists(exists_text, registers, maps)

        expect = self.parse_expect(data.get("expect", {}), has_exists=exists is not None)

        map_specs = tuple(
            MapSpec(
                name=m.name,
                pages=m.pages,
                kind=m.kind,  # type: ignore[arg-type]
                file=m.file,
                fill=fills[m.file] if m.file is not None else (m.fill or 0),
                at=m.at,
                prot=m.prot,  # type: ignore[arg-type]
                prefault=m.prefault,
                growsdown=m.growsdown,
            )
            for m in maps
        )
        threads = tuple(
            ThreadSpec(
                cpu=cpus_of[k],
                ops=tuple(self.build_op(op, fills) for op in ops),
                texts=tuple(texts[k]),
                mm=mm_of[k],
            )
            for k, ops in enumerate(raw_ops)
        )
        return Scenario(
            name=name,
            about=about,
            cpus=cpus,
            maps=map_specs,
            threads=threads,
            exists=exists,
            exists_text=exists_text,
            expect=expect,
            files=tuple(sorted(fills.items())),
            path=self.path,
            sha256=self.sha256,
            forks=forks,
            free_pgtables=free_pgtables,
        )

    def toml_error(self, exc: tomllib.TOMLDecodeError) -> NoReturn:
        message = str(exc)
        m = _TOML_POSITION.search(message)
        if m:
            self.fail(f"TOML syntax error: {message[: m.start()]}", (int(m.group(1)), int(m.group(2))))
        m = _TOML_AT_END.search(message)
        if m:
            self.fail(f"TOML syntax error: {message[: m.start()]} (at end of file)", Locator(self.text).end_position())
        self.fail(f"TOML syntax error: {message}")

    # --- key names -------------------------------------------------------------------

    def check_key_names(self, data: dict[str, Any]) -> None:
        """Unknown keys anywhere, and tables of the wrong shape.  Keys are
        checked in the order they are written, tables in file order."""
        for key in data:
            if key in TOP_KEYS or key in TABLES:
                continue
            if key in THREAD_KEYS:
                hint = f"; {key} belongs in a [[thread]] table"
            elif key in MAP_KEYS:
                hint = f"; {key} belongs in a [[map]] table"
            elif key in POLICY_NAMES:
                hint = "; policy expectations belong in the [expect] table"
            else:
                hint = _suggest(key, TOP_KEYS + TABLES) or (
                    " (top-level keys: name, about, cpus, exists, free_pgtables, and the tables [[map]], [[thread]], [expect])"
                )
            self.fail(f"unknown key '{key}'{hint}", self.at_key(key))

        for table in ("map", "thread"):
            if table not in data:
                continue
            value = data[table]
            if isinstance(value, dict):
                self.fail(f"'{table}' must be an array of tables: write [[{table}]], not [{table}]", self.at_key(table))
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                self.fail(f"'{table}' must be written as [[{table}]] tables, not as {_toml_type(value)}", self.at_key(table))
        if "expect" in data:
            value = data["expect"]
            if isinstance(value, list):
                self.fail("'expect' is one table: write [expect], not [[expect]]", self.at_key("expect"))
            if not isinstance(value, dict):
                self.fail(f"'expect' must be a table [expect], not {_toml_type(value)}", self.at_key("expect"))

        tables: list[tuple[Position, str, int | None, dict[str, Any]]] = []
        for table in ("map", "thread"):
            for i, raw in enumerate(data.get(table, [])):
                tables.append((self.at_key(table, i) or (0, 0), table, i, raw))
        if "expect" in data:
            tables.append((self.at_key("expect") or (0, 0), "expect", None, data["expect"]))
        tables.sort(key=lambda t: t[0])
        for _, table, index, raw in tables:
            if table == "expect":
                self.check_expect_keys(raw)
            else:
                self.check_table_keys(table, index or 0, raw)

    def misplaced(self, key: str, where: str) -> str:
        return (
            f"unknown key '{key}' in {where}; top-level keys ({', '.join(TOP_KEYS)}) "
            "must come before the first table"
        )

    def check_table_keys(self, table: str, i: int, raw: dict[str, Any]) -> None:
        known, other, other_keys = (
            (MAP_KEYS, "thread", THREAD_KEYS) if table == "map" else (THREAD_KEYS, "map", MAP_KEYS)
        )
        where = f"[[{table}]] {i}"
        for key in raw:
            if key in known:
                continue
            if key in TOP_KEYS:
                close = difflib.get_close_matches(key, known, n=1)
                message = self.misplaced(key, where) + (f" (or did you mean '{close[0]}'?)" if close else "")
            elif key in other_keys:
                message = f"unknown key '{key}' in {where}; {key} belongs in a [[{other}]] table"
            else:
                message = f"unknown key '{key}' in {where}" + (
                    _suggest(key, known) or f" (known keys: {', '.join(known)})"
                )
            self.fail(message, self.at_key(table, i, key))

    def check_expect_keys(self, raw: dict[str, Any]) -> None:
        for key in raw:
            if key in POLICY_NAMES:
                continue
            value = raw[key]
            dotted = [f"{key}.{sub}" for sub in value] if isinstance(value, dict) else []
            if key in TOP_KEYS:
                message = self.misplaced(key, "[expect]")
            elif any(d in POLICY_NAMES for d in dotted):
                name = next(d for d in dotted if d in POLICY_NAMES)
                message = (f"unknown policy '{key}' in [expect]: TOML reads the dot in {name} as a nested key; "
                           f'quote the name: "{name}" = ...')
            else:
                message = f"unknown policy '{key}' in [expect]{_suggest(key, POLICY_NAMES)} (known policies: {', '.join(POLICY_NAMES)})"
            self.fail(message, self.at_key("expect", key))

    # --- typed values ------------------------------------------------------------------

    def want_str(self, value: Any, path: tuple[str | int, ...], what: str) -> str:
        if not isinstance(value, str):
            self.fail(f"{what} must be a string, not {_toml_type(value)} ({_show(value)})", self.at_key(*path))
        return value

    def want_int(self, value: Any, path: tuple[str | int, ...], what: str) -> int:
        if not _is_int(value):
            self.fail(f"{what} must be an integer, not {_toml_type(value)} ({_show(value)})", self.at_key(*path))
        return int(value)

    def want_bool(self, value: Any, path: tuple[str | int, ...], what: str) -> bool:
        if not isinstance(value, bool):
            self.fail(f"{what} must be true or false, not {_toml_type(value)} ({_show(value)})", self.at_key(*path))
        return value

    def want_choice(self, value: Any, path: tuple[str | int, ...], what: str, choices: tuple[str, ...]) -> str:
        self.want_str(value, path, what)
        if value not in choices:
            options = " | ".join(f'"{c}"' for c in choices)
            self.fail(f"{what} must be {options}, not {_show(value)}", self.at_key(*path))
        return str(value)

    # --- [[map]] -------------------------------------------------------------------------

    def parse_map(self, i: int, raw: dict[str, Any]) -> _RawMap:
        where = f"[[map]] {i}"

        def key(k: str) -> tuple[str | int, ...]:
            return ("map", i, k)

        if "name" not in raw:
            self.fail(f"missing required key 'name' in {where}", self.at_key("map", i))
        name = self.want_str(raw["name"], key("name"), f"name of {where}")
        if not _IDENT.fullmatch(name):
            self.fail(f"map name {name!r} of {where} is not an identifier (letters, digits, _)", self.at_key(*key("name")))
        if name in KEYWORDS:
            self.fail(f"map name '{name}' of {where} is a reserved word of exists", self.at_key(*key("name")))
        where = f"[[map]] {i} ('{name}')"

        pages = self.want_int(raw.get("pages", 1), key("pages"), f"pages of {where}")
        if pages < 1:
            self.fail(f"pages of {where} must be at least 1, not {pages}", self.at_key(*key("pages")))
        if pages > MAX_PAGES:
            self.fail(f"pages of {where} ({pages}) do not fit in the address space", self.at_key(*key("pages")))
        if pages > limits.MAX_MAP_PAGES:
            self.fail(f"pages of {where} ({pages}) exceed the limit of {limits.MAX_MAP_PAGES} pages per mapping "
                      "(docs/scenario-format.md#limits)", self.at_key(*key("pages")))

        kind = self.want_choice(raw.get("kind", "anon"), key("kind"), f"kind of {where}", KINDS)
        file: str | None = None
        if "file" in raw:
            file = self.want_str(raw["file"], key("file"), f"file of {where}")
            if kind != "file":
                self.fail(f"file = {file!r} in {where} needs kind = \"file\"", self.at_key(*key("file")))
            if not file or re.search(r"[\s=]", file):
                self.fail(f"file name {file!r} of {where} must be non-empty, without spaces or '='", self.at_key(*key("file")))
        elif kind == "file":
            self.fail(f'kind = "file" in {where} needs file = "NAME"', self.at_key(*key("kind")))

        fill = None
        if "fill" in raw:
            fill = self.want_int(raw["fill"], key("fill"), f"fill of {where}")
            if not WORD_MIN <= fill < WORD_LIMIT:
                self.fail(f"fill of {where} ({_show(fill)}) does not fit in a 64-bit word", self.at_key(*key("fill")))

        at = None
        if "at" in raw:
            at = self.want_int(raw["at"], key("at"), f"at of {where}")
            problem = _check_at(at, pages)
            if problem:
                self.fail(f"at of {where}: {problem}", self.at_key(*key("at")))

        prot = self.want_choice(raw.get("prot", "rw"), key("prot"), f"prot of {where}", PROTS)

        prefault: tuple[int, ...] | None = None
        if "prefault" in raw:
            value = raw["prefault"]
            if not isinstance(value, list):
                self.fail(
                    f"prefault of {where} must be an array of CPU numbers, not {_toml_type(value)} ({_show(value)})",
                    self.at_key(*key("prefault")),
                )
            cpus: list[int] = []
            for j, cpu in enumerate(value):
                here = key("prefault") + (j,)
                if not _is_int(cpu) or cpu < 0:
                    self.fail(f"prefault of {where}: {_show(cpu)} is not a CPU number", self.at_key(*here))
                if cpu in cpus:
                    self.fail(f"prefault of {where} lists CPU {cpu} twice", self.at_key(*here))
                cpus.append(cpu)
            prefault = tuple(cpus)

        growsdown = False
        if "growsdown" in raw:
            growsdown = self.want_bool(raw["growsdown"], key("growsdown"), f"growsdown of {where}")
            if growsdown and kind != "anon":
                self.fail(f"growsdown = true in {where} needs an anonymous map (a stack), not kind = \"{kind}\"",
                          self.at_key(*key("growsdown")))

        return _RawMap(i, name, pages, kind, file, fill, at, prot, prefault, growsdown)

    def check_maps(self, maps: list[_RawMap]) -> None:
        seen: dict[str, _RawMap] = {}
        for m in maps:
            if m.name in seen:
                self.fail(
                    f"duplicate map name '{m.name}': [[map]] {seen[m.name].index} and [[map]] {m.index}",
                    self.at_key("map", m.index, "name"),
                )
            seen[m.name] = m
        placed: list[_RawMap] = []
        for m in maps:
            if m.at is None:
                continue
            for p in placed:
                assert p.at is not None
                if m.at < p.at + p.pages * PAGE_SIZE and p.at < m.at + m.pages * PAGE_SIZE:
                    self.fail(
                        f"[[map]] {m.index} ('{m.name}') at {m.at:#x}..{m.at + m.pages * PAGE_SIZE:#x} overlaps "
                        f"[[map]] {p.index} ('{p.name}') at {p.at:#x}..{p.at + p.pages * PAGE_SIZE:#x}",
                        self.at_key("map", m.index, "at"),
                    )
            placed.append(m)

    # --- [[thread]] -------------------------------------------------------------------------

    def parse_threads(self, raw_threads: list[dict[str, Any]]) -> tuple[list[int], list[list[str]]]:
        cpus_of: list[int] = []
        texts: list[list[str]] = []
        owner: dict[int, int] = {}
        for k, raw in enumerate(raw_threads):
            where = f"[[thread]] {k}"
            if "ops" not in raw:
                self.fail(f"{where} has no ops (missing required key 'ops')", self.at_key("thread", k))
            ops = raw["ops"]
            if not isinstance(ops, list):
                self.fail(
                    f"ops of {where} must be an array of op strings, not {_toml_type(ops)} ({_show(ops)})",
                    self.at_key("thread", k, "ops"),
                )
            if not ops:
                self.fail(f"{where} has no ops: ops is empty", self.at_key("thread", k, "ops"))
            for i, op in enumerate(ops):
                if not isinstance(op, str):
                    self.fail(
                        f"op {i} of {where} must be a string, not {_toml_type(op)} ({_show(op)})",
                        self.at_key("thread", k, "ops", i),
                    )
            cpu = k
            if "cpu" in raw:
                cpu = self.want_int(raw["cpu"], ("thread", k, "cpu"), f"cpu of {where}")
                if cpu < 0:
                    self.fail(f"cpu of {where} must be a CPU number (0 or more), not {cpu}", self.at_key("thread", k, "cpu"))
            if cpu >= limits.MAX_CPUS:
                self.fail(f"{where} runs on CPU {_show(cpu)}, past the limit of {limits.MAX_CPUS} CPUs "
                          "(docs/scenario-format.md#limits)", self.at_key("thread", k, "cpu") if "cpu" in raw
                          else self.at_key("thread", k))
            if cpu in owner:
                self.fail(
                    f"two threads on CPU {cpu}: thread {owner[cpu]} and thread {k} ([[thread]] {owner[cpu]} "
                    f"and [[thread]] {k}); a CPU runs at most one thread (give one of them cpu = N)",
                    self.at_key("thread", k, "cpu"),
                )
            owner[cpu] = k
            cpus_of.append(cpu)
            texts.append(list(ops))
        return cpus_of, texts

    def resolve_forks(self, raw_threads: list[dict[str, Any]],
                      raw_ops: list[list[_RawOp]]) -> tuple[tuple[str, ...], list[int]]:
        """The child address spaces the `fork` ops create, in file order (the k-th is
        address space k + 1), and the address space each thread runs in (`mm`)."""
        forks: list[str] = []
        where_forked: dict[str, _RawOp] = {}
        for ops in raw_ops:
            for op in ops:
                if op.verb != "fork":
                    continue
                assert op.name is not None
                if op.name in where_forked:
                    first = where_forked[op.name]
                    self.fail(f"two forks name their child '{op.name}': op '{first.text}' of [[thread]] {first.thread} "
                              f"and op '{op.text}' of [[thread]] {op.thread} (write fork NAME to tell them apart)",
                              self.at_op(op))
                where_forked[op.name] = op
                forks.append(op.name)
        mm_of: list[int] = []
        for k, raw in enumerate(raw_threads):
            if "mm" not in raw:
                mm_of.append(0)
                continue
            name = self.want_str(raw["mm"], ("thread", k, "mm"), f"mm of [[thread]] {k}")
            if name not in where_forked:
                known = ", ".join(f"'{f}'" for f in forks) or "none: no op forks"
                self.fail(f"mm = {name!r} of [[thread]] {k} names no fork's child{_suggest(name, forks)} "
                          f"(children: {known})", self.at_key("thread", k, "mm"))
            if where_forked[name].thread == k:
                self.fail(f"[[thread]] {k} runs in mm {name!r}, the child its own fork creates; a child runs "
                          f"in a [[thread]] of its own", self.at_key("thread", k, "mm"))
            mm_of.append(1 + forks.index(name))
        return tuple(forks), mm_of

    def check_truncates(self, raw_ops: list[list[_RawOp]], fills: dict[str, int]) -> None:
        for ops in raw_ops:
            for op in ops:
                if op.verb == "truncate" and op.truncated not in fills:
                    known = ", ".join(sorted(fills)) or "none"
                    self.fail(f"truncate in [[thread]] {op.thread} names file '{op.truncated}', which no map or mmap "
                              f"maps{_suggest(op.truncated or '', fills)} (files: {known})", self.at_op(op))

    def check_cpus(self, data: dict[str, Any], cpus_of: list[int], maps: list[_RawMap]) -> int:
        needed = max(cpus_of) + 1
        if "cpus" in data:
            cpus = self.want_int(data["cpus"], ("cpus",), "cpus")
            if cpus < 1:
                self.fail(f"cpus must be at least 1, not {cpus}", self.at_key("cpus"))
            if cpus > limits.MAX_CPUS:
                self.fail(f"cpus = {_show(cpus)} exceeds the limit of {limits.MAX_CPUS} CPUs "
                          "(docs/scenario-format.md#limits)", self.at_key("cpus"))
            if cpus < needed:
                k = cpus_of.index(needed - 1)
                self.fail(f"cpus = {cpus} is too small: [[thread]] {k} runs on CPU {needed - 1}", self.at_key("cpus"))
            explicit = True
        else:
            cpus, explicit = needed, False
        for m in maps:
            for j, cpu in enumerate(m.prefault or ()):
                if cpu >= cpus:
                    how = f"cpus = {cpus}" if explicit else f"CPUs 0..{cpus - 1}; set cpus = N to add CPUs that run no thread"
                    self.fail(
                        f"prefault of [[map]] {m.index} ('{m.name}') names CPU {cpu}, which is not a CPU of "
                        f"this scenario ({how})",
                        self.at_key("map", m.index, "prefault", j),
                    )
        return cpus

    # --- ops ---------------------------------------------------------------------------------

    def parse_op(self, k: int, i: int, text: str) -> _RawOp:
        """The syntax of one op; labels are resolved later, all threads at once."""
        op = _RawOp(thread=k, index=i, text=text, verb="")
        where = f"[[thread]] {k}"
        toks = _OP_TOKEN.findall(text)

        def unknown(detail: str = "") -> NoReturn:
            # The word in the verb's place: `r0 = lod A` -> `lod`, `stor A 1` -> `stor`.
            word = toks[2] if len(toks) > 2 and toks[1] == "=" else toks[0] if toks else ""
            hint = _suggest(word, OP_VERBS) if word not in OP_VERBS else ""
            self.fail(
                f"unknown op '{text}' in {where}" + (f": {detail}" if detail else f"{hint} (ops are: {OP_FORMS})"),
                self.at_op(op),
            )

        def bad(detail: str) -> NoReturn:
            self.fail(f"bad op '{text}' in {where}: {detail}", self.at_op(op))

        def label_at(j: int, after: str) -> str:
            if j >= len(toks):
                bad(f"expected a label after '{after}'")
            if not _IDENT.fullmatch(toks[j]):
                bad(f"'{toks[j]}' is not a label")
            return str(toks[j])

        def end_at(j: int) -> None:
            if j < len(toks):
                bad(f"unexpected '{' '.join(toks[j:])}' at the end")

        if not toks:
            self.fail(f"empty op in {where}", self.at_op(op))

        if len(toks) >= 2 and toks[1] == "=":
            lhs = toks[0]
            verb = toks[2] if len(toks) > 2 else ""
            if verb not in ("load", "mmap"):
                unknown()
            if not _IDENT.fullmatch(lhs):
                bad(f"'{lhs}' is not a {'register' if verb == 'load' else 'label'} name")
            if lhs in RESERVED_REGISTERS:
                bad(f"'{lhs}' is reserved and cannot be a {'register' if verb == 'load' else 'label'} name")
            op.name = lhs
            if verb == "load":
                op.verb = "load"
                if len(toks) == 3:
                    bad("expected an address after 'load'")
                op.addr, j = self.parse_addr(toks, 3, bad)
                end_at(j)
            else:
                op.verb = "mmap"
                self.parse_mmap_args(op, toks, 3, unknown, bad, fixed=False)
            return op

        verb = toks[0]
        if verb == "store":
            op.verb = "store"
            if len(toks) == 1:
                bad("expected an address after 'store'")
            op.addr, j = self.parse_addr(toks, 1, bad)
            if j >= len(toks):
                bad("expected a value after the address")
            value = _number(toks[j])
            if value is None:
                bad(f"the value '{toks[j]}' is not an integer")
            if not WORD_MIN <= value < WORD_LIMIT:
                bad(f"the value {toks[j]} does not fit in a 64-bit word")
            op.value = value
            end_at(j + 1)
        elif verb == "mmap":
            op.verb = "fixed"
            op.label = label_at(1, "mmap")
            if len(toks) < 3 or toks[2] != "fixed":
                bad(f"expected 'mmap {op.label} fixed ...' (a new mapping is written 'LABEL = mmap ...')")
            self.parse_mmap_args(op, toks, 3, unknown, bad, fixed=True)
        elif verb == "munmap":
            op.verb = "munmap"
            op.label = label_at(1, "munmap")
            end_at(2)
        elif verb == "mprotect":
            op.verb = "mprotect"
            op.label = label_at(1, "mprotect")
            rest = toks[2:]
            if len(rest) >= 2 and rest[1] == "=" and rest[0] != "prot":
                unknown(f"unknown keyword '{rest[0]}' (mprotect takes prot=none|r|rw)")
            if len(rest) < 3 or rest[:2] != ["prot", "="]:
                bad("expected prot=none|r|rw after the label")
            if toks[4] not in PROTS:
                bad(f"prot must be none, r or rw, not '{toks[4]}'")
            op.prot = toks[4]
            end_at(5)
        elif verb == "fork":
            op.verb = "fork"
            op.name = DEFAULT_CHILD
            if len(toks) > 1:
                if not _IDENT.fullmatch(toks[1]):
                    bad(f"'{toks[1]}' is not a name for the child address space")
                op.name = toks[1]
            end_at(2)
        elif verb == "mremap":
            op.verb = "mremap"
            op.label = label_at(1, "mremap")
            if len(toks) < 3 or toks[2] != "to":
                bad(f"expected 'mremap {op.label} to DEST' (a label whose address the mapping moves to, or an "
                    f"address)")
            number = _number(toks[3]) if len(toks) > 3 else None
            if number is not None:
                if number % PAGE_SIZE or not MMAP_MIN <= number < MMAP_BASE:
                    bad(f"mremap to {toks[3]}: the address must be page-aligned and in [{MMAP_MIN:#x}, "
                        f"{MMAP_BASE:#x})")
                op.dest_addr = number
            else:
                op.dest = label_at(3, "to")
                if op.dest == op.label:
                    bad(f"'{op.label}' cannot move to its own address")
            end_at(4)
        elif verb == "truncate":
            op.verb = "truncate"
            if len(toks) < 2:
                bad("expected the file's name after 'truncate'")
            op.truncated = toks[1]
            end_at(2)
        elif verb == "madvise":
            op.verb = "madvise"
            op.label = label_at(1, "madvise")
            if len(toks) < 3:
                bad(f"expected the advice after the label ({', '.join(ADVICE)})")
            if toks[2] not in ADVICE:
                bad(f"unknown advice '{toks[2]}' (madvise takes: {', '.join(ADVICE)}){_suggest(toks[2], ADVICE)}")
            end_at(3)
        else:
            unknown()
        return op

    def parse_addr(self, toks: list[str], j: int, bad: Callable[[str], NoReturn]) -> tuple[Addr, int]:
        word = toks[j]
        number = _number(word)
        if number is not None:
            if j + 1 < len(toks) and toks[j + 1] == "+":
                bad(f"an integer address takes no offset ('{word}+...')")
            if not 0 <= number < WORD_LIMIT:
                bad(f"address {word} is not a 64-bit address")
            if number % WORD_SIZE:
                bad(f"unaligned address {word}: addresses must be multiples of {WORD_SIZE} (a word)")
            return Addr(None, number), j + 1
        below = _BELOW.fullmatch(word)
        if below is not None:
            offset = _number(below.group(2))
            if offset is None:
                bad(f"offset '{below.group(2)}' is not an integer")
            if offset <= 0:
                bad(f"offset {below.group(2)} of '{word}' must be positive: LABEL-OFFSET is OFFSET bytes below LABEL")
            if offset % WORD_SIZE:
                bad(f"unaligned offset {word}: offsets must be multiples of {WORD_SIZE} (a word)")
            return Addr(below.group(1), -offset), j + 1
        if not _IDENT.fullmatch(word):
            bad(f"'{word}' is not an address (LABEL, LABEL+OFFSET, LABEL-OFFSET or an integer)")
        if j + 1 < len(toks) and toks[j + 1] == "+":
            if j + 2 >= len(toks):
                bad(f"expected an offset after '{word}+'")
            offset = _number(toks[j + 2])
            if offset is None:
                bad(f"offset '{toks[j + 2]}' is not an integer")
            if offset < 0:
                bad(f"offset {toks[j + 2]} is negative")
            if offset % WORD_SIZE:
                bad(f"unaligned offset {word}+{toks[j + 2]}: offsets must be multiples of {WORD_SIZE} (a word)")
            return Addr(word, offset), j + 3
        return Addr(word, 0), j + 1

    def parse_mmap_args(
        self,
        op: _RawOp,
        toks: list[str],
        j: int,
        unknown: Callable[[str], NoReturn],
        bad: Callable[[str], NoReturn],
        *,
        fixed: bool,
    ) -> None:
        keywords = ("kind", "file", "fill") if fixed else ("kind", "file", "fill", "at", "prot")
        takes = "PAGES, " + ", ".join(f"{kw}=" for kw in keywords)
        seen: set[str] = set()
        at_word = ""
        while j < len(toks):
            word = toks[j]
            if j + 1 < len(toks) and toks[j + 1] == "=":
                if word == "at" and fixed:
                    bad("at= is not allowed with fixed (MAP_FIXED maps over the label's range)")
                if word not in keywords:
                    unknown(f"unknown keyword '{word}' (mmap takes {takes})")
                if word in seen:
                    bad(f"{word}= given twice")
                seen.add(word)
                if j + 2 >= len(toks) or toks[j + 2] in ("=", "+"):
                    bad(f"expected a value after '{word}='")
                value = toks[j + 2]
                if word == "kind":
                    if value not in KINDS:
                        bad(f"kind must be anon or file, not '{value}'")
                    op.kind = value
                elif word == "file":
                    op.file = value
                elif word == "prot":
                    if value not in PROTS:
                        bad(f"prot must be none, r or rw, not '{value}'")
                    op.prot = value
                elif word == "fill":
                    fill = _number(value)
                    if fill is None:
                        bad(f"fill '{value}' is not an integer")
                    if not WORD_MIN <= fill < WORD_LIMIT:
                        bad(f"fill {value} does not fit in a 64-bit word")
                    op.fill = fill
                else:
                    at = _number(value)
                    if at is None:
                        bad(f"at= takes an integer address, not '{value}'")
                    if not 0 <= at < WORD_LIMIT:
                        bad(f"at={value} is not a 64-bit address")
                    op.at, at_word = at, value
                j += 3
                continue
            pages = _number(word)
            if pages is None:
                unknown(f"unexpected '{word}' (mmap takes {takes})")
            if op.pages is not None:
                bad(f"PAGES given twice ('{word}')")
            if pages < 1:
                bad(f"pages must be at least 1, not {word}")
            if pages > MAX_PAGES:
                bad(f"{word} pages do not fit in the address space")
            if pages > limits.MAX_MAP_PAGES:
                bad(f"{word} pages exceed the limit of {limits.MAX_MAP_PAGES} pages per mapping "
                    "(docs/scenario-format.md#limits)")
            op.pages = pages
            j += 1
        if op.kind == "file" and op.file is None:
            bad("kind=file needs file=NAME")
        if op.file is not None and op.kind != "file":
            bad(f"file={op.file} needs kind=file")
        if op.at is not None and (unaligned := _unaligned(op.at)):
            bad(f"at={at_word}: {unaligned}")
        # A hint outside the user address range is not an error: as in Linux, the
        # allocator ignores it (`VmaTree.get_unmapped_area`) and places the mapping itself.
        if not fixed and op.pages is None:
            op.pages = 1

    def resolve_labels(self, raw_ops: list[list[_RawOp]]) -> list[set[str]]:
        """Check every label use against the maps and the thread's earlier ops;
        returns the registers each thread writes."""
        defined_by: dict[str, list[_RawOp]] = {}
        for ops in raw_ops:
            for op in ops:
                if op.verb == "mmap" and op.name is not None:
                    defined_by.setdefault(op.name, []).append(op)

        # A label's size for `LABEL+OFFSET`: the largest mapping it can name
        # (its own, or a MAP_FIXED over it with more pages) — an offset that is
        # inside the mapping at some point of some run is a fair question.
        global_size = dict(self.map_pages)
        for ops in raw_ops:
            for op in ops:
                if op.verb == "fixed" and op.pages is not None and op.label in global_size:
                    global_size[op.label] = max(global_size[op.label], op.pages)

        # Grows-down maps some op may grow (it accesses the gap below them): their
        # extent is known only at run time, and an op over the label's range would
        # leave part of the grown VMA mapped.
        grown: dict[str, _RawOp] = {}
        for ops in raw_ops:
            for op in ops:
                if op.addr is not None and op.addr.label in self.map_growsdown and op.addr.offset < 0:
                    grown.setdefault(op.addr.label, op)

        registers: list[set[str]] = []
        for k, ops in enumerate(raw_ops):
            local: dict[str, int] = {}  # label -> pages
            size: dict[str, int] = {}  # label -> largest size (local labels)
            for op in ops:
                if op.verb == "fixed" and op.label is not None and op.pages is not None:
                    size[op.label] = max(size.get(op.label, 0), op.pages)
            loaded: dict[str, _RawOp] = {}
            first_def: dict[str, _RawOp] = {}
            regs: set[str] = set()
            for op in ops:

                def known(label: str, op: _RawOp = op) -> int:
                    """The label's size in pages, or an 'undefined label' error."""
                    if label in self.map_pages:
                        return global_size[label]
                    if label in local:
                        return max(local[label], size.get(label, 0))
                    hint = ""
                    mine = [d for d in defined_by.get(label, []) if d.thread == k]
                    theirs = [d for d in defined_by.get(label, []) if d.thread != k]
                    if mine:
                        hint = f" (it is defined later, by op '{mine[0].text}')"
                    elif theirs:
                        hint = (
                            f" (it is a label of [[thread]] {theirs[0].thread}; a label from "
                            "'LABEL = mmap' is usable only by later ops of its own thread)"
                        )
                    elif self.map_pages:
                        hint = f" (map labels: {', '.join(self.map_pages)})"
                    self.fail(f"undefined label '{label}' in op '{op.text}' of [[thread]] {k}{hint}", self.at_op(op))

                if op.addr is not None and op.addr.label is not None and op.addr.offset < 0:
                    known(op.addr.label)
                    if op.addr.label not in self.map_growsdown:
                        self.fail(
                            f"address {op.addr.label}{op.addr.offset} in op '{op.text}' of [[thread]] {k} is below "
                            f"'{op.addr.label}', which does not grow down: LABEL-OFFSET names the gap below a "
                            f"[[map]] with growsdown = true",
                            self.at_op(op),
                        )
                elif op.addr is not None and op.addr.label is not None:
                    pages = known(op.addr.label)
                    if op.addr.offset >= pages * PAGE_SIZE:
                        self.fail(
                            f"address {op.addr.label}+{op.addr.offset} in op '{op.text}' of [[thread]] {k} is "
                            f"outside the mapping: '{op.addr.label}' has {_plural(pages, 'page')}, so offsets go up to "
                            f"{pages * PAGE_SIZE - WORD_SIZE:#x}",
                            self.at_op(op),
                        )
                if op.dest is not None:
                    known(op.dest)
                if op.label is not None:
                    pages = known(op.label)
                    declared = self.map_pages.get(op.label, local.get(op.label, pages))
                    for named in (op.label, op.dest):
                        if named in grown:
                            self.fail(
                                f"op '{op.text}' of [[thread]] {k} names grows-down map '{named}', which op "
                                f"'{grown[named].text}' may grow: its extent is known only at run time, and the op "
                                f"would split it (partial unmaps are future work)",
                                self.at_op(op),
                            )
                    if op.verb == "fixed" and op.pages is None:
                        op.pages = self.map_pages[op.label] if op.label in self.map_pages else local[op.label]
                    # The tree owner removes whole VMAs: an op that would leave part of one
                    # mapped needs a VMA split (partial unmaps are future work).
                    if op.verb == "fixed" and op.pages is not None and op.pages < declared:
                        self.fail(
                            f"op '{op.text}' of [[thread]] {k} maps {_plural(op.pages, 'page')} over "
                            f"'{op.label}', which has {_plural(declared, 'page')}: it would split '{op.label}' "
                            f"(partial unmaps are future work); give at least {declared} pages, or none",
                            self.at_op(op),
                        )
                    dest = None if op.dest is None else self.map_pages.get(op.dest, local.get(op.dest))
                    if dest is not None and dest > declared:
                        self.fail(
                            f"op '{op.text}' of [[thread]] {k} moves {_plural(declared, 'page')} onto "
                            f"'{op.dest}', which has {_plural(dest, 'page')}: it would split '{op.dest}' "
                            f"(partial unmaps are future work)",
                            self.at_op(op),
                        )
                if op.verb == "load":
                    assert op.name is not None
                    if op.name in local:
                        self.fail(
                            f"register '{op.name}' of op '{op.text}' in [[thread]] {k} already holds the address "
                            f"of label '{op.name}' (op '{first_def[op.name].text}')",
                            self.at_op(op),
                        )
                    loaded.setdefault(op.name, op)
                    regs.add(op.name)
                elif op.verb == "store":
                    regs.add("fault")
                elif op.verb == "mmap":
                    assert op.name is not None and op.pages is not None
                    label = op.name
                    if label in self.map_pages:
                        self.fail(
                            f"label '{label}' of op '{op.text}' in [[thread]] {k} shadows the [[map]] '{label}'",
                            self.at_op(op),
                        )
                    if label in local:
                        self.fail(
                            f"label '{label}' is defined twice in [[thread]] {k}: by op "
                            f"'{first_def[label].text}' and by op '{op.text}'",
                            self.at_op(op),
                        )
                    if label in loaded:
                        self.fail(
                            f"label '{label}' of op '{op.text}' in [[thread]] {k} is also a register loaded by "
                            f"op '{loaded[label].text}'",
                            self.at_op(op),
                        )
                    local[label] = op.pages
                    first_def[label] = op
                    regs.add(label)
            registers.append(regs)
        return registers

    # --- sizes (vmactors.scenario.limits) -----------------------------------------------------

    def check_size(self, maps: list[_RawMap], raw_ops: list[list[_RawOp]]) -> None:
        """The totals no single key shows: maps, ops, pages, prefaulted pages."""
        if len(maps) > limits.MAX_MAPS:
            self.fail(f"{len(maps)} [[map]] tables exceed the limit of {limits.MAX_MAPS} "
                      "(docs/scenario-format.md#limits)", self.at_key("map", limits.MAX_MAPS))
        for k, ops in enumerate(raw_ops):
            if len(ops) > limits.MAX_THREAD_OPS:
                self.fail(f"[[thread]] {k} has {len(ops)} ops, past the limit of {limits.MAX_THREAD_OPS} per thread "
                          "(docs/scenario-format.md#limits)", self.at_key("thread", k, "ops"))
        total_ops = sum(len(ops) for ops in raw_ops)
        if total_ops > limits.MAX_OPS:
            self.fail(f"the threads have {total_ops} ops together, past the limit of {limits.MAX_OPS} "
                      "(docs/scenario-format.md#limits)")
        pages = sum(m.pages for m in maps) + sum(op.pages or 0 for ops in raw_ops for op in ops
                                                 if op.verb in ("mmap", "fixed"))
        if pages > limits.MAX_TOTAL_PAGES:
            self.fail(f"the maps and mmaps have {pages} pages together, past the limit of "
                      f"{limits.MAX_TOTAL_PAGES} (docs/scenario-format.md#limits)")
        prefaulted = sum(m.pages * max(1, len(m.prefault)) for m in maps if m.prefault is not None)
        if prefaulted > limits.MAX_PREFAULTED_PAGES:
            self.fail(f"prefault fills {prefaulted} page translations (pages x CPUs), past the limit of "
                      f"{limits.MAX_PREFAULTED_PAGES} (docs/scenario-format.md#limits)")

    # --- files and fills ------------------------------------------------------------------

    def resolve_fills(self, maps: list[_RawMap], raw_ops: list[list[_RawOp]]) -> dict[str, int]:
        """A file's fill belongs to the file: every map and op that names one
        must agree; a file nobody gives a fill has fill 0."""
        fills: dict[str, int] = {}
        first: dict[str, str] = {}
        for m in maps:
            if m.file is None:
                continue
            if m.fill is not None:
                if m.file in fills and fills[m.file] != m.fill:
                    self.fail(
                        f"file '{m.file}' has fill {m.fill} in [[map]] {m.index} ('{m.name}') but fill "
                        f"{fills[m.file]} in {first[m.file]}; a file's fill belongs to the file",
                        self.at_key("map", m.index, "fill"),
                    )
                if m.file not in fills:
                    fills[m.file] = m.fill
                    first[m.file] = f"[[map]] {m.index} ('{m.name}')"
        for ops in raw_ops:
            for op in ops:
                if op.file is None or op.fill is None:
                    continue
                if op.file in fills and fills[op.file] != op.fill:
                    self.fail(
                        f"file '{op.file}' has fill {op.fill} in op '{op.text}' of [[thread]] {op.thread} but fill "
                        f"{fills[op.file]} in {first[op.file]}; a file's fill belongs to the file",
                        self.at_op(op),
                    )
                if op.file not in fills:
                    fills[op.file] = op.fill
                    first[op.file] = f"op '{op.text}' of [[thread]] {op.thread}"
        for m in maps:
            if m.file is not None:
                fills.setdefault(m.file, 0)
        for ops in raw_ops:
            for op in ops:
                if op.file is not None:
                    fills.setdefault(op.file, 0)
        return fills

    def build_op(self, op: _RawOp, fills: dict[str, int]) -> Op:
        fill = fills[op.file] if op.file is not None else (op.fill or 0)
        if op.verb == "load":
            assert op.name is not None and op.addr is not None
            return Load(reg=op.name, addr=op.addr)
        if op.verb == "store":
            assert op.addr is not None
            return Store(addr=op.addr, value=op.value)
        if op.verb == "mmap":
            assert op.name is not None and op.pages is not None
            return Mmap(label=op.name, pages=op.pages, kind=op.kind, file=op.file, fill=fill, at=op.at,  # type: ignore[arg-type]
                        prot=op.prot)  # type: ignore[arg-type]
        if op.verb == "fixed":
            assert op.label is not None and op.pages is not None
            return MmapFixed(label=op.label, pages=op.pages, kind=op.kind, file=op.file, fill=fill)  # type: ignore[arg-type]
        if op.verb == "munmap":
            assert op.label is not None
            return Munmap(label=op.label)
        if op.verb == "madvise":
            assert op.label is not None
            return Madvise(label=op.label)
        if op.verb == "fork":
            assert op.name is not None
            return Fork(child=op.name)
        if op.verb == "mremap":
            assert op.label is not None and (op.dest is not None or op.dest_addr is not None)
            return Mremap(label=op.label, to=op.dest if op.dest is not None else op.dest_addr)  # type: ignore[arg-type]
        if op.verb == "truncate":
            assert op.truncated is not None
            return Truncate(file=op.truncated)
        assert op.label is not None
        return Mprotect(label=op.label, prot=op.prot)  # type: ignore[arg-type]

    # --- exists ------------------------------------------------------------------------------

    def parse_exists(self, text: str, registers: list[set[str]], maps: list[_RawMap]) -> Expr:
        path = ("exists",)
        if len(text) > limits.MAX_EXISTS_CHARS:
            self.fail(f"exists is {len(text)} characters long, past the limit of {limits.MAX_EXISTS_CHARS}",
                      self.at_key(*path))
        try:
            expr, spans = parse_exists_located(text)
        except ExistsSyntaxError as exc:
            self.fail(f"syntax error in exists: {exc.message}", self.loc.char(path, exc.offset))
        names = [m.name for m in maps]
        n = len(registers)
        for span in spans:
            atom = span.atom
            culprit = f"{atom.thread}:{atom.reg}"
            if isinstance(atom.value, int) and not WORD_MIN <= atom.value < WORD_LIMIT:
                self.fail(f"the value {_show(atom.value)} in exists does not fit in a 64-bit word",
                          self.loc.char(path, span.value))
            if atom.thread >= n:
                self.fail(
                    f"exists reads {culprit}, but there is no [[thread]] {atom.thread} "
                    f"(the scenario has {_plural(n, 'thread')}, numbered from 0)",
                    self.loc.char(path, span.thread),
                )
            if atom.reg not in registers[atom.thread]:
                writes = ", ".join(sorted(registers[atom.thread])) or "none"
                self.fail(
                    f"exists reads {culprit}, but no op of [[thread]] {atom.thread} writes register "
                    f"'{atom.reg}' (registers it writes: {writes})",
                    self.loc.char(path, span.reg),
                )
            if atom.value_is_label and atom.value not in names:
                known = ", ".join(names) if names else "none"
                self.fail(
                    f"unknown label '{atom.value}' in exists: a value is an integer, segv or a [[map]] name "
                    f"(map labels: {known})",
                    self.loc.char(path, span.value),
                )
        return expr

    # --- [expect] ------------------------------------------------------------------------------

    def parse_expect(self, raw: dict[str, Any], *, has_exists: bool) -> tuple[tuple[str, Expectation], ...]:
        out: list[tuple[str, Expectation]] = []
        for policy, value in raw.items():
            here = ("expect", policy)
            if isinstance(value, str):
                if not has_exists:
                    self.fail(
                        f"[expect] {policy} = {value!r} is an exists verdict, but the scenario has no exists; "
                        f"write {policy} = {{ violations = [...] }}",
                        self.at_key(*here),
                    )
                verdict = self.want_choice(value, here, f"the verdict for {policy} in [expect]", VERDICTS)
                out.append((policy, Expectation(exists=verdict, violations=frozenset())))  # type: ignore[arg-type]
                continue
            if not isinstance(value, dict):
                self.fail(
                    f"[expect] {policy} must be a verdict string or {{ exists = ..., violations = [...] }}, "
                    f"not {_toml_type(value)} ({_show(value)})",
                    self.at_key(*here),
                )
            for key in value:
                if key not in EXPECT_ENTRY_KEYS:
                    self.fail(
                        f"unknown key '{key}' in [expect] {policy}{_suggest(key, EXPECT_ENTRY_KEYS)} "
                        "(known keys: exists, violations)",
                        self.at_key(*here, key),
                    )
            exists_verdict: str | None = None
            if "exists" in value:
                if not has_exists:
                    self.fail(
                        f"[expect] {policy} gives an exists verdict, but the scenario has no exists; "
                        "give only violations",
                        self.at_key(*here, "exists"),
                    )
                exists_verdict = self.want_choice(value["exists"], here + ("exists",), f"exists of [expect] {policy}", VERDICTS)
            # With an exists clause but no verdict here, the entry speaks only
            # of violations: Expectation.exists stays None (not checked).
            names = value.get("violations", [])
            if not isinstance(names, list):
                self.fail(
                    f"violations of [expect] {policy} must be an array of invariant names, not "
                    f"{_toml_type(names)} ({_show(names)})",
                    self.at_key(*here, "violations"),
                )
            for j, item in enumerate(names):
                if not isinstance(item, str) or item not in INVARIANT_NAMES:
                    self.fail(
                        f"unknown invariant {_show(item)} in [expect] {policy}"
                        f"{_suggest(item, INVARIANT_NAMES) if isinstance(item, str) else ''} "
                        f"(known invariants: {', '.join(INVARIANT_NAMES)})",
                        self.at_key(*here, "violations", j),
                    )
            out.append((policy, Expectation(exists=exists_verdict, violations=frozenset(names))))  # type: ignore[arg-type]
        return tuple(out)


def _unaligned(at: int) -> str | None:
    """Why `at` is no page address, or None."""
    return f"{at:#x} is not page-aligned (a multiple of {PAGE_SIZE:#x})" if at % PAGE_SIZE else None


def _check_at(at: int, pages: int) -> str | None:
    """Why a mapping of `pages` pages cannot be placed at `at`, or None."""
    if unaligned := _unaligned(at):
        return unaligned
    if at < MMAP_MIN or at + pages * PAGE_SIZE > MMAP_BASE:
        return (
            f"{at:#x}..{at + pages * PAGE_SIZE:#x} is outside the user address range "
            f"[{MMAP_MIN:#x}, {MMAP_BASE:#x})"
        )
    return None
