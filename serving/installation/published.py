"""What a site's control process tells its gateway workers, through the site's database.

A site running several gateway processes (``corridor up --gateway-workers N``) has one control
process (Ray, deployments, healing, the peer loops) and N workers that never join Ray. The
control process publishes what the request path needs of the control plane into one table,
``control_state`` — one row per document, replaced whole, its ``version`` bumped on each
change:

- ``endpoints``: the live replicas (:class:`~serving.routing.Endpoint` fields), on every change;
- ``policy``: the digest of the bundle in force (``corridor policy apply``);
- ``peer``: what the control process learned of the peer site (reachable, its bundle digest and
  ledger key, a halt) — the workers forward crossing requests by it.

Each worker polls the versions every ``period_s`` (0.5 s) and reads a document only when its
version moved. A worker that cannot reach the database keeps the last documents it read and
says so (:meth:`PublishedState.reachable`): its ``/readyz`` answers 503 until the database is back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from scheduler.database import DatabaseUnavailable, open_pool
from scheduler.periodic import Periodic
from serving.routing import Endpoint

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS control_state (
    name text PRIMARY KEY,
    body jsonb NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""

ENDPOINTS, POLICY, PEER = "endpoints", "policy", "peer"


def _unavailable(exc: Exception) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"the site database did not answer: {exc}")


def _database_errors() -> tuple[type[Exception], ...]:
    import psycopg
    import psycopg_pool

    return (psycopg.OperationalError, psycopg_pool.PoolTimeout)


class Outage:
    """Runs a periodic database action, logging an outage once when it starts and once when it
    ends (not a traceback every period)."""

    def __init__(self, what: str) -> None:
        self.what, self.down = what, False

    def run(self, action: Callable[[], T]) -> T | None:
        """``action()``'s result; None while the database does not answer."""
        try:
            result = action()
        except DatabaseUnavailable as exc:
            if not self.down:
                log.warning("%s: %s; trying again every period", self.what, exc)
            self.down = True
            return None
        if self.down:
            log.warning("%s: the site database answers again", self.what)
        self.down = False
        return result


class StatePublisher:
    """The control process's side: :meth:`publish` a document when it changed (thread-safe)."""

    def __init__(self, url: str) -> None:
        self.pool = open_pool(url, name="corridor-control-state", max_size=2)
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()
        self._schema = False

    def publish(self, name: str, body: Any) -> bool:
        """Write ``body`` as document ``name`` unless it is what was published last; True when
        written. Raises :class:`DatabaseUnavailable` (the caller's loop tries again next time)."""
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        with self._lock:
            if self._last.get(name) == text:
                return False
            try:
                with self.pool.connection() as connection:
                    if not self._schema:
                        connection.execute(SCHEMA)
                        self._schema = True
                    connection.execute(
                        "INSERT INTO control_state (name, body) VALUES (%s, %s::jsonb) "
                        "ON CONFLICT (name) DO UPDATE SET body = excluded.body, "
                        "version = control_state.version + 1, updated_at = now()", (name, text))
            except _database_errors() as exc:
                raise _unavailable(exc) from exc
            self._last[name] = text
            return True

    def close(self) -> None:
        self.pool.close()


class PublishedState:
    """A worker's side: the documents of ``control_state``, polled every ``period_s``.

    :meth:`on` registers a callback run (in the polling thread) with a document's body each time
    its version changes, and once at the first read; a callback that raises gets the document
    again at the next poll.
    """

    def __init__(self, url: str, *, period_s: float = 0.5, stale_after_s: float = 2.0) -> None:
        self.pool = open_pool(url, name="corridor-published", max_size=1, timeout=2.0)
        self.period_s, self.stale_after_s = period_s, stale_after_s
        self.documents: dict[str, Any] = {}
        self._versions: dict[str, int] = {}
        self._callbacks: dict[str, list[Callable[[Any], None]]] = {}
        self._beats: list[Callable[[], object]] = []
        self._last_success = 0.0
        self._outage = Outage("reading the control state (this gateway answers 503 meanwhile)")
        self._poller = Periodic(lambda: self._outage.run(self.poll), period_s, "corridor-published",
                                log, "reading the control process's published state failed")

    def on(self, name: str, callback: Callable[[Any], None]) -> None:
        self._callbacks.setdefault(name, []).append(callback)
        if name in self.documents:
            callback(self.documents[name])

    def every_poll(self, callback: Callable[[], object]) -> None:
        """Run ``callback()`` after every poll that reached the database (in the polling thread)."""
        self._beats.append(callback)

    def reachable(self) -> bool:
        """True when the last poll within ``stale_after_s`` reached the database."""
        return time.monotonic() - self._last_success <= self.stale_after_s

    def poll(self) -> list[str]:
        """Read the documents whose version moved, run their callbacks; their names."""
        try:
            with self.pool.connection() as connection:
                exists = connection.execute("SELECT to_regclass('control_state')").fetchone()[0]
                rows = connection.execute("SELECT name, version FROM control_state").fetchall() if exists else []
                changed = [name for name, version in rows if self._versions.get(name) != version]
                bodies = connection.execute(
                    "SELECT name, version, body FROM control_state WHERE name = ANY(%s)",
                    (changed,)).fetchall() if changed else []
        except _database_errors() as exc:
            raise _unavailable(exc) from exc
        self._last_success = time.monotonic()
        for name, version, body in bodies:
            self.documents[name] = body
            applied = True
            for callback in self._callbacks.get(name, ()):
                try:
                    callback(body)
                except Exception:  # noqa: BLE001 - one bad listener must not stop the others
                    applied = False
                    log.exception("applying the published %s document failed; trying again", name)
            if applied:  # else the next poll reads it again (e.g. a bundle not archived yet)
                self._versions[name] = version
        for beat in self._beats:
            beat()
        return [name for name, _, _ in bodies]

    def start(self) -> PublishedState:
        """Read once now (best effort: the database may be down), then every ``period_s``."""
        self._outage.run(self.poll)
        self._poller.start()
        return self

    def stop(self) -> None:
        self._poller.stop()
        self.pool.close()


def endpoints_document(endpoints: Sequence[Endpoint]) -> list[dict[str, Any]]:
    """The ``endpoints`` document: one object per live replica, in the router's order."""
    return [{"replica_id": e.replica_id, "model": e.model, "pool": e.pool,
             "jurisdiction": e.jurisdiction, "node_id": e.node_id, "url": e.url} for e in endpoints]


class PublishedEndpoints:
    """An :class:`~serving.routing.EndpointSource` over the published ``endpoints`` document."""

    def __init__(self, state: PublishedState) -> None:
        self._items: list[Endpoint] = []
        state.on(ENDPOINTS, self._update)

    def _update(self, body: list[dict[str, Any]]) -> None:
        self._items = [Endpoint(**item) for item in body]

    def endpoints(self) -> list[Endpoint]:
        return self._items
