"""One exhaustive search sharded over worker processes or a Dask cluster, and the
pools that run independent jobs (sampling batches, check cases, matrix cells) there.

**Sharding.** Every state belongs to one shard: `shard_of(key, n)`, a digest of the
state's canonical key that does not depend on the process (a state's Python hash
does: strings hash differently under each PYTHONHASHSEED, and its pickle holds
history fields that equality ignores). Each shard is a `Shard`: it holds the states
it owns (their keys, and the systems of those not yet expanded) and builds its own
`Expander` from the scenario, the policy and the options.

**Levels.** The search is breadth-first and level-synchronous, as in one process
(`exhaustive`). For each level, every shard expands the states of the level it owns
(`Shard.expand`); the successors it does not own go to their owners in one pickled
batch per owner, which the coordinator passes on without unpickling; each owner
then looks them up (`Shard.receive`) and answers with the edges into states it
already knows and the states that are new. Only the coordinator numbers states: as
a single-process search does, breadth-first and, within a level, by the parent's
number and then the step's position among the parent's successors (`graph`), so
the sharded search builds the very same `StateGraph` (same numbers, parents,
edges, finals and witnesses) and `assemble` gives the same `Exploration`, choice
lists included. `Shard.commit` tells each shard the numbers of its new states.

What crosses the pipes at the end of each level is small: edges as ints with
choices and violation names and details, final states, the numbers of new states.
The coordinator builds the graph as the levels come, so a search stopped at any
point reports what the completed levels hold.

**Limits** hold over the whole search: `--max-states` is applied by the coordinator
exactly as one process applies it (a parent whose new successors would exceed it is
not expanded, nor any after it), so it is never exceeded; `--time-limit` is the
coordinator's, passed to each shard as the time left; `--max-memory` bounds each
worker's resident memory (and the coordinator's). A SIGINT or SIGTERM stops the
workers at once (local workers die with their parent even if it is killed:
`signals.worker_init`); the result is what the completed levels found.

**Backends.** `--jobs N`: N processes forked from this one, one pipe each. `--cluster
ADDRESS`: one Dask actor per shard, each on its own worker (an actor's methods run
one at a time in its worker's actor thread, so two shards on one worker would take
turns). Both run the same `Shard`.
"""

from __future__ import annotations

import functools
import gc
import io
import multiprocessing
import os
import pickle
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import immutables

from ..actors.tasks import CpuState
from ..errors import UsageError
from ..invariants import Violation
from ..scenario.model import Scenario
from ..signals import stop_workers, worker_init
from ..system.state import System
from .exhaustive import DEFAULT_MAX_STATES, Limits, Progress, assemble, explore_exhaustive, over_budget, resident_bytes
from .graph import StateGraph
from .results import INTERRUPTED, Cut, Exploration
from .space import Expander, Final, Options

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client

# --- which shard owns a state ----------------------------------------------------------------


def placement(system: System, flags: Iterable[str] = ()) -> int:
    """A 32-bit digest that decides which shard owns a state, built from a few of its
    equality fields: each CPU's progress (op index, the phase of its kernel work,
    registers, the pages its TLB maps), the sizes of the world's tables, and the
    invariants violated on the way (a reduced search keys states with them). Each part
    (a CPU, the world) is the CRC-32 of its text (no sets, no map orders in it); the
    parts are added up, so the order of the CPUs does not matter, and no CPU or frame
    number enters it.

    So it is the same in every process (a state's Python hash is not: strings hash
    differently under each PYTHONHASHSEED, and its pickle holds history fields that
    equality ignores), and the same for a state and its canonical key, which differ
    only by a renaming of CPUs and frames (`canon`, `symmetry`): a shard routes a
    successor without computing its key, and the owner computes it once. Different
    states may share a placement; that only makes the shards less even.

    The services' states and the messages in flight are left out on purpose: a
    service's step (take a request, answer it) changes only those, so its successor
    stays with the shard that has its parent, and only a CPU's step or a change to
    the world may send a state to another shard (on 4 readers x 2 loads, 28% of the
    edges instead of 46%).

    >>> from vmactors.testing import VM
    >>> s = VM().scenario('name = "t"\\n[[map]]\\nname = "A"\\n[[thread]]\\nops = ["r0 = load A"]\\n')
    >>> placement(Expander(s, "mmap_sem").root()[1])
    3592695534
    """
    parts = _parts
    total = _part(system.world, _world_text)
    for a in system.actors:  # the CPUs come first
        if type(a) is not CpuState:
            break
        seen = parts.get(id(a))  # (`_part`, inline: a shard calls this once per edge)
        total += seen[1] if seen is not None and seen[0] is a else _part(a, _cpu_text)
    if flags:
        total += zlib.crc32(repr(sorted(flags)).encode())
    return total & 0xFFFFFFFF


