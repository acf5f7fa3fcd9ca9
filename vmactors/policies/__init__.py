"""Policies: each locking design in its own module, as a protocol table the CPU actor
dispatches on, its own records and its knobs (`vmactors.actors.policy.Policy`).

`POLICY_NAMES` is the full list (main policies first, then ablations) that scenario
`[expect]` tables may name.

>>> get_policy("mmap_sem").name
'mmap_sem'
"""

from __future__ import annotations

from ..actors.policy import Policy
from ..errors import UsageError
from .registry import ABLATED, MAIN, OTHER, POLICIES

MAIN_POLICIES: tuple[str, ...] = tuple(p.name for p in MAIN)
#: Other kernels to compare with (`mmap_sem-4.19`).
OTHER_POLICIES: tuple[str, ...] = tuple(p.name for p in OTHER)
ABLATIONS: tuple[str, ...] = tuple(p.name for p in ABLATED)
POLICY_NAMES: tuple[str, ...] = MAIN_POLICIES + OTHER_POLICIES + ABLATIONS


def get_policy(name: str | Policy) -> Policy:
    """The policy called `name` (a main policy or an ablation)."""
    if isinstance(name, Policy):
        return name
    try:
        return POLICIES[name]
    except KeyError:
        raise UsageError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}") from None


__all__ = ["MAIN_POLICIES", "OTHER_POLICIES", "ABLATIONS", "POLICY_NAMES", "POLICIES", "Policy", "get_policy"]
