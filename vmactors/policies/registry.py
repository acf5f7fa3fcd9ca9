"""Name -> policy class, for every policy and ablation that exists."""

from __future__ import annotations

from .base import Policy
from .mmap_sem import MmapSemFreeBeforeFlush, MmapSemIrqsOffWait, MmapSemPolicy

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        MmapSemPolicy,
        MmapSemFreeBeforeFlush,
        MmapSemIrqsOffWait,
    )
}
