"""The `exists` clause (docs/scenario-format.md): parse, evaluate, print.  Never `eval`.

Grammar (loosest first; `not` binds tighter than `and`, `and` tighter than
`or`; herd7's `\\/`, `/\\` and `~` are accepted as spellings of `or`, `and`,
`not`)::

    expr    := conj (("or" | "\\/") conj)*
    conj    := unary (("and" | "/\\") unary)*
    unary   := ("not" | "~") unary | "(" expr ")" | atom
    atom    := THREAD ":" REG ("=" | "!=") value
    value   := INT | "segv" | LABEL

THREAD is a decimal number; INT is decimal or 0x hex, possibly negative; REG
and LABEL are identifiers.  A chain of the same operator is one n-ary node:
``a and b and c`` is ``And((a, b, c))``, while ``(a and b) and c`` keeps its
parentheses as a nested node, so `format_expr` and `parse_exists` round-trip.

>>> e = parse_exists("0:r0 = 1 /\\\\ ~1:r1 = segv")
>>> format_expr(e)
'0:r0 = 1 and not 1:r1 = segv'
>>> evaluate(e, {(0, "r0"): 1, (1, "r1"): 0}, {})
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from vmactors.scenario.model import And, Atom, Expr, Not, Or

__all__ = [
    "AtomSpan",
    "ExistsSyntaxError",
    "evaluate",
    "format_expr",
    "parse_exists",
    "parse_exists_located",
    "registers_read",
]

#: Words with a meaning in `exists`; they cannot be registers or labels.
KEYWORDS = frozenset({"and", "or", "not", "segv"})

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<int>-?(?:0[xX][0-9a-fA-F]+|[0-9]+))(?![A-Za-z0-9_])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>!=|/\\|\\/|[:=()~])
    """,
    re.VERBOSE,
)


class ExistsSyntaxError(ValueError):
    """A malformed `exists` string.  `offset` is the 0-based index of the culprit
    character in the string, `col` the same 1-based."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.col = offset + 1

    def __str__(self) -> str:
        return f"column {self.col}: {self.message}"


@attrs.frozen
class AtomSpan:
    """Where an atom's parts are in the `exists` string (0-based offsets)."""

    atom: Atom
    start: int
    thread: int
    reg: int
    value: int


@attrs.frozen
class _Tok:
    kind: str  # "int" | "ident" | "punct" | "bad" (cannot be lexed) | "end"
    text: str
    offset: int


def _tokenize(text: str) -> list[_Tok]:
    tokens = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            # Not raised here: the parser reports it only if it gets this far,
            # so the first error in the string is the one reported.
            bad = re.match(r"[^\s\w()]+|\w+|\S", text[i:])
            tokens.append(_Tok("bad", bad.group() if bad else text[i], i))
            break
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, m.group(), i))
        i = m.end()
    tokens.append(_Tok("end", "", len(text)))
    return tokens


