"""Name -> policy, for every policy and ablation, in the order `vmactors policies` lists them."""

from __future__ import annotations

from ..actors.policy import Policy
from . import glisse, mmap_sem, pervma, wilcox

#: The designs of the debate, and what Linux shipped.
MAIN: tuple[Policy, ...] = (mmap_sem.MMAP_SEM_POLICY, wilcox.WILCOX, glisse.GLISSE, pervma.PERVMA)
#: Other kernels, to compare with (Linux before munmap's downgrade).
OTHER: tuple[Policy, ...] = (mmap_sem.MMAP_SEM_419,)
#: Each main policy with one safeguard removed.
ABLATED: tuple[Policy, ...] = mmap_sem.ABLATIONS + wilcox.ABLATIONS + pervma.ABLATIONS

POLICIES: dict[str, Policy] = {p.name: p for p in MAIN + OTHER + ABLATED}
