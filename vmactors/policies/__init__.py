"""Policies: each locking design in its own module; actors consult the policy object.

The registry is filled in by the policy modules; `POLICY_NAMES` is the full list
(main policies first, then ablations) that scenario `[expect]` tables may name.
"""

from __future__ import annotations

MAIN_POLICIES: tuple[str, ...] = ("mmap_sem", "wilcox", "glisse", "pervma")
ABLATIONS: tuple[str, ...] = (
    "mmap_sem-free-before-flush",
    "mmap_sem-irqs-off-wait",
    "wilcox-no-zero",
    "wilcox-free-before-flush",
    "wilcox-no-grace",
    "wilcox-no-recheck",
    "wilcox-early-return",
)
POLICY_NAMES: tuple[str, ...] = MAIN_POLICIES + ABLATIONS


def get_policy(name: str) -> "Policy":
    """The policy object for `name` (a main policy or an ablation).

    >>> get_policy("mmap_sem").name
    'mmap_sem'
    """
    from . import registry

    try:
        return registry.POLICIES[name]()
    except KeyError:
        raise UsageError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}") from None


from ..errors import UsageError  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

if TYPE_CHECKING:
    from .base import Policy