def _int(text: str) -> int:
    negative = text.startswith("-")
    body = text[1:] if negative else text
    value = int(body, 16) if body[:2].lower() == "0x" else int(body, 10)
    return -value if negative else value


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.k = 0
        self.spans: list[AtomSpan] = []

    @property
    def tok(self) -> _Tok:
        return self.tokens[self.k]

    def at(self, *words: str) -> bool:
        t = self.tok
        return t.kind in ("ident", "punct") and t.text in words

    def fail(self, what: str, tok: _Tok | None = None) -> ExistsSyntaxError:
        tok = tok or self.tok
        if tok.kind == "bad":
            return ExistsSyntaxError(f"unexpected {tok.text!r}", tok.offset)
        found = "the end" if tok.kind == "end" else repr(tok.text)
        return ExistsSyntaxError(f"expected {what}, found {found}", tok.offset)

    def parse(self) -> Expr:
        if self.tok.kind == "end":
            raise ExistsSyntaxError("empty exists clause", 0)
        try:
            expr = self.disjunction()
        except RecursionError:
            raise ExistsSyntaxError("expression nested too deeply", self.tok.offset) from None
        if self.tok.kind != "end":
            if self.at(")"):
                raise ExistsSyntaxError("unbalanced ')'", self.tok.offset)
            raise self.fail("'and', 'or' or the end")
        return expr

    def disjunction(self) -> Expr:
        items = [self.conjunction()]
        while self.at("or", "\\/"):
            self.k += 1
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Expr:
        items = [self.unary()]
        while self.at("and", "/\\"):
            self.k += 1
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        if self.at("not", "~"):
            self.k += 1
            return Not(self.unary())
        if self.at("("):
            opening = self.tok
            self.k += 1
            inner = self.disjunction()
            if not self.at(")"):
                if self.tok.kind == "end":
                    raise ExistsSyntaxError("unclosed '('", opening.offset)
                raise self.fail("')'")
            self.k += 1
            return inner
        return self.atom()

    def atom(self) -> Atom:
        start = self.tok
        if start.kind != "int" or start.text.startswith("-") or start.text[:2].lower() == "0x":
            raise self.fail("an atom T:REG = VALUE (T a thread number)")
        thread = int(start.text, 10)
        self.k += 1
        if not self.at(":"):
            raise self.fail("':' after the thread number")
        self.k += 1
        reg = self.tok
        if reg.kind != "ident" or reg.text in KEYWORDS:
            raise self.fail("a register name")
        self.k += 1
        if not self.at("=", "!="):
            raise self.fail("'=' or '!='")
        negated = self.tok.text == "!="
        self.k += 1
        value_tok = self.tok
        value: int | str
        is_label = False
        if value_tok.kind == "int":
            value = _int(value_tok.text)
        elif value_tok.kind == "ident" and value_tok.text == "segv":
            value = "segv"
        elif value_tok.kind == "ident" and value_tok.text not in KEYWORDS:
            value, is_label = value_tok.text, True
        else:
            raise self.fail("a value (an integer, segv or a map label)")
        self.k += 1
        atom = Atom(thread=thread, reg=reg.text, negated=negated, value=value, value_is_label=is_label)
        self.spans.append(AtomSpan(atom, start.offset, start.offset, reg.offset, value_tok.offset))
        return atom


def parse_exists(text: str) -> Expr:
    """Parse an `exists` string; raises `ExistsSyntaxError` (a `ValueError`)
    carrying the offset/column of the culprit."""
    return _Parser(text).parse()


def parse_exists_located(text: str) -> tuple[Expr, list[AtomSpan]]:
    """`parse_exists`, plus where each atom's parts are, in source order (for
    error messages about threads, registers and labels)."""
    parser = _Parser(text)
    expr = parser.parse()
    return expr, parser.spans


def evaluate(
    expr: Expr,
    regs: Mapping[tuple[int, str], int | str],
    labels: Mapping[str, int],
) -> bool:
    """The truth of `expr` in a final state: `regs` maps (thread, register) to
    the value the run left there (an int or "segv"); `labels` maps each map
    label to its initial address.  On a register the run never wrote, `=` is
    false and `!=` true."""
    if isinstance(expr, Atom):
        key = (expr.thread, expr.reg)
        if key not in regs:
            return expr.negated
        target = labels[expr.value] if expr.value_is_label else expr.value  # type: ignore[index]
        # An int never equals "segv"; register values are never bools.
        equal = regs[key] == target
        return not equal if expr.negated else equal
    if isinstance(expr, Not):
        return not evaluate(expr.item, regs, labels)
    if isinstance(expr, And):
        return all(evaluate(item, regs, labels) for item in expr.items)
    if isinstance(expr, Or):
        return any(evaluate(item, regs, labels) for item in expr.items)
    raise TypeError(f"not an exists expression: {expr!r}")


def registers_read(expr: Expr) -> set[tuple[int, str]]:
    """Every (thread, register) the expression looks at."""
    if isinstance(expr, Atom):
        return {(expr.thread, expr.reg)}
    if isinstance(expr, Not):
        return registers_read(expr.item)
    out: set[tuple[int, str]] = set()
    for item in expr.items:
        out |= registers_read(item)
    return out


def format_expr(expr: Expr) -> str:
    """The expression in the canonical spelling (`and`, `or`, `not`, decimal
    numbers), with just the parentheses `parse_exists` needs to give it back."""
    if isinstance(expr, Atom):
        op = "!=" if expr.negated else "="
        return f"{expr.thread}:{expr.reg} {op} {expr.value}"
    if isinstance(expr, Not):
        inner = format_expr(expr.item)
        return f"not ({inner})" if isinstance(expr.item, (And, Or)) else f"not {inner}"
    if isinstance(expr, And):
        return " and ".join(
            f"({format_expr(i)})" if isinstance(i, (And, Or)) else format_expr(i) for i in expr.items
        )
    if isinstance(expr, Or):
        return " or ".join(f"({format_expr(i)})" if isinstance(i, Or) else format_expr(i) for i in expr.items)
    raise TypeError(f"not an exists expression: {expr!r}")
