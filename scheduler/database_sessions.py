"""Transactions on the shared database for the stores (batch, keys, crisis, bundles, limits).

:func:`transaction` lends a connection of a pool for one transaction (committed when the block
ends, rolled back when it raises) and turns "the database cannot be reached" — no connection
within the pool's timeout, or the connection broke under the statement — into
:class:`~scheduler.database.DatabaseUnavailable`, which the gateway answers with 503 and
``Retry-After``. The pool replaces broken connections by itself, so a store keeps working once
the database is back, without being reopened.

:func:`create_tables` runs a store's ``CREATE TABLE IF NOT EXISTS`` script under a transaction
advisory lock, so several processes opening the same database at once do not race on the
catalogue.

:class:`FailFast` spares the callers of a store on the request path a wait per call while the
database is away.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from scheduler.database import DatabaseUnavailable, open_pool

_SCHEMA_LOCK = 0x636F7272  # "corr": one advisory lock for every store's schema creation


@contextmanager
def transaction(pool: Any) -> Iterator[Any]:
    """A psycopg connection of ``pool`` inside one transaction; DatabaseUnavailable if unreachable."""
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        with pool.connection() as connection:
            yield connection
    except PoolTimeout as exc:
        raise DatabaseUnavailable(f"{pool.name}: no connection to the database within "
                                  f"{pool.timeout:g} s ({exc})") from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"{pool.name}: the database connection failed ({exc})") from exc


def create_tables(pool: Any, script: str) -> None:
    """Run ``script`` (``;``-separated DDL, idempotent) in one transaction, serialised by an
    advisory lock across processes."""
    with transaction(pool) as connection:
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        for statement in (s.strip() for s in script.split(";")):
            if statement:
                connection.execute(statement)


def open_store_pool(url: str, *, name: str, schema: str, max_size: int = 4, timeout: float = 5.0) -> Any:
    """A small pool for one store of this process (:func:`scheduler.database.open_pool`), its
    tables created (``schema``, see :func:`create_tables`); closed again if that fails."""
    pool = open_pool(url, name=name, min_size=1, max_size=max_size, timeout=timeout)
    try:
        create_tables(pool, schema)
    except BaseException:
        pool.close()
        raise
    return pool


class FailFast:
    """After a call found the database unreachable, fail the calls of the next ``retry_s``
    seconds at once (:class:`~scheduler.database.DatabaseUnavailable` naming ``what``) instead
    of letting each wait out its timeout; the first call after them tries the database again.
    Not thread-safe: the caller holds its own lock around :meth:`attempt`."""

    def __init__(self, what: str, retry_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.retry_s, self.clock = what, retry_s, clock
        self._down_until = float("-inf")

    @contextmanager
    def attempt(self, now: float) -> Iterator[None]:
        """One call at ``now``: refused at once inside the window, else run, and a
        ``DatabaseUnavailable`` it raises opens the window (from the failure, not the attempt)."""
        if now < self._down_until:
            raise DatabaseUnavailable(f"{self.what} was unreachable less than {self.retry_s:g} s ago")
        try:
            yield
        except DatabaseUnavailable:
            self._down_until = self.clock() + self.retry_s
            raise
