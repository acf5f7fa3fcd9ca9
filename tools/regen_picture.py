"""Regenerate the README's picture, docs/img/mapfixed-two-readers-wilcox.png: the HTML
sequence diagram of the shortest `wilcox` counterexample of mapfixed-two-readers, as
headless Chromium draws it.

    .venv/bin/python tools/regen_picture.py            # rewrite the picture
    .venv/bin/python tools/regen_picture.py --to-step 18 --out /tmp/x.png

It runs what a user would: `vmactors explore` (saving the replay file in a scratch
folder), `vmactors replay --log`, `vmactors inspect --diagram html`, then Chromium's
`--screenshot` at the size of the page's SVG.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PICTURE = ROOT / "docs" / "img" / "mapfixed-two-readers-wilcox.png"
REPLAY = "vmactors-runs/mapfixed-two-readers.wilcox.coherence.json"


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_argv(binary: str, profile: Path) -> list[str]:
    """Headless Chromium that reaches for nothing on the network."""
    return [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
    ]


def vmactors(*argv: str, cwd: Path) -> str:
    """`vmactors ARGV` in this process, from `cwd`; its standard output."""
    import os

    from vmactors.cli import main

    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out):
            main(list(argv))
    finally:
        os.chdir(old)
    return out.getvalue()


def diagram_html(work: Path, to_step: int | None) -> str:
    """The page `vmactors inspect --diagram html` makes of the counterexample, up to
    `to_step` (None: up to the last TLB flush on an IPI, where the race is over)."""
    import json

    vmactors("explore", "mapfixed-two-readers", "--policy", "wilcox", "--no-trace", cwd=work)
    vmactors("replay", REPLAY, "--log", "cx.jsonl", cwd=work)
    if to_step is None:
        events = [json.loads(line) for line in (work / "cx.jsonl").read_text().splitlines()]
        to_step = max(e["step"] for e in events if e["event"] == "tlb.flush" and e.get("reason") == "ipi")
    return vmactors("inspect", "cx.jsonl", "--diagram", "html", "--to-step", str(to_step), cwd=work)


def screenshot(html: str, out: Path, work: Path) -> None:
    binary = chromium()
    if binary is None:
        raise SystemExit("no Chromium (apt-get install chromium)")
    page = work / "diagram.html"
    page.write_text(html)
    m = re.search(r'<svg width="(\d+)" height="(\d+)"', html)
    assert m is not None
    width, height = int(m.group(1)) + 40, int(m.group(2)) + 90  # body margin, title, caption
    subprocess.run([*chromium_argv(binary, work / "profile"), f"--screenshot={out}",
                    f"--window-size={width},{height}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--to-step", type=int, help="the last step drawn (default: the last TLB flush on an IPI)")
    ap.add_argument("--out", type=Path, default=PICTURE, help=f"the PNG to write (default: {PICTURE})")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        screenshot(diagram_html(work, args.to_step), args.out, work)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
