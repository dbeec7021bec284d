"""Following the ledger: every ``security``, ``violation`` and ``crisis`` entry becomes a
security record, whoever wrote it (scheduler, gateway, crisis registry), from a cursor
kept beside the feed file (``security-events.cursor``)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from scheduler.periodic import Periodic
from serving.feed.ocsf import record_for_entry, tamper_record
from serving.feed.sinks import SecurityFeed

log = logging.getLogger(__name__)


class LedgerPages(Protocol):
    """What the follower reads of a ledger (a :class:`scheduler.ledger.Ledger` or its reader)."""

    @property
    def size(self) -> int: ...

    def entries(self, *, kind: str | None = None, after: int | None = None,
                limit: int = 100) -> dict[str, Any]: ...

class LedgerFollower:
    """Emits the record of every new ``security``, ``violation`` and ``crisis`` ledger entry.

    ``cursor_path`` keeps the next index to read, so a restart neither repeats
    nor skips entries; without one it starts at ``start_at`` (default: the
    ledger's current size, i.e. only new entries).
    """

    KINDS = ("security", "violation", "crisis")

    def __init__(self, ledger: LedgerPages, feed: SecurityFeed, *, cursor_path: Path | None = None,
                 start_at: int | None = None, period_s: float = 0.5) -> None:
        self.ledger = ledger
        self.feed = feed
        self.cursor_path = cursor_path
        self.period_s = period_s
        saved = None
        if cursor_path is not None and cursor_path.exists():
            try:
                saved = int(cursor_path.read_text("utf-8").strip())
            except ValueError:
                saved = None
        self.cursor = saved if saved is not None else (ledger.size if start_at is None else start_at)
        self._lock = threading.Lock()
        self._follower = Periodic(self.poll, period_s, "corridor-events", log,
                                  "security feed: following the ledger failed")

    def poll(self) -> int:
        """Emit records for entries committed since the last poll; return how many."""
        with self._lock:
            size = self.ledger.size
            if size <= self.cursor:
                return 0
            items: list[Mapping[str, Any]] = []
            for kind in self.KINDS:
                after = self.cursor - 1
                while True:
                    page = self.ledger.entries(kind=kind, after=after, limit=500)
                    batch = [i for i in page["data"] if i["index"] < size]
                    items.extend(batch)
                    if not page["has_more"] or len(batch) < len(page["data"]):
                        break
                    after = page["data"][-1]["index"]
            for item in sorted(items, key=lambda i: i["index"]):
                record = record_for_entry(item)
                if record is not None:
                    self.feed.emit(record)
            self.cursor = size
            self._save()
            return len(items)

    def start(self) -> LedgerFollower:
        self._follower.start()
        return self

    def stop(self) -> None:
        self._follower.stop()
        try:
            self.poll()
        except Exception:  # noqa: BLE001 - the ledger may be closed already
            pass

    def _save(self) -> None:
        if self.cursor_path is None:
            return
        temporary = self.cursor_path.with_suffix(".tmp")
        temporary.write_text(str(self.cursor), "utf-8")
        os.replace(temporary, self.cursor_path)


def open_feed(path: Path, *, syslog: str | None = None, ledger: LedgerPages | None = None,
              start: bool = True) -> tuple[SecurityFeed, LedgerFollower | None]:
    """The feed writing to ``path`` (see :meth:`serving.config.RunConfig.events_path`), and
    (with a ledger) its follower, started, with its cursor beside the feed file."""
    feed = SecurityFeed(path, syslog=syslog)
    follower = None
    if ledger is not None:
        follower = LedgerFollower(ledger, feed, cursor_path=path.with_name(path.stem + ".cursor"))
        if start:
            follower.start()
    return feed, follower


def report_tamper(home: Path, *, check: str, message: str, index: int | None,
                  tree_size: int | None) -> Path | None:
    """Append a ``ledger_tamper`` record to ``home``'s feed (and its syslog, if configured).

    Called by ``corridor audit verify`` in its own process; returns the feed's
    path, or None when it could not be written (verification still fails).
    """
    from serving.config import ConfigError, load_run_config

    try:
        config = load_run_config(None, home)
        feed = SecurityFeed(config.events_path(home), syslog=config.security_events.syslog)
    except (ConfigError, OSError, ValueError):
        return None
    try:
        feed.emit(tamper_record(check=check, message=message, index=index, tree_size=tree_size,
                                ledger=str(Path(home).resolve() / "ledger.db")))
    finally:
        feed.close()
    return feed.path
