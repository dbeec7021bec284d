"""Storage of the ledger: a small interface, and SQLite in WAL mode behind it.

The store keeps two append-only tables:

- ``entries``: per leaf its index, the exact leaf bytes (canonical JSON), the
  raw 32-byte leaf hash, the hashes of the complete subtrees this leaf
  completes, and copies of tenant, kind, jurisdiction and timestamp for
  filtering. Leaf ``i`` completes the subtrees ``(level, i >> level)`` for
  ``level = 1 .. t``, ``t`` the number of trailing one bits of ``i``; their
  hashes are stored concatenated, level 1 first (empty for even ``i``). So the
  hash of subtree ``(level, index)`` (leaves ``[index * 2**level, (index + 1) * 2**level)``)
  sits in row ``((index + 1) << level) - 1``, any range hash is composed from
  O(log n) rows, and the subtree cache is written in the same row, hence the
  same transaction, as the leaf that completes it;
- ``tree_heads``: every signed tree head ever issued, in issue order.

Sequencing: the writer assigns indexes inside :meth:`LedgerStore.sequenced`,
the store's sequencer, where no other writer appends; it reads the stored size
there, so indexes follow each other across every writer of the store. Here one
process at a time may write at all: the writer takes an exclusive ``flock`` on
``<db>.lock``, so the sequencer is a plain transaction and the size is always
the writer's own. (:mod:`scheduler.ledger.pg_store` shares one log between
processes and takes a lock in the database.)

Durability: ``journal_mode=WAL`` and ``synchronous=FULL``, so :meth:`SqliteStore.commit`
returns only once the transaction is on disk. No code path updates or deletes
a row, and triggers refuse both.

One module because it is one SQLite schema behind one protocol.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from contextlib import AbstractContextManager
from typing import NamedTuple, Protocol

from scheduler.ledger.exceptions import LedgerLockedError, NotFoundError, StorageError
from scheduler.private_files import private_database, private_directory
from scheduler.ledger.signing import TreeHead

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL,
    subtrees BLOB NOT NULL,
    tenant TEXT,
    kind TEXT NOT NULL,
    jurisdiction TEXT,
    ts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_tenant ON entries (tenant, idx);
CREATE INDEX IF NOT EXISTS entries_by_kind ON entries (kind, idx);
CREATE INDEX IF NOT EXISTS entries_by_ts ON entries (ts);
CREATE INDEX IF NOT EXISTS entries_by_decision ON entries (json_extract(CAST(leaf AS TEXT), '$.decision_id'));
CREATE TABLE IF NOT EXISTS tree_heads (
    seq INTEGER PRIMARY KEY,
    tree_size INTEGER NOT NULL,
    root_hash TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
"""

_APPEND_ONLY = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: {op} on {table} refused'); END;\n"
    for table in ("entries", "tree_heads")
    for op in ("UPDATE", "DELETE")
)

LEAF_COLUMNS = "idx, leaf, leaf_hash, subtrees, tenant, kind, jurisdiction, ts"
HEAD_COLUMNS = "tree_size, root_hash, timestamp, key_id, signature"
_ROWS_PER_STATEMENT = 256
#: The entry's decision id, read from the leaf itself (the same expression as the index, so
#: the index serves the filter, and a ledger written before the index existed needs no migration).
_DECISION_ID = "json_extract(CAST(leaf AS TEXT), '$.decision_id')"


class StoredLeaf(NamedTuple):
    """One row of ``entries``."""

    index: int
    leaf: bytes
    """The exact leaf bytes: canonical JSON of the entry."""
    leaf_hash: bytes
    """SHA-256(0x00 || leaf), raw 32 bytes."""
    subtrees: bytes
    """Hashes of the complete subtrees this leaf completes, level 1 first, 32 bytes each."""
    tenant: str | None
    kind: str
    jurisdiction: str | None
    timestamp: str


class Sequenced(Protocol):
    """The store inside its sequencer: no other writer appends until the ``with`` block ends."""

    def size(self) -> int:
        """One past the highest stored index, including what other writers appended before."""

    def subtree_hashes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Like :meth:`LedgerStore.subtree_hashes`, read inside the sequencer."""

    def latest_tree_head(self) -> TreeHead | None:
        """The last tree head issued by any writer, or None."""

    def write(self, leaves: Sequence[StoredLeaf], tree_heads: Sequence[TreeHead]) -> None:
        """Write leaves (from index :meth:`size` on) and tree heads; at most once per block.
        They are durable once the ``with`` block ends without an exception."""


class LedgerStore(Protocol):
    """What the ledger needs from storage; SQLite and PostgreSQL implement it."""

    shared: bool
    """True when other processes may append to the same log (the writer then catches up)."""

    def size(self) -> int:
        """One past the highest stored index (0 when empty)."""

    def sequenced(self) -> AbstractContextManager[Sequenced]:
        """Enter the sequencer: one durable transaction in which only this writer appends.

        Leaving the block without an exception commits (or raises :class:`StorageError`,
        having acknowledged nothing); an exception inside it writes nothing.
        """

    def leaf(self, index: int) -> StoredLeaf | None:
        """The leaf at ``index``, or None."""

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
        """Leaves with ``after < index < below`` matching every given filter, by index.

        ``since`` (inclusive) and ``until`` (exclusive) are timestamps as the
        entries write them, which sort like the instants they name.
        """

    def subtree_hashes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Hashes of the complete subtrees ``(level, index)`` asked for (level 0: leaf hashes),
        in one read; keys not stored are absent from the result."""

    def tree_heads(self) -> list[TreeHead]:
        """Every tree head issued, in issue order."""

    def latest_tree_head(self) -> TreeHead | None:
        """The last tree head issued, or None."""

    def close(self) -> None:
        """Release connections and locks."""


