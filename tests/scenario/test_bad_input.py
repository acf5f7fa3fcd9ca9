"""Bad scenario files (docs/scenario-format.md): each is a `ScenarioError` rendered as
`FILE:LINE:COL: message` (or `FILE: message` when nothing can be pointed at),
naming the culprit.  Positions below were counted by hand: lines and columns
are 1-based; a key error points at the key, an op error at the op's first
character inside the quotes, an `exists` error at the culprit inside the string.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmactors.errors import ScenarioError
from vmactors.scenario import load_scenario, parse_scenario

from .test_parse import DESIGN_EXAMPLE


def error(*lines: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("\n".join(lines) + "\n", "bad.toml")
    return info.value


def check(err: ScenarioError, prefix: str, *culprits: str) -> None:
    text = str(err)
    assert text.startswith(prefix + " "), text
    for culprit in culprits:
        assert culprit in err.message, text
    assert "\n" not in text


HEAD = 'name = "bad"'
THREAD = ["[[thread]]", 'ops = ["r0 = load 0x10000"]']


# --- TOML itself ----------------------------------------------------------------


def test_toml_syntax_error_keeps_tomllib_position() -> None:
    err = error(HEAD, "about = oops", *THREAD)
    check(err, "bad.toml:2:9:", "TOML syntax error", "Invalid value")
    assert (err.line, err.col) == (2, 9)


def test_toml_syntax_error_at_end_of_document() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["r0 = load A",')
    # The unterminated array runs to the end of the text: line 4, column 1.
    check(err, "bad.toml:4:1:", "TOML syntax error")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_bytes(b'name = "x"\nabout = "\xff"\n')
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    check(info.value, f"{path}:2:10:", "UTF-8", "0xff")


# --- required keys and shapes ------------------------------------------------------


def test_missing_name_has_no_position() -> None:
    err = error("about = 'x'", *THREAD)
    assert str(err) == "bad.toml: missing required key 'name'"
    assert err.line is None


def test_no_thread() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"')
    check(err, "bad.toml:", "[[thread]]")
    assert err.line is None


def test_thread_without_ops_points_at_its_header() -> None:
    err = error(HEAD, *THREAD, "[[thread]]", "cpu = 3")
    check(err, "bad.toml:4:1:", "[[thread]] 1", "ops")


def test_empty_ops() -> None:
    err = error(HEAD, *THREAD, "[[thread]]", "ops = []")
    check(err, "bad.toml:5:1:", "[[thread]] 1", "no ops")


def test_op_that_is_not_a_string() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["r0 = load 8", 5]')
    check(err, "bad.toml:3:23:", "op 1 of [[thread]] 0", "integer")


def test_map_written_as_a_single_table() -> None:
    err = error(HEAD, "[map]", 'name = "A"', *THREAD)
    check(err, "bad.toml:2:1:", "[[map]]")


def test_wrong_type() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', 'pages = "2"', *THREAD)
    check(err, "bad.toml:4:1:", "pages of [[map]] 0 ('A')", "integer", "'2'")


# --- unknown and misplaced keys ----------------------------------------------------------


def test_unknown_top_level_key() -> None:
    err = error(HEAD, "colour = 1", *THREAD)
    check(err, "bad.toml:2:1:", "unknown key 'colour'")


def test_thread_key_at_the_top_level_says_where_it_belongs() -> None:
    err = error(HEAD, 'ops = ["r0 = load 8"]', *THREAD)
    check(err, "bad.toml:2:1:", "unknown key 'ops'", "[[thread]]")


def test_exists_after_a_thread_header() -> None:
    err = error(
        HEAD,
        "[[thread]]",
        'ops = ["r0 = load 0x10000"]',
        "[[thread]]",
        'ops = ["r1 = load 0x10000"]',
        "[[thread]]",
        'ops = ["r2 = load 0x10000"]',
        'exists = "0:r0 = 1"',
    )
    check(
        err,
        "bad.toml:8:1:",
        "unknown key 'exists' in [[thread]] 2",
        "top-level keys (name, about, cpus, exists, free_pgtables) must come before the first table",
    )


def test_exists_after_a_thread_is_reported_before_the_verdicts_it_orphans() -> None:
    err = error(HEAD, *THREAD, '  exists = "0:r0 = 1"', "[expect]", 'wilcox = "never"')
    check(err, "bad.toml:4:3:", "unknown key 'exists' in [[thread]] 0")


def test_cpus_after_a_map_header() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "cpus = 2", *THREAD)
    check(err, "bad.toml:4:1:", "unknown key 'cpus' in [[map]] 0", "before the first table")


def test_unknown_key_in_a_map() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "pagez = 2", *THREAD)
    check(err, "bad.toml:4:1:", "unknown key 'pagez' in [[map]] 0", "pages")


def test_map_key_in_a_thread() -> None:
    err = error(HEAD, *THREAD, "pages = 2")
    check(err, "bad.toml:4:1:", "unknown key 'pages' in [[thread]] 0", "[[map]]")


# --- ops ------------------------------------------------------------------------------------


def test_unknown_op() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["r0 = load A", "frobnicate A"]')
    check(err, "bad.toml:5:24:", "unknown op 'frobnicate A'", "[[thread]] 0")


def test_unknown_op_keyword() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["L = mmap 1 colour=red"]')
    check(err, "bad.toml:3:9:", "unknown op 'L = mmap 1 colour=red'", "colour")


def test_unknown_op_in_a_multiline_array_with_escapes() -> None:
    err = error(HEAD, "[[thread]]", "ops = [", '  "r0 = load 8",', '    "\\u0073tore 8 1", "lod 8",', "]")
    check(err, "bad.toml:5:24:", "unknown op 'lod 8'")


def test_madvise_without_advice() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["madvise A"]')
    check(err, "bad.toml:5:9:", "bad op 'madvise A'", "expected the advice", "dontneed")


def test_madvise_with_unknown_advice_suggests_one() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["r0 = load A", "madvise A dontned"]')
    check(err, "bad.toml:5:24:", "unknown advice 'dontned'", "did you mean 'dontneed'")


def test_madvise_of_an_undefined_label() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["madvise B dontneed"]')
    check(err, "bad.toml:5:9:", "undefined label 'B'", "madvise B dontneed")


def test_madvise_with_something_after_the_advice() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["madvise A dontneed now"]')
    check(err, "bad.toml:5:9:", "unexpected 'now'")


def test_a_policy_name_with_a_dot_must_be_quoted_in_expect() -> None:
    err = error(HEAD, 'exists = "0:r0 = 1"', *THREAD, "[expect]", 'mmap_sem-4.19 = "never"')
    check(err, "bad.toml:6:1:", "unknown policy 'mmap_sem-4'", 'quote the name: "mmap_sem-4.19"')


def test_undefined_label() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["r0 = load B"]')
    check(err, "bad.toml:5:9:", "undefined label 'B'", "r0 = load B")


def test_label_of_another_thread_is_undefined() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["L = mmap"]', "[[thread]]", 'ops = ["munmap L"]')
    check(err, "bad.toml:5:9:", "undefined label 'L'", "[[thread]] 0")


def test_label_used_before_its_definition_is_undefined() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["store L 1", "L = mmap 2"]')
    check(err, "bad.toml:3:9:", "undefined label 'L'", "later")


def test_local_label_may_not_shadow_a_map() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["A = mmap"]')
    check(err, "bad.toml:5:9:", "label 'A'", "shadows")


def test_local_label_defined_twice() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["L = mmap", "L = mmap 2"]')
    check(err, "bad.toml:3:21:", "label 'L' is defined twice")


def test_unaligned_address() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[thread]]", 'ops = ["store A+4 1"]')
    check(err, "bad.toml:5:9:", "unaligned", "store A+4 1")


def test_unaligned_absolute_address() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["r0 = load 0x10004"]')
    check(err, "bad.toml:3:9:", "unaligned address 0x10004")


def test_out_of_mapping_offset() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "pages = 2", "[[thread]]", 'ops = ["r0 = load A+0x2000"]')
    check(err, "bad.toml:6:9:", "outside the mapping", "r0 = load A+0x2000", "'A' has 2 pages")


def test_zero_pages_in_a_map() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "pages = 0", *THREAD)
    check(err, "bad.toml:4:1:", "pages of [[map]] 0 ('A') must be at least 1", "0")


def test_negative_pages_in_a_map() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "pages = -3", *THREAD)
    check(err, "bad.toml:4:1:", "must be at least 1", "-3")


def test_negative_pages_in_an_op() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["L = mmap -1"]')
    check(err, "bad.toml:3:9:", "L = mmap -1", "at least 1")


def test_kind_file_without_file_in_a_map() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', 'kind = "file"', *THREAD)
    check(err, "bad.toml:4:1:", 'kind = "file"', "file =")


def test_kind_file_without_file_in_an_op() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["L = mmap kind=file"]')
    check(err, "bad.toml:3:9:", "L = mmap kind=file", "kind=file needs file=")


def test_file_without_kind_file() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', 'file = "f"', *THREAD)
    check(err, "bad.toml:4:1:", "file = 'f'", 'kind = "file"')


def test_conflicting_file_fills_between_maps() -> None:
    err = error(
        HEAD,
        "[[map]]",
        'name = "A"',
        'kind = "file"',
        'file = "f"',
        "fill = 1",
        "[[map]]",
        'name = "B"',
        'kind = "file"',
        'file = "f"',
        "fill = 2",
        *THREAD,
    )
    check(err, "bad.toml:11:1:", "file 'f'", "fill 2", "fill 1", "[[map]] 0 ('A')")


def test_op_fill_conflicting_with_a_map_fill() -> None:
    err = error(
        HEAD,
        "[[map]]",
        'name = "A"',
        'kind = "file"',
        'file = "f"',
        "fill = 1",
        "[[thread]]",
        'ops = ["r0 = load A", "mmap A fixed kind=file file=f fill=2"]',
    )
    check(err, "bad.toml:8:24:", "file 'f'", "mmap A fixed kind=file file=f fill=2", "fill 1")


def test_unaligned_at() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "at = 0x7e0000000800", *THREAD)
    check(err, "bad.toml:4:1:", "at of [[map]] 0 ('A')", "0x7e0000000800", "page-aligned")


def test_at_outside_the_user_range() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "pages = 2", "at = 0x7effffffff000", *THREAD)
    check(err, "bad.toml:5:1:", "outside the user address range")


def test_unaligned_at_in_an_op() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["L = mmap at=0x100010"]')
    check(err, "bad.toml:3:9:", "L = mmap at=0x100010", "page-aligned")


@pytest.mark.parametrize("at", ["0x10000000000000000", "-0x1000"])
def test_an_op_hint_that_is_no_address(at: str) -> None:
    err = error(HEAD, "[[thread]]", f'ops = ["L = mmap at={at}"]')
    check(err, "bad.toml:3:9:", f"at={at} is not a 64-bit address")


def test_overlapping_at() -> None:
    err = error(
        HEAD,
        "[[map]]",
        'name = "A"',
        "pages = 2",
        "at = 0x100000",
        "[[map]]",
        'name = "B"',
        "at = 0x101000",
        *THREAD,
    )
    check(err, "bad.toml:8:1:", "'B'", "overlaps", "'A'")


def test_duplicate_map_name() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "[[map]]", 'name = "A"', *THREAD)
    check(err, "bad.toml:5:1:", "duplicate map name 'A'")


# --- CPUs -----------------------------------------------------------------------------------------


def test_cpu_with_two_threads() -> None:
    err = error(HEAD, *THREAD, "[[thread]]", 'ops = ["r1 = load 0x10000"]', "cpu = 0")
    check(err, "bad.toml:6:1:", "CPU 0", "thread 0", "thread 1", "[[thread]] 0", "[[thread]] 1")


def test_cpu_with_two_threads_by_default_points_at_the_second_header() -> None:
    err = error(HEAD, "[[thread]]", "cpu = 1", 'ops = ["r0 = load 8"]', "[[thread]]", 'ops = ["r1 = load 8"]')
    check(err, "bad.toml:5:1:", "CPU 1", "[[thread]] 0", "[[thread]] 1")


def test_cpus_too_small() -> None:
    err = error(HEAD, "cpus = 1", *THREAD, *THREAD)
    check(err, "bad.toml:2:1:", "cpus = 1", "[[thread]] 1", "CPU 1")


def test_prefault_cpu_beyond_cpus() -> None:
    err = error(HEAD, "[[map]]", 'name = "A"', "prefault = [0, 4]", *THREAD)
    check(err, "bad.toml:4:16:", "CPU 4", "[[map]] 0 ('A')")


# --- exists ----------------------------------------------------------------------------------------


def test_exists_syntax_error_column_inside_the_string() -> None:
    err = error(HEAD, 'exists = "0:r0 = 1 and and"', *THREAD)
    # 'exists = "' is 10 characters; the second 'and' is at offset 13 of the string.
    check(err, "bad.toml:2:24:", "syntax error in exists", "'and'")


def test_exists_syntax_error_in_a_multiline_string() -> None:
    err = error(HEAD, 'exists = """', "0:r0 = 1", "  or (0:r0 = 2", '"""', *THREAD)
    check(err, "bad.toml:4:6:", "unclosed '('")


def test_unwritten_register_in_exists() -> None:
    err = error(HEAD, 'exists = "0:r0 = 1 and 0:r1 = 2"', *THREAD)
    check(err, "bad.toml:2:26:", "0:r1", "'r1'", "[[thread]] 0")


def test_fault_register_without_a_store() -> None:
    err = error(HEAD, 'exists = "0:fault = segv"', *THREAD)
    check(err, "bad.toml:2:13:", "0:fault")


def test_exists_thread_out_of_range() -> None:
    # In the TOML text the herd7 `\/` is written `\\/` (an escaped backslash),
    # so the decoded string is one character shorter than the source.
    err = error(HEAD, 'exists = "0:r0 = 1 \\\\/ 2:r0 = 1"', *THREAD)
    check(err, "bad.toml:2:24:", "2:r0", "no [[thread]] 2")


def test_exists_unknown_label_value() -> None:
    err = error(HEAD, 'exists = "0:r0 = Q"', *THREAD)
    check(err, "bad.toml:2:18:", "unknown label 'Q'")


# --- [expect] -----------------------------------------------------------------------------------------


def test_unknown_expect_policy() -> None:
    err = error(HEAD, 'exists = "0:r0 = 1"', *THREAD, "[expect]", 'mmap_sem = "never"', 'wilcocks = "never"')
    check(err, "bad.toml:7:1:", "unknown policy 'wilcocks'", "mmap_sem", "wilcox", "pervma", "glisse")


def test_unknown_invariant_name() -> None:
    err = error(HEAD, *THREAD, "[expect]", 'wilcox = { violations = ["coherence", "frame_uaf"] }')
    check(err, "bad.toml:5:40:", "unknown invariant 'frame_uaf'", "frame-uaf", "munmap-incomplete")


def test_unknown_verdict() -> None:
    err = error(HEAD, 'exists = "0:r0 = 1"', *THREAD, "[expect]", 'pervma = "maybe"')
    check(err, "bad.toml:6:1:", "'maybe'", "pervma", "sometimes")


def test_bare_verdict_without_exists() -> None:
    err = error(HEAD, *THREAD, "[expect]", 'glisse = "never"')
    check(err, "bad.toml:5:1:", "glisse", "no exists")


def test_verdict_in_a_table_without_exists() -> None:
    err = error(HEAD, *THREAD, "[expect]", 'glisse = { exists = "never" }')
    check(err, "bad.toml:5:12:", "glisse", "no exists")


def test_violations_not_an_array() -> None:
    err = error(HEAD, *THREAD, "[expect]", 'glisse = { violations = "coherence" }')
    check(err, "bad.toml:5:12:", "violations of [expect] glisse", "array")


# --- no traceback, ever -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\x00",
        "[[thread]]\nops = 3",
        'name = 3\n[[thread]]\nops=["r0 = load 8"]',
        'name = "x"\nthread = [1, 2]',
        'name = "x"\n[[thread]]\nops = ["r0 = load"]',
        'name = "x"\n[[thread]]\nops = ["store 8"]',
        'name = "x"\n[[thread]]\nops = ["mmap"]',
        'name = "x"\n[[thread]]\nops = ["="]',
        'name = "x"\n[[thread]]\nops = ["mprotect"]',
        'name = "x"\n[[thread]]\nops = ["L = mmap kind=", "x"]',
        'name = "x"\nexists = ""\n[[thread]]\nops = ["r0 = load 8"]',
        'name = "x"\n[expect]\nwilcox = 3\n[[thread]]\nops = ["r0 = load 8"]',
    ],
)
def test_garbage_is_always_a_scenario_error(text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "g.toml")
    assert str(info.value).startswith("g.toml")


# Random damage to a good scenario: the parser answers with a Scenario or a
# ScenarioError, never anything else.
_PIECES = ["=", '"', "[", "]", "[[thread]]", "\n", "#", "{", "}", ",", "0x", "-1", "A", "fixed", "load", " ", "\\", "'"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(DESIGN_EXAMPLE)), st.integers(0, 6), st.sampled_from(_PIECES)), max_size=4))
def test_damaged_scenarios_never_escape_as_other_errors(edits: list[tuple[int, int, str]]) -> None:
    text = DESIGN_EXAMPLE
    for at, cut, piece in edits:
        text = text[:at] + piece + text[at + cut :]
    try:
        parse_scenario(text, "d.toml")
    except ScenarioError as err:
        assert str(err).startswith("d.toml")
        assert "internal error" not in err.message, str(err)


# --- fork, stacks, mremap, truncate, mmap prot= (the kernel's history: docs/history.md) --------


def test_growsdown_must_be_a_boolean_on_an_anonymous_map() -> None:
    err = error(HEAD, "[[map]]", 'name = "S"', 'growsdown = "yes"', *THREAD)
    check(err, "bad.toml:4:1:", "growsdown of [[map]] 0 ('S') must be true or false", "'yes'")
    err = error(HEAD, "[[map]]", 'name = "S"', 'kind = "file"', 'file = "f"', "growsdown = true", *THREAD)
    check(err, "bad.toml:6:1:", "growsdown = true in [[map]] 0 ('S') needs an anonymous map")


def test_free_pgtables_must_be_a_boolean() -> None:
    check(error(HEAD, "free_pgtables = 1", *THREAD), "bad.toml:2:1:", "free_pgtables must be true or false")


def test_a_thread_in_an_address_space_no_fork_makes() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["fork"]', "[[thread]]", 'mm = "chld"', 'ops = ["r0 = load 0x10000"]')
    check(err, "bad.toml:5:1:", "mm = 'chld' of [[thread]] 1 names no fork's child", "did you mean 'child'?")
    err = error(HEAD, "[[thread]]", 'mm = "child"', 'ops = ["r0 = load 0x10000"]')
    check(err, "bad.toml:3:1:", "names no fork's child", "none: no op forks")


def test_a_thread_cannot_run_in_the_child_of_its_own_fork() -> None:
    err = error(HEAD, "[[thread]]", 'mm = "child"', 'ops = ["fork"]')
    check(err, "bad.toml:3:1:", "[[thread]] 0 runs in mm 'child', the child its own fork creates")


def test_two_forks_with_one_name() -> None:
    err = error(HEAD, "[[thread]]", 'ops = ["fork"]', "[[thread]]", 'ops = ["fork child"]')
    check(err, "bad.toml:5:9:", "two forks name their child 'child'", "fork NAME")


def test_bad_fork_mremap_and_truncate_ops() -> None:
    check(error(HEAD, "[[thread]]", 'ops = ["fork 2x"]'), "bad.toml:3:9:", "'2x' is not a name for the child")
    check(error(HEAD, "[[thread]]", 'ops = ["fork a b"]'), "bad.toml:3:9:", "unexpected 'b' at the end")
    maps = ["[[map]]", 'name = "A"', "[[map]]", 'name = "B"']
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["mremap A B"]'), "bad.toml:7:9:",
          "expected 'mremap A to DEST'")
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["mremap A to 0x7e0000000008"]'), "bad.toml:7:9:",
          "mremap to 0x7e0000000008: the address must be page-aligned")
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["mremap A to A"]'), "bad.toml:7:9:",
          "'A' cannot move to its own address")
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["mremap A to Z"]'), "bad.toml:7:9:", "undefined label 'Z'")
    check(error(HEAD, "[[thread]]", 'ops = ["truncate"]'), "bad.toml:3:9:", "expected the file's name")
    err = error(HEAD, "[[map]]", 'name = "F"', 'kind = "file"', 'file = "data"', "[[thread]]",
                'ops = ["truncate dat"]')
    check(err, "bad.toml:7:9:", "truncate in [[thread]] 0 names file 'dat', which no map or mmap maps",
          "did you mean 'data'?", "(files: data)")


def test_an_address_below_a_map_needs_a_stack() -> None:
    maps = ["[[map]]", 'name = "S"', "growsdown = true", "[[map]]", 'name = "A"']
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["store A-8 1"]'), "bad.toml:8:9:",
          "address A-8 in op 'store A-8 1' of [[thread]] 0 is below 'A', which does not grow down")
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["store S-0 1"]'), "bad.toml:8:9:", "must be positive")
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["store S-3 1"]'), "bad.toml:8:9:", "unaligned offset S-3")
    check(error(HEAD, *maps, "[[thread]]", 'ops = ["store S-x 1"]'), "bad.toml:8:9:", "offset 'x' is not an integer")


def test_mmap_prot_takes_a_protection() -> None:
    check(error(HEAD, "[[thread]]", 'ops = ["B = mmap prot=x"]'), "bad.toml:3:9:", "prot must be none, r or rw")


@pytest.mark.parametrize("op, culprit", [
    ("mmap A fixed 1 fill=7", "maps 1 page over 'A', which has 2 pages: it would split 'A'"),
    ("mremap B to A", "moves 1 page onto 'A', which has 2 pages: it would split 'A'"),
])
def test_an_op_that_would_split_a_mapping(op: str, culprit: str) -> None:
    """The tree owner removes whole VMAs; an op that would leave part of one mapped is
    refused (partial unmaps are future work) rather than run with a wrong answer."""
    err = error(HEAD, "[[map]]", 'name = "A"', "pages = 2", "[[map]]", 'name = "B"', "[[thread]]", f'ops = ["{op}"]')
    check(err, "bad.toml:8:9:", op, culprit, "partial unmaps are future work")


def test_map_fixed_over_more_than_the_label_is_not_a_split() -> None:
    s = parse_scenario(f'{HEAD}\n[[map]]\nname = "A"\n[[thread]]\nops = ["mmap A fixed 2"]\n', "ok.toml")
    assert [op.pages for op in s.threads[0].ops] == [2]


@pytest.mark.parametrize("op", ["munmap S", "mprotect S prot=r", "mremap S to A", "mremap A to S"])
def test_an_op_over_a_stack_that_may_grow(op: str) -> None:
    """A grows-down map that some op may grow has an extent known only at run time; an
    op over the label's range would split the grown VMA."""
    err = error(HEAD, "[[map]]", 'name = "S"', "growsdown = true", "at = 0x7e0000100000", "[[map]]", 'name = "A"',
                "[[thread]]", f'ops = ["r0 = load S-8", "{op}"]')
    check(err, "bad.toml:9:26:", f"op '{op}'", "grows-down map 'S', which op 'r0 = load S-8' may grow")
