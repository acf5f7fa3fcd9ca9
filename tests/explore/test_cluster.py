"""Searches, sampling, check cases and matrix cells on a Dask cluster (`--cluster`):
the same answers as on this machine. One `LocalCluster` of two in-process workers
serves the module (a cluster of processes behaves the same and takes seconds to
start; the README's hand-started cluster was tried by hand)."""

from __future__ import annotations

import json
import time

import attrs
import pytest

distributed = pytest.importorskip("distributed")

from vmactors.explore import parallel  # noqa: E402
from vmactors.explore.check import run_checks  # noqa: E402
from vmactors.explore.exhaustive import Limits, explore_exhaustive  # noqa: E402
from vmactors.explore.matrix import Matrix, compute  # noqa: E402
from vmactors.explore.parallel import Exhaustive, explore_sharded  # noqa: E402
from vmactors.explore.runner import ExploreOptions, explore  # noqa: E402
from vmactors.explore.space import EXACT, Options  # noqa: E402
from vmactors.explore.results import INTERRUPTED  # noqa: E402
from vmactors.library import resolve  # noqa: E402
from vmactors.scenario import load_scenario  # noqa: E402


@pytest.fixture(scope="module")
def local_cluster():  # type: ignore[no-untyped-def]
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def address(local_cluster):  # type: ignore[no-untyped-def]
    return local_cluster.scheduler_address


@pytest.fixture
def client(address):  # type: ignore[no-untyped-def]
    with parallel.cluster(address) as c:
        yield c


@pytest.fixture
def ran(local_cluster):  # type: ignore[no-untyped-def]
    """`ran()`: the names of the tasks the cluster ran since the test began."""
    log = local_cluster.scheduler.transition_log
    start = len(log)

    def name(key: str) -> str:  # vmactors-shard-I-PID-NS, or FUNCTION-TOKEN
        return "-".join(key.split("-")[:3]) if key.startswith("vmactors-shard-") else key.rsplit("-", 1)[0]

    def names() -> set[str]:
        return {name(str(t[0])) for t in list(log)[start:]}

    return names


def test_one_shard_per_worker(client) -> None:
    job = parallel.Job(library("rwsem-irqs-off"), "mmap_sem", Options(), 2)
    actors = parallel.Actors(client, job)
    try:
        where = client.who_has(actors.futures)
        assert len({w for workers in where.values() for w in workers}) == 2
    finally:
        actors.close()


def library(name: str):  # type: ignore[no-untyped-def]
    return load_scenario(resolve(name))


@pytest.mark.parametrize("name, policy, options", [
    ("madvise-dontneed-vs-reader", "wilcox", Options()),
    ("vma-object-reuse", "pervma-no-vma-recheck", EXACT),
])
def test_a_search_sharded_over_the_cluster_is_the_search_of_one_process(client, ran, name, policy, options) -> None:
    s = library(name)
    one, w1 = explore_exhaustive(s, policy, options=options)
    two, w2 = explore_sharded(s, policy, shards=2, client=client, options=options)
    assert {n for n in ran() if n.startswith("vmactors-shard")} == {"vmactors-shard-0", "vmactors-shard-1"}
    for field in attrs.fields(type(one)):
        assert getattr(one, field.name) == getattr(two, field.name), field.name
    assert w1 == w2 and one.findings


def test_max_states_holds_over_the_cluster(client) -> None:
    s = library("madvise-dontneed-vs-reader")
    one, _ = explore_exhaustive(s, "wilcox", max_states=200)
    two, _ = explore_sharded(s, "wilcox", shards=2, client=client, limits=Limits(max_states=200))
    assert two == one and not two.complete and two.distinct_states <= 200


def test_explore_over_the_cluster_shards_each_policy(address, ran) -> None:
    s = library("munmap-early-return")
    policies = ["wilcox-early-return", "mmap_sem"]
    here, _ = explore(s, policies, ExploreOptions(save=None))
    there, _ = explore(s, policies, ExploreOptions(save=None, cluster=address))
    assert there == here
    assert {n for n in ran() if n.startswith("vmactors-shard")} == {"vmactors-shard-0", "vmactors-shard-1"}