class SqliteStore:
    """:class:`LedgerStore` on one SQLite file.

    ``writer=True`` creates the file and schema if needed and takes the writer
    lock (:class:`LedgerLockedError` if another process has it); only the
    thread that calls :meth:`commit` writes. ``writer=False`` opens an existing
    file (:class:`NotFoundError` otherwise) with query-only connections, which
    is safe while a writer appends in another process. Every thread reads
    through its own connection.
    """

    shared = False  # the flock keeps every other writer out

    def __init__(self, path: Path | str, *, writer: bool) -> None:
        self.path = Path(path)
        self.writer = writer
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._write_connection: sqlite3.Connection | None = None
        if writer:
            private_directory(self.path.parent)
            self._take_lock()
            private_database(self.path)
            try:
                self._write_connection = self._connect(query_only=False)
                self._write_connection.executescript(_SCHEMA + _APPEND_ONLY)
                self._write_connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except (sqlite3.Error, StorageError) as exc:
                self.close()
                raise StorageError(f"cannot open ledger database {self.path}: {exc}") from exc
        elif not self.path.is_file():
            raise NotFoundError(f"no ledger database at {self.path}")

    def _take_lock(self) -> None:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise LedgerLockedError(
                f"{self.path} is open for writing in another process; stop it or open the ledger read-only"
            ) from exc
        self._lock_fd = fd

    def _connect(self, *, query_only: bool) -> sqlite3.Connection:
        uri = f"file:{self.path}?mode={'rw' if query_only else 'rwc'}"
        try:
            connection = sqlite3.connect(
                uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=_ROWS_PER_STATEMENT + 16,
            )
            connection.execute("PRAGMA busy_timeout = 10000")
            if not query_only:
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            if query_only:
                connection.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open ledger database {self.path}: {exc}") from exc
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect(query_only=True)
            self._local.connection = connection
        return connection

    def size(self) -> int:
        return _size(self._reader())

    @contextmanager
    def sequenced(self) -> Iterator[Sequenced]:
        """The flock already makes this the only writer: the sequencer is :meth:`commit` itself."""
        connection = self._write_connection
        if connection is None:
            raise StorageError(f"{self.path} is not open for writing")
        yield _SqliteSequenced(self, connection)

    def commit(self, leaves: Sequence[StoredLeaf], tree_heads: Sequence[TreeHead]) -> None:
        """Write leaves and tree heads in one durable transaction; raise
        :class:`StorageError` (and write nothing) on failure."""
        connection = self._write_connection
        if connection is None:
            raise StorageError(f"{self.path} is not open for writing")
        try:
            if len(leaves) <= _ROWS_PER_STATEMENT and not tree_heads:
                # One statement in autocommit mode is its own durable transaction.
                _insert_leaves(connection, leaves)
                return
            connection.execute("BEGIN IMMEDIATE")
            for start in range(0, len(leaves), _ROWS_PER_STATEMENT):
                _insert_leaves(connection, leaves[start : start + _ROWS_PER_STATEMENT])
            connection.executemany(
                f"INSERT INTO tree_heads ({HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                [(h.tree_size, h.root_hash, h.timestamp, h.key_id, h.signature) for h in tree_heads],
            )
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StorageError(f"commit of {len(leaves)} entries to {self.path} failed: {exc}") from exc

    def leaf(self, index: int) -> StoredLeaf | None:
        row = self._reader().execute(f"SELECT {LEAF_COLUMNS} FROM entries WHERE idx = ?", (index,)).fetchone()
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
        clauses, values = filter_clauses(_DECISION_ID, [below, tenant, kind, jurisdiction, since, until, decision_id])
        params: list[object] = [after, *values]
        sql = f"SELECT {LEAF_COLUMNS} FROM entries WHERE {' AND '.join(['idx > ?', *clauses])} ORDER BY idx"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        cursor = self._reader().execute(sql, params)
        cursor.arraysize = 512
        while rows := cursor.fetchmany():
            for row in rows:
                yield StoredLeaf(*row)

    def subtree_hashes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _subtree_hashes(self._reader(), keys)

    def tree_heads(self) -> list[TreeHead]:
        rows = self._reader().execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads ORDER BY seq")
        return [tree_head_of_row(row) for row in rows]

    def latest_tree_head(self) -> TreeHead | None:
        return _latest_tree_head(self._reader())

    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._write_connection = None
        self._local = threading.local()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def filter_clauses(decision_id_of_leaf: str, values: Sequence[object]) -> tuple[list[str], list[object]]:
    """The conditions (``?`` marks) and values of the filters of :meth:`LedgerStore.scan` that are
    given, from ``[below, tenant, kind, jurisdiction, since, until, decision_id]`` (None: not given).

    >>> filter_clauses("d(leaf)", [None, "a", None, None, None, "2026", "dec-1"])
    (['tenant = ?', 'ts < ?', 'd(leaf) = ?'], ['a', '2026', 'dec-1'])
    """
    conditions = ["idx < ?", "tenant = ?", "kind = ?", "jurisdiction = ?", "ts >= ?", "ts < ?",
                  decision_id_of_leaf + " = ?"]
    given = [(condition, value) for condition, value in zip(conditions, values, strict=True) if value is not None]
    return [condition for condition, _ in given], [value for _, value in given]


