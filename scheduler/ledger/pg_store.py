"""The ledger in PostgreSQL: one log, in one order, for every gateway process of a site.

The tables are those of :mod:`scheduler.ledger.store` (``entries`` with the per-row subtree
hashes, so a proof reads O(log n) rows; ``tree_heads``; the index on the leaf's
``decision_id``), in ``bytea`` and ``text``; ``ts`` sorts bytewise (``COLLATE "C"``) like the
instants it names. Statement triggers refuse UPDATE, DELETE and TRUNCATE on both tables. A
superuser can still disable them: :func:`~scheduler.ledger.verify.verify_log`, not the
triggers, is what proves the log untouched.

Sequencer: :meth:`PgStore.sequenced` opens a transaction and takes a transaction-level advisory
lock keyed by the ``entries`` table (so two sites in two schemas of one database do not share
it); then it reads the size. Each process's writer holds it for one batch — insert the rows,
``COMMIT`` — and PostgreSQL releases it only once that commit is flushed and visible, so the
next writer reads a size that includes it. Readers take no lock. A writer killed inside the
transaction loses its connection, the server rolls the batch back and releases the lock;
a writer that stalls is cut off by ``idle_in_transaction_session_timeout``.

Durability: ``COMMIT`` returns once the WAL is flushed (``synchronous_commit`` on, the server's
default; keep it on for the ledger).

Unavailable: when the server does not answer — down, restarting, a connection broken, the
sequencer not granted within :data:`LOCK_TIMEOUT` — a call raises
:class:`~scheduler.ledger.exceptions.LedgerUnavailableError` (a ``DatabaseUnavailable``)
within the pool's timeout, acknowledging nothing; the pool reconnects on its own once the
server is back.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import PoolTimeout

from scheduler.database import open_pool
from scheduler.ledger.exceptions import LedgerUnavailableError, NotFoundError, StorageError
from scheduler.ledger.signing import TreeHead
from scheduler.ledger.store import (
    HEAD_COLUMNS,
    LEAF_COLUMNS,
    Sequenced,
    StoredLeaf,
    filter_clauses,
    rows_of_subtrees,
    subtrees_of_rows,
    tree_head_of_row,
)

LOCK_TIMEOUT = "10s"
"""Longest wait for the sequencer (another writer holds it for one batch, milliseconds)."""
STALL_TIMEOUT = "30s"
"""A writer idle this long inside its transaction is cut off by the server (lock released)."""
_PAGE = 1000
_SCHEMA_LOCK = 0x4C454447  # "LEDG": serialises schema creation by processes starting together
_SEQUENCER_CLASS = 6962  # with the entries table's oid: the advisory lock of this schema's log

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx BIGINT PRIMARY KEY,
    leaf BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL,
    subtrees BYTEA NOT NULL,
    tenant TEXT,
    kind TEXT NOT NULL,
    jurisdiction TEXT,
    ts TEXT COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_tenant ON entries (tenant, idx);
CREATE INDEX IF NOT EXISTS entries_by_kind ON entries (kind, idx);
CREATE INDEX IF NOT EXISTS entries_by_ts ON entries (ts);
CREATE OR REPLACE FUNCTION ledger_decision_id(leaf BYTEA) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT convert_from(leaf, 'UTF8')::json ->> 'decision_id' $$;
CREATE INDEX IF NOT EXISTS entries_by_decision ON entries (ledger_decision_id(leaf));
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE TRIGGER entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TABLE IF NOT EXISTS tree_heads (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tree_size BIGINT NOT NULL,
    root_hash TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE OR REPLACE TRIGGER tree_heads_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON tree_heads
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""

# The settings first (select-list items run left to right), then the lock, for this transaction.
_TAKE_SEQUENCER = (
    "SELECT set_config('lock_timeout', %s, true), set_config('idle_in_transaction_session_timeout', %s, true), "
    "pg_advisory_xact_lock(%s, 'entries'::regclass::oid::int)"
)
_FIELDS = len(StoredLeaf._fields)
_ROWS_PER_STATEMENT = 512  # PostgreSQL takes at most 65,535 parameters in one statement
_INSERT_HEAD = f"INSERT INTO tree_heads ({HEAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
_LATEST_HEAD = f"SELECT {HEAD_COLUMNS} FROM tree_heads ORDER BY seq DESC LIMIT 1"


def _where(url: str) -> str:
    """The database a URL names, without its password, for messages.

    >>> _where("postgresql://corridor:secret@db.fr.internal:5432/corridor")
    'database corridor on db.fr.internal:5432'
    """
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the ledger database"
    return f"database {parts.get('dbname', '?')} on {parts.get('host', 'localhost')}:{parts.get('port', 5432)}"


class PgStore:
    """:class:`~scheduler.ledger.store.LedgerStore` in one PostgreSQL database (or schema).

    ``writer=True`` creates the tables if needed; any number of processes may
    open a writer at once. ``writer=False`` needs the tables to exist
    (:class:`NotFoundError` otherwise). Thread-safe: each read borrows a
    connection from the store's pool; the writer has a connection of its own,
    so appends never queue behind readers.
    """

    shared = True  # every gateway process of the site appends to this log

    def __init__(self, url: str, *, writer: bool, timeout: float = 5.0) -> None:
        self.where = _where(url)
        self.writer = writer
        self.timeout = timeout
        self._pool = open_pool(url, name="ledger", timeout=timeout)
        self._writer_pool = open_pool(url, name="ledger-writer", max_size=1, timeout=timeout) if writer else None
        try:
            with self._connection() as connection, connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                (exists,) = connection.execute("SELECT to_regclass('tree_heads') IS NOT NULL").fetchone()
                if not exists and not writer:
                    raise NotFoundError(f"no ledger in {self.where}")
                if not exists:
                    connection.execute(_SCHEMA)
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _connection(self, *, write: bool = False) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection (the writer's own if ``write``); the driver's errors
        become ledger errors."""
        pool = self._writer_pool if write else self._pool
        try:
            with pool.connection() as connection:
                if not connection.autocommit:
                    connection.autocommit = True
                yield connection
        except PoolTimeout as exc:
            raise LedgerUnavailableError(f"{self.where} did not answer within {self.timeout:g} s") from exc
        except psycopg.OperationalError as exc:
            raise LedgerUnavailableError(f"{self.where} is unavailable: {exc}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {exc}") from exc

    def size(self) -> int:
        with self._connection() as connection:
            return _size(connection)

    @contextmanager
    def sequenced(self) -> Iterator[Sequenced]:
        if self._writer_pool is None:
            raise StorageError(f"the ledger in {self.where} is open read-only")
        # Pipelined: BEGIN, the lock and the size read go in one round trip, the rows and COMMIT in another.
        with self._connection(write=True) as connection, connection.pipeline(), connection.transaction():
            connection.execute(_TAKE_SEQUENCER, (LOCK_TIMEOUT, STALL_TIMEOUT, _SEQUENCER_CLASS))
            yield _PgSequenced(connection)

    def leaf(self, index: int) -> StoredLeaf | None:
        with self._connection() as connection:
            row = connection.execute(f"SELECT {LEAF_COLUMNS} FROM entries WHERE idx = %s", (index,)).fetchone()
        return None if row is None else StoredLeaf(*row)

    def scan(
        self,
        *,
        after: int = -1,
        below: int | None = None,
        limit: int | None = None,
        tenant: str | None = None,
        kind: str | None = None,
        jurisdiction: str | None = None,
        since: str | None = None,
        until: str | None = None,
        decision_id: str | None = None,
    ) -> Iterator[StoredLeaf]:
        """Pages of :data:`_PAGE` rows by index (keyset), each read on a briefly borrowed connection."""
        clauses, params = filter_clauses("ledger_decision_id(leaf)",
                                         [below, tenant, kind, jurisdiction, since, until, decision_id])
        where = " AND ".join(["idx > ?", *clauses]).replace("?", "%s")
        sql = f"SELECT {LEAF_COLUMNS} FROM entries WHERE {where} ORDER BY idx LIMIT %s"
        left = limit
        while left is None or left > 0:
            page = _PAGE if left is None else min(_PAGE, left)
            with self._connection() as connection:
                rows = connection.execute(sql, [after, *params, page]).fetchall()
            for row in rows:
                yield StoredLeaf(*row)
            if len(rows) < page:
                return
            after = rows[-1][0]
            if left is not None:
                left -= len(rows)

    def subtree_hashes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        with self._connection() as connection:
            return _subtree_hashes(connection, keys)

    def tree_heads(self) -> list[TreeHead]:
        with self._connection() as connection:
            rows = connection.execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads ORDER BY seq").fetchall()
        return [tree_head_of_row(row) for row in rows]

    def latest_tree_head(self) -> TreeHead | None:
        with self._connection() as connection:
            row = connection.execute(_LATEST_HEAD).fetchone()
        return None if row is None else tree_head_of_row(row)

    def close(self) -> None:
        self._pool.close()
        if self._writer_pool is not None:
            self._writer_pool.close()


