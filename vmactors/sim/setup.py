"""The system before the threads start: layout, page caches, prefaulted pages."""

from __future__ import annotations

import attrs
import immutables

from ..actors.cpu import CpuState, Program
from ..actors.rcu import RcuState
from ..actors.rwsem import RwsemState
from ..actors.shootdown import ShootdownState
from ..actors.tree_owner import TreeOwnerState
from ..mm.layout import PAGE_SIZE, page_range
from ..mm.page_table import Pte
from ..mm.vma import Vma
from ..mm.vma_tree import VmaTree
from ..mm.world import World
from ..errors import ScenarioError
from ..scenario.model import MapSpec, Mmap, MmapFixed, Scenario
from .system import System


def layout(scenario: Scenario) -> dict[str, int]:
    """Start address of every `[[map]]`: those with `at` first, then the others
    top-down in declaration order."""
    tree = VmaTree()
    where: dict[str, int] = {}
    for m in scenario.maps:
        if m.at is not None:
            tree = tree.store(m.at, m.at + m.pages * PAGE_SIZE, m.name)
            where[m.name] = m.at
    for m in scenario.maps:
        if m.at is None:
            start = tree.get_unmapped_area(m.pages * PAGE_SIZE)
            if start is None:
                raise ScenarioError(scenario.path, f"map '{m.name}' does not fit in the address space")
            tree = tree.store(start, start + m.pages * PAGE_SIZE, m.name)
            where[m.name] = start
    return {m.name: where[m.name] for m in scenario.maps}


def _file_pages(scenario: Scenario) -> dict[str, int]:
    pages: dict[str, int] = {f: 0 for f, _ in scenario.files}
    for m in scenario.maps:
        if m.kind == "file" and m.file is not None:
            pages[m.file] = max(pages[m.file], m.pages)
    for t in scenario.threads:
        for op in t.ops:
            if isinstance(op, (Mmap, MmapFixed)) and op.kind == "file" and op.file is not None:
                pages[op.file] = max(pages[op.file], op.pages)
    return pages


def _vma(m: MapSpec, start: int) -> Vma:
    owner = f"file:{m.file}" if m.kind == "file" else f"anon:{m.name}"
    return Vma(id=m.name, start=start, end=start + m.pages * PAGE_SIZE, kind=m.kind, owner=owner,
               file=m.file, fill=m.fill, prot=m.prot)


def build(scenario: Scenario) -> tuple[System, Program, dict[str, int]]:
    """The initial system, the CPUs' program, and each map label's address."""
    where = layout(scenario)
    world = World()
    fills = dict(scenario.files)
    frames = world.frames
    cache = {}
    for f, n in sorted(_file_pages(scenario).items()):
        for i in range(n):
            frames, fid = frames.alloc(f"file:{f}:{i}", fills[f])
            cache[(f, i)] = fid
    world = attrs.evolve(world, frames=frames, page_cache=immutables.Map(cache))
    tree = VmaTree()
    tlbs: list[dict[int, Pte]] = [{} for _ in range(scenario.cpus)]
    for m in scenario.maps:
        vma = _vma(m, where[m.name])
        tree = tree.store(vma.start, vma.end, vma.id)
        world = world.set_vma(vma)
        if m.prefault is None:
            continue
        for page in page_range(vma.start, m.pages):
            if vma.kind == "file":
                assert vma.file is not None
                fid = world.page_cache[(vma.file, (page - vma.start) // PAGE_SIZE)]
            else:
                frames, fid = world.frames.alloc(vma.frame_owner(page), vma.fill)
                world = attrs.evolve(world, frames=frames)
            pte = Pte(frame=fid, prot=vma.prot, vma=vma.id, owner=vma.frame_owner(page))
            world = world.install_pte(page, pte)
            for c in m.prefault:
                tlbs[c][page] = pte
    world = attrs.evolve(world, tree=tree)

    by_cpu: list[tuple[int | None, tuple, tuple]] = [(None, (), ()) for _ in range(scenario.cpus)]
    local_pages = []
    for ti, t in enumerate(scenario.threads):
        by_cpu[t.cpu] = (ti, t.ops, t.texts)
        local_pages.append(immutables.Map({op.label: op.pages for op in t.ops if isinstance(op, Mmap)}))
    program = Program(
        threads=tuple(by_cpu),
        maps=immutables.Map({m.name: (where[m.name], m.pages) for m in scenario.maps}),
        local_pages=tuple(local_pages),
        ncpus=scenario.cpus,
    )
    cpus = tuple(
        CpuState(id=c, thread=by_cpu[c][0], tlb=immutables.Map(tlbs[c])) for c in range(scenario.cpus)
    )
    system = System(world=world, cpus=cpus, tree=TreeOwnerState(), shootdown=ShootdownState(),
                    rcu=RcuState(), rwsem=RwsemState(), channels=immutables.Map())
    return system, program, where
