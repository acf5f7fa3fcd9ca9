"""vmactors: an executable model of the Linux "splitting the mmap_sem" debate.

Write a scenario (threads on CPUs doing loads, stores, mmap, munmap, MAP_FIXED), run it
under each locking design, explore the interleavings, and see which outcomes each
design allows and which invariants it breaks.

>>> from vmactors import load_scenario, run_scenario   # doctest: +SKIP
>>> run_scenario(load_scenario("scenarios/mapfixed-two-readers.toml"), "wilcox", seed=3)  # doctest: +SKIP
"""

from __future__ import annotations

from .version import __version__

__all__ = ["__version__", "load_scenario", "run_scenario", "get_policy", "POLICY_NAMES"]


def __getattr__(name: str) -> object:
    # Lazy, so `import vmactors` stays cheap and free of import cycles.
    if name == "load_scenario":
        from .scenario.parse import load_scenario
        return load_scenario
    if name == "run_scenario":
        from .sim.run import run_scenario
        return run_scenario
    if name in ("get_policy", "POLICY_NAMES"):
        from . import policies
        return getattr(policies, name)
    raise AttributeError(name)
