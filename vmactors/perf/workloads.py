"""The benchmark workloads, named as users know them, each a generated scenario.

`N` CPUs fault (`--cpus`), `F` faults each (`--faults`, default 1,000); the workloads
with a writer add one CPU (number N) that runs it, `K = max(5, F // 10)` times. Each
CPU's chunk is F pages rounded up to whole page-table pages (512 PTEs).

| workload | the faulting CPUs | the extra CPU |
|---|---|---|
| `pft` | each writes F fresh pages of its own chunk of one big private anonymous VMA (the mmtests `pft` shape) | |
| `pft-vmas` | each writes F fresh pages of its own anonymous VMA | |
| `churn` | as `pft-vmas` | K times: mmap a page elsewhere, write it, munmap it |
| `fixed-other` | as `pft` | K times: MAP_FIXED over another one-page VMA, write it |
| `fixed-same` | each writes its own 16 pages of one VMA, F times round-robin (a page faults again after each MAP_FIXED) | K times: MAP_FIXED over that whole VMA |
| `file-map-pages` | each reads F pages of its own chunk of one shared file mapping (pages in the page cache: `rcu_map_pages` in wilcox and glisse) | |
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ..scenario.model import Scenario
from ..scenario.parse import parse_scenario

PAGE = 4096
#: PTEs per page-table page: each CPU's pages start on a page-table page of their own,
#: as each thread's chunk of a large region does (no page-table lock shared by two
#: CPUs, whatever `F`).
PT_PAGES = 512
#: Pages each faulting CPU cycles over in `fixed-same`.
FIXED_SAME_PAGES = 16


@attrs.frozen
class Workload:
    name: str
    summary: str
    #: (cpus, faults per CPU) -> the scenario's TOML text.
    build: Callable[[int, int], str] = attrs.field(repr=False)
    #: Whether one CPU more runs a writer.
    writer: bool = False

    def scenario(self, cpus: int, faults: int) -> Scenario:
        return parse_scenario(self.build(cpus, faults), f"<bench {self.name} {cpus}x{faults}>.toml")

    def fault_cpus(self, cpus: int) -> range:
        """The CPUs whose faults are measured."""
        return range(cpus)


def slice_pages(faults: int) -> int:
    """Pages set aside per CPU: `faults`, rounded up to whole page-table pages."""
    return -(-faults // PT_PAGES) * PT_PAGES


def rounds(faults: int) -> int:
    """How many times the writer CPU runs its operation."""
    return max(5, faults // 10)


def _head(name: str, cpus: int) -> list[str]:
    return [f'name = "{name}"', f"cpus = {cpus}"]


def _map(name: str, pages: int, extra: str = "") -> list[str]:
    return ["[[map]]", f'name = "{name}"', f"pages = {pages}"] + ([extra] if extra else [])


def _thread(ops: list[str]) -> list[str]:
    return ["[[thread]]", "ops = [" + ", ".join(f'"{op}"' for op in ops) + "]"]


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _stores(label: str, first: int, count: int) -> list[str]:
    return [f"store {label}+{(first + i) * PAGE:#x} 1" for i in range(count)]


def pft(cpus: int, faults: int, name: str = "pft", writer: list[str] | None = None) -> str:
    size = slice_pages(faults)
    lines = _head(name, cpus + (writer is not None)) + _map("A", cpus * size)
    if writer is not None:
        lines += _map("B", 1)
    for c in range(cpus):
        lines += _thread(_stores("A", c * size, faults))
    if writer is not None:
        lines += _thread(writer)
    return _text(lines)


def pft_vmas(cpus: int, faults: int, name: str = "pft-vmas", writer: list[str] | None = None) -> str:
    lines = _head(name, cpus + (writer is not None))
    for c in range(cpus):
        lines += _map(f"V{c}", slice_pages(faults))
    for c in range(cpus):
        lines += _thread(_stores(f"V{c}", 0, faults))
    if writer is not None:
        lines += _thread(writer)
    return _text(lines)


def churn(cpus: int, faults: int) -> str:
    ops = []
    for k in range(rounds(faults)):
        ops += [f"B{k} = mmap", f"store B{k} 1", f"munmap B{k}"]
    return pft_vmas(cpus, faults, "churn", ops)


def fixed_other(cpus: int, faults: int) -> str:
    return pft(cpus, faults, "fixed-other", ["mmap B fixed", "store B 1"] * rounds(faults))


def fixed_same(cpus: int, faults: int) -> str:
    lines = _head("fixed-same", cpus + 1) + _map("A", cpus * FIXED_SAME_PAGES)
    for c in range(cpus):
        lines += _thread([f"store A+{(c * FIXED_SAME_PAGES + i % FIXED_SAME_PAGES) * PAGE:#x} 1"
                          for i in range(faults)])
    lines += _thread(["mmap A fixed"] * rounds(faults))
    return _text(lines)


def file_map_pages(cpus: int, faults: int) -> str:
    size = slice_pages(faults)
    lines = _head("file-map-pages", cpus) + _map("F", cpus * size, 'kind = "file"\nfile = "f"')
    for c in range(cpus):
        lines += _thread([f"r0 = load F+{(c * size + i) * PAGE:#x}" for i in range(faults)])
    return _text(lines)


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("pft", "every CPU faults fresh pages of one big private anonymous VMA", pft),
    Workload("pft-vmas", "every CPU faults fresh pages of its own anonymous VMA", pft_vmas),
    Workload("churn", "as pft-vmas, while one more CPU maps, touches and unmaps a page elsewhere", churn, True),
    Workload("fixed-other", "as pft, while one more CPU MAP_FIXEDs another range", fixed_other, True),
    Workload("fixed-same", "CPUs fault pages of a range that one more CPU keeps replacing with MAP_FIXED",
             fixed_same, True),
    Workload("file-map-pages", "every CPU read-faults its own pages of one shared file mapping (page cache)",
             file_map_pages),
)}

__all__ = ["Workload", "WORKLOADS", "rounds", "FIXED_SAME_PAGES"]
