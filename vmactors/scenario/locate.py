"""Source positions for a scenario file: where a key, a table header, an array
element or a character inside a string sits in the TOML text.

`tomllib` reports positions only for syntax errors.  Every other scenario error
(an unknown key, a bad op, an undefined label inside `exists`) still deserves a
`FILE:LINE:COL`, so this module re-scans the text — already known to be valid
TOML — with a small structural scanner and records a position for every
*logical path* of the parsed document:

- ``("name",)``: the key ``name`` at the top level;
- ``("thread", 2)``: the third ``[[thread]]`` header;
- ``("thread", 2, "ops", 1)``: the second element of that thread's ``ops``;
- ``("expect", "wilcox", "violations", 0)``: an element inside an inline table.

For a string value it also records where each *decoded* character came from,
so a column inside an op or an `exists` string (escapes, multi-line strings
and all) translates to the file's line and column.

Lines and columns are 1-based and counted in characters, like `tomllib`'s.

>>> loc = Locator('name = "x"\\n[[thread]]\\nops = ["r0 = load A"]\\n')
>>> loc.position("thread", 0)
(2, 1)
>>> loc.position("thread", 0, "ops", 0)
(3, 9)
>>> loc.char(("thread", 0, "ops", 0), 10)
(3, 19)
"""

from __future__ import annotations

import bisect
import re
from typing import Union

import attrs

#: A logical path into the parsed document: table keys and array indices.
Path = tuple[Union[str, int], ...]
Position = tuple[int, int]

_WS = " \t"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_DATE_TIME_SPACE = re.compile(r"\d{4}-\d{2}-\d{2} \d")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


@attrs.frozen
class StringValue:
    """A string value: the decoded text and, for each decoded character, the
    source offset it came from; `end` is the offset of the closing quote."""

    text: str
    offsets: tuple[int, ...]
    end: int


