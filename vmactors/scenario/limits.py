"""How big a scenario may be (docs/scenario-format.md#limits).

vmactors models translation races between a few CPUs on a few pages; a scenario far
past these sizes is a mistake (a typo in `pages`, a generated file gone wrong) that
would otherwise run for hours or exhaust memory before saying anything. Each limit is
a `ScenarioError` that names the key or op and the limit, before anything runs.

The sizes allow what the benchmarks need (`vmactors bench`: 128 CPUs faulting 1,024
pages each in one mapping) and cost at most a few seconds to set up and tear down:
measured, 65,536 prefaulted pages in two CPUs' TLBs and one munmap take 8.5 s, one
untouched mapping of 2^20 pages and its munmap 18 s.

>>> MAX_CPUS, MAX_MAP_PAGES
(256, 131072)
"""

from __future__ import annotations

#: The largest scenario file read, in bytes (`vmactors run /dev/zero` stops here).
MAX_SCENARIO_BYTES = 8 << 20
#: CPUs of a scenario (`cpus`, a thread's `cpu` is below it).
MAX_CPUS = 256
#: Pages of one mapping (`[[map]]` `pages`, an mmap's PAGES): 512 MiB.
MAX_MAP_PAGES = 1 << 17
#: Pages of all `[[map]]`s and mmap ops together.
MAX_TOTAL_PAGES = 1 << 19
#: Prefaulted pages, each counted once per CPU whose TLB it fills (at least once).
MAX_PREFAULTED_PAGES = 1 << 14
#: Ops of one thread, and of all threads.
MAX_THREAD_OPS = 1 << 16
MAX_OPS = 1 << 18
#: `[[map]]` tables.
MAX_MAPS = 1 << 12
#: Characters of the `exists` clause.
MAX_EXISTS_CHARS = 1 << 16

__all__ = ["MAX_CPUS", "MAX_EXISTS_CHARS", "MAX_MAPS", "MAX_MAP_PAGES", "MAX_OPS", "MAX_PREFAULTED_PAGES",
           "MAX_SCENARIO_BYTES", "MAX_THREAD_OPS", "MAX_TOTAL_PAGES"]
