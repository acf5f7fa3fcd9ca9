"""Name -> policy class, for every policy and ablation."""

from __future__ import annotations

from .base import Policy
from .glisse import GlissePolicy
from .mmap_sem import MmapSemFreeBeforeFlush, MmapSemIrqsOffWait, MmapSemPolicy
from .pervma import PerVmaPolicy
from .wilcox import (
    WilcoxEarlyReturn,
    WilcoxFreeBeforeFlush,
    WilcoxNoGrace,
    WilcoxNoRecheck,
    WilcoxNoZero,
    WilcoxPolicy,
)

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        MmapSemPolicy,
        WilcoxPolicy,
        GlissePolicy,
        PerVmaPolicy,
        MmapSemFreeBeforeFlush,
        MmapSemIrqsOffWait,
        WilcoxNoZero,
        WilcoxFreeBeforeFlush,
        WilcoxNoGrace,
        WilcoxNoRecheck,
        WilcoxEarlyReturn,
    )
}
