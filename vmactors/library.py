"""The scenario library: the litmus tests every claim of the 2019 thread gets, loadable
by name (`vmactors explore mapfixed-two-readers`, `vm.load("mapfixed-two-readers")`).

One copy of each file exists: `scenarios/*.toml` in the repository. The wheel ships
that folder as the package data of `vmactors.scenario_library` (setup.py maps the
package to the folder), so an installed vmactors finds it beside this module as
`vmactors/scenario_library/`; a source checkout or an editable install finds the
repository's `scenarios/` beside the package.

A scenario argument is a path when such a file exists, else a library name (with or
without `.toml`); anything else is bad input that names the closest library scenarios.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from .errors import UsageError

_HERE = Path(__file__).resolve().parent
#: Where to look, in order: the installed package data, then a checkout's folder.
_CANDIDATES = (_HERE / "scenario_library", _HERE.parent / "scenarios")


def library_dir() -> Path | None:
    """The folder holding the library's `*.toml` files (None if vmactors was installed
    without it)."""
    for folder in _CANDIDATES:
        if folder.is_dir() and any(folder.glob("*.toml")):
            return folder
    return None


def names() -> list[str]:
    """The library's scenario names (file names without `.toml`), sorted."""
    folder = library_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder is not None else []


def find(name: str) -> Path:
    """The library file of scenario `name` (`mapfixed-two-readers` or
    `mapfixed-two-readers.toml`); `UsageError` with the closest names if none."""
    stem = name[:-5] if name.endswith(".toml") else name
    folder = library_dir()
    if folder is not None and "/" not in stem and "\\" not in stem and (folder / f"{stem}.toml").is_file():
        return folder / f"{stem}.toml"
    raise UsageError(f"{name}: no such file, and no library scenario of that name{did_you_mean(stem, names())}")


def resolve(arg: str | Path) -> Path:
    """A scenario argument as a file: the path itself if it exists, else the library
    scenario it names."""
    path = Path(arg)
    if path.exists() or path.is_absolute():
        return path
    return find(str(arg))


def did_you_mean(word: str, choices: list[str] | tuple[str, ...], n: int = 3) -> str:
    """`; did you mean 'x' or 'y'?` (empty when nothing is close)."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


__all__ = ["did_you_mean", "find", "library_dir", "names", "resolve"]
