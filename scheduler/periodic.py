"""A background thread that runs one action every period, or at once when woken, until stopped.

Used by the inventory refresh, deployment healing (woken by crisis declaration
changes), the crisis registry's tick, the security feed's ledger follower and
the endpoint refresher of ``corridor up``: each keeps its own start/stop and
what happens around them; this holds the thread, the wait and the rule that a
failed run is logged and the next period tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    """Run ``action`` every ``period_s`` seconds in a daemon thread named ``name``.

    :meth:`wake` runs it at once; wakes arriving while it runs fold into one more
    run, so a burst of wakes costs at most two runs.
    """

    def __init__(self, action: Callable[[], object], period_s: float, name: str,
                 logger: logging.Logger, failure: str) -> None:
        self.action, self.period_s, self.name = action, period_s, name
        self.logger, self.failure = logger, failure
        self.runs = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread unless it runs already."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run the action now (in the thread), not at the end of the period."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread, waiting for a run in progress."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.period_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                self.action()
            except Exception:  # noqa: BLE001 - keep going; the next period may succeed
                self.logger.exception(self.failure)
            self.runs += 1
