"""The package type-checks cleanly under the `[tool.mypy]` settings in pyproject.toml,
and the core (actors, policies, the system, its runtimes, invariants, log, world
model) under `mypy --strict`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ["vmactors/ids.py", "vmactors/actors", "vmactors/policies", "vmactors/system", "vmactors/sim",
        "vmactors/invariants", "vmactors/log", "vmactors/mm"]


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True)


def test_mypy_clean() -> None:
    result = mypy("vmactors")
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}{result.stderr}"


def test_the_core_is_mypy_strict() -> None:
    result = mypy("--strict", *CORE)
    assert result.returncode == 0, f"mypy --strict failed:\n{result.stdout}{result.stderr}"
