"""The Batch API's durable state in PostgreSQL, file bytes included, shared by a site's gateway
processes (:class:`~serving.batch.storage.BatchStorage`; SQLite twin: :mod:`serving.batch.store`).

Tables: ``batch_files``, ``batches``, ``batch_lines``, ``batch_replicas`` as in SQLite, and
``batch_file_chunks`` (``file_id``, ``seq``, ``data bytea``): a file's bytes in pieces of
:data:`~serving.batch.storage.CHUNK_BYTES`, written and read one piece at a time so no process
ever holds a whole file in memory, and visible to every gateway of the site whichever machine
received the upload. An upload's pieces and its row are committed in one transaction; a result
file's pieces are written before :meth:`PgBatchStore.finish` records it, so a crash in between
leaves pieces no row names, which :meth:`PgBatchStore.remove_orphans` deletes once they are an
hour old (never those of a batch being finalized by another process right now).

Exactly once, as in SQLite: a line's output is written in the same transaction as the batch's
counters, and only while the line has none (``result IS NULL``); under PostgreSQL's row locks
two processes answering the same line cannot both count it.

Every method raises :class:`~scheduler.database.DatabaseUnavailable` when the database cannot
be reached, and works again once it is back.

One module because it is one schema: every query here reads or writes the same tables inside
the same transactions.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from scheduler.database_sessions import open_store_pool, transaction
from serving.batch.records import ACTIVE, TERMINAL, BatchRecord, FileRecord, LineResult, failure_text, new_id
from serving.batch.storage import (BATCH_COLUMNS, CHUNK_BYTES, FILE_COLUMNS, batch_from_row,
                                   check_updatable, column_value)

ORPHAN_AGE_S = 3600
"""Pieces of a file no row names are deleted once this old (a crash between writing a result
file and recording it; an upload is one transaction and never leaves any)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_files (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_files_by_tenant ON batch_files (tenant, seq);
CREATE TABLE IF NOT EXISTS batch_file_chunks (
    file_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BYTEA NOT NULL,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, seq)
);
CREATE TABLE IF NOT EXISTS batches (
    seq BIGSERIAL PRIMARY KEY,
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
    total BIGINT NOT NULL DEFAULT 0,
    completed BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    input_tokens BIGINT NOT NULL DEFAULT 0,
    output_tokens BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    in_progress_at BIGINT,
    finalizing_at BIGINT,
    completed_at BIGINT,
    failed_at BIGINT,
    expired_at BIGINT,
    cancelling_at BIGINT,
    cancelled_at BIGINT
);
CREATE INDEX IF NOT EXISTS batches_by_tenant ON batches (tenant, seq);
CREATE INDEX IF NOT EXISTS batches_by_status ON batches (status);
CREATE TABLE IF NOT EXISTS batch_lines (
    batch_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    body TEXT NOT NULL,
    result TEXT,
    ok BOOLEAN,
    PRIMARY KEY (batch_id, line)
);
CREATE TABLE IF NOT EXISTS batch_replicas (
    batch_id TEXT NOT NULL,
    replica TEXT NOT NULL,
    PRIMARY KEY (batch_id, replica)
)
"""

_BATCHES = f"SELECT {','.join(BATCH_COLUMNS)} FROM batches"
_FILES = f"SELECT {','.join(FILE_COLUMNS)} FROM batch_files"
_INSERT_FILE = f"INSERT INTO batch_files ({','.join(FILE_COLUMNS)}) VALUES (%s,%s,%s,%s,%s,%s)"


class PgBatchStore:
    """The Batch API's state in the PostgreSQL database at ``url``; uploads are received into
    ``staging`` (a local directory) before they go into the database."""

    def __init__(self, url: str, *, staging: Path | None = None, timeout: float = 5.0) -> None:
        self.staging = staging
        self._pool = open_store_pool(url, name="corridor-batches", max_size=4, schema=_SCHEMA,
                                     timeout=timeout)

    def close(self) -> None:
        self._pool.close()

    # -- files ----------------------------------------------------------------

    def staging_path(self) -> Path:
        """A fresh local path to receive an upload into before :meth:`add_file` stores it."""
        if self.staging is None:
            import tempfile

            self.staging = Path(tempfile.mkdtemp(prefix="corridor-uploads-"))
        self.staging.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.staging / f"{new_id('upload-')}.tmp"

    def local_path(self, file_id: str) -> None:
        """None: the bytes are in the database (read them with :meth:`open_file`)."""
        return None

    def add_file(self, record: FileRecord, staged: Path | None = None) -> None:
        """Record a file and store its bytes from ``staged`` (read piece by piece), in one
        transaction; ``staged`` stays for the caller to remove."""
        with transaction(self._pool) as db:
            db.execute(_INSERT_FILE, [getattr(record, c) for c in FILE_COLUMNS])
            if staged is not None:
                with staged.open("rb") as source:
                    _insert_chunks(db, record.id, iter(lambda: source.read(CHUNK_BYTES), b""))

    def get_file(self, file_id: str, tenant: str) -> FileRecord | None:
        with transaction(self._pool) as db:
            row = db.execute(f"{_FILES} WHERE id=%s AND tenant=%s", (file_id, tenant)).fetchone()
        return FileRecord(*row) if row else None

    def list_files(self, tenant: str, *, after: str | None, limit: int, descending: bool,
                   purpose: str | None) -> tuple[list[FileRecord], bool]:
        """One page of the tenant's files, newest first unless ``descending`` is False."""
        where, args = ["tenant=%s"], [tenant]
        if purpose:
            where.append("purpose=%s")
            args.append(purpose)
        if after:
            where.append(f"seq {'<' if descending else '>'} COALESCE((SELECT seq FROM batch_files "
                         f"WHERE id=%s AND tenant=%s), -1)")
            args += [after, tenant]
        with transaction(self._pool) as db:
            rows = db.execute(f"{_FILES} WHERE {' AND '.join(where)} ORDER BY seq "
                              f"{'DESC' if descending else 'ASC'} LIMIT %s", [*args, limit + 1]).fetchall()
        return [FileRecord(*row) for row in rows[:limit]], len(rows) > limit

    def delete_file(self, file_id: str, tenant: str) -> bool:
        with transaction(self._pool) as db:
            deleted = db.execute("DELETE FROM batch_files WHERE id=%s AND tenant=%s",
                                 (file_id, tenant)).rowcount
            if deleted:
                db.execute("DELETE FROM batch_file_chunks WHERE file_id=%s", (file_id,))
        return bool(deleted)

    def open_file(self, file_id: str) -> BinaryIO:
        """The file's bytes, read one piece per query as the caller reads; FileNotFoundError when
        no row names it."""
        with transaction(self._pool) as db:
            known = db.execute("SELECT 1 FROM batch_files WHERE id=%s", (file_id,)).fetchone()
        if known is None:
            raise FileNotFoundError(f"no file {file_id!r} in the batch store")
        return io.BufferedReader(_ChunkReader(self._pool, file_id), buffer_size=CHUNK_BYTES)

    def remove_orphans(self) -> int:
        """Delete pieces no file row names, written over :data:`ORPHAN_AGE_S` ago, and local
        staging files as old; returns how many files' pieces or staging files went."""
        with transaction(self._pool) as db:
            removed = db.execute(
                "DELETE FROM batch_file_chunks c WHERE written_at < now() - make_interval(secs => %s) "
                "AND NOT EXISTS (SELECT 1 FROM batch_files f WHERE f.id = c.file_id) "
                "RETURNING file_id", (ORPHAN_AGE_S,)).fetchall()
        count = len({row[0] for row in removed})
        if self.staging is not None and self.staging.is_dir():
            for path in self.staging.glob("*.tmp"):
                try:
                    if path.stat().st_mtime < time.time() - ORPHAN_AGE_S:
                        path.unlink(missing_ok=True)
                        count += 1
                except FileNotFoundError:
                    pass
        return count

    # -- batches --------------------------------------------------------------

    def add_batch(self, record: BatchRecord) -> None:
        with transaction(self._pool) as db:
            db.execute(f"INSERT INTO batches ({','.join(BATCH_COLUMNS)}) "
                       f"VALUES ({','.join(['%s'] * len(BATCH_COLUMNS))})",
                       [column_value(c, getattr(record, c)) for c in BATCH_COLUMNS])

    def get_batch(self, batch_id: str, tenant: str | None = None) -> BatchRecord | None:
        """The batch, or None; with ``tenant`` only if it belongs to that tenant."""
        sql, args = f"{_BATCHES} WHERE id=%s", [batch_id]
        if tenant is not None:
            sql += " AND tenant=%s"
            args.append(tenant)
        with transaction(self._pool) as db:
            row = db.execute(sql, args).fetchone()
        return batch_from_row(row) if row else None

    def list_batches(self, tenant: str, *, after: str | None, limit: int) -> tuple[list[BatchRecord], bool]:
        """One page of the tenant's batches, newest first."""
        where, args = "tenant=%s", [tenant]
        if after:
            where += " AND seq < COALESCE((SELECT seq FROM batches WHERE id=%s AND tenant=%s), -1)"
            args += [after, tenant]
        with transaction(self._pool) as db:
            rows = db.execute(f"{_BATCHES} WHERE {where} ORDER BY seq DESC LIMIT %s",
                              [*args, limit + 1]).fetchall()
        return [batch_from_row(row) for row in rows[:limit]], len(rows) > limit

    def active_batches(self) -> list[BatchRecord]:
        """Batches with work left, oldest first (what the executor resumes after a restart)."""
        with transaction(self._pool) as db:
            rows = db.execute(f"{_BATCHES} WHERE status = ANY(%s) ORDER BY seq", (list(ACTIVE),)).fetchall()
        return [batch_from_row(row) for row in rows]

    def update_batch(self, batch_id: str, **values: Any) -> None:
        """Set columns of a batch, e.g. ``update_batch(id, status="cancelling", cancelling_at=t)``."""
        check_updatable(values)
        with transaction(self._pool) as db:
            _set_columns(db, batch_id, values)

    def start_lines(self, batch_id: str, model: str,
                    lines: Iterable[tuple[int, str, str]], now: int) -> None:
        """Store every input line and move the batch to ``in_progress`` (unless it was cancelled
        meanwhile), in one transaction."""
        with transaction(self._pool) as db:
            count = 0
            with db.cursor() as cursor:
                with cursor.copy("COPY batch_lines (batch_id, line, custom_id, body) FROM STDIN") as copy:
                    for line, custom_id, body in lines:
                        copy.write_row((batch_id, line, custom_id, body))
                        count += 1
            db.execute("UPDATE batches SET in_progress_at=%s, model=%s, total=%s, status=CASE status "
                       "WHEN 'validating' THEN 'in_progress' ELSE status END WHERE id=%s",
                       (now, model, count, batch_id))

    # -- lines ----------------------------------------------------------------

    def pending_lines(self, batch_id: str, *, after: int, limit: int) -> list[tuple[int, str, str]]:
        """Lines without an output, after line number ``after``: ``(line, custom_id, body)``."""
        with transaction(self._pool) as db:
            return db.execute("SELECT line, custom_id, body FROM batch_lines WHERE batch_id=%s "
                              "AND line>%s AND result IS NULL ORDER BY line LIMIT %s",
                              (batch_id, after, limit)).fetchall()

    def pending_count(self, batch_id: str) -> int:
        with transaction(self._pool) as db:
            return db.execute("SELECT COUNT(*) FROM batch_lines WHERE batch_id=%s AND result IS NULL",
                              (batch_id,)).fetchone()[0]

    def record_results(self, results: Iterable[LineResult]) -> int:
        """Commit line outputs and the batches' counters together; returns how many were new.

        A line that already has an output keeps it (the second answer is dropped).
        """
        counts: dict[str, list[int]] = {}
        written = 0
        with transaction(self._pool) as db:
            for r in sorted(results, key=lambda r: (r.batch_id, r.line)):  # one lock order: no deadlock
                changed = db.execute(
                    "UPDATE batch_lines SET result=%s, ok=%s, body='' WHERE batch_id=%s AND line=%s "
                    "AND result IS NULL", (r.text, r.ok, r.batch_id, r.line)).rowcount
                if not changed:
                    continue
                written += 1
                c = counts.setdefault(r.batch_id, [0, 0, 0, 0])
                c[0 if r.ok else 1] += 1
                c[2] += r.input_tokens
                c[3] += r.output_tokens
            for batch_id, (ok, failed, tokens_in, tokens_out) in sorted(counts.items()):
                db.execute("UPDATE batches SET completed=completed+%s, failed=failed+%s, "
                           "input_tokens=input_tokens+%s, output_tokens=output_tokens+%s WHERE id=%s",
                           (ok, failed, tokens_in, tokens_out, batch_id))
        return written

    def close_pending(self, batch_id: str, code: str, message: str, *, keep: Iterable[int] = ()) -> int:
        """Give every pending line except ``keep`` (in flight) the error ``code``; returns how many."""
        keep = set(keep)
        with transaction(self._pool) as db:
            rows = db.execute("SELECT line, custom_id FROM batch_lines WHERE batch_id=%s "
                              "AND result IS NULL ORDER BY line FOR UPDATE", (batch_id,)).fetchall()
            closing = [(failure_text(custom_id, code, message), batch_id, line)
                       for line, custom_id in rows if line not in keep]
            with db.cursor() as cursor:
                cursor.executemany("UPDATE batch_lines SET result=%s, ok=false, body='' "
                                   "WHERE batch_id=%s AND line=%s", closing)
            db.execute("UPDATE batches SET failed=failed+%s WHERE id=%s", (len(closing), batch_id))
        return len(closing)

    def write_results(self, batch_id: str, ok: bool, file_id: str) -> int:
        """Store the batch's output (``ok``) or error lines, in input order, as the pieces of file
        ``file_id`` (recorded by :meth:`finish`); returns its size, 0 (nothing stored) when
        there is no such line. Lines are read through a server-side cursor: memory stays at one
        piece whatever the batch's size."""
        with transaction(self._pool) as db:
            with db.cursor(name=f"results_{file_id.replace('-', '_')}") as lines:
                lines.execute("SELECT result FROM batch_lines WHERE batch_id=%s AND ok=%s ORDER BY line",
                              (batch_id, ok))
                return _insert_chunks(db, file_id, _pieces(row[0] for row in lines))

    def finish(self, batch_id: str, files: Iterable[FileRecord], **values: Any) -> None:
        """Record the result files, set the final status, and drop the lines, in one transaction;
        nothing when the batch has ended already (another process finished it first: its result
        files stand, the pieces written here are orphans)."""
        with transaction(self._pool) as db:
            ended = db.execute("SELECT status = ANY(%s) FROM batches WHERE id=%s FOR UPDATE",
                               (list(TERMINAL), batch_id)).fetchone()
            if ended is None or ended[0]:
                return
            for record in files:
                db.execute(_INSERT_FILE, [getattr(record, c) for c in FILE_COLUMNS])
            _set_columns(db, batch_id, values)
            db.execute("DELETE FROM batch_lines WHERE batch_id=%s", (batch_id,))
            db.execute("DELETE FROM batch_replicas WHERE batch_id=%s", (batch_id,))

    # -- replicas used --------------------------------------------------------

    def replicas_of(self, batch_id: str) -> set[str]:
        with transaction(self._pool) as db:
            return {row[0] for row in db.execute(
                "SELECT replica FROM batch_replicas WHERE batch_id=%s", (batch_id,))}

    def add_replica(self, batch_id: str, replica: str) -> None:
        with transaction(self._pool) as db:
            db.execute("INSERT INTO batch_replicas (batch_id, replica) VALUES (%s,%s) "
                       "ON CONFLICT DO NOTHING", (batch_id, replica))

    def lines(self, batch_id: str) -> Iterator[tuple[int, str, str | None]]:
        """``(line, custom_id, result)`` of every stored line (for tests and diagnostics)."""
        with transaction(self._pool) as db:
            rows = db.execute("SELECT line, custom_id, result FROM batch_lines WHERE batch_id=%s "
                              "ORDER BY line", (batch_id,)).fetchall()
        yield from rows


