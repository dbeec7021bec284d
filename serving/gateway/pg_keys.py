"""API key records in PostgreSQL, shared by every gateway process of a site: the twin of
:class:`serving.gateway.keys.KeyFile` (same ``records`` / ``refresh()`` / ``update()``).

Table ``api_keys`` holds one row per key (its record as JSON, never the secret: only its
SHA-256); ``api_keys_version`` one counter, raised in the transaction of every change. A change
locks the counter row first, so changes from several processes are serialised and none is lost.

:meth:`PgKeyRecords.refresh` is called on every request (:meth:`KeyStore.authenticate`), so
it is cheap: at most once per ``refresh_every_s`` it reads the counter (one indexed row) and
reloads the records only when the counter moved. A change made through this process is seen
at once; one made through another process within ``refresh_every_s`` (0.25 s by default) —
the delay a revocation takes to reach the other gateway processes. While the database cannot
be reached, a refresh that is due raises :class:`~scheduler.database.DatabaseUnavailable`
(503): a key revoked meanwhile must not go on working.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from psycopg.types.json import Jsonb

from scheduler.database_sessions import open_store_pool, transaction
from serving.gateway.keys import KeyRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    record JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version BIGINT NOT NULL
);
INSERT INTO api_keys_version (singleton, version) VALUES (true, 0) ON CONFLICT DO NOTHING
"""


def _row(record: KeyRecord) -> dict[str, Any]:
    return {f: v for f, v in asdict(record).items() if f != "id"}


class PgKeyRecords:
    """The key records in the PostgreSQL database at ``url`` (see the module docstring)."""

    def __init__(self, url: str, *, refresh_every_s: float = 0.25, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = None
        self.records: dict[str, KeyRecord] = {}
        self.refresh_every_s = refresh_every_s
        self._clock = clock
        self._version: int | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self._pool = open_store_pool(url, name="corridor-keys", max_size=2, schema=_SCHEMA,
                                     timeout=timeout)
        try:
            self.refresh()
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()

    def refresh(self) -> dict[str, KeyRecord]:
        """The records, reloaded first if another process changed them (checked at most once
        per ``refresh_every_s``)."""
        now = self._clock()
        if now - self._checked < self.refresh_every_s:
            return self.records
        with transaction(self._pool) as db:
            version = db.execute("SELECT version FROM api_keys_version").fetchone()[0]
            if version != self._version:
                rows = db.execute("SELECT id, record FROM api_keys").fetchall()
                with self._lock:
                    self.records = {k: KeyRecord.from_json(k, v) for k, v in rows}
                    self._version = version
        self._checked = now
        return self.records

    def update(self, change: Callable[[dict[str, KeyRecord]], Any]) -> Any:
        """Apply ``change`` to fresh records in one transaction (serialised across processes by
        the version row's lock) and store what it changed; return its result."""
        with transaction(self._pool) as db:
            version = db.execute("SELECT version FROM api_keys_version FOR UPDATE").fetchone()[0]
            before = {k: KeyRecord.from_json(k, v)
                      for k, v in db.execute("SELECT id, record FROM api_keys").fetchall()}
            records = dict(before)
            result = change(records)
            removed = [k for k in before if k not in records]
            changed = [(k, Jsonb(_row(r))) for k, r in records.items() if before.get(k) != r]
            if removed or changed:
                with db.cursor() as cursor:
                    if removed:
                        cursor.execute("DELETE FROM api_keys WHERE id = ANY(%s)", (removed,))
                    if changed:
                        cursor.executemany("INSERT INTO api_keys (id, record) VALUES (%s, %s) ON CONFLICT "
                                           "(id) DO UPDATE SET record = EXCLUDED.record", changed)
                version = db.execute("UPDATE api_keys_version SET version = version + 1 "
                                     "RETURNING version").fetchone()[0]
        with self._lock:
            self.records = records
            self._version = version
        self._checked = self._clock()
        return result
