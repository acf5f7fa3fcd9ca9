"""`vmactors inspect`: read a run's JSON Lines log and show part of it.

The views, each usable on its own from Python:

- `open_log(path)` streams a log as `Record`s (line number, exact bytes, event dict);
- `EventFilter` selects events (`--cpu`, `--actor`, `--event`, `--addr`, step bounds);
- `page_history` tells one virtual page's story (`--history`);
- `build_timeline` / `render_timeline` draw one column per actor (`--timeline`);
- `collect_sequence` gathers messages and violations, drawn by `render_mermaid`,
  `render_html` (`--diagram mermaid|html`); `build_race_chart` / `render_race_chart`
  draw the kernel-style race chart (`--diagram ascii`);
- `register(subparsers)` adds the sub-command to the CLI; `run(args)` runs it.
"""

from vmactors.inspect.command import register, run
from vmactors.inspect.diagram import Message, Note, Sequence, collect_sequence, render_mermaid
from vmactors.inspect.filters import EventFilter, parse_addr
from vmactors.inspect.history import Translations, page_history
from vmactors.inspect.htmlpage import render_html
from vmactors.inspect.racechart import build_race_chart, render_race_chart
from vmactors.inspect.reader import LogReader, Record, open_log
from vmactors.inspect.timeline import build_timeline, render_timeline

__all__ = [
    "EventFilter",
    "LogReader",
    "Message",
    "Note",
    "Record",
    "Sequence",
    "Translations",
    "build_race_chart",
    "build_timeline",
    "collect_sequence",
    "open_log",
    "page_history",
    "parse_addr",
    "register",
    "render_html",
    "render_mermaid",
    "render_race_chart",
    "render_timeline",
    "run",
]
