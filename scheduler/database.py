"""The site's shared database: which one (``database:`` in ``corridor.yaml``), and connections to it.

SQLite files in ``$CORRIDOR_HOME`` are the embedded default (``make up``): one gateway process
per site. A site whose gateway runs as several processes keeps its shared state (ledger, batch
store, keys, crisis declarations, bundles, limits) in PostgreSQL instead; every process opens
its own pool of connections to the same database.

When the database cannot be reached, the stores raise :class:`DatabaseUnavailable`; the gateway
answers 503 with ``Retry-After`` rather than serve a request it cannot write to the ledger.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = ("postgresql", "postgres")


class DatabaseUnavailable(Exception):
    """The shared database did not answer (down, restarting, or unreachable)."""


def check_url(url: str) -> str:
    """Return ``url`` if it names a PostgreSQL database, else raise ValueError saying what is wrong.

    >>> check_url("postgresql://corridor@db.fr.internal:5432/corridor")
    'postgresql://corridor@db.fr.internal:5432/corridor'
    >>> check_url("mysql://x/y")
    Traceback (most recent call last):
    ...
    ValueError: database URL 'mysql://x/y': the scheme must be postgresql:// (or postgres://)
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"database URL {url!r}: the scheme must be postgresql:// (or postgres://)")
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"database URL {url!r}: no host")
    if not parts.path.strip("/"):
        raise ValueError(f"database URL {url!r}: no database name")
    return url


def open_pool(url: str, *, name: str, min_size: int = 1, max_size: int = 8, timeout: float = 5.0):
    """A psycopg connection pool to ``url``, opened without waiting for the database.

    ``timeout`` bounds how long a caller waits for a connection; past it the pool raises
    ``psycopg_pool.PoolTimeout``, which the stores turn into :class:`DatabaseUnavailable`.
    The pool reconnects on its own once the database is back.
    """
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(check_url(url), name=name, min_size=min_size, max_size=max_size,
                          timeout=timeout, open=False,
                          kwargs={"connect_timeout": max(1, int(timeout))},
                          check=ConnectionPool.check_connection)
    pool.open(wait=False)
    return pool