class Locator:
    """Positions of the keys, headers, array elements and string characters of
    one TOML text.  Never raises: on text it cannot scan it just knows less."""

    def __init__(self, text: str) -> None:
        # tomllib normalises CRLF the same way; columns are unaffected because
        # the CR sits at the end of its line.
        self._src = text.replace("\r\n", "\n")
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", self._src)]
        self._positions: dict[Path, int] = {}
        self._strings: dict[Path, StringValue] = {}
        self._value_starts: dict[Path, int] = {}
        try:
            _Scanner(self._src, self._positions, self._strings, self._value_starts).run()
        except Exception:  # pragma: no cover - the text passed tomllib; be safe anyway
            pass

    # --- offsets -> (line, col) ------------------------------------------------

    def line_col(self, offset: int) -> Position:
        """The 1-based (line, column) of a character offset in the text."""
        offset = max(0, min(offset, len(self._src)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def end_position(self) -> Position:
        """Where `tomllib`'s "at end of document" is."""
        return self.line_col(len(self._src))

    # --- queries ---------------------------------------------------------------

    def position(self, *path: str | int) -> Position | None:
        """Where the key, table header or array element at `path` is written:
        the key's first character, the header's `[`, or the element's first
        character (inside the quotes for a string element)."""
        offset = self._positions.get(tuple(path))
        return None if offset is None else self.line_col(offset)

    def nearest(self, *path: str | int) -> Position | None:
        """`position` of `path`, or else of its longest prefix that is written
        in the text (for a key that is missing, its table's header)."""
        p: Path = tuple(path)
        while p:
            found = self.position(*p)
            if found is not None:
                return found
            p = p[:-1]
        return None

    def value_position(self, *path: str | int) -> Position | None:
        """Where the value of the key at `path` starts (its first character,
        the opening quote for a string)."""
        offset = self._value_starts.get(tuple(path))
        return None if offset is None else self.line_col(offset)

    def char(self, path: Path, index: int) -> Position | None:
        """Where character `index` of the decoded string at `path` was written;
        an index at or past the end gives the closing quote."""
        value = self._strings.get(tuple(path))
        if value is None:
            return self.nearest(*path)
        if 0 <= index < len(value.offsets):
            return self.line_col(value.offsets[index])
        return self.line_col(value.end)

    def string(self, *path: str | int) -> StringValue | None:
        return self._strings.get(tuple(path))

    # Convenience names for what scenario errors point at.

    def header(self, table: str, index: int | None = None) -> Position | None:
        """The header `[[table]]` number `index` (0-based), or `[table]`."""
        return self.position(table) if index is None else self.position(table, index)

    def op(self, thread: int, index: int, char: int = 0) -> Position | None:
        """Character `char` of op `index` of `[[thread]]` number `thread`."""
        path: Path = ("thread", thread, "ops", index)
        if path not in self._strings:
            return self.nearest(*path)
        return self.char(path, char)


class _Scanner:
    """A structural walk over valid TOML, recording positions by logical path."""

    def __init__(
        self,
        src: str,
        positions: dict[Path, int],
        strings: dict[Path, StringValue],
        value_starts: dict[Path, int],
    ) -> None:
        self.s = src
        self.i = 0
        self.positions = positions
        self.strings = strings
        self.value_starts = value_starts
        #: Logical paths (without index) of arrays of tables -> how many so far.
        self.array_counts: dict[Path, int] = {}

    # --- low level ---------------------------------------------------------------

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip_ws(self) -> None:
        while self.peek() and self.peek() in _WS:
            self.i += 1

    def skip_comment(self) -> None:
        if self.peek() == "#":
            nl = self.s.find("\n", self.i)
            self.i = len(self.s) if nl < 0 else nl

    def skip_ws_nl_comments(self) -> None:
        while True:
            before = self.i
            while self.peek() and self.peek() in " \t\n":
                self.i += 1
            self.skip_comment()
            if self.i == before:
                return

    def skip_line(self) -> None:
        nl = self.s.find("\n", self.i)
        self.i = len(self.s) if nl < 0 else nl + 1

    def record(self, path: Path, offset: int) -> None:
        self.positions.setdefault(path, offset)

    # --- document ------------------------------------------------------------------

    def run(self) -> None:
        table: Path = ()
        while self.i < len(self.s):
            self.skip_ws()
            c = self.peek()
            if c == "" or c == "\n" or c == "#":
                self.skip_line()
                continue
            if c == "[":
                table = self.header()
            else:
                self.key_value(table)
            self.skip_line()

    def header(self) -> Path:
        start = self.i
        is_array = self.peek(1) == "["
        self.i += 2 if is_array else 1
        self.skip_ws()
        raw = [k for k, _ in self.key()]
        logical = self.resolve(raw[:-1]) + (raw[-1],)
        if is_array:
            index = self.array_counts.get(logical, 0)
            self.array_counts[logical] = index + 1
            self.record(logical, start)
            logical = logical + (index,)
        self.record(logical, start)
        return logical

    def resolve(self, raw: list[str]) -> Path:
        """A header's dotted key as a logical path: each prefix that names an
        array of tables refers to its latest element."""
        out: Path = ()
        for part in raw:
            out = out + (part,)
            count = self.array_counts.get(out)
            if count:
                out = out + (count - 1,)
        return out

    def key(self) -> list[tuple[str, int]]:
        """A dotted key: (part, offset) for each part."""
        parts = []
        while True:
            self.skip_ws()
            start = self.i
            c = self.peek()
            if c in "\"'":
                value = self.string(c)
                parts.append((value.text, start))
            else:
                m = _BARE_KEY.match(self.s, self.i)
                if not m:
                    raise ValueError("bad key")
                self.i = m.end()
                parts.append((m.group(), start))
            self.skip_ws()
            if self.peek() != ".":
                return parts
            self.i += 1

    def key_value(self, table: Path) -> None:
        parts = self.key()
        path = table
        for name, offset in parts:
            path = path + (name,)
            self.record(path, offset)
        self.skip_ws()
        if self.peek() != "=":
            raise ValueError("expected '='")
        self.i += 1
        self.skip_ws()
        self.value(path)

    # --- values ----------------------------------------------------------------------

    def value(self, path: Path) -> None:
        self.value_starts.setdefault(path, self.i)
        c = self.peek()
        if c in "\"'":
            self.strings[path] = self.string(c)
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip_ws_nl_comments()
                if self.peek() == "]":
                    self.i += 1
                    return
                element = path + (index,)
                self.record(element, self.i)
                self.value(element)
                if element in self.strings:
                    # An element's position is where its text starts.
                    string = self.strings[element]
                    if string.offsets:
                        self.positions[element] = string.offsets[0]
                index += 1
                self.skip_ws_nl_comments()
                if self.peek() == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip_ws()
                if self.peek() == "}":
                    self.i += 1
                    return
                self.key_value(path)
                self.skip_ws()
                if self.peek() == ",":
                    self.i += 1
        else:
            if _DATE_TIME_SPACE.match(self.s, self.i):
                self.i += 11
            while self.peek() and self.peek() not in " \t\n#,]}":
                self.i += 1

    def string(self, quote: str) -> StringValue:
        s = self.s
        multiline = s.startswith(quote * 3, self.i)
        self.i += 3 if multiline else 1
        if multiline and self.peek() == "\n":
            self.i += 1
        text: list[str] = []
        offsets: list[int] = []
        while True:
            c = self.peek()
            if c == "":
                raise ValueError("unterminated string")
            if c == quote:
                if not multiline:
                    end = self.i
                    self.i += 1
                    break
                if s.startswith(quote * 3, self.i):
                    end = self.i
                    self.i += 3
                    # Up to two more quotes belong to the content.
                    for _ in range(2):
                        if self.peek() == quote:
                            text.append(quote)
                            offsets.append(self.i)
                            self.i += 1
                    break
            if c == "\\" and quote == '"':
                start = self.i
                nxt = self.peek(1)
                if multiline and nxt in " \t\n":
                    # Line-ending backslash: drop it and all following whitespace.
                    self.i += 1
                    while self.peek() and self.peek() in " \t\n":
                        self.i += 1
                    continue
                if nxt in ("u", "U"):
                    width = 4 if nxt == "u" else 8
                    text.append(chr(int(s[self.i + 2 : self.i + 2 + width], 16)))
                    self.i += 2 + width
                else:
                    text.append(_ESCAPES.get(nxt, nxt))
                    self.i += 2
                offsets.append(start)
                continue
            text.append(c)
            offsets.append(self.i)
            self.i += 1
        return StringValue("".join(text), tuple(offsets), end)
