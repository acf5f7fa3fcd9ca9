"""A policy's protocol tables, printed from the same rows the CPU dispatches on:
`vmactors policies --protocols` (text) and docs/policies/*.md (`--markdown`)."""

from __future__ import annotations

from ..actors.phases import EXIT, Phase, ProtocolTable
from ..actors.policy import Policy


def _names(items: object) -> str:
    return ", ".join(str(x) for x in items)  # type: ignore[attr-defined]


def _next(ph: Phase) -> str:
    return ", ".join("(exit)" if n == EXIT else n for n in ph.next)


def _sends(ph: Phase) -> str:
    return ", ".join(m.KIND for m in ph.sends)


def _touches(ph: Phase) -> str:
    parts = []
    if ph.reads:
        parts.append("reads " + ", ".join(a.label for a in ph.reads))
    if ph.writes:
        parts.append("writes " + ", ".join(a.label for a in ph.writes))
    return "; ".join(parts)


def kernel_notes(policy: Policy, markdown: bool = False) -> list[str]:
    """Which kernel the design follows, and where the model differs from it."""
    if not policy.kernel:
        return []
    if markdown:
        lines = ["", f"**Kernel.** {policy.kernel}"]
        if policy.differences:
            lines += ["", "**Where the model differs.**", ""] + [f"- {d}" for d in policy.differences]
        return lines
    lines = [f"  kernel: {policy.kernel}"]
    if policy.differences:
        lines.append("  where the model differs:")
        lines += [f"    - {d}" for d in policy.differences]
    return lines


def protocol_tables(name: str, table: ProtocolTable, markdown: bool = False, kernel: Policy | None = None) -> str:
    """Every path of `table`: each phase, what it does, the phases it hands over to,
    the messages it sends and the shared objects it touches (after the kernel the
    design follows, if `kernel` gives the policy)."""
    lines = [f"### {name}" if markdown else name]
    if kernel is not None:
        lines += kernel_notes(kernel, markdown)
    for path in table.paths:
        if markdown:
            lines += ["", f"**{path.name.replace('_', ' ')}**", "",
                      "| step | what it does | next | sends | footprint |", "|---|---|---|---|---|"]
            lines += [f"| `{ph.name}` | {ph.doc} | {_next(ph)} | {_sends(ph)} | {_touches(ph)} |"
                      for ph in path.phases]
        else:
            lines.append(f"  {path.name}:")
            for ph in path.phases:
                lines.append(f"    {ph.name:<12} {ph.doc}")
                extra = [f"next: {_next(ph)}"]
                if ph.sends:
                    extra.append(f"sends: {_sends(ph)}")
                if ph.reads or ph.writes:
                    extra.append(_touches(ph))
                lines.append(f"    {'':<12}   [{'; '.join(extra)}]")
    return "\n".join(lines)


__all__ = ["protocol_tables", "kernel_notes"]
