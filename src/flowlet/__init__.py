"""Flowlet: HTTP endpoint flows with per-endpoint security settings."""

import sys as _sys

# Set by the start-up SIGTERM handler below. Raising SystemExit from a signal handler is not
# enough on its own: when the handler runs inside a hook whose exceptions Python only prints
# (an at-fork hook such as logging's, right after a fork; a __del__), the exit is lost and
# start-up goes on. The supervisor looks at this flag when it takes the signals over and
# stops at once (cli.py also looks after its forked check).
_sigterm_seen = False


def _exit_0(signum: int, frame: object) -> None:
    global _sigterm_seen
    _sigterm_seen = True
    raise SystemExit(0)


# `flowlet serve` must exit 0 on SIGTERM at any moment, even while Python is still importing
# the CLI: take the signal here, the first Flowlet code that runs (cli.py and then the
# supervisor install their own handlers later).
if _sys.argv[1:2] == ["serve"] and _sys.argv[0].endswith(("flowlet", "-m", "cli.py")):
    import signal as _signal

    _signal.signal(_signal.SIGTERM, _exit_0)

__version__ = "0.1.0"
__all__ = ["Reject", "__version__"]


def __getattr__(name: str) -> object:
    # `from flowlet import Reject` in a function step; imported on first use so that the
    # package itself stays cheap to import.
    if name == "Reject":
        from flowlet.flows.reject import Reject
        return Reject
    raise AttributeError(f"module 'flowlet' has no attribute {name!r}")
