"""One exhaustive search sharded over processes (`vmactors.explore.parallel`): the
same exploration as one process — states, transitions, counts, final states,
verdict, violations and even the choice lists of the counterexamples — with and
without reduction; limits and interrupts hold over the whole search; which shard
owns a state does not depend on the process's hash seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import attrs
import pytest

from vmactors.explore import parallel
from vmactors.explore.exhaustive import Limits, Search, explore_exhaustive
from vmactors.explore.parallel import Exhaustive, Link, explore_sharded, placement
from vmactors.explore.space import EXACT, Expander, Options
from vmactors.explore.results import INTERRUPTED, Cut
from vmactors.library import resolve
from vmactors.scenario import load_scenario

#: Library scenarios with violations, small enough to explore both ways in a second.
CASES = [
    ("anon-fault-vs-munmap", "wilcox-no-recheck"),     # munmap-incomplete, orphan-pte
    ("madvise-dontneed-vs-reader", "wilcox"),          # coherence
    ("rwsem-irqs-off", "mmap_sem-irqs-off-wait"),      # deadlock
    ("vma-object-reuse", "pervma-no-vma-recheck"),     # orphan-pte, wrong-vma
    ("munmap-early-return", "wilcox-free-before-flush"),  # frame-uaf
]
REDUCED, NO_SYMMETRY = Options(), Options(reduction=True, symmetry=False)


def library(name: str):  # type: ignore[no-untyped-def]
    return load_scenario(resolve(name))


def same(a, b) -> None:  # type: ignore[no-untyped-def]
    """Two explorations agree in everything, field by field (for a readable diff)."""
    for field in attrs.fields(type(a)):
        assert getattr(a, field.name) == getattr(b, field.name), field.name


@pytest.mark.parametrize("options", [REDUCED, EXACT], ids=["reduced", "exact"])
@pytest.mark.parametrize("name, policy", CASES)
def test_two_shards_explore_exactly_what_one_process_explores(name, policy, options) -> None:
    s = library(name)
    one, witnesses_one = explore_exhaustive(s, policy, options=options)
    two, witnesses_two = explore_sharded(s, policy, shards=2, options=options)
    assert one.complete and one.findings, "the case must find something to compare"
    same(one, two)
    assert (two.distinct_states, two.transitions, two.runs) == (one.distinct_states, one.transitions, one.runs)
    # The states are numbered as one process numbers them, so even the shortest
    # counterexamples are the same runs.
    assert witnesses_two == witnesses_one


def test_three_shards_and_symmetry_off_too() -> None:
    s = library("madvise-dontneed-vs-reader")
    for options in (REDUCED, NO_SYMMETRY):
        one, _ = explore_exhaustive(s, "wilcox", options=options)
        three, _ = explore_sharded(s, "wilcox", shards=3, options=options)
        same(one, three)
        assert [f.invariant for f in three.findings] == ["coherence"]


@pytest.mark.parametrize("max_states", [1, 7, 150, 600])
def test_max_states_is_never_exceeded_and_cuts_where_one_process_cuts(max_states) -> None:
    s = library("madvise-dontneed-vs-reader")
    one, _ = explore_exhaustive(s, "wilcox", max_states=max_states)
    two, _ = explore_sharded(s, "wilcox", shards=2, limits=Limits(max_states=max_states))
    assert not two.complete and two.distinct_states <= max_states
    assert two.cut == Cut.max_states(max_states)
    assert two.exists in ("unknown", "sometimes") and two.frontier > 0
    same(one, two)


def test_a_time_limit_cuts_the_sharded_search_and_it_says_so() -> None:
    s = library("mapfixed-two-readers")
    e, _ = explore_sharded(s, "wilcox", shards=2, options=EXACT, limits=Limits(time_limit=0.2))
    assert not e.complete and e.cut == Cut.time_limit(0.2) and e.cut.text == "--time-limit 0.2s reached"
    assert e.exists in ("unknown", "sometimes") and e.frontier > 0 and e.distinct_states > 1


def test_a_memory_limit_cuts_the_sharded_search() -> None:
    s = library("mapfixed-two-readers")
    e, _ = explore_sharded(s, "wilcox", shards=2, limits=Limits(max_memory=1))
    assert not e.complete and e.cut == Cut.max_memory(0) and e.cut.reason == "max-memory"


def test_a_shard_stops_at_its_own_memory_limit() -> None:
    """Each worker checks its own memory (the coordinator checks its own too)."""
    job = parallel.Job(library("rwsem-irqs-off"), "mmap_sem", Options(), 1, max_memory=1)
    shard = parallel.Shard(job, 0)
    expanded = shard.expand(0, None)
    assert expanded.stopped == "memory" and expanded.processed == ()
    roomy = parallel.Shard(attrs.evolve(job, max_memory=None), 0)
    assert roomy.expand(0, 0.0).stopped == "time" and roomy.expand(0, None).stopped is None


def test_an_interrupt_stops_the_shards_and_keeps_the_levels_done() -> None:
    s = library("mapfixed-two-readers")
    levels = []

    def progress(states: int, frontier: int) -> None:
        levels.append(states)
        if len(levels) == 4:
            raise KeyboardInterrupt

    backends = []
    real = parallel.Processes

    class Recorded(real):  # type: ignore[misc, valid-type]
        def __init__(self, job):  # type: ignore[no-untyped-def]
            super().__init__(job)
            backends.append(self)

    parallel.Processes = Recorded  # type: ignore[misc]
    try:
        e, _ = explore_sharded(s, "wilcox", shards=2, progress=progress)
    finally:
        parallel.Processes = real  # type: ignore[misc]
    assert e.cut == INTERRUPTED and e.interrupted and not e.complete
    assert e.distinct_states == levels[-1] and e.frontier > 0
    assert not any(p.is_alive() for p in backends[0].procs)


def test_a_shard_that_dies_is_an_error_not_a_hang(monkeypatch) -> None:
    real = parallel.Shard.expand

    def dying(self, depth, seconds, commit=None):  # type: ignore[no-untyped-def]
        if depth == 3 and self.index == 1:
            os._exit(7)
        return real(self, depth, seconds, commit)

    monkeypatch.setattr(parallel.Shard, "expand", dying)  # forked shards inherit it
    with pytest.raises(parallel.ShardFailed, match="shard 1 died .exit status 7"):
        explore_sharded(library("rwsem-irqs-off"), "mmap_sem", shards=2)


def test_the_settings_object_runs_here_or_sharded() -> None:
    s = library("anon-fault-vs-munmap")
    search = Exhaustive(Options(), max_states=100)
    here, _ = search.explore(s, "wilcox-no-recheck")
    there, _ = search.explore(s, "wilcox-no-recheck", shards=2)
    same(here, there)
    assert here.distinct_states <= 100


# --- which shard owns a state --------------------------------------------------------------------

PLACEMENTS = textwrap.dedent("""
    import json, sys
    from vmactors.explore.exhaustive import Search, Limits
    from vmactors.explore.parallel import placement
    from vmactors.explore.space import Expander, Options
    from vmactors.library import resolve
    from vmactors.scenario import load_scenario
    search = Search(Expander(load_scenario(resolve(sys.argv[1])), sys.argv[2], Options()), Limits(max_states=400))
    search.run()
    print(json.dumps([placement(*(k if isinstance(k, tuple) else (k, ()))) for k in search.graph.index]))