class _PgSequenced:
    """:class:`Sequenced` inside the writer's locked transaction; it commits when the block ends."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self._connection = connection

    def size(self) -> int:
        return _size(self._connection)

    def subtree_hashes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _subtree_hashes(self._connection, keys)

    def latest_tree_head(self) -> TreeHead | None:
        row = self._connection.execute(_LATEST_HEAD).fetchone()
        return None if row is None else tree_head_of_row(row)

    def write(self, leaves: Sequence[StoredLeaf], tree_heads: Sequence[TreeHead]) -> None:
        with psycopg.RawCursor(self._connection) as cursor:
            for start in range(0, len(leaves), _ROWS_PER_STATEMENT):
                chunk = leaves[start : start + _ROWS_PER_STATEMENT]
                cursor.execute(_insert_leaves(len(chunk)), [value for leaf in chunk for value in leaf])
            for h in tree_heads:
                cursor.execute(_INSERT_HEAD, (h.tree_size, h.root_hash, h.timestamp, h.key_id, h.signature))


@functools.lru_cache(maxsize=64)
def _insert_leaves(count: int) -> str:
    """One INSERT of ``count`` rows with PostgreSQL's own ``$n`` marks: the driver dumps each value
    in C and parses nothing (its ``%s`` parsing and array dumping run in Python)."""
    rows = ", ".join(
        "(" + ", ".join(f"${row * _FIELDS + field + 1}" for field in range(_FIELDS)) + ")" for row in range(count)
    )
    return f"INSERT INTO entries ({LEAF_COLUMNS}) VALUES {rows}"


def _size(connection: psycopg.Connection) -> int:
    (highest,) = connection.execute("SELECT max(idx) FROM entries").fetchone()
    return 0 if highest is None else highest + 1


def _subtree_hashes(connection: psycopg.Connection, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    wanted = rows_of_subtrees(keys)
    if not wanted:
        return {}
    rows = connection.execute(
        "SELECT idx, leaf_hash, subtrees FROM entries WHERE idx = ANY(%s)", (list(wanted),)
    ).fetchall()
    return subtrees_of_rows(wanted, rows)
