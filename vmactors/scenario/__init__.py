"""Scenario files (DESIGN §6): the data model, the parser and the `exists` clause.

>>> from vmactors.scenario import parse_scenario
>>> s = parse_scenario('name = "t"\\n[[thread]]\\nops = ["r0 = load 0x10000"]\\n', "t.toml")
>>> s.threads[0].ops
(Load(reg='r0', addr=Addr(label=None, offset=65536)),)
"""

from vmactors.errors import ScenarioError
from vmactors.scenario.exists import evaluate, format_expr, parse_exists, registers_read
from vmactors.scenario.parse import load_scenario, parse_scenario

__all__ = [
    "ScenarioError",
    "evaluate",
    "format_expr",
    "load_scenario",
    "parse_exists",
    "parse_scenario",
    "registers_read",
]
