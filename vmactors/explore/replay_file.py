"""Replay files (DESIGN §3): JSON with `format`, `scenario` (relative to the replay
file's folder, or absolute), `scenario_sha256`, `policy` and `choices`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from ..errors import UsageError

REPLAY_FORMAT = 1


def write_replay(path: Path, scenario_path: str, sha256: str, policy: str, choices: tuple[int, ...],
                 **extra: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        rel = os.path.relpath(Path(scenario_path).resolve(), path.parent.resolve())
    except ValueError:  # another drive
        rel = str(Path(scenario_path).resolve())
    doc = {"format": REPLAY_FORMAT, "scenario": rel, "scenario_sha256": sha256, "policy": policy,
           "choices": list(choices), **extra}
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def read_replay(path: str) -> dict[str, Any]:
    """The replay document, with `scenario` made a usable path and `sha_ok` telling
    whether the scenario file is unchanged."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such replay file") from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a replay file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != REPLAY_FORMAT:
        raise UsageError(f"{path}: not a vmactors replay file (format {REPLAY_FORMAT} expected)")
    for key, kind in (("scenario", str), ("scenario_sha256", str), ("policy", str), ("choices", list)):
        if not isinstance(doc.get(key), kind):
            raise UsageError(f"{path}: replay file lacks a valid {key!r}")
    if not all(isinstance(c, int) and c >= 0 for c in doc["choices"]):
        raise UsageError(f"{path}: 'choices' must be non-negative integers")
    scen = Path(doc["scenario"])
    if not scen.is_absolute():
        scen = Path(path).parent / scen
    doc["scenario"] = str(scen)
    try:
        doc["sha_ok"] = hashlib.sha256(scen.read_bytes()).hexdigest() == doc["scenario_sha256"]
    except OSError:
        raise UsageError(f"{path}: its scenario {scen} cannot be read") from None
    return doc