""")


def test_equal_states_have_one_owner_in_processes_with_different_hash_seeds() -> None:
    """A Dask worker is a process of its own, with its own PYTHONHASHSEED: placement
    must not depend on it (the states' own hashes do)."""
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        p = subprocess.run([sys.executable, "-c", PLACEMENTS, "mapfixed-two-readers", "wilcox"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        runs.append(json.loads(p.stdout))
    assert runs[0] == runs[1] and len(runs[0]) == 400
    # ... and the placements spread the states over shards. (States that differ only by
    # messages in flight or services' states share one: `placement` leaves those out.)
    assert len(set(runs[0])) > 150
    assert 0.35 < sum(p % 2 for p in runs[0]) / len(runs[0]) < 0.65


def test_a_state_and_its_key_have_one_owner(scenario, readers_text) -> None:
    """Keys are states renamed (interchangeable CPUs swapped, frames renumbered): a
    shard routes a successor by the state as reached, its owner files it by key."""
    x = Expander(scenario(readers_text), "wilcox", Options())
    assert x.symmetry is not None
    level, seen, renamed = [x.root()], 0, 0
    while level and seen < 3000:
        nxt = []
        for _, system, flags in level:
            for e in x.expand(system, flags, 0):
                key = e.key if isinstance(e.key, tuple) else (e.key, ())
                assert placement(e.system, e.flags) == placement(*key)
                renamed += key[0] != e.system
                nxt.append((e.key, e.system, e.flags))
                seen += 1
        level = nxt[:300]
    assert renamed > 50  # the check saw keys that are renamings


def test_two_shards_agree_with_one_on_interchangeable_cpus(scenario, readers_text) -> None:
    s = scenario(readers_text)
    one, w1 = explore_exhaustive(s, "wilcox", options=REDUCED)
    two, w2 = explore_sharded(s, "wilcox", shards=2, options=REDUCED)
    same(one, two)
    assert w1 == w2 and [f.invariant for f in two.findings] == ["coherence"]


def test_history_fields_do_not_move_a_state() -> None:
    s = library("mapfixed-two-readers")
    _, system, flags = Expander(s, "wilcox").root()
    later = attrs.evolve(system, step=99, last=1, next_msg_id=12)
    assert later == system and placement(later, flags) == placement(system, flags)


# --- what two shards send each other -----------------------------------------------------------------


def test_values_sent_once_are_sent_as_references_after() -> None:
    s = library("mapfixed-two-readers")
    x = Expander(s, "wilcox", EXACT)
    _, root, _ = x.root()
    children = [e.system for e in x.expand(root, frozenset(), 0)]
    a, b = Link(), Link()
    first = a.dumps([root])
    (got_root,) = b.loads(first)
    assert got_root == root and got_root.last == root.last
    # The children share the root's unchanged parts: those go as references, and come
    # back as the receiver's own objects.
    second = a.dumps(children)
    got = b.loads(second)
    assert got == children and len(second) < len(first) * len(children) / 3
    assert got[0].world is got_root.world or got[0].world == got_root.world
    shared = [i for i, (c, g) in enumerate(zip(children, got)) if c.world is root.world]
    assert shared and all(got[i].world is got_root.world for i in shared)
    # And back: what b received from a goes back to a as a's own objects.
    (echo,) = a.loads(b.dumps([got[0]]))
    assert echo is children[0]


class HereBackend:
    """Shards in this process, called in turn (a `Backend` for tests)."""

    def __init__(self, job: parallel.Job) -> None:
        self.shards = job.shards
        self.all = [parallel.Shard(job, i) for i in range(job.shards)]

    def send(self, method: str, args):  # type: ignore[no-untyped-def]
        results = [getattr(shard, method)(*a) for shard, a in zip(self.all, args)]
        return lambda: results

    def call(self, method: str, args):  # type: ignore[no-untyped-def]
        return self.send(method, args)()

    def kill(self) -> None:
        pass

    def close(self) -> None:
        for shard in self.all:
            shard.finish()


def test_a_sharded_search_leaves_nothing_for_the_cyclic_collector() -> None:
    """Shard processes run with the collector off (`parallel._serve`): that is only
    safe if a shard's work makes no reference cycle. An unpickler in one, for example,
    would hold every value of its batch until the process ends."""
    import gc

    s = library("mapfixed-two-readers")
    job = parallel.Job(s, "wilcox", Options(), 2, coordinator=os.getpid())  # no freezing here
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector would free stays in gc.garbage
    try:
        backend = HereBackend(job)
        coordinator = parallel.Coordinator(Expander(s, "wilcox", Options()), Limits())
        coordinator.run(backend)
        backend.close()
        explored, _ = coordinator.result()
        gc.collect()
        # (Other threads of the test process may leave garbage of their own.)
        kept = {type(o).__qualname__ for o in gc.garbage
                if type(o).__module__.startswith("vmactors") or isinstance(o, (parallel._In, parallel._Out))}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert explored == explore_exhaustive(s, "wilcox")[0]
    assert not kept


def test_a_received_cpu_state_is_the_shards_own_object() -> None:
    """Equal CPU states compare by identity in a shard, as in one process, whether the
    shard made them or received them."""
    job = parallel.Job(library("mapfixed-two-readers"), "wilcox", EXACT, 2, coordinator=-1)
    one, two = parallel.Shard(job, 0), parallel.Shard(job, 1)
    try:
        _, root, _ = one.expander.root()
        children = [e.system for e in one.expander.expand(root, frozenset(), 0)]
        held = two.expander.machine.intern(children[0].actors[0])  # the receiver already holds this one
        got = two.links[0].loads(one.links[1].dumps(children))
        assert got == children and got[0].actors[0] is held
        interned = two.expander.machine.interned
        assert interned is not None
        assert all(interned[cpu] is cpu for c in got for cpu in c.actors[:2])
    finally:
        one.finish()
        two.finish()


def test_a_shard_in_its_own_process_freezes_what_it_holds_and_gives_it_back() -> None:
    import gc

    job = parallel.Job(library("rwsem-irqs-off"), "mmap_sem", Options(), 1, coordinator=-1)  # not this process
    shard = parallel.Shard(job, 0)
    assert gc.get_freeze_count() == 0
    try:
        shard.expand(0, None)
        shard.receive([])
        shard.commit([1], None)
        assert gc.get_freeze_count() > 0
    finally:
        shard.finish()
    assert gc.get_freeze_count() == 0 and not shard.nodes and not shard.pending
    # Nor does it keep what its search remembered (a Dask worker lives on).
    assert shard.expander.machine.steps == {} and not parallel._parts
    here = parallel.Shard(attrs.evolve(job, coordinator=os.getpid()), 0)  # a Dask cluster of threads
    here.expand(0, None)
    here.receive([])
    here.commit([1], None)
    assert gc.get_freeze_count() == 0


def test_a_dask_shard_expands_with_the_collector_off_and_turns_it_back_on() -> None:
    """A Dask worker's shard runs its calls as a shard process runs all of its
    work, without the cyclic collector; the worker lives on with it."""
    import gc

    job = parallel.Job(library("rwsem-irqs-off"), "mmap_sem", Options(), 1, coordinator=os.getpid())
    shard = parallel.DaskShard(job, 0)
    during: list[bool] = []
    expand = shard.expander.expand

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        during.append(gc.isenabled())
        return expand(*args, **kwargs)

    shard.expander.expand = spy  # type: ignore[method-assign]
    assert gc.isenabled()
    try:
        shard.expand(0, None)
        shard.receive([])
    finally:
        shard.finish()
    assert during == [False] and gc.isenabled()
