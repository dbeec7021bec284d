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
    The pool reconnects on its own once the database is back. TCP keepalives and a 10 s
    ``tcp_user_timeout`` (unless the URL sets them) bound a query on a connection whose server
    vanished without closing it (a network partition), which TCP alone notices only after minutes.
    """
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(check_url(url), name=name, min_size=min_size, max_size=max_size,
                          timeout=timeout, open=False, kwargs=connection_options(url, timeout),
                          check=ConnectionPool.check_connection)
    pool.open(wait=False)
    return pool


def connection_options(url: str, timeout: float = 5.0) -> dict[str, int]:
    """libpq options every connection gets, those the URL names left to the URL.

    >>> connection_options("postgresql://db/corridor?tcp_user_timeout=3000")["tcp_user_timeout"]
    Traceback (most recent call last):
    ...
    KeyError: 'tcp_user_timeout'
    >>> connection_options("postgresql://db/corridor")["keepalives_idle"]
    10
    """
    from urllib.parse import parse_qsl

    named = {key for key, _ in parse_qsl(urlsplit(url).query)}
    defaults = {"connect_timeout": max(1, int(timeout)), "keepalives": 1, "keepalives_idle": 10,
                "keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 10_000}
    return {key: value for key, value in defaults.items() if key not in named}


def site_url(url: str, site: str) -> str:
    """The database URL of one site of the two-site corridor: the same server and database, the
    site's own schema (``corridor_fr``, ``corridor_de``) as the connections' ``search_path``.

    Each site keeps its own ledger, keys, batches and declarations (as its own folder does with
    SQLite); one PostgreSQL database serves the embedded corridor. Every store uses unqualified
    table names, so the schema alone separates the sites; :func:`ensure_schema` creates it.

    >>> site_url("postgresql://corridor@db:5432/corridor", "FR")
    'postgresql://corridor@db:5432/corridor?options=-csearch_path%3Dcorridor_fr'
    >>> site_url("postgresql://corridor@db/corridor?sslmode=require", "de")
    'postgresql://corridor@db/corridor?sslmode=require&options=-csearch_path%3Dcorridor_de'
    """
    from urllib.parse import parse_qsl, quote, urlunsplit

    parts = urlsplit(check_url(url))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "options" for key, _ in query):
        raise ValueError(f"database URL {url!r}: has options= already; give the site's URL "
                         f"with its search_path yourself, one per site")
    options = "options=" + quote(f"-csearch_path={schema_of(site)}", safe="-")
    return urlunsplit(parts._replace(query="&".join(filter(None, (parts.query, options)))))


def schema_of(site: str) -> str:
    """``corridor_fr`` for site ``FR``: the schema :func:`site_url` selects."""
    if not site.isalpha():
        raise ValueError(f"site: got {site!r}, want FR or DE")
    return f"corridor_{site.lower()}"


def search_path_of(url: str) -> str | None:
    """The schema a URL made by :func:`site_url` selects, else None (the server's default)."""
    from urllib.parse import parse_qsl

    for key, value in parse_qsl(urlsplit(url).query):
        if key == "options" and value.startswith("-csearch_path="):
            return value.removeprefix("-csearch_path=")
    return None


def ensure_schema(url: str) -> None:
    """Create the schema ``url`` selects (:func:`site_url`) if it is missing; nothing otherwise.

    Called by a site's control process before its stores open; raises
    :class:`DatabaseUnavailable` when the server does not answer."""
    schema = search_path_of(url)
    if schema is None:
        return
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(check_url(url), autocommit=True, connect_timeout=5) as connection:
            connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot reach the database to create schema {schema}: {exc}") from exc