#: The digests of parts met lately, by the part's identity (successive states share
#: every part a step did not change): id -> (part, digest).
_parts: dict[int, tuple[Any, int]] = {}


def _part(value: Any, text: Callable[[Any], str]) -> int:
    seen = _parts.get(id(value))
    if seen is not None and seen[0] is value:
        return seen[1]
    digest = zlib.crc32(text(value).encode())
    if len(_parts) >= 200_000:
        _parts.clear()
    _parts[id(value)] = (value, digest)
    return digest


def _cpu_text(a: CpuState) -> str:
    t = a.task
    return repr(("cpu", a.pc, a.started, a.rcu_nesting, a.qs_owed, tuple(sorted(a.regs.items())),
                 tuple(sorted(a.tlb.keys())), None if t is None else (t.path, t.phase, t.waiting)))


def _world_text(w: Any) -> str:
    return repr((len(w.frames.frames), len(w.frames.free),
                 tuple((len(m.ptes), len(m.vmas), tuple(map(str, m.tree.entries))) for m in w.mms)))


def shard_of(system: System, flags: Iterable[str], shards: int) -> int:
    """The shard that owns the state `system` (as reached, or its key) among `shards`:
    the same in every process."""
    return 0 if shards == 1 else placement(system, flags) % shards


class _Expander(Expander):
    """An expander that can leave the successors' keys to their owners."""

    keyed = True

    def key(self, system: System, flags: frozenset[str] = frozenset()) -> Hashable:
        return super().key(system, flags) if self.keyed else None


# --- what two shards have sent each other ---------------------------------------------------------


class Link:
    """The values one shard and one peer have sent each other, so that a value is
    pickled once and referred to after: a successor shares with its parent every
    part a step did not change, and the parent was often received from that peer
    (or sent to it) a level before. The receiver then gets its own objects back,
    hashes already cached, instead of fresh copies to hash again.

    Values are numbered by their sender in the order sent; each side keeps both
    numberings. A batch may refer to "my value i" (sent in an earlier batch, or
    earlier in this one) or "your value i" (received from the peer in an earlier
    level). Only immutable values are shared this way (attrs classes and
    `immutables.Map`), by identity: equal values are not merged, so nothing a
    state carries besides its equality fields (the actor that ran last, message
    ids) changes in transit.

    `adopt`, if given, may swap each value received for an equal one the receiver
    already holds (its interned CPU states: then equal compares by identity).
    """

    def __init__(self, adopt: Callable[[Any], Any] | None = None) -> None:
        self.adopt = adopt
        self.sent: list[Any] = []
        self.sent_ids: dict[int, tuple[Any, int]] = {}
        self.got: dict[int, Any] = {}
        self.got_ids: dict[int, tuple[Any, int]] = {}

    def __len__(self) -> int:
        return len(self.sent) + len(self.got)

    def dumps(self, value: Any) -> bytes:
        buf = io.BytesIO()
        _Out(buf, self).dump(value)
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        return _In(io.BytesIO(data), self).load()


def _shared(v: Any) -> bool:
    t = type(v)
    return getattr(t, "__attrs_attrs__", None) is not None or t is immutables.Map


class _Out(pickle.Pickler):
    def __init__(self, buf: io.BytesIO, link: Link) -> None:
        super().__init__(buf, protocol=pickle.HIGHEST_PROTOCOL)
        self.link = link

    def reducer_override(self, obj: Any) -> Any:
        link = self.link
        seen = link.sent_ids.get(id(obj))
        if seen is not None and seen[0] is obj:
            return _mine, (seen[1],)
        seen = link.got_ids.get(id(obj))
        if seen is not None and seen[0] is obj:
            return _yours, (seen[1],)
        if not _shared(obj):
            return NotImplemented
        rv = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        if isinstance(rv, str):  # pragma: no cover - a singleton pickled by name
            return NotImplemented
        i = len(link.sent)
        link.sent.append(obj)
        link.sent_ids[id(obj)] = (obj, i)
        return _new, (i, rv[0], rv[1], rv[2] if len(rv) > 2 else None)


