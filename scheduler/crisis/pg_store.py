"""Crisis declarations in PostgreSQL, for a site whose gateway runs as several processes: the
twin of :class:`scheduler.crisis.store.FileCrisisStore`.

Table ``crisis_declarations`` holds one row per declaration (its record as JSON);
``crisis_version`` one counter with ``updated_at``, raised in the transaction of every write.
:meth:`PgCrisisStore.version` reads that one row, so a registry can ask often whether another
process changed something.

:meth:`PgCrisisStore.write` runs in one transaction, serialised across processes by the counter
row's lock, and writes only the records that differ from what this store last read or wrote:
a process whose view of another declaration is stale does not put that stale copy back over
the other process's newer one. Declarations are never removed (expired and revoked ones stay,
with their status), so a record missing from ``records`` is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg.types.json import Jsonb

from scheduler.crisis.record import CrisisRecord
from scheduler.database_sessions import open_store_pool, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS crisis_declarations (
    id TEXT PRIMARY KEY,
    record JSONB NOT NULL
);
CREATE TABLE IF NOT EXISTS crisis_version (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO crisis_version (singleton, version) VALUES (true, 0) ON CONFLICT DO NOTHING
"""


def _body(record: CrisisRecord) -> dict[str, Any]:
    return record.model_dump(mode="json")


class PgCrisisStore:
    """The declarations in the PostgreSQL database at ``url`` (see the module docstring)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._known: dict[str, dict[str, Any]] = {}
        self._pool = open_store_pool(url, name="corridor-crisis", max_size=2, schema=_SCHEMA,
                                     timeout=timeout)

    def close(self) -> None:
        self._pool.close()

    def read(self) -> list[CrisisRecord]:
        with transaction(self._pool) as db:
            rows = db.execute("SELECT id, record FROM crisis_declarations ORDER BY id").fetchall()
        self._known = {key: body for key, body in rows}
        return [CrisisRecord.model_validate(body) for _, body in rows]

    def write(self, records: Iterable[CrisisRecord]) -> None:
        bodies = {record.id: _body(record) for record in records}
        changed = [(key, Jsonb(body)) for key, body in bodies.items() if self._known.get(key) != body]
        if not changed:
            return
        with transaction(self._pool) as db:
            db.execute("SELECT version FROM crisis_version FOR UPDATE")
            with db.cursor() as cursor:
                cursor.executemany("INSERT INTO crisis_declarations (id, record) VALUES (%s, %s) "
                                   "ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record", changed)
            db.execute("UPDATE crisis_version SET version = version + 1, updated_at = now()")
        self._known.update((key, bodies[key]) for key, _ in changed)

    def version(self) -> object:
        """The change counter (one row): different after any process's write."""
        with transaction(self._pool) as db:
            return db.execute("SELECT version FROM crisis_version").fetchone()[0]
