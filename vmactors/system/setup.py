"""The world before the threads start: layout, page caches, prefaulted pages, and
each CPU's thread (docs/design.md#the-world, #scenarios)."""

from __future__ import annotations

import attrs
import immutables

from ..actors.tasks import Program, ThreadProgram
from ..errors import ScenarioError
from ..mm.frames import FrameTable
from ..ids import MmId
from ..mm.layout import PAGE_SIZE, page_range, pgtable_of
from ..mm.page_table import Pte
from ..mm.vma import Vma
from ..mm.vma_tree import VmaTree
from ..mm.world import AddressSpace, World
from ..scenario.model import MapSpec, Mmap, MmapFixed, Scenario


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


def map_vma(m: MapSpec, start: int) -> Vma:
    """The VMA of a `[[map]]`."""
    owner = f"file:{m.file}" if m.kind == "file" else f"anon:{m.name}"
    return Vma(id=m.name, start=start, end=start + m.pages * PAGE_SIZE, kind=m.kind, owner=owner, file=m.file,
               fill=m.fill, prot=m.prot, growsdown=m.growsdown)


@attrs.frozen
class Setup:
    """What a scenario sets up: the world, each CPU's prefaulted TLB, the program, and
    each map label's address."""

    world: World
    tlbs: tuple[immutables.Map[int, Pte], ...]
    program: Program
    labels: dict[str, int]


def build(scenario: Scenario) -> Setup:
    where = layout(scenario)
    fills = dict(scenario.files)
    frames = FrameTable()
    cache = {}
    for f, n in sorted(_file_pages(scenario).items()):
        for i in range(n):
            frames, fid = frames.alloc(f"file:{f}:{i}", fills[f])
            cache[(f, i)] = fid
    tree = VmaTree()
    vmas: dict[str, Vma] = {}
    ptes: dict[int, Pte] = {}
    tlbs: list[dict[int, Pte]] = [{} for _ in range(scenario.cpus)]
    for m in scenario.maps:
        vma = map_vma(m, where[m.name])
        tree = tree.store(vma.start, vma.end, vma.id)
        vmas[vma.id] = vma
        if m.prefault is None:
            continue
        for page in page_range(vma.start, m.pages):
            if vma.kind == "file":
                assert vma.file is not None
                fid = cache[(vma.file, (page - vma.start) // PAGE_SIZE)]
            else:
                frames, fid = frames.alloc(vma.frame_owner(page), vma.fill)
            pte = Pte(frame=fid, prot=vma.prot, vma=vma.id, owner=vma.frame_owner(page))
            ptes[page] = pte
            for c in m.prefault:
                tlbs[c][page] = pte
    # Page-table pages are records only where the scenario frees them.
    pgtables = frozenset(pgtable_of(p) for p in ptes) if scenario.free_pgtables else None
    space = AddressSpace(tree=tree, vmas=immutables.Map(vmas), ptes=immutables.Map(ptes), pgtables=pgtables)
    # A fork's child starts empty: its fork copies the VMAs and pages in.
    children = tuple(AddressSpace(pgtables=frozenset() if scenario.free_pgtables else None) for _ in scenario.forks)
    world = World(mms=(space,) + children, page_cache=immutables.Map(cache), frames=frames)

    threads = [ThreadProgram(thread=None) for _ in range(scenario.cpus)]
    for ti, t in enumerate(scenario.threads):
        threads[t.cpu] = ThreadProgram(
            thread=ti, ops=t.ops, texts=t.texts,
            local_pages=immutables.Map({op.label: op.pages for op in t.ops if isinstance(op, Mmap)}), mm=MmId(t.mm))
    program = Program(threads=tuple(threads),
                      maps=immutables.Map({m.name: (where[m.name], m.pages) for m in scenario.maps}),
                      children=immutables.Map({name: MmId(k + 1) for k, name in enumerate(scenario.forks)}))
    return Setup(world, tuple(immutables.Map(t) for t in tlbs), program, where)


__all__ = ["layout", "build", "Setup", "map_vma"]