class _SqliteSequenced:
    """:class:`Sequenced` on the writer's connection; :meth:`write` is the durable commit."""

    def __init__(self, store: SqliteStore, connection: sqlite3.Connection) -> None:
        self._store = store
        self._connection = connection

    def size(self) -> int:
        return _size(self._connection)

    def subtree_hashes(self, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return _subtree_hashes(self._connection, keys)

    def latest_tree_head(self) -> TreeHead | None:
        return _latest_tree_head(self._connection)

    def write(self, leaves: Sequence[StoredLeaf], tree_heads: Sequence[TreeHead]) -> None:
        self._store.commit(leaves, tree_heads)


def _size(connection: sqlite3.Connection) -> int:
    (highest,) = connection.execute("SELECT max(idx) FROM entries").fetchone()
    return 0 if highest is None else highest + 1


def _subtree_hashes(connection: sqlite3.Connection, keys: Collection[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    wanted = rows_of_subtrees(keys)
    if not wanted:
        return {}
    marks = ",".join("?" * len(wanted))
    rows = connection.execute(f"SELECT idx, leaf_hash, subtrees FROM entries WHERE idx IN ({marks})", list(wanted))
    return subtrees_of_rows(wanted, rows)


def rows_of_subtrees(keys: Collection[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
    """The row holding each complete subtree ``(level, index)``: ``((index + 1) << level) - 1``.

    >>> rows_of_subtrees([(0, 5), (2, 1), (1, 3)])
    {5: [(0, 5)], 7: [(2, 1), (1, 3)]}
    """
    wanted: dict[int, list[tuple[int, int]]] = {}
    for level, index in keys:
        wanted.setdefault(((index + 1) << level) - 1, []).append((level, index))
    return wanted


def subtrees_of_rows(
    wanted: dict[int, list[tuple[int, int]]], rows: Iterable[tuple[int, bytes, bytes]]
) -> dict[tuple[int, int], bytes]:
    """The hashes asked for in ``wanted`` (from :func:`rows_of_subtrees`), cut out of
    ``(idx, leaf_hash, subtrees)`` rows; a hash the row does not hold is absent."""
    found: dict[tuple[int, int], bytes] = {}
    for row_index, value, completed in rows:
        for level, index in wanted[row_index]:
            if level == 0:
                found[(level, index)] = value
            elif len(completed) >= 32 * level:
                found[(level, index)] = completed[32 * (level - 1) : 32 * level]
    return found


def _latest_tree_head(connection: sqlite3.Connection) -> TreeHead | None:
    row = connection.execute(f"SELECT {HEAD_COLUMNS} FROM tree_heads ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else tree_head_of_row(row)


_ROW_MARKS = "(" + ", ".join("?" * len(StoredLeaf._fields)) + ")"


def _insert_leaves(connection: sqlite3.Connection, leaves: Sequence[StoredLeaf]) -> None:
    """One multi-row INSERT: a single SQLite step where ``executemany`` takes one per row
    (each step releases and retakes the GIL, which dominates with many writer threads)."""
    if not leaves:
        return
    params = [value for leaf in leaves for value in leaf]
    connection.execute(f"INSERT INTO entries ({LEAF_COLUMNS}) VALUES " + ", ".join([_ROW_MARKS] * len(leaves)), params)


def tree_head_of_row(row: tuple) -> TreeHead:
    """A stored head as it is, unvalidated: verification must see tampered values, not fail to load them."""
    tree_size, root_hash, timestamp, key, signature = row
    return TreeHead.model_construct(
        tree_size=tree_size, root_hash=root_hash, timestamp=timestamp, key_id=key, signature=signature
    )
