"""Durable state of the Batch API: SQLite ``$CORRIDOR_HOME/batches.db`` and ``files/``.

The embedded default; :func:`open_batch_store` opens this store or, given a PostgreSQL URL,
its twin :mod:`serving.batch.pg_store` (both are :class:`~serving.batch.storage.BatchStorage`).

Tables: ``files`` (metadata; the bytes are ``files/<id>.jsonl``), ``batches``
(one row per batch: status, counts, timestamps), ``lines`` (one row per input
line of a running batch: its request body, and its output line once it has
one), ``batch_replicas`` (the replicas whose use by a batch is in the ledger).

Exactly once: a line's output is written in the same transaction as the
batch's counters, and only while the line has none (``result IS NULL``). A
line whose answer was not committed before a crash is simply pending again
and runs once more; the output and error files are written from this table
at the end, so each input line appears in them exactly once. The database
runs in WAL mode with ``synchronous=NORMAL``: a committed transaction
survives the process being killed.

One connection per thread; any thread may call any method.

One module because it is one SQLite schema: every query here reads or writes
the same three tables inside the same transactions.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from scheduler.private_files import private_database, private_directory
from serving.batch.records import ACTIVE, BatchRecord, FileRecord, LineResult, failure_text, new_id
from serving.batch.storage import (BATCH_COLUMNS, FILE_COLUMNS, BatchStorage, batch_from_row,
                                   check_updatable, column_value)

DB_FILENAME = "batches.db"
FILES_DIRNAME = "files"
UPLOADS_DIRNAME = "uploads"
"""With PostgreSQL: where this machine receives an upload before it goes into the database."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_tenant ON files (tenant, seq);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    metadata TEXT,
    marking TEXT NOT NULL,
    data_flags TEXT NOT NULL,
    model TEXT,
    status TEXT NOT NULL,
    ending TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    output_file_id TEXT,
    error_file_id TEXT,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    in_progress_at INTEGER,
    finalizing_at INTEGER,
    completed_at INTEGER,
    failed_at INTEGER,
    expired_at INTEGER,
    cancelling_at INTEGER,
    cancelled_at INTEGER
);
CREATE INDEX IF NOT EXISTS batches_by_tenant ON batches (tenant, seq);
CREATE INDEX IF NOT EXISTS batches_by_status ON batches (status);
CREATE TABLE IF NOT EXISTS lines (
    batch_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    body TEXT NOT NULL,
    result TEXT,
    ok INTEGER,
    PRIMARY KEY (batch_id, line)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batch_replicas (
    batch_id TEXT NOT NULL,
    replica TEXT NOT NULL,
    PRIMARY KEY (batch_id, replica)
) WITHOUT ROWID;
"""

def open_batch_store(home: Path, *, database: str | None = None) -> BatchStorage:
    """The site's batch store: SQLite and files in ``home`` (the embedded default), or the
    PostgreSQL database ``database`` (file bytes included) shared by every gateway process."""
    if database is None:
        return BatchStore(home)
    from serving.batch.pg_store import PgBatchStore

    return PgBatchStore(database, staging=Path(home) / UPLOADS_DIRNAME)


def _fsync_directory(path: os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BatchStore:
    """The Batch API's database and file directory under ``home``."""

    def __init__(self, home: Path | str) -> None:
        self.home = private_directory(home)
        self.files_dir = private_directory(self.home / FILES_DIRNAME)
        self.path = private_database(self.home / DB_FILENAME)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._db().executescript(_SCHEMA)

    # -- connections ----------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            with self._guard:
                self._connections.append(db)
        return db

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if kind is not None else "COMMIT")

    def _tx(self) -> BatchStore._Tx:
        return BatchStore._Tx(self._db())

    def close(self) -> None:
        with self._guard:
            for db in self._connections:
                try:
                    db.close()
                except sqlite3.ProgrammingError:
                    pass
            self._connections.clear()
        self._local = threading.local()

    # -- files ----------------------------------------------------------------

    def file_path(self, file_id: str) -> Path:
        return self.files_dir / f"{file_id}.jsonl"

    def local_path(self, file_id: str) -> Path:
        """Where the file's bytes are on this machine (the gateway sends them from there)."""
        return self.file_path(file_id)

    def staging_path(self) -> Path:
        """A fresh path in the file directory to receive an upload into (a crash leaves only a
        ``.tmp`` file, removed at the next start)."""
        return self.file_path(new_id("upload-")).with_suffix(".tmp")

    def open_file(self, file_id: str) -> BinaryIO:
        """The file's bytes, for reading; FileNotFoundError when it is gone."""
        return self.file_path(file_id).open("rb")

    def add_file(self, record: FileRecord, staged: Path | None = None) -> None:
        """Record a file: its bytes are ``staged`` (made durable and moved into place, consumed),
        or already at :meth:`file_path` when ``staged`` is None."""
        target = self.file_path(record.id)
        if staged is not None:
            with staged.open("rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(staged, target)
        try:
            with self._tx() as db:
                db.execute(f"INSERT INTO files ({','.join(FILE_COLUMNS)}) VALUES (?,?,?,?,?,?)",
                           [getattr(record, c) for c in FILE_COLUMNS])
        except BaseException:
            if staged is not None:
                target.unlink(missing_ok=True)
            raise

    def get_file(self, file_id: str, tenant: str) -> FileRecord | None:
        row = self._db().execute(f"SELECT {','.join(FILE_COLUMNS)} FROM files WHERE id=? AND tenant=?",
                                 (file_id, tenant)).fetchone()
        return FileRecord(*row) if row else None

    def list_files(self, tenant: str, *, after: str | None, limit: int, descending: bool,
                   purpose: str | None) -> tuple[list[FileRecord], bool]:
        """One page of the tenant's files, newest first unless ``descending`` is False."""
        where, args = ["tenant=?"], [tenant]
        if purpose:
            where.append("purpose=?")
            args.append(purpose)
        if after:
            where.append(f"seq {'<' if descending else '>'} "
                         f"COALESCE((SELECT seq FROM files WHERE id=? AND tenant=?), -1)")
            args += [after, tenant]
        rows = self._db().execute(
            f"SELECT {','.join(FILE_COLUMNS)} FROM files WHERE {' AND '.join(where)} "
            f"ORDER BY seq {'DESC' if descending else 'ASC'} LIMIT ?", [*args, limit + 1]).fetchall()
        return [FileRecord(*row) for row in rows[:limit]], len(rows) > limit

    def delete_file(self, file_id: str, tenant: str) -> bool:
        with self._tx() as db:
            deleted = db.execute("DELETE FROM files WHERE id=? AND tenant=?", (file_id, tenant)).rowcount
        if deleted:
            self.file_path(file_id).unlink(missing_ok=True)
        return bool(deleted)

    def remove_orphans(self) -> int:
        """Delete files on disk that no row names (left by a crash mid-upload or mid-finalize)."""
        known = {row[0] for row in self._db().execute("SELECT id FROM files")}
        removed = 0
        for path in self.files_dir.iterdir():
            name = path.name.removesuffix(".tmp").removesuffix(".jsonl")
            if path.suffix == ".tmp" or name not in known:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- batches --------------------------------------------------------------

    def add_batch(self, record: BatchRecord) -> None:
        with self._tx() as db:
            db.execute(f"INSERT INTO batches ({','.join(BATCH_COLUMNS)}) "
                       f"VALUES ({','.join('?' * len(BATCH_COLUMNS))})",
                       [column_value(c, getattr(record, c)) for c in BATCH_COLUMNS])

    def get_batch(self, batch_id: str, tenant: str | None = None) -> BatchRecord | None:
        """The batch, or None; with ``tenant`` only if it belongs to that tenant."""
        sql = f"SELECT {','.join(BATCH_COLUMNS)} FROM batches WHERE id=?"
        args: list[Any] = [batch_id]
        if tenant is not None:
            sql += " AND tenant=?"
            args.append(tenant)
        row = self._db().execute(sql, args).fetchone()
        return batch_from_row(row) if row else None

    def list_batches(self, tenant: str, *, after: str | None, limit: int) -> tuple[list[BatchRecord], bool]:
        """One page of the tenant's batches, newest first."""
        where, args = "tenant=?", [tenant]
        if after:
            where += " AND seq < COALESCE((SELECT seq FROM batches WHERE id=? AND tenant=?), -1)"
            args += [after, tenant]
        rows = self._db().execute(
            f"SELECT {','.join(BATCH_COLUMNS)} FROM batches WHERE {where} ORDER BY seq DESC LIMIT ?",
            [*args, limit + 1]).fetchall()
        return [batch_from_row(row) for row in rows[:limit]], len(rows) > limit

    def active_batches(self) -> list[BatchRecord]:
        """Batches with work left, oldest first (what the executor resumes after a restart)."""
        rows = self._db().execute(
            f"SELECT {','.join(BATCH_COLUMNS)} FROM batches WHERE status IN "
            f"({','.join('?' * len(ACTIVE))}) ORDER BY seq", ACTIVE).fetchall()
        return [batch_from_row(row) for row in rows]

    def update_batch(self, batch_id: str, **values: Any) -> None:
        """Set columns of a batch, e.g. ``update_batch(id, status="cancelling", cancelling_at=t)``."""
        check_updatable(values)
        names = list(values)
        with self._tx() as db:
            db.execute(f"UPDATE batches SET {','.join(f'{n}=?' for n in names)} WHERE id=?",
                       [*(column_value(n, values[n]) for n in names), batch_id])

    def start_lines(self, batch_id: str, model: str,
                    lines: Iterable[tuple[int, str, str]], now: int) -> None:
        """Store every input line and move the batch to ``in_progress`` (unless it was cancelled
        meanwhile), in one transaction."""
        with self._tx() as db:
            count = 0
            for line, custom_id, body in lines:
                db.execute("INSERT INTO lines (batch_id, line, custom_id, body) VALUES (?,?,?,?)",
                           (batch_id, line, custom_id, body))
                count += 1
            db.execute("UPDATE batches SET in_progress_at=?, model=?, total=?, status=CASE status "
                       "WHEN 'validating' THEN 'in_progress' ELSE status END WHERE id=?",
                       (now, model, count, batch_id))

    # -- lines ----------------------------------------------------------------

    def pending_lines(self, batch_id: str, *, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Lines without an output, after line number ``after``: ``(line, custom_id, body)``."""
        return self._db().execute(
            "SELECT line, custom_id, body FROM lines WHERE batch_id=? AND line>? AND result IS NULL "
            "ORDER BY line LIMIT ?", (batch_id, after, limit)).fetchall()

    def pending_count(self, batch_id: str) -> int:
        return self._db().execute("SELECT COUNT(*) FROM lines WHERE batch_id=? AND result IS NULL",
                                  (batch_id,)).fetchone()[0]

    def record_results(self, results: Iterable[LineResult]) -> int:
        """Commit line outputs and the batches' counters together; returns how many were new.

        A line that already has an output keeps it (the second answer is dropped).
        """
        counts: dict[str, list[int]] = {}
        written = 0
        with self._tx() as db:
            for r in results:
                changed = db.execute(
                    "UPDATE lines SET result=?, ok=?, body='' WHERE batch_id=? AND line=? "
                    "AND result IS NULL", (r.text, int(r.ok), r.batch_id, r.line)).rowcount
                if not changed:
                    continue
                written += 1
                c = counts.setdefault(r.batch_id, [0, 0, 0, 0])
                c[0 if r.ok else 1] += 1
                c[2] += r.input_tokens
                c[3] += r.output_tokens
            for batch_id, (ok, failed, tokens_in, tokens_out) in counts.items():
                db.execute("UPDATE batches SET completed=completed+?, failed=failed+?, "
                           "input_tokens=input_tokens+?, output_tokens=output_tokens+? WHERE id=?",
                           (ok, failed, tokens_in, tokens_out, batch_id))
        return written

    def close_pending(self, batch_id: str, code: str, message: str, *, keep: Iterable[int] = ()) -> int:
        """Give every pending line except ``keep`` (in flight) the error ``code``; returns how many."""
        keep = set(keep)
        with self._tx() as db:
            rows = db.execute("SELECT line, custom_id FROM lines WHERE batch_id=? AND result IS NULL",
                              (batch_id,)).fetchall()
            closed = 0
            for line, custom_id in rows:
                if line in keep:
                    continue
                db.execute("UPDATE lines SET result=?, ok=0, body='' WHERE batch_id=? AND line=?",
                           (failure_text(custom_id, code, message), batch_id, line))
                closed += 1
            db.execute("UPDATE batches SET failed=failed+? WHERE id=?", (closed, batch_id))
        return closed

    def write_results(self, batch_id: str, ok: bool, file_id: str) -> int:
        """Write the batch's output (``ok``) or error lines, in input order, durably, as file
        ``file_id`` (not yet recorded: :meth:`finish` does); returns its size, 0 (and no file)
        when there is no such line."""
        target = self.file_path(file_id)
        staging = target.with_suffix(".tmp")
        count = 0
        with staging.open("w", encoding="utf-8") as handle:
            for (text,) in self._db().execute(
                    "SELECT result FROM lines WHERE batch_id=? AND ok=? ORDER BY line",
                    (batch_id, int(ok))):
                handle.write(text)
                handle.write("\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        if count == 0:
            staging.unlink()
            return 0
        os.replace(staging, target)
        _fsync_directory(self.files_dir)
        return target.stat().st_size

    def finish(self, batch_id: str, files: Iterable[FileRecord], **values: Any) -> None:
        """Record the result files, set the final status, and drop the lines, in one transaction."""
        files = list(files)
        names = list(values)
        with self._tx() as db:
            for record in files:
                db.execute(f"INSERT INTO files ({','.join(FILE_COLUMNS)}) VALUES (?,?,?,?,?,?)",
                           [getattr(record, c) for c in FILE_COLUMNS])
            db.execute(f"UPDATE batches SET {','.join(f'{n}=?' for n in names)} WHERE id=?",
                       [*(column_value(n, values[n]) for n in names), batch_id])
            db.execute("DELETE FROM lines WHERE batch_id=?", (batch_id,))
            db.execute("DELETE FROM batch_replicas WHERE batch_id=?", (batch_id,))

    # -- replicas used --------------------------------------------------------

    def replicas_of(self, batch_id: str) -> set[str]:
        return {row[0] for row in self._db().execute(
            "SELECT replica FROM batch_replicas WHERE batch_id=?", (batch_id,))}

    def add_replica(self, batch_id: str, replica: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO batch_replicas (batch_id, replica) VALUES (?,?)",
                       (batch_id, replica))

    def lines(self, batch_id: str) -> Iterator[tuple[int, str, str | None]]:
        """``(line, custom_id, result)`` of every stored line (for tests and diagnostics)."""
        yield from self._db().execute(
            "SELECT line, custom_id, result FROM lines WHERE batch_id=? ORDER BY line", (batch_id,))
