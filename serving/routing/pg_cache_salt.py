"""The site's cache-salt secret in PostgreSQL, shared by every gateway process of the site and its
batch executor (:func:`~serving.routing.cache_salt.open_cache_salts`).

Table ``cache_salt_secret`` holds one row. Every process, at start, inserts a candidate
(``ON CONFLICT DO NOTHING``) and reads back the row that is there: the first insert wins, a
process that raced it waits for its commit and reads the winner, so processes and pods starting
together agree on one secret. Nothing updates or deletes the row.

The server draws the candidate (SHA-256 over two ``gen_random_uuid()``, its strong random
source: 244 random bits), so the secret is never a statement parameter that a server's
statement log could show; it crosses the connection only as the result of the ``SELECT``, and
no message here names it.
"""

from __future__ import annotations

from scheduler.database import DatabaseUnavailable
from scheduler.database_sessions import open_store_pool, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_salt_secret (
    singleton BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    secret BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
_CREATE = ("INSERT INTO cache_salt_secret (secret) "
           "SELECT sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) "
           "ON CONFLICT (singleton) DO NOTHING")


def site_secret(url: str, *, timeout: float = 5.0) -> bytes:
    """The site's secret from the database at ``url``, created if it has none yet.

    Raises :class:`~scheduler.database.DatabaseUnavailable` when the database does not answer
    within ``timeout``; the caller must not start with a secret of its own instead."""
    try:
        pool = open_store_pool(url, name="corridor-cache-salt", max_size=1, schema=_SCHEMA,
                               timeout=timeout)
        try:
            with transaction(pool) as db:
                db.execute(_CREATE)
                (secret,) = db.execute("SELECT secret FROM cache_salt_secret").fetchone()
        finally:
            pool.close()
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(f"cannot read the site's cache-salt secret from the database "
                                  f"({exc}); a gateway process starts only with the site's secret, "
                                  f"so that all of them share the prefix cache: start the database, "
                                  f"or fix the URL, and start again") from exc
    return bytes(secret)
