"""`python -m vmactors` and the `vmactors` command (`entry`).

The signal handlers go in before the command's modules are imported (a quarter of a
second), so that a Ctrl-C even then ends in one line and exit 130, not a traceback.
"""

import sys

from .signals import find_interrupt, handle_signals


def entry() -> int:
    """The `vmactors` command: `vmactors.cli.main` under the signal handlers."""
    with handle_signals():
        try:
            from .cli import main
        except KeyboardInterrupt as e:
            interrupt = find_interrupt(e)
            assert interrupt is not None
            print(f"vmactors: {interrupt}", file=sys.stderr)
            return interrupt.status
        return main()


if __name__ == "__main__":
    sys.exit(entry())
