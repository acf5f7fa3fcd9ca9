"""The differential test (docs/reliability.md#wrong-answers): exhaustive exploration
against an independent, deliberately simple checker of the contract
(tests/differential/reference.py) on generated small scenarios, under every policy and
ablation: the same final states (every register and `end`), the same `exists` verdict,
the same set of violated invariants.

The scenarios are the class reference.py describes (loads, stores and new mappings over
any maps; nothing that removes or changes a translation), because there whole ops are the
right granularity and the reference can stay simple without weakening the comparison.
They are still where a partial-order or symmetry reduction can go wrong: independent
steps of several CPUs, faults racing on one page, shared file pages, allocations whose
addresses depend on the order. The default exploration (reduced)
is compared under every policy; an unreduced one too, more cheaply.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from vmactors.explore.exhaustive import explore_exhaustive
from vmactors.explore.space import EXACT
from vmactors.policies import POLICY_NAMES
from vmactors.scenario import parse_scenario

from . import reference as R

CI = bool(os.environ.get("CI"))
EXAMPLES = int(os.environ.get("VMACTORS_DIFF_EXAMPLES", "8" if CI else "40"))
#: Ops in all threads together.
MAX_OPS = int(os.environ.get("VMACTORS_DIFF_OPS", "4" if CI else "6"))
DIFF = settings(max_examples=EXAMPLES, deadline=None, derandomize=CI, suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.reuse, Phase.generate] if CI else list(Phase))

MAP_NAMES = ("A", "B", "C")
FILES = ("f1", "f2")
REGS = ("r0", "r1", "r2")
#: Page-aligned places for `at`: low (no top-down map reaches them) and one just below
#: the top, where a top-down map would go (so `at` and the allocator meet).
AT_SLOTS = (0x10000, 0x40000000, 0x7EFFFFFF0000)
#: Integer addresses: unmapped, inside an `at` slot, inside the first top-down pages.
INT_ADDRS = (0x10000, 0x10008, 0x40000000, 0x7EFFFFFFF000, 0x7EFFFFFFE008, 0x7EFFFFFFD000, 0x8000)


@st.composite
def scenarios(draw: st.DrawFn) -> R.Scenario:
    nthreads = draw(st.integers(1, 3))
    file_fill = {f: draw(st.integers(0, 3)) for f in FILES}
    slots = list(AT_SLOTS)
    maps = []
    for name in MAP_NAMES[: draw(st.integers(0, 3))]:
        kind = draw(st.sampled_from(["anon", "anon", "file"]))
        file = draw(st.sampled_from(FILES)) if kind == "file" else None
        fill = (file_fill[file] if draw(st.booleans()) else None) if file else draw(st.one_of(st.none(),
                                                                                             st.integers(0, 3)))
        at = None
        if slots and draw(st.integers(0, 3)) == 0:
            at = slots.pop(draw(st.integers(0, len(slots) - 1)))
        prefault = draw(st.one_of(st.none(), st.lists(st.integers(0, nthreads - 1), unique=True, max_size=nthreads)
                                  .map(tuple)))
        maps.append(R.Map(name, draw(st.integers(1, 2)), kind, file, fill, at,
                          draw(st.sampled_from(["rw", "rw", "r", "none"])), prefault))
    threads = []
    budget = MAX_OPS  # exhaustive exploration grows fast with ops: keep each example a fraction of a second
    for t in range(nthreads):
        ops: list[R.Op] = []
        labels = [(m.name, m.pages) for m in maps]
        for i in range(draw(st.integers(1, max(1, min(3, budget - (nthreads - 1 - t)))))):
            budget -= 1
            kind = draw(st.sampled_from(["load", "load", "store", "mmap"]))
            if kind == "mmap":
                label = f"M{t}{i}"
                mfile = draw(st.sampled_from(FILES)) if draw(st.integers(0, 2)) == 0 else None
                pages = draw(st.integers(1, 2))
                ops.append(R.Mmap(label, pages, "file" if mfile else "anon", mfile,
                                  (file_fill[mfile] if mfile and draw(st.booleans()) else
                                   None if mfile else draw(st.one_of(st.none(), st.integers(0, 3)))),
                                  draw(st.one_of(st.none(), st.sampled_from(AT_SLOTS)))))
                labels.append((label, pages))
                continue
            if labels and draw(st.integers(0, 3)):
                label, pages = draw(st.sampled_from(labels))
                addr = R.Addr(label, draw(st.integers(0, pages * 512 - 1)) * 8 if draw(st.booleans()) else 0)
            else:
                addr = R.Addr(None, draw(st.sampled_from(INT_ADDRS)))
            if kind == "load":
                ops.append(R.Load(draw(st.sampled_from(REGS)), addr))
            else:
                ops.append(R.Store(addr, draw(st.integers(4, 6))))
        threads.append(tuple(ops))
    s = R.Scenario(tuple(maps), tuple(threads))
    return R.Scenario(s.maps, s.threads, draw(exists_of(s)))


def _written(ops: tuple[R.Op, ...]) -> list[str]:
    out = []
    for op in ops:
        out.append(op.reg if isinstance(op, R.Load) else op.label if isinstance(op, R.Mmap) else "fault")
    return sorted(set(out))


@st.composite
def exists_of(draw: st.DrawFn, s: R.Scenario) -> R.Expr | None:
    atoms = [(t, r) for t, ops in enumerate(s.threads) for r in _written(ops)]
    if not atoms or draw(st.integers(0, 4)) == 0:
        return None

    faults = [a for a in atoms if a[1] == "fault"]

    def atom() -> R.Atom:
        # `fault` is the one register that may stay unwritten (a store that did not
        # fault): where `=` and `!=` on an unwritten register are decided. Drawn often.
        t, r = draw(st.sampled_from(faults if faults and draw(st.booleans()) else atoms))
        values: list[int | str] = [0, 1, 2, 3, 4, 5, 6, "segv"] + [m.name for m in s.maps]
        return R.Atom(t, r, draw(st.booleans()), draw(st.sampled_from(values)))

    def expr(depth: int) -> R.Expr:
        kind = draw(st.sampled_from(["atom", "atom", "and", "or", "not"] if depth else ["atom"]))
        if kind == "atom":
            return atom()
        if kind == "not":
            return R.Not(expr(depth - 1))
        items = tuple(expr(depth - 1) for _ in range(draw(st.integers(2, 3))))
        return R.And(items) if kind == "and" else R.Or(items)

    return expr(2)


def model_view(s: R.Scenario, policy: str, **kw: object) -> tuple[set, str | None, set[str], set[str]]:  # type: ignore[type-arg]
    scenario = parse_scenario(R.toml(s), "differential.toml")
    e, _ = explore_exhaustive(scenario, policy, **kw)  # type: ignore[arg-type]
    assert e.complete, (policy, e.cut)
    finals = {tuple(sorted(f.regs)) for f in e.states}
    ends = {f.end for f in e.states}
    return finals, e.exists, {f.invariant for f in e.findings}, ends


def compare(s: R.Scenario, policies: tuple[str, ...], **kw: object) -> None:
    want = R.final_states(s)
    verdict = R.verdict(s, want)
    for policy in policies:
        finals, exists, violations, ends = model_view(s, policy, **kw)
        where = f"under {policy}{' ' + str(kw) if kw else ''}:\n{R.toml(s)}"
        assert finals == want, f"final states differ {where}\n model only: {finals - want}\n reference only: {want - finals}"
        assert ends == {"ok"}, f"runs end {ends} {where}"
        assert exists == verdict, f"exists: model {exists}, reference {verdict} {where}"
        assert violations == set(), f"violations {violations} {where}"


@DIFF
@given(scenarios())
def test_exhaustive_exploration_agrees_with_the_reference_under_every_policy(s: R.Scenario) -> None:
    compare(s, POLICY_NAMES)


@settings(DIFF, max_examples=max(3, EXAMPLES // 3))
@given(scenarios())
def test_unreduced_exploration_agrees_with_the_reference_too(s: R.Scenario) -> None:
    compare(s, ("mmap_sem", "wilcox", "pervma"), options=EXACT)


def test_the_reference_is_not_trivially_agreeable() -> None:
    """The reference sees what an op-granularity checker must: a race on one word
    gives two outcomes, a file's pages are shared, a store to a read-only map faults."""
    a = R.Addr("A", 0)
    race = R.Scenario((R.Map("A"),), ((R.Store(a, 5),), (R.Load("r0", a),)))
    assert R.final_states(race) == {(("1:r0", 0),), (("1:r0", 5),)}
    shared = R.Scenario((R.Map("A", kind="file", file="f1", fill=1), R.Map("B", kind="file", file="f1")),
                        ((R.Store(a, 5), R.Load("r0", R.Addr("B", 0))),))
    assert R.final_states(shared) == {(("0:r0", 5),)}
    ro = R.Scenario((R.Map("A", prot="r", fill=2),), ((R.Store(a, 5), R.Load("r0", a)),))
    assert R.final_states(ro) == {(("0:fault", "segv"), ("0:r0", 2))}
