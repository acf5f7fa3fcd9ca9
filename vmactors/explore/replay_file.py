"""Replay files (docs/design.md#reproducible-runs): JSON with `format`,
`scenario` (relative to the replay file's folder, or absolute), `scenario_sha256`,
`policy` and `choices`, then what the run showed and the scenario itself:

    {"format": 1, "scenario": "../scenarios/x.toml", "scenario_sha256": "…",
     "policy": "wilcox", "choices": [0, 2, 1],
     "invariant": "coherence", "violated_at_step": 9, "detail": "…",
     "strategy": "exhaustive", "scenario_text": "name = …"}

The embedded `scenario_text` (whose sha256 is `scenario_sha256`) makes the file
self-contained: copied anywhere, it replays without the scenario file. Files written
before the text was embedded name only the path; they still replay while that file
is there.

One file per (scenario, policy, invariant), `SCENARIO.POLICY.INVARIANT.json`, holds
the shortest counterexample known: the run in which the invariant is violated at the
earliest step. `save_counterexample` replaces a file only with a shorter run (or when
the scenario changed since it was written), so a sampled run never overwrites a
shorter or exhaustive one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import attrs
import orjson

from ..errors import UsageError
from ..output import OutputError, reason, write_output
from ..scenario.model import Scenario
from ..scenario.parse import load_scenario, parse_scenario

REPLAY_FORMAT = 1
#: The largest replay file read: a scenario and a choice list of every step allowed.
MAX_REPLAY_BYTES = 64 << 20
#: What a replay file may say it shows besides an invariant: the end state of a
#: `check` whose `exists` verdict was not the one expected.
EXISTS_CLAIMS = {"exists": True, "not-exists": False}


def replay_path(folder: Path, scenario: str, policy: str, invariant: str) -> Path:
    """The file of the shortest counterexample of (scenario, policy, invariant)."""
    return folder / f"{scenario}.{policy}.{invariant}.json"


def scenario_text(scenario: Scenario) -> str | None:
    """The scenario's source text, if it can be had with the digest it was parsed with."""
    try:
        data = Path(scenario.path).read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != scenario.sha256:
        return None  # changed on disk since it was parsed
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def write_replay(path: Path, scenario_path: str, sha256: str, policy: str, choices: tuple[int, ...],
                 *, text: str | None = None, **extra: Any) -> Path:
    """Write a replay file (atomically: `vmactors.output`); `text`, the scenario's
    source, makes it self-contained. A folder that cannot be made or written is an
    `OutputError` naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError("replay file", str(path), f"cannot make its folder {path.parent}: {reason(e)}") from None
    try:
        rel = os.path.relpath(Path(scenario_path).resolve(), path.parent.resolve())
    except ValueError:  # another drive
        rel = str(Path(scenario_path).resolve())
    doc = {"format": REPLAY_FORMAT, "scenario": rel, "scenario_sha256": sha256, "policy": policy,
           "choices": list(choices), **extra}
    if text is not None:
        doc["scenario_text"] = text
    write_output(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n", "replay file")
    return path


@attrs.frozen
class Saved:
    """Where a counterexample is kept, and the run that file holds (which may be an
    earlier, shorter one than the run just offered)."""

    path: Path
    choices: tuple[int, ...]
    violated_at_step: int
    detail: str
    strategy: str | None
    replaced: bool  # False: a shorter (or equally short) run was already saved


def save_counterexample(folder: Path, scenario: Scenario, policy: str, invariant: str, choices: tuple[int, ...],
                        violated_at_step: int, detail: str, strategy: str) -> Saved:
    """Save a counterexample unless the file already holds one of the same scenario
    that is violated at the same or an earlier step."""
    path = replay_path(folder, scenario.name, policy, invariant)
    old = _existing(path)
    if (old is not None and old.get("scenario_sha256") == scenario.sha256 and old.get("policy") == policy
            and isinstance(old.get("violated_at_step"), int) and old["violated_at_step"] <= violated_at_step):
        return Saved(path, tuple(old["choices"]), old["violated_at_step"], str(old.get("detail", "")),
                     old.get("strategy"), replaced=False)
    write_replay(path, scenario.path, scenario.sha256, policy, choices, text=scenario_text(scenario),
                 invariant=invariant, violated_at_step=violated_at_step, detail=detail, strategy=strategy)
    return Saved(path, choices, violated_at_step, detail, strategy, replaced=True)


def _existing(path: Path) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        return None
    if not isinstance(doc.get("violated_at_step"), int):
        return None  # an older file, from before lengths were kept: replace it
    return doc


@attrs.frozen
class Replay:
    """A replay file, read and checked."""

    path: str
    policy: str
    choices: tuple[int, ...]
    #: The scenario as it will be replayed (the embedded text, or the file).
    scenario: Scenario
    #: Where the scenario file is (resolved against the replay's folder), if named.
    scenario_path: str
    #: Why the run may differ from the one saved, if it may ('' when it replays exactly).
    changed: str
    doc: dict[str, Any]


def read_replay(path: str, *, force: bool = False) -> Replay:
    """Read a replay file. The scenario replayed is the embedded text (an old file
    without it: the file its path names). A scenario whose sha256 differs from the one
    saved is refused (`UsageError`) unless `force`: then the file on disk is replayed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_REPLAY_BYTES + 1)  # bounded: `vmactors replay /dev/zero`
        if len(data) > MAX_REPLAY_BYTES:
            raise UsageError(f"{path}: larger than {MAX_REPLAY_BYTES >> 20} MiB: not a replay file")
        doc = orjson.loads(data)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such replay file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a replay file") from None
    except (OSError, orjson.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a replay file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != REPLAY_FORMAT:
        raise UsageError(f"{path}: not a vmactors replay file (format {REPLAY_FORMAT} expected)")
    for key, kind in (("scenario", str), ("scenario_sha256", str), ("policy", str), ("choices", list)):
        if not isinstance(doc.get(key), kind):
            raise UsageError(f"{path}: replay file lacks a valid {key!r}")
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in doc["choices"]):
        raise UsageError(f"{path}: 'choices' must be non-negative integers")
    text = doc.get("scenario_text")
    if text is not None and not isinstance(text, str):
        raise UsageError(f"{path}: 'scenario_text' must be a string")
    at = doc.get("violated_at_step")
    if at is not None and (not isinstance(at, int) or isinstance(at, bool) or at < 0):
        raise UsageError(f"{path}: 'violated_at_step' must be a non-negative integer")
    if doc.get("invariant") is not None and not isinstance(doc["invariant"], str):
        raise UsageError(f"{path}: 'invariant' must be a string")
    scen = Path(doc["scenario"])
    if not scen.is_absolute():
        scen = Path(path).parent / scen
    on_disk: bytes | None
    try:
        on_disk = scen.read_bytes()
    except OSError:
        on_disk = None
    want = doc["scenario_sha256"]
    disk_sha = hashlib.sha256(on_disk).hexdigest() if on_disk is not None else None
    changed = ""
    if text is not None and hashlib.sha256(text.encode("utf-8")).hexdigest() != want:
        # The embedded text was edited: it is not the scenario this run was made with.
        if not force:
            raise UsageError(f"{path}: the scenario saved in it does not match its scenario_sha256 (edited?); "
                             f"use --force to replay it anyway")
        changed = "the saved scenario text was edited"
    if disk_sha is not None and disk_sha != want:
        if not force:
            raise UsageError(f"{path}: scenario {scen} changed since this run was saved (sha256 differs); "
                             f"use --force to replay it anyway")
        # --force: what the user edited is what they want to see under these choices.
        return Replay(path, doc["policy"], tuple(doc["choices"]), load_scenario(scen), str(scen),
                      f"scenario {scen} changed since this run was saved", doc)
    if text is not None:
        display = str(scen) if on_disk is not None else f"{scen} (saved in {path})"
        scenario = parse_scenario(text, display, hashlib.sha256(text.encode("utf-8")).hexdigest())
    elif on_disk is not None:
        scenario = load_scenario(scen)
    else:
        raise UsageError(f"{path}: its scenario {scen} cannot be read (this replay file is from before "
                         f"scenarios were saved in replay files: copy the scenario beside it)")
    return Replay(path, doc["policy"], tuple(doc["choices"]), scenario, str(scen), changed, doc)


