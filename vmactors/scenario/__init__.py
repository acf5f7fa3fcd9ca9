"""Scenario files (docs/scenario-format.md): the data model, the parser and the `exists` clause.

>>> from vmactors.scenario import parse_scenario
>>> s = parse_scenario('name = "t"\\n[[thread]]\\nops = ["r0 = load 0x10000"]\\n', "t.toml")
>>> s.threads[0].ops
(Load(reg='r0', addr=Addr(label=None, offset=65536)),)
"""

from __future__ import annotations

from typing import Any

from vmactors.errors import ScenarioError

__all__ = [
    "ScenarioError",
    "evaluate",
    "format_expr",
    "load_scenario",
    "parse_exists",
    "parse_scenario",
    "registers_read",
]


def __getattr__(name: str) -> Any:
    # Lazy: the data model (`vmactors.scenario.model`) is imported by the actors, and
    # the parser imports the policies (to check `[expect]`), which import the actors.
    if name in ("evaluate", "format_expr", "parse_exists", "registers_read"):
        from vmactors.scenario import exists

        return getattr(exists, name)
    if name in ("load_scenario", "parse_scenario"):
        from vmactors.scenario import parse

        return getattr(parse, name)
    raise AttributeError(name)
