"""The `vmactors inspect` sub-command: argument parsing and dispatch to the views."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from typing import IO

from vmactors.errors import UsageError
from vmactors.output import silence_stdout
from vmactors.inspect.diagram import collect_sequence, render_mermaid
from vmactors.inspect.filters import EventFilter, check_event_glob, parse_addr, parse_count
from vmactors.inspect.history import page_history
from vmactors.inspect.htmlpage import render_html
from vmactors.inspect.labels import hex_addr
from vmactors.inspect.racechart import build_race_chart, render_race_chart
from vmactors.inspect.reader import Record, open_log
from vmactors.inspect.table import print_table
from vmactors.library import did_you_mean
from vmactors.inspect.timeline import stream_timeline

DESCRIPTION = """\
Read a run's JSON Lines log and show part of it: the matching lines unchanged (the
default, ready for jq), a table, one page's history, a per-actor timeline, or a message
sequence diagram. Filters combine with "and"; step bounds are inclusive; ADDR (decimal
or 0x hex) matches every event whose page range [addr, addr + pages*4096) holds it.
The log is read line by line, so filtering a huge log takes constant memory."""

EPILOG = """\
examples:
  vmactors inspect run.jsonl --event 'ipi.*'
      every IPI sent and acked, as the log's own JSON lines
  vmactors inspect run.jsonl --cpu 1 --from-step 10 --to-step 40 --table
      what CPU 1 did in steps 10..40, as a table
  vmactors inspect run.jsonl --addr 0x7efffffff000 | jq -c '[.step, .event]'
      every event about the page holding that address, through jq
  vmactors inspect run.jsonl --history 0x7efffffff000
      the page's story: tree stores, PTEs, each CPU's TLB, loads (stale ones marked)
  vmactors inspect run.jsonl --timeline --to-step 60
      one column per actor, one row per step; | blocked, !! violation
  vmactors inspect run.jsonl --diagram mermaid > run.mmd
  vmactors inspect run.jsonl --diagram html --from-step 20 > run.html
      a self-contained page with the message sequence diagram (open in a browser)
  vmactors inspect run.jsonl --diagram ascii
      the race chart of kernel commit messages, to paste into a mail to linux-mm

