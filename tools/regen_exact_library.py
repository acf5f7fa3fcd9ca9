"""Record the unreduced (exact) exploration of every library scenario under every
policy: final states, `exists` verdict, violated invariants, distinct states.
tests/explore/test_reduction_sound.py compares the default, reduced search against it.

    .venv/bin/python tools/regen_exact_library.py        # rewrites tests/explore/exact_library.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vmactors.explore.exhaustive import explore_exhaustive  # noqa: E402
from vmactors.explore.space import EXACT  # noqa: E402
from vmactors.policies import POLICY_NAMES  # noqa: E402
from vmactors.scenario import load_scenario  # noqa: E402

OUT = ROOT / "tests" / "explore" / "exact_library.json"


def main() -> int:
    record: dict[str, dict[str, object]] = {}
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        s = load_scenario(str(path))
        for policy in POLICY_NAMES:
            e, _ = explore_exhaustive(s, policy, options=EXACT)
            if not e.complete:
                print(f"{s.name} {policy}: incomplete ({e.cut}); not recorded", file=sys.stderr)
                continue
            finals = sorted(([dict(st.regs), st.end] for st in e.states), key=lambda x: json.dumps(x, sort_keys=True))
            record[f"{s.name} {policy}"] = {
                "finals": json.loads(json.dumps(finals, sort_keys=True)), "exists": e.exists,
                "violations": sorted(f.invariant for f in e.findings), "states": e.distinct_states,
            }
        print(s.name, file=sys.stderr)
    OUT.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"{len(record)} explorations written to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