def _set_columns(db: Any, batch_id: str, values: dict[str, Any]) -> None:
    names = list(values)
    db.execute(f"UPDATE batches SET {','.join(f'{n}=%s' for n in names)} WHERE id=%s",
               [*(column_value(n, values[n]) for n in names), batch_id])


def _pieces(texts: Iterable[str]) -> Iterator[bytes]:
    """Lines (each followed by a newline), UTF-8, regrouped in pieces of about CHUNK_BYTES."""
    buffer = bytearray()
    for text in texts:
        buffer += text.encode("utf-8")
        buffer += b"\n"
        if len(buffer) >= CHUNK_BYTES:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _insert_chunks(db: Any, file_id: str, pieces: Iterable[bytes]) -> int:
    """Insert ``pieces`` as the chunks of ``file_id`` (in ``db``'s transaction); the byte count."""
    size = 0
    with db.cursor() as cursor:
        for seq, piece in enumerate(pieces):
            cursor.execute("INSERT INTO batch_file_chunks (file_id, seq, data) VALUES (%s,%s,%s)",
                           (file_id, seq, piece))
            size += len(piece)
    return size


class _ChunkReader(io.RawIOBase):
    """A file's chunks as a raw stream, one query per chunk (no transaction held between reads)."""

    def __init__(self, pool: Any, file_id: str) -> None:
        self._pool = pool
        self._file_id = file_id
        self._seq = 0
        self._piece = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._piece and not self._done:
            with transaction(self._pool) as db:
                row = db.execute("SELECT data FROM batch_file_chunks WHERE file_id=%s AND seq=%s",
                                 (self._file_id, self._seq)).fetchone()
            self._seq += 1
            if row is None:
                self._done = True
            else:
                self._piece = memoryview(bytes(row[0]))
        count = min(len(buffer), len(self._piece))
        buffer[:count] = self._piece[:count]
        self._piece = self._piece[count:]
        return count

