"""Name -> policy, for every policy and ablation, in the order `vmactors policies` lists them."""

from __future__ import annotations

from ..actors.policy import Policy
from . import glisse, mmap_sem, pervma, wilcox

MAIN: tuple[Policy, ...] = (mmap_sem.MMAP_SEM_POLICY, wilcox.WILCOX, glisse.GLISSE, pervma.PERVMA)
ABLATED: tuple[Policy, ...] = mmap_sem.ABLATIONS + wilcox.ABLATIONS

POLICIES: dict[str, Policy] = {p.name: p for p in MAIN + ABLATED}
