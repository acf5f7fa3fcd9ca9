"""Which events a user asked for: `--cpu`, `--actor`, `--event`, `--addr`, step bounds.

Every criterion given must hold ("and"); step bounds are inclusive; an address matches
every event whose page range `[addr, addr + pages * 4096)` holds it.
"""

from __future__ import annotations

import fnmatch
import re
import string
from collections.abc import Mapping
from typing import Any

import attrs

from vmactors.errors import UsageError
from vmactors.inspect.labels import covers
from vmactors.library import did_you_mean
from vmactors.log.schema import EVENT_NAMES


def parse_addr(text: str, option: str = "--addr") -> int:
    """A non-negative address written in decimal or 0x hex.

    >>> parse_addr("0x7efffffff008"), parse_addr("4096")
    (139637976723464, 4096)
    """
    s = text.strip().replace("_", "")
    try:
        if s[:2].lower() == "0x" and s[2:] and all(c in string.hexdigits for c in s[2:]):
            value = int(s[2:], 16)
        elif s.isascii() and s.isdigit():
            value = int(s, 10)
        else:
            raise ValueError(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not an address (decimal or 0x hex)") from None
    return value


def parse_count(text: str, option: str) -> int:
    """A non-negative decimal integer (a step or a CPU number)."""
    s = text.strip()
    if not (s.isascii() and s.isdigit()):
        raise UsageError(f"{option}: {text!r} is not a non-negative integer")
    return int(s, 10)


def check_event_glob(glob: str, option: str = "--event") -> str:
    """`glob` if it names or matches some event of the log schema, else `UsageError`
    with the closest names (a typo would otherwise match nothing, silently)."""
    if any(fnmatch.fnmatchcase(name, glob) for name in EVENT_NAMES):
        return glob
    if any(c in glob for c in "*?["):
        raise UsageError(f"{option}: {glob!r} matches no event name (docs/log-schema.md lists them)")
    raise UsageError(f"{option}: unknown event {glob!r}{did_you_mean(glob, EVENT_NAMES)} "
                     f"(docs/log-schema.md lists them)")


@attrs.frozen
class EventFilter:
    """The conjunction of the criteria given; `None` means "any"."""

    cpu: int | None = None
    actor: str | None = None
    event: str | None = None
    addr: int | None = None
    from_step: int | None = None
    to_step: int | None = None
    _event_re: re.Pattern[str] | None = attrs.field(init=False, default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.from_step is not None and self.to_step is not None and self.from_step > self.to_step:
            raise UsageError(f"--from-step {self.from_step} is after --to-step {self.to_step}")
        if self.event is not None:
            # fnmatchcase: the same answer on every platform (event names are lower case).
            object.__setattr__(self, "_event_re", re.compile(fnmatch.translate(self.event)))

    @property
    def is_empty(self) -> bool:
        """True when no criterion was given (every event matches)."""
        return all(
            v is None for v in (self.cpu, self.actor, self.event, self.addr, self.from_step, self.to_step)
        )

    def in_steps(self, step: int) -> bool:
        return (self.from_step is None or step >= self.from_step) and (
            self.to_step is None or step <= self.to_step
        )

    def matches(self, ev: Mapping[str, Any]) -> bool:
        """Whether one event passes every criterion given."""
        if self.from_step is not None or self.to_step is not None:
            step = ev.get("step")
            if not isinstance(step, int) or not self.in_steps(step):
                return False
        if self.actor is not None and ev.get("actor") != self.actor:
            return False
        if self.cpu is not None:
            cpu = ev.get("cpu")
            if not isinstance(cpu, int) or isinstance(cpu, bool) or cpu != self.cpu:
                return False
        if self._event_re is not None:
            name = ev.get("event")
            if not isinstance(name, str) or self._event_re.match(name) is None:
                return False
        if self.addr is not None and not covers(ev, self.addr):
            return False
        return True

    def without_steps(self) -> EventFilter:
        """The same criteria with no step bounds."""
        return attrs.evolve(self, from_step=None, to_step=None)