exit status: 0 on success; 2 on bad usage or a bad log (missing, empty, not a vmactors
log, a line that is not JSON: the message names the line)."""

DIAGRAMS = ("mermaid", "html", "ascii")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `inspect` sub-command to a CLI's sub-parsers."""
    p = subparsers.add_parser(
        "inspect",
        help="filter a run's log; table, page history, timeline, sequence diagram",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", metavar="LOG", help="a run's JSON Lines log (vmactors run --log FILE)")
    f = p.add_argument_group("filters (combined with 'and')")
    f.add_argument("--cpu", metavar="N", help="events whose cpu is N (default: any CPU)")
    f.add_argument("--actor", metavar="NAME", help="events of one actor: cpu0, tree, shootdown, rcu, mmap_sem, sim (default: any actor)")
    f.add_argument("--event", metavar="GLOB", help="event names matching a shell glob, e.g. 'ipi.*' or 'tlb.*' (default: every event)")
    f.add_argument("--addr", metavar="ADDR",
                   help="events whose page range holds ADDR: decimal, 0x hex, or a map label (`A`, `A+0x8`) "
                        "(default: any address)")
    f.add_argument("--from-step", metavar="N", help="events at step N or later (default: from the first step)")
    f.add_argument("--to-step", metavar="N", help="events at step N or earlier (default: to the last step)")
    v = p.add_argument_group("views (default: the matching lines, unchanged)")
    v.add_argument("--table", action="store_true", help="a table: step, vtime, actor, event, cpu, addr, details (default: the lines as they are)")
    v.add_argument("--history", metavar="ADDR",
                   help="the story of the virtual page holding ADDR, as for --addr (default: no history)")
    v.add_argument("--timeline", action="store_true",
                   help="one column per actor, one row per step (default: no timeline)")
    v.add_argument(
        "--diagram",
        choices=DIAGRAMS,
        help="message sequence diagram: mermaid text, a self-contained html page, or an ascii race chart "
        "(default: no diagram)",
    )
    p.set_defaults(func=run)


def build_filter(args: argparse.Namespace) -> EventFilter:
    """The filter the options ask for; `UsageError` on a bad number, address or event."""
    return EventFilter(
        cpu=None if args.cpu is None else parse_count(args.cpu, "--cpu"),
        actor=args.actor,
        event=None if args.event is None else check_event_glob(args.event),
        addr=None if args.addr is None else resolve_addr(args.addr, "--addr", args.log),
        from_step=None if args.from_step is None else parse_count(args.from_step, "--from-step"),
        to_step=None if args.to_step is None else parse_count(args.to_step, "--to-step"),
    )


_LABEL = re.compile(r"(?P<label>[A-Za-z_][A-Za-z0-9_.]*)(?:\+(?P<off>0[xX][0-9a-fA-F]+|[0-9]+))?")


def resolve_addr(text: str, option: str, log_path: str) -> int:
    """An address: a number (decimal or 0x hex), or a map label of the run, `A` or
    `A+OFFSET`, looked up in the log's set-up (the `tree.store` of each `[[map]]` at
    step 0)."""
    m = _LABEL.fullmatch(text.strip())
    if m is None or text.strip()[:2].lower() == "0x":
        return parse_addr(text, option)
    labels: dict[str, int] = {}
    with open_log(log_path) as log:
        for rec in log:
            ev = rec.event
            if ev["step"] > 0:
                break
            if ev["event"] == "tree.store" and isinstance(ev.get("vma"), str) and isinstance(ev.get("addr"), int):
                labels.setdefault(ev["vma"], ev["addr"])
    label = m.group("label")
    if label not in labels:
        known = ", ".join(sorted(labels)) or "none"
        raise UsageError(f"{option}: {text!r} is neither an address (decimal or 0x hex) nor a map label of "
                         f"this run{did_you_mean(label, sorted(labels))} (its maps: {known})")
    off = m.group("off")
    return labels[label] + (int(off, 0) if off else 0)


def describe_filter(filt: EventFilter) -> str:
    """The filter in words, for a diagram's caption ('' when there is none)."""
    parts = []
    if filt.from_step is not None or filt.to_step is not None:
        lo = "" if filt.from_step is None else filt.from_step
        hi = "" if filt.to_step is None else filt.to_step
        parts.append(f"steps {lo}..{hi}")
    if filt.cpu is not None:
        parts.append(f"cpu {filt.cpu}")
    if filt.actor is not None:
        parts.append(f"actor {filt.actor}")
    if filt.event is not None:
        parts.append(f"events {filt.event}")
    if filt.addr is not None:
        parts.append(f"addr {hex_addr(filt.addr)}")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Run `vmactors inspect`; returns the exit status (errors raise `UsageError`)."""
    filt = build_filter(args)
    views = [
        name
        for name, given in (
            ("--table", args.table),
            ("--history", args.history is not None),
            ("--timeline", args.timeline),
            ("--diagram", args.diagram is not None),
        )
        if given
    ]
    if len(views) > 1:
        raise UsageError(f"{' and '.join(views)} cannot be combined: choose one view")
    history = None if args.history is None else resolve_addr(args.history, "--history", args.log)
    out = sys.stdout
    try:
        with open_log(args.log, rewindable=args.timeline or args.diagram is not None) as log:
            if args.table:
                print_table(_until(log, filt.to_step), filt, out)
            elif history is not None:
                for line in page_history(log, history, filt):
                    out.write(line + "\n")
            elif args.timeline:
                stream_timeline(log, log.rewind(), out, filt)
            elif args.diagram == "mermaid":
                out.write(render_mermaid(collect_sequence(log, filt)))
            elif args.diagram == "html":
                out.write(render_html(collect_sequence(log, filt), describe_filter(filt)))
            elif args.diagram == "ascii":
                out.write(render_race_chart(build_race_chart(log, filt)))
            else:
                print_lines(_until(log, filt.to_step), filt, out)
        out.flush()
    except UsageError:
        out.flush()  # what was printed before a bad line goes out before the error
        raise
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as cat does.
        silence_stdout()
    return 0


def _until(records: Iterable[Record], to_step: int | None) -> Iterable[Record]:
    """Stop reading once past `to_step`: steps never go down in a log."""
    if to_step is None:
        yield from records
        return
    for rec in records:
        if rec.event["step"] > to_step:
            return
        yield rec


def print_lines(records: Iterable[Record], filt: EventFilter, out: IO[str]) -> int:
    """Write the matching lines exactly as they are in the log; returns how many.

    Lines go out as they are found, so a log cut short still shows every good line
    before the error about the bad one.
    """
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        write = buffer.write
    else:
        write = lambda raw: out.write(raw.decode("utf-8"))  # noqa: E731
    count = 0
    try:
        everything = filt.is_empty
        for rec in records:
            if everything or filt.matches(rec.event):
                raw = rec.raw
                write(raw if raw.endswith(b"\n") else raw + b"\n")
                count += 1
    finally:
        if buffer is not None:
            buffer.flush()
    return count