def _mine(i: int) -> Any:  # pragma: no cover - replaced by `_In.find_class`
    raise AssertionError("read through Link.loads")


def _yours(i: int) -> Any:  # pragma: no cover
    raise AssertionError("read through Link.loads")


def _new(i: int, make: Callable[..., Any], args: tuple[Any, ...], state: Any) -> Any:  # pragma: no cover
    raise AssertionError("read through Link.loads")


class _In(pickle.Unpickler):
    def __init__(self, buf: io.BytesIO, link: Link) -> None:
        super().__init__(buf)
        self.link = link

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__:
            if name == "_mine":
                return self.link.got.__getitem__
            if name == "_yours":
                return self.link.sent.__getitem__
            if name == "_new":
                # Not a method of the unpickler: its memo would then refer to it, a
                # cycle holding the whole batch until the collector runs.
                return functools.partial(_received, self.link)
        return super().find_class(module, name)


def _received(link: Link, i: int, make: Callable[..., Any], args: tuple[Any, ...], state: Any) -> Any:
    obj = make(*args)
    if state is not None:
        setstate = getattr(obj, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:  # pragma: no cover - no attrs class lacks it
            obj.__dict__.update(state)
    if link.adopt is not None:
        obj = link.adopt(obj)
    link.got[i] = obj  # a value is numbered before its parts, made after them
    link.got_ids[id(obj)] = (obj, i)
    return obj


# --- one shard ---------------------------------------------------------------------------------


@attrs.frozen
class Job:
    """What every shard needs to build its own expander."""

    scenario: Scenario
    policy: str
    options: Options
    shards: int
    max_steps: int = 100_000
    max_memory: int | None = None
    #: The coordinator's process: a shard in another one may freeze what it holds
    #: for the collector (`Shard.commit`); one in the coordinator's (a Dask cluster
    #: of threads) leaves that process's collector alone.
    coordinator: int = attrs.field(factory=os.getpid)


#: A violation on an edge: (invariant, detail).
ViolationData = tuple[tuple[str, str], ...]
#: An edge into a state: (parent node, position among the parent's successors,
#: choice, violations).
EdgeData = tuple[int, int, int, ViolationData]


@attrs.frozen
class Expanded:
    """What a shard's expansion of its part of a level gives the coordinator."""

    #: Per destination shard: the successors it owns, pickled (None: none; and None
    #: for this shard, which keeps its own).
    outgoing: tuple[bytes | None, ...]
    #: The nodes that turned out final, with how their runs end.
    finals: tuple[tuple[int, Final], ...]
    #: The nodes expanded or found final, in order (a prefix of the shard's level).
    processed: tuple[int, ...]
    #: Why the shard stopped before the end of its level: "time", "memory", "stop".
    stopped: str | None
    #: How many values its links hold.
    shared: int = 0


@attrs.frozen
class Received:
    """What a shard found among the successors it owns."""

    #: Edges into states it already numbered: (node, edge).
    known: tuple[tuple[int, EdgeData], ...]
    #: The states new to it, each with every edge into it found in this level.
    new: tuple[tuple[EdgeData, ...], ...]


class Shard:
    """The states one shard owns, and its part of each level of the search."""

    def __init__(self, job: Job, index: int, stop: Any = None) -> None:
        self.job = job
        self.index = index
        self.expander = _Expander(job.scenario, job.policy, job.options)
        #: Something with `is_set()`: set, the shard stops expanding.
        self.stop_flag: Any = stop if stop is not None else threading.Event()
        #: The states this shard owns, by key: their numbers.
        self.nodes: dict[Hashable, int] = {}
        #: Nodes found and not expanded: node -> (system, flags).
        self.pending: dict[int, tuple[System, frozenset[str]]] = {}
        self.level: list[int] = []
        key, system, flags = self.expander.root()
        if shard_of(system, flags, job.shards) == index:
            self.nodes[key] = 0
            self.pending[0] = (system, flags)
            self.level = [0]
        self._own: dict[tuple[System, frozenset[str]], list[EdgeData]] = {}
        self._processed: tuple[int, ...] = ()
        self._new: list[tuple[Hashable, System, frozenset[str]]] = []
        #: Per peer: what the two have sent each other.
        self.links = {i: self._link() for i in range(job.shards) if i != index}
        self._frozen = False
        # In a process of its own, what the shard holds is frozen out of the cyclic
        # collector as it comes, as in one process (`exhaustive.Search.run`).
        self._own_process = os.getpid() != job.coordinator

    def _link(self) -> Link:
        machine = self.expander.machine

        def adopt(value: Any) -> Any:
            # A CPU's state received is swapped for the interned one, if equal (exact:
            # a CPU's state has no history fields), so looking it up or comparing
            # it is by identity, as for the states this shard made itself.
            if type(value) is CpuState and machine.interned is not None:
                return machine.intern(value)
            return value

        return Link(adopt)

    def _freeze(self) -> None:
        if self._own_process:
            gc.freeze()
            self._frozen = True

    def expand(self, depth: int, seconds: float | None, commit: tuple[Any, ...] | None = None) -> Expanded:
        """Expand this shard's states of level `depth` (in node order), for at most
        `seconds`, after committing the level before (`commit`: the arguments of
        `commit`); successors are sorted by owner."""
        if commit is not None:
            self.commit(*commit)
        x, n, job = self.expander, self.job.shards, self.job
        deadline = None if seconds is None else time.monotonic() + seconds
        # Per owner: (system, flags) -> the edges into it. Two paths that reach one
        # system send it once; systems equal up to a renaming of CPUs or frames go
        # apart, and their owner merges them by key.
        batches: list[dict[tuple[System, frozenset[str]], list[EdgeData]]] = [{} for _ in range(n)]
        finals: list[tuple[int, Final]] = []
        processed: list[int] = []
        stopped = None
        x.keyed = False  # each owner computes the keys of its states
        try:
            enabled = x.machine.enabled
            for k, node in enumerate(self.level):
                if k % 64 == 0:
                    self._freeze()
                    stopped = self._over_budget(deadline)
                    if stopped is not None:
                        break
                system, flags = self.pending[node]
                steps = enabled(system)
                final = x.final(system, depth, job.max_steps, steps)
                if final is not None:
                    finals.append((node, final))
                    processed.append(node)
                    continue
                for pos, e in enumerate(x.expand(system, flags, depth, steps)):
                    edge = (node, pos, e.choice,
                            tuple([(v.invariant, v.detail) for v in e.violations]) if e.violations else ())
                    batches[shard_of(e.system, e.flags, n)].setdefault((e.system, e.flags), []).append(edge)
                processed.append(node)
        finally:
            x.keyed = True
        self._processed = tuple(processed)
        self._own = batches[self.index]
        outgoing = tuple(None if i == self.index or not b else self.links[i].dumps(list(b.items()))
                         for i, b in enumerate(batches))
        return Expanded(outgoing, tuple(finals), self._processed, stopped, sum(map(len, self.links.values())))

    def _over_budget(self, deadline: float | None) -> str | None:
        if self.stop_flag.is_set():
            return "stop"
        if deadline is not None and time.monotonic() > deadline:
            return "time"
        if self.job.max_memory is not None and resident_bytes() > self.job.max_memory:
            return "memory"
        return None

    def receive(self, batches: Sequence[tuple[int, bytes]]) -> Received:
        """Look up the successors this shard owns: its own, and those the others sent
        ((sender, batch) pairs)."""
        known: list[tuple[int, EdgeData]] = []
        new: dict[Hashable, list[Any]] = {}

        x = self.expander

        def take(system: System, flags: frozenset[str], edges: list[EdgeData]) -> None:
            key = x.key(system, flags)
            node = self.nodes.get(key)
            if node is not None:
                known.extend((node, e) for e in edges)
                return
            entry = new.get(key)
            if entry is None:
                new[key] = [system, flags, list(edges)]
                return
            # Keep the system reached by the first edge (a sender's batch lists its
            # edges in order): the state as one process reaches it first. Systems
            # with one key may differ (by a renaming of CPUs or frames), and the
            # choices of the runs through it depend on which is expanded.
            if edges[0][:2] < min(e[:2] for e in entry[2]):
                entry[0], entry[1] = system, flags
            entry[2].extend(edges)

        for (system, flags), edges in self._own.items():
            take(system, flags, edges)
        self._own = {}
        for sender, blob in batches:
            for (system, flags), edges in self.links[sender].loads(blob):
                take(system, flags, edges)
        self._new = [(key, system, flags) for key, (system, flags, _) in new.items()]
        self._freeze()
        return Received(tuple(known), tuple(tuple(edges) for _, _, edges in new.values()))

    def commit(self, numbers: Sequence[int], cut: int | None, forget: bool = False) -> int:
        """The coordinator's numbers for the new states (-1: dropped by the cut), and
        the first node of the level the cut left unexpanded (None: no cut); `forget`:
        empty the links (every shard does so at once). Returns how many states this
        shard has left to expand."""
        if forget:
            self.links = {i: self._link() for i in self.links}
        for node in self._processed:
            if cut is None or node < cut:
                del self.pending[node]
        level = []
        for (key, system, flags), node in zip(self._new, numbers):
            if node >= 0:
                self.nodes[key] = node
                self.pending[node] = (system, flags)
                level.append(node)
        self._new = []
        self._processed = ()
        self.level = sorted(level)
        # What a shard holds lives until the search ends and has no cycles; left to
        # the collector, each full collection walks all of it, and unpickling batches
        # triggers many. `finish` gives it back.
        self._freeze()
        return len(self.pending)


    def finish(self) -> None:
        """Drop what the search held and give the collector back what it froze: a
        Dask worker lives on after the search, and keeps the actor a while after it
        is released."""
        self.nodes, self.pending, self.level, self.links = {}, {}, [], {}
        self._own, self._new = {}, []
        _parts.clear()  # placement's digests hold parts of the search's states
        # A fresh expander: the search's one remembers its steps, keys and futures.
        self.expander = _Expander(self.job.scenario, self.job.policy, self.job.options)
        if self._frozen:
            gc.unfreeze()
            self._frozen = False


class DaskShard(Shard):
    """A shard as a Dask actor. Its calls run with the cyclic collector off, as a
    shard process does (`_serve`): what they make has no cycles, and the collector,
    which unpickling a batch wakes many times, would walk it all for nothing. The
    worker lives on, so the collector is back on between calls (to collect what the
    worker's own event loop left meanwhile)."""

    def expand(self, depth: int, seconds: float | None, commit: tuple[Any, ...] | None = None) -> Expanded:
        with _collector_off():
            return super().expand(depth, seconds, commit)

    def receive(self, batches: Sequence[tuple[int, bytes]]) -> Received:
        with _collector_off():
            return super().receive(batches)

    async def stop(self) -> None:
        # A coroutine runs on the worker's event loop, not in the actor thread that
        # is busy expanding: the expansion sees the flag within 64 states.
        self.stop_flag.set()


@contextmanager
def _collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# --- running the shards: processes or Dask actors ------------------------------------------------


class ShardFailed(RuntimeError):
    """A shard raised, or its process died."""


class Backend(Protocol):
    #: How many shards.
    shards: int

    def send(self, method: str, args: Sequence[tuple[Any, ...]]) -> Callable[[], list[Any]]:
        """Call `method` on every shard at once (shard i with `args[i]`); returns at
        once, with what waits for their results and gives them."""

    def call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`send`, then wait for the results."""

    def kill(self) -> None:
        """Stop every shard now (an interrupt)."""

    def close(self) -> None:
        """End the shards after a search."""


def _serve(conn: Connection, job: Job, index: int, stop: Any) -> None:
    worker_init()
    # This process only serves its shard, which makes no reference cycles (`Link`):
    # the cyclic collector, which each batch unpickled would wake many times over
    # everything the level added, has nothing to free here.
    gc.disable()
    shard = Shard(job, index, stop)
    while True:
        try:
            method, args = conn.recv()
        except EOFError:
            return
        if method == "close":
            return
        try:
            result = getattr(shard, method)(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the coordinator
            conn.send(("error", (type(exc).__name__, "".join(traceback.format_exception(exc)))))
            continue
        conn.send(("ok", result))


class Processes:
    """Shards in processes forked from this one, each answering on its pipe."""

    def __init__(self, job: Job) -> None:
        ctx = multiprocessing.get_context("fork")
        self.shards = job.shards
        self._stop = ctx.Event()
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        try:
            for i in range(job.shards):
                ours, theirs = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(theirs, job, i, self._stop), name=f"vmactors-shard-{i}",
                                   daemon=True)
                proc.start()
                theirs.close()
                self.conns.append(ours)
                self.procs.append(proc)
        except BaseException:
            self.kill()
            raise

    def send(self, method: str, args: Sequence[tuple[Any, ...]]) -> Callable[[], list[Any]]:
        for conn, a in zip(self.conns, args):
            conn.send((method, a))
        return self._results

    def call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        return self.send(method, args)()

    def _results(self) -> list[Any]:
        out = []
        for i, conn in enumerate(self.conns):
            try:
                status, value = conn.recv()
            except EOFError:
                self.procs[i].join(1)
                raise ShardFailed(f"shard {i} died (exit status {self.procs[i].exitcode})") from None
            if status == "error":
                name, text = value
                if name == "MemoryError":
                    raise MemoryError(f"shard {i}: {text}")
                raise ShardFailed(f"shard {i} failed:\n{text}")
            out.append(value)
        return out

    def kill(self) -> None:
        self._stop.set()
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(5)
        for conn in self.conns:
            conn.close()

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close", ()))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
        self.kill()


class Actors:
    """Shards as Dask actors, one per worker (round robin when there are fewer
    workers than shards)."""

    def __init__(self, client: Client, job: Job) -> None:
        self.shards = job.shards
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise UsageError("the Dask cluster has no workers")
        self.futures = [client.submit(DaskShard, job, i, workers=[workers[i % len(workers)]], actor=True,
                                      pure=False, key=f"vmactors-shard-{i}-{os.getpid()}-{time.time_ns()}")
                        for i in range(job.shards)]
        # A proxy made outside a worker finds its client as the current one (this
        # client is nobody's default).
        with client.as_current():
            #: Proxies of the actors (their methods return futures).
            self.actors: list[Any] = [f.result() for f in self.futures]

    def send(self, method: str, args: Sequence[tuple[Any, ...]]) -> Callable[[], list[Any]]:
        futures = [getattr(actor, method)(*a) for actor, a in zip(self.actors, args)]
        return lambda: [f.result() for f in futures]

    def call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        return self.send(method, args)()

    def kill(self) -> None:
        for actor in self.actors:
            try:
                actor.stop()  # seen by a busy actor within 64 states
            except Exception:  # noqa: BLE001 - a worker already gone
                pass
        self.close()

    def close(self) -> None:
        finishing = []
        for actor in self.actors:
            try:
                finishing.append(actor.finish())
            except Exception:  # noqa: BLE001 - a worker already gone
                pass
        for f in finishing:
            try:
                f.result(timeout=10)
            except Exception:  # noqa: BLE001 - the actor or its worker is gone: so is what it held
                pass
        for f in self.futures:
            f.release()
        self.actors = []
        self.futures = []


def workers_of(client: Client) -> int:
    """How many workers the cluster has (the default number of shards over it)."""
    return max(1, len(client.scheduler_info()["workers"]))


# --- the coordinator -----------------------------------------------------------------------------


def explore_sharded(scenario: Scenario, policy: str, *, shards: int = 2, client: Client | None = None,
                    options: Options = Options(), limits: Limits = Limits(),
                    progress: Progress | None = None) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
    """`explore_exhaustive` over `shards` shards: forked processes, or actors on the
    Dask cluster of `client`. The same exploration, choice lists included."""
    job = Job(scenario, policy, options, shards, limits.max_steps, limits.max_memory)
    backend: Backend = Actors(client, job) if client is not None else Processes(job)
    coordinator = Coordinator(Expander(scenario, policy, options), limits, progress)
    try:
        coordinator.run(backend)
    except BaseException:
        backend.kill()
        raise
    else:
        backend.close()
    return coordinator.result()


#: Values a shard's links may hold before every shard empties its links.
SHARED_LIMIT = 2_000_000


class Coordinator:
    """Drives the shards level by level and numbers the states they find."""

    def __init__(self, expander: Expander, limits: Limits, progress: Progress | None = None) -> None:
        self.expander = expander
        self.limits = limits
        self.progress = progress
        self.graph = StateGraph(None)  # the shards hold the keys (`StateGraph.node`)
        self.cut: Cut | None = None
        #: States found and not expanded (the root, first).
        self.frontier = 1
        self._deadline = None if limits.time_limit is None else time.monotonic() + limits.time_limit
        #: What each shard is to commit before it expands the next level (the
        #: numbers of its new states...): sent with that call, saving a round trip.
        self._commits: list[tuple[Any, ...] | None] | None = None
        #: The last level's edges, to add to the graph while the shards expand the
        #: next one (`_level`); done before the search returns, however it ends.
        self._edges: Callable[[], None] | None = None

    def run(self, shards: Backend) -> None:
        """Search until done, cut or interrupted (then the graph is that of the levels
        completed, and the shards are stopped)."""
        depth = 0
        try:
            while self.cut is None:
                self.cut = over_budget(self.limits, self._deadline)
                if self.cut is not None:
                    break
                if not self._level(shards, depth):
                    break
                depth += 1
        except KeyboardInterrupt:
            shards.kill()
            self.cut = INTERRUPTED
        finally:
            self._add_edges()

    def _add_edges(self) -> None:
        if self._edges is not None:
            add, self._edges = self._edges, None
            add()

    def _why(self, stopped: str) -> Cut:
        lim = self.limits
        if stopped == "time":
            assert lim.time_limit is not None
            return Cut.time_limit(lim.time_limit)
        if stopped == "memory":
            assert lim.max_memory is not None
            return Cut.max_memory(lim.max_memory)
        return INTERRUPTED

    def _level(self, shards: Backend, depth: int) -> bool:
        """One level; returns whether there is a next one."""
        g = self.graph
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        commits = self._commits or [None] * shards.shards
        expanding = shards.send("expand", [(depth, left, c) for c in commits])
        self._add_edges()  # the level before's, while the shards work
        expanded: list[Expanded] = expanding()
        n = len(expanded)
        inbox = [[(s, e.outgoing[d]) for s, e in enumerate(expanded) if e.outgoing[d] is not None]
                 for d in range(n)]
        received: list[Received] = shards.call("receive", [(batch,) for batch in inbox])
        stopped = next((e.stopped for e in expanded if e.stopped is not None), None)

        finals = dict(f for e in expanded for f in e.finals)
        processed = sorted(p for e in expanded for p in e.processed)
        # The new states, each first reached by its least (parent, position): that
        # is the order in which one process numbers them.
        # (An edge's (parent, position) is unique, so the least edge is the least
        # (parent, position).)
        new: list[tuple[EdgeData, int, int, tuple[EdgeData, ...]]] = []
        for shard, r in enumerate(received):
            for i, edges in enumerate(r.new):
                new.append((edges[0] if len(edges) == 1 else min(edges), shard, i, edges))
        new.sort()
        # --max-states as one process applies it: at each parent, in order, the edges
        # into states not numbered yet must fit (they surely do if every edge into a
        # new state does).
        cut: int | None = None
        if len(g) + sum(len(edges) for _, _, _, edges in new) > self.limits.max_states:
            cut = self._cut(new, processed, finals)
        numbers = [[-1] * len(r.new) for r in received]
        numbered: list[tuple[int, tuple[EdgeData, ...]]] = []
        for first, shard, i, edges in new:
            parent = first[0]
            if cut is not None and parent >= cut:
                continue
            node = g.node(parent, first[2])
            numbers[shard][i] = node
            numbered.append((node, edges))

        def add_edges() -> None:
            # Only the numbers above hold the shards up; the edges are listed here,
            # while they expand the next level, in the order one process adds them:
            # by parent, then position.
            edges_of = [(e[0], e[1], e[2], node, e[3]) for node, edges in numbered for e in edges]
            for r in received:
                edges_of.extend([(e[0], e[1], e[2], node, e[3]) for node, e in r.known])
            edges_of.sort()
            succ = g.succ
            for parent, _, choice, child, violations in edges_of:
                if cut is not None and parent >= cut:
                    continue
                if violations:
                    g.edge(parent, child, choice, [Violation(name, detail) for name, detail in violations])
                else:  # `g.edge` without a witness to record
                    succ[parent].append((child, 0))
                    g.transitions += 1

        self._edges = add_edges
        for node in sorted(finals):
            if cut is None or node < cut:
                g.final(node, finals[node])
        # The links hold every value two shards exchanged: past a bound, all forget.
        forget = sum(e.shared for e in expanded) > SHARED_LIMIT * n
        self._commits = [(numbers[s], cut, forget) for s in range(n)]
        done = sum(1 for p in processed if cut is None or p < cut)
        self.frontier += sum(1 for ns in numbers for x in ns if x >= 0) - done
        if cut is not None:
            self.cut = Cut.max_states(self.limits.max_states)
        elif stopped is not None:
            self.cut = self._why(stopped)
        if self.progress is not None:
            self.progress(len(g), self.frontier)
        return self.frontier > 0

    def _cut(self, new: Sequence[tuple[EdgeData, int, int, tuple[EdgeData, ...]]], processed: Sequence[int],
             finals: dict[int, Final]) -> int | None:
        """The first parent of the level whose edges into states not numbered yet
        would pass --max-states (`new`: the level's new states, in numbering order)."""
        fresh: dict[int, int] = {}
        distinct: dict[int, int] = {}
        for first, _, _, edges in new:
            parent = first[0]
            fresh[parent] = fresh.get(parent, 0) + (1 if len(edges) == 1 else sum(1 for e in edges if e[0] == parent))
            distinct[parent] = distinct.get(parent, 0) + 1
        size = len(self.graph)
        for p in processed:
            if p in finals:
                continue
            if size + fresh.get(p, 0) > self.limits.max_states:
                return p
            size += distinct.get(p, 0)
        return None

    def result(self) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
        return assemble(self.expander, self.graph, self.cut, self.frontier)


# --- how and where to run searches and jobs --------------------------------------------------------


@attrs.frozen
class Exhaustive:
    """How each exhaustive search of a command runs: reductions and limits (the same
    for every search, and picklable, so a worker of a pool can run one)."""

    options: Options = Options()
    max_states: int = DEFAULT_MAX_STATES
    max_steps: int = 100_000
    #: Seconds per search (None: no limit).
    time_limit: float | None = None
    #: Bytes of resident memory per process (None: no limit).
    max_memory: int | None = None

    @property
    def limits(self) -> Limits:
        return Limits(self.max_states, self.max_steps, self.time_limit, self.max_memory)

    def explore(self, scenario: Scenario, policy: str, *, shards: int = 1, client: Client | None = None,
                progress: Progress | None = None) -> tuple[Exploration, dict[str, tuple[int, ...]]]:
        """One search: here, or sharded over `shards` processes, or over the cluster
        of `client`."""
        if client is None and shards <= 1:
            return explore_exhaustive(scenario, policy, max_states=self.max_states, max_steps=self.max_steps,
                                      progress=progress, options=self.options, time_limit=self.time_limit,
                                      max_memory=self.max_memory)
        return explore_sharded(scenario, policy, shards=shards, client=client, options=self.options,
                               limits=self.limits, progress=progress)


@contextmanager
def cluster(address: str | None) -> Iterator[Client | None]:
    """A client of the Dask cluster at `address` for the block (None: no cluster)."""
    if address is None:
        yield None
        return
    client = connect(address)
    try:
        yield client
    finally:
        try:
            client.close(timeout=5)
        except Exception:  # noqa: BLE001 - a cluster already gone must not hide the result
            pass


# --- pools for independent jobs ----------------------------------------------------------------


#: How long `connect` tries to reach a scheduler.
CONNECT_TIMEOUT = "10s"


def connect(address: str) -> Client:
    """A client of the Dask cluster whose scheduler listens at `address`
    (`tcp://HOST:PORT`); a usage error if there is none."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - installed with vmactors[cluster]
        raise UsageError("--cluster needs the Dask `distributed` package: pip install 'vmactors[cluster]'") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise UsageError(f"--cluster {address}: cannot connect to a Dask scheduler there ({e})") from None


@contextmanager
def pool(jobs: int = 1, client: Client | None = None) -> Iterator[Executor | None]:
    """An executor for independent jobs: the cluster's (`client`), else `jobs` worker
    processes (which a signal stops at once), else None (run them here)."""
    if client is not None:
        executor = client.get_executor()
        try:
            yield executor
        except BaseException:
            executor.shutdown(wait=False)
            raise
        executor.shutdown(wait=True)
        return
    if jobs <= 1:
        yield None
        return
    procs = ProcessPoolExecutor(max_workers=jobs, initializer=worker_init)
    try:
        yield procs
    except BaseException:
        stop_workers(procs)
        raise
    procs.shutdown()


def run_all(executor: Executor | None, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]],
            done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """`fn(*job)` for each job, here or on `executor`; the results in order (`done`
    hears of each as soon as it and every job before it have finished)."""
    out: list[Any] = []
    if executor is None:
        for i, job in enumerate(jobs):
            out.append(fn(*job))
            if done is not None:
                done(i, out[-1])
        return out
    futures = [executor.submit(fn, *job) for job in jobs]
    for i, f in enumerate(futures):
        out.append(f.result())
        if done is not None:
            done(i, out[-1])
    return out


__all__ = ["Actors", "Coordinator", "DaskShard", "Exhaustive", "Job", "Link", "Processes", "Shard", "ShardFailed",
           "cluster", "connect", "explore_sharded", "placement", "pool", "run_all", "shard_of", "workers_of"]