def replay_problem(replay: Replay, decisions: int, violations: tuple[str, ...], exists: bool | None) -> str:
    """Why a replay did not show what its file says ('' when it did): `decisions` is
    how many scheduler decisions the run made, `violations` the invariants it broke,
    `exists` its verdict.

    The choices must reach the end of the run, or, in a file that names the
    invariant it shows, the step at which it is violated (`violated_at_step`: a
    counterexample is saved cut there; the run goes on with choice 0, docs/design.md
    #reproducible-runs). And the run must show what the file names: that invariant
    violated, or the `exists` verdict (`exists`, `not-exists`) of a `check`. Anything
    else is a file cut short, edited, or made by another version of the model.
    """
    doc, n = replay.doc, len(replay.choices)
    claim = doc.get("invariant")
    at = doc.get("violated_at_step", doc.get("steps"))  # `steps`: files written before 0.1's rename
    if isinstance(at, bool):
        at = None
    if n > decisions:
        return (f"its {n} choices go past the end of the run, which ends after {decisions} "
                f"(a file cut from another run, or from another version of the scenario or of vmactors)")
    needed = at if isinstance(at, int) and isinstance(claim, str) else decisions
    if n < needed:
        where = f"step {at}, where {claim} is violated" if needed == at else f"the end of the run ({decisions} steps)"
        lacks = [k for k, v in (("invariant", claim), ("violated_at_step", at)) if v is None]
        why = (f" (a counterexample may stop at its violation only if the file names both 'invariant' and "
               f"'violated_at_step'; this one lacks {lacks[0]!r})" if len(lacks) == 1 else "")
        return (f"its choice list is cut short: {n} choices do not reach {where}; "
                f"the rest would be guessed (choice 0), so the run would not be the one saved{why}")
    if claim in EXISTS_CLAIMS:
        if exists is not EXISTS_CLAIMS[claim]:
            return f"the run does not end where `exists` is {'true' if EXISTS_CLAIMS[claim] else 'false'}, as saved"
    elif isinstance(claim, str) and claim not in violations:
        shown = ", ".join(violations) or "none"
        return f"the run does not violate {claim}, as saved (it violates: {shown})"
    return ""


__all__ = ["REPLAY_FORMAT", "replay_problem", "Replay", "Saved", "read_replay", "replay_path", "save_counterexample",
           "scenario_text", "write_replay"]