@pytest.mark.parametrize("strategy", ["random", "pct"])
def test_sampling_over_the_cluster_samples_the_same_runs(address, ran, strategy) -> None:
    s = library("munmap-early-return")
    opts = ExploreOptions(strategy=strategy, runs=60, seed=5, save=None)
    here, _ = explore(s, ["wilcox-early-return"], opts)
    there, _ = explore(s, ["wilcox-early-return"], attrs.evolve(opts, cluster=address))
    assert there == here
    assert "sample_runs" in ran()


def test_check_cases_run_on_the_cluster(address, ran, tmp_path) -> None:
    paths = [str(resolve("rwsem-irqs-off")), str(resolve("munmap-early-return"))]
    here = run_checks(paths, save=None)
    there = run_checks(paths, save=None, cluster_address=address)
    assert [(r.scenario.name, r.policy, r.status, r.exploration) for r in there.results] == \
        [(r.scenario.name, r.policy, r.status, r.exploration) for r in here.results]
    assert there.status == 0 and len(there.results) >= 4
    assert "_explore_case" in ran()


def test_matrix_cells_run_on_the_cluster(address, ran) -> None:
    scenarios = [library("rwsem-irqs-off"), library("munmap-early-return")]
    policies = ["mmap_sem", "wilcox-early-return"]
    search = Exhaustive(max_states=100)
    here = compute(Matrix(scenarios, policies), search=search)
    there = compute(Matrix(scenarios, policies), search=search, cluster_address=address)
    assert there.cells == here.cells
    assert any(c.endswith("incomplete") for c in there.cells)
    assert "_cell" in ran()


def test_the_command_line_over_the_cluster(vmcli, address, tmp_path) -> None:
    args = ["explore", "madvise-dontneed-vs-reader", "--policy", "wilcox", "--json", "--save", tmp_path]
    here = vmcli(*args)
    there = vmcli(*args, "--cluster", address)
    assert there.returncode == 0 and there.stderr == ""
    assert json.loads(there.stdout) == json.loads(here.stdout)
    p = vmcli("matrix", resolve("rwsem-irqs-off"), "--cluster", address, "--max-states", "10")
    assert p.returncode == 0 and "incomplete" in p.stdout


def test_no_scheduler_at_the_address_is_bad_usage(vmcli, monkeypatch) -> None:
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", "0.5s")
    p = vmcli("explore", "rwsem-irqs-off", "--cluster", "tcp://127.0.0.1:1")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "tcp://127.0.0.1:1" in p.stderr and "Dask scheduler" in p.stderr


def test_an_interrupt_releases_the_actors(client, local_cluster) -> None:
    calls = []

    def progress(states: int, frontier: int) -> None:
        calls.append(states)
        if len(calls) == 3:
            raise KeyboardInterrupt

    e, _ = explore_sharded(library("madvise-dontneed-vs-reader"), "wilcox", shards=2, client=client,
                           progress=progress)
    assert e.cut == INTERRUPTED and e.distinct_states == calls[-1] and e.frontier > 0
    deadline = time.monotonic() + 10
    while any(w.state.actors for w in local_cluster.workers.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(w.state.actors for w in local_cluster.workers.values())


def test_a_cluster_of_worker_processes(vmcli, tmp_path) -> None:
    """Workers in processes of their own, as `dask worker` starts them: the actors'
    proxies must find this client (which is nobody's default) to call them."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        args = ["explore", "madvise-dontneed-vs-reader", "--policy", "wilcox", "--json", "--save", tmp_path]
        here = vmcli(*args)
        there = vmcli(*args, "--cluster", cluster.scheduler_address)
        assert there.returncode == 0, there.stderr
        assert json.loads(there.stdout) == json.loads(here.stdout)
    finally:
        cluster.close()
