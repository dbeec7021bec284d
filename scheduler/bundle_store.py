"""Bundles kept by digest in PostgreSQL, for a site whose gateway runs as several processes: the
twin of :class:`policies.archive.BundleArchive` (same ``put`` / ``in`` / ``digests`` / ``get`` /
``policy``), so ``corridor audit replay`` and the policy switch read a bundle back wherever it
was put in force.

Table ``policy_bundles`` holds each bundle's archived bytes (its canonical JSON) under its
digest. Write-once: storing the same bundle again is a no-op (``ON CONFLICT DO NOTHING``, safe
when two processes put the same bundle at once), different bytes under an existing digest are
refused (:class:`~policies.exceptions.ArchiveConflictError`), and nothing updates or deletes a
row. Reading back recomputes the digest, so altered bytes are detected
(:class:`~policies.exceptions.ArchiveDigestMismatch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.archive import (ARCHIVE_DIRNAME, BundleArchive, archived_bundle, archived_bytes,
                              check_digest)
from policies.bundle import Bundle
from policies.exceptions import ArchiveConflictError, BundleNotArchived
from policies.rulebook import Policy
from scheduler.database_sessions import open_store_pool, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_bundles (
    digest TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
_WHERE = "the database's policy_bundles table"


class PgBundleArchive:
    """Bundles by digest in the PostgreSQL database at ``url`` (see the module docstring)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._pool = open_store_pool(url, name="corridor-bundles", max_size=2, schema=_SCHEMA,
                                     timeout=timeout)

    def close(self) -> None:
        self._pool.close()

    def put(self, bundle: Bundle) -> str:
        """Store ``bundle`` (no-op if already there); returns its digest."""
        digest, data = archived_bytes(bundle)
        with transaction(self._pool) as db:
            stored = db.execute("INSERT INTO policy_bundles (digest, data) VALUES (%s, %s) "
                                "ON CONFLICT (digest) DO NOTHING RETURNING digest", (digest, data)).fetchone()
            if stored is None:
                existing = db.execute("SELECT data FROM policy_bundles WHERE digest=%s", (digest,)).fetchone()
                if bytes(existing[0]) != data:
                    raise ArchiveConflictError(digest, _WHERE)
        return digest

    def __contains__(self, digest: object) -> bool:
        try:
            check_digest(digest)  # type: ignore[arg-type]
        except ValueError:
            return False
        with transaction(self._pool) as db:
            return db.execute("SELECT 1 FROM policy_bundles WHERE digest=%s", (digest,)).fetchone() is not None

    def digests(self) -> list[str]:
        """Digests of every archived bundle, sorted."""
        with transaction(self._pool) as db:
            return [row[0] for row in db.execute("SELECT digest FROM policy_bundles ORDER BY digest")]

    def read_bytes(self, digest: str) -> bytes:
        """The archived bytes under ``digest``, as stored; :class:`BundleNotArchived` if none."""
        check_digest(digest)
        with transaction(self._pool) as db:
            row = db.execute("SELECT data FROM policy_bundles WHERE digest=%s", (digest,)).fetchone()
        if row is None:
            raise BundleNotArchived(digest, _WHERE)
        return bytes(row[0])

    def get(self, digest: str) -> Bundle:
        """The bundle stored under ``digest``, checked: bytes hash to it, schema and references valid."""
        return archived_bundle(self.read_bytes(digest), digest, f"{_WHERE} ({digest})")

    def policy(self, digest: str) -> Policy:
        """The archived bundle compiled, ready to replay decisions with."""
        return Policy(self.get(digest))


def open_bundle_archive(home: Path, *, database: str | None = None) -> Any:
    """``home/bundles/`` (:class:`BundleArchive`, the embedded default), or the PostgreSQL
    ``database`` shared by every gateway process of the site (:class:`PgBundleArchive`)."""
    if database is None:
        return BundleArchive(Path(home) / ARCHIVE_DIRNAME)
    return PgBundleArchive(database)
