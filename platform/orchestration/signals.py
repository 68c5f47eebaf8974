"""Stop a sweep cleanly on SIGTERM, SIGINT or SIGHUP, whatever it is doing.

Schedulers stop jobs with SIGTERM (SLURM, Kubernetes, systemd), a closed terminal sends
SIGHUP, Ctrl-C sends SIGINT. Each becomes a ``KeyboardInterrupt`` in the main thread, so
one ``except KeyboardInterrupt`` path marks the runs and exits. ``ray.init()`` installs
its own SIGTERM handler, so these must be installed after it. A second signal while the
sweep is cleaning up is reported and ignored (cleanup is short and bounded); a third
exits at once. A signal the sweep was started with ignored stays ignored: ``nohup``
ignores SIGHUP so the sweep outlives its terminal, and a shell script's ``cmd &`` ignores
SIGINT so Ctrl-C in the script's terminal does not reach it (Python keeps an ignored
SIGINT the same way).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
EXIT_INTERRUPTED = 130


class StopHandler:
    """Counts stop signals; ``received`` names the first (Ray may re-raise the interrupt
    from inside ``ray.wait`` without its message)."""

    def __init__(self) -> None:
        self.count = 0
        self.received = "SIGINT"

    def __call__(self, signum: int, frame: Any) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.count == 1:
            self.received = name
            raise KeyboardInterrupt(name)
        if self.count == 2:
            print(f"\n{name}: still marking runs as stopped; send it again to exit at once", file=sys.stderr)
            return
        os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopHandler]:
    """Within the block, the stop signals raise ``KeyboardInterrupt`` (once); restored after.

    Signals ignored on entry (``signal.SIG_IGN``) are left ignored.
    """
    handler = StopHandler()
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield handler
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
