"""The `exists` clause: parse, print, evaluate (docs/scenario-format.md)."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmactors.scenario.exists import (
    ExistsSyntaxError,
    evaluate,
    format_expr,
    parse_exists,
    registers_read,
)
from vmactors.scenario.model import And, Atom, Expr, Not, Or

THREADS = range(3)
REGS = ("r0", "r1", "fault", "L", "addr_2")
LABELS = {"A": 0x7EFFFFFFF000, "F": 0x7EFFFFFFE000, "Big_1": 0x10000}
VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.integers(min_value=-2, max_value=3),
    st.just("segv"),
)


@st.composite
def atoms(draw: st.DrawFn) -> Atom:
    thread = draw(st.sampled_from(THREADS))
    reg = draw(st.sampled_from(REGS))
    negated = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:
        return Atom(thread, reg, negated, draw(st.sampled_from(sorted(LABELS))), value_is_label=True)
    return Atom(thread, reg, negated, draw(VALUES))


exprs: st.SearchStrategy[Expr] = st.recursive(
    atoms(),
    lambda children: st.one_of(
        children.map(Not),
        st.lists(children, min_size=2, max_size=4).map(lambda xs: And(tuple(xs))),
        st.lists(children, min_size=2, max_size=4).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=12,
)

register_maps = st.dictionaries(
    st.tuples(st.sampled_from(THREADS), st.sampled_from(REGS)),
    st.one_of(st.integers(-2, 3), st.just("segv"), st.sampled_from(sorted(LABELS.values()))),
)


def reference(expr: Expr, regs: dict[tuple[int, str], int | str]) -> bool:
    """An independent evaluation: atoms by table lookup, `or` by De Morgan."""
    missing = object()
    if isinstance(expr, Atom):
        got = regs.get((expr.thread, expr.reg), missing)
        want = LABELS[expr.value] if expr.value_is_label else expr.value  # type: ignore[index]
        if got is missing:
            return expr.negated
        return (got != want) if expr.negated else (got == want)
    if isinstance(expr, Not):
        return not reference(expr.item, regs)
    if isinstance(expr, And):
        return reduce(lambda acc, item: acc and reference(item, regs), expr.items, True)
    assert isinstance(expr, Or)
    return not reference(And(tuple(Not(i) for i in expr.items)), regs)


def herd7(expr: Expr, spaces: str) -> str:
    """The herd7 spelling: `/\\`, `\\/`, `~`, hex numbers, every compound in
    parentheses, and odd spacing."""
    if isinstance(expr, Atom):
        if isinstance(expr.value, int) and not expr.value_is_label:
            value = f"-{-expr.value:#x}" if expr.value < 0 else f"{expr.value:#X}".replace("0X", "0x")
        else:
            value = str(expr.value)
        op = "!=" if expr.negated else "="
        return f"{expr.thread}:{expr.reg}{spaces}{op}{value}"
    if isinstance(expr, Not):
        return f"~{spaces}{herd7(expr.item, spaces)}"
    joiner = f"{spaces}/\\{spaces}" if isinstance(expr, And) else f"\\/{spaces}"
    return "(" + joiner.join(herd7(i, spaces) for i in expr.items) + ")"


# --- round trips ---------------------------------------------------------------


@given(exprs)
def test_format_then_parse_gives_the_same_tree(expr: Expr) -> None:
    assert parse_exists(format_expr(expr)) == expr


@given(exprs, st.sampled_from(["", " ", "  ", "\t"]))
def test_herd7_spelling_parses_to_the_same_tree(expr: Expr, spaces: str) -> None:
    assert parse_exists(herd7(expr, spaces)) == expr


@given(exprs)
def test_format_is_a_fixed_point(expr: Expr) -> None:
    text = format_expr(expr)
    assert format_expr(parse_exists(text)) == text


# --- evaluation --------------------------------------------------------------------


@given(exprs, register_maps)
def test_evaluate_agrees_with_the_reference(expr: Expr, regs: dict[tuple[int, str], int | str]) -> None:
    assert evaluate(expr, regs, LABELS) == reference(expr, regs)


@given(exprs, register_maps)
def test_evaluating_the_printed_form_agrees(expr: Expr, regs: dict[tuple[int, str], int | str]) -> None:
    assert evaluate(parse_exists(format_expr(expr)), regs, LABELS) == evaluate(expr, regs, LABELS)


@given(exprs)
def test_registers_read_are_the_atoms_registers(expr: Expr) -> None:
    def atoms_of(e: Expr) -> list[Atom]:
        if isinstance(e, Atom):
            return [e]
        if isinstance(e, Not):
            return atoms_of(e.item)
        return [a for i in e.items for a in atoms_of(i)]

    assert registers_read(expr) == {(a.thread, a.reg) for a in atoms_of(expr)}


def test_unwritten_register_equals_nothing() -> None:
    assert evaluate(parse_exists("0:r0 = 0"), {}, {}) is False
    assert evaluate(parse_exists("0:r0 != 0"), {}, {}) is True
    assert evaluate(parse_exists("0:r0 = segv"), {}, {}) is False
    assert evaluate(parse_exists("not 0:r0 = 0"), {}, {}) is True


def test_segv_is_not_a_number() -> None:
    regs = {(0, "r0"): "segv", (1, "r1"): 0}
    assert evaluate(parse_exists("0:r0 = segv and 1:r1 != segv"), regs, {})
    assert not evaluate(parse_exists("0:r0 = 0"), regs, {})


def test_label_values_compare_against_the_initial_address() -> None:
    expr = parse_exists("2:B = A")
    assert expr == Atom(2, "B", False, "A", value_is_label=True)
    assert evaluate(expr, {(2, "B"): 0x7EFFFFFFF000}, {"A": 0x7EFFFFFFF000})
    assert not evaluate(expr, {(2, "B"): 0x7EFFFFFFE000}, {"A": 0x7EFFFFFFF000})


# --- precedence and operators -----------------------------------------------------------

a, b, c = (Atom(0, r, False, 1) for r in ("a", "b", "c"))


@pytest.mark.parametrize(
    "text, tree",
    [
        ("0:a = 1 or 0:b = 1 and 0:c = 1", Or((a, And((b, c))))),
        ("0:a = 1 and 0:b = 1 or 0:c = 1", Or((And((a, b)), c))),
        ("not 0:a = 1 and 0:b = 1", And((Not(a), b))),
        ("not 0:a = 1 or not 0:b = 1 and 0:c = 1", Or((Not(a), And((Not(b), c))))),
        ("not (0:a = 1 or 0:b = 1)", Not(Or((a, b)))),
        ("(0:a = 1 or 0:b = 1) and 0:c = 1", And((Or((a, b)), c))),
        ("0:a = 1 and 0:b = 1 and 0:c = 1", And((a, b, c))),
        ("(0:a = 1 and 0:b = 1) and 0:c = 1", And((And((a, b)), c))),
        ("not not 0:a = 1", Not(Not(a))),
        ("((0:a = 1))", a),
    ],
)
def test_precedence_not_and_or(text: str, tree: Expr) -> None:
    assert parse_exists(text) == tree


def test_precedence_shows_in_evaluation() -> None:
    regs = {(0, "a"): 1, (0, "b"): 0, (0, "c"): 0}
    # a or (b and c): true; (a or b) and c would be false.
    assert evaluate(parse_exists("0:a = 1 or 0:b = 1 and 0:c = 1"), regs, {})
    # (not a) and b: false; not (a and b) would be true.
    assert not evaluate(parse_exists("not 0:a = 1 and 0:b = 0"), regs, {})


@pytest.mark.parametrize(
    "herd, words",
    [
        ("0:a=1 /\\ 0:b=1", "0:a = 1 and 0:b = 1"),
        ("0:a=1 \\/ 0:b=1", "0:a = 1 or 0:b = 1"),
        ("~0:a=1", "not 0:a = 1"),
        ("~0:a=1 \\/ 0:b=1 /\\ 0:c=1", "not 0:a = 1 or 0:b = 1 and 0:c = 1"),
        ("0:a=1/\\0:b=1\\/0:c=1", "0:a = 1 and 0:b = 1 or 0:c = 1"),
        ("~(0:a=1 /\\ 0:b=1) and 0:c=1", "not (0:a = 1 and 0:b = 1) and 0:c = 1"),
    ],
)
def test_herd7_operators(herd: str, words: str) -> None:
    assert parse_exists(herd) == parse_exists(words)


def test_atom_forms() -> None:
    assert parse_exists("1:r1 != -0x10") == Atom(1, "r1", True, -16)
    assert parse_exists("  12 : fault\t=\tsegv ") == Atom(12, "fault", False, "segv")
    assert parse_exists("0:r0=0xFFFFFFFFFFFFFFFF") == Atom(0, "r0", False, 2**64 - 1)


# --- errors carry the column of the culprit ----------------------------------------------


@pytest.mark.parametrize(
    "text, col, words",
    [
        ("", 1, "empty"),
        ("0:r0 = 1 and", 13, "the end"),
        ("0:r0 == 1", 7, "'='"),
        ("(0:r0 = 1", 1, "unclosed"),
        ("0:r0 = 1)", 9, "unbalanced"),
        ("r0 = 1", 1, "'r0'"),
        ("0:r0 = 1 & 1:r1 = 2", 10, "'&'"),
        ("0:r0 = 1 1:r1 = 2", 10, "'1'"),
        ("0:and = 1", 3, "register"),
        ("0:r0 = or", 8, "value"),
        ("0x1:r0 = 1", 1, "thread"),
        ("__import__('os').system('true')", 1, "'__import__'"),
        ("0:r0 = 1 or 0:r1 = 2 @ 3", 22, "'@'"),
        ("0:r0 = 1 and ()", 15, "')'"),
    ],
)
def test_syntax_errors(text: str, col: int, words: str) -> None:
    with pytest.raises(ExistsSyntaxError) as info:
        parse_exists(text)
    assert isinstance(info.value, ValueError)
    assert info.value.col == col
    assert info.value.offset == col - 1
    assert words in info.value.message
