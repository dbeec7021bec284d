"""What the Batch API keeps durably, as one protocol with two backends, and its table rows.

:class:`BatchStorage` is what the service, the executor and the lifecycle use: file records and
their bytes, batches, their lines (each line's output written exactly once, with the batch's
counters) and the replicas a batch used. :class:`serving.batch.store.BatchStore` keeps it in
SQLite and a file directory (the embedded default); :class:`serving.batch.pg_store.PgBatchStore`
keeps everything, file bytes included, in PostgreSQL, so every gateway process of a site sees
the same files and batches. :func:`serving.batch.store.open_batch_store` picks one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from serving.batch.records import BatchError, BatchRecord, FileRecord, LineResult

BATCH_COLUMNS = (
    "id", "tenant", "input_file_id", "endpoint", "completion_window", "metadata", "marking",
    "data_flags", "model", "status", "ending", "errors", "output_file_id", "error_file_id",
    "total", "completed", "failed", "input_tokens", "output_tokens", "created_at", "expires_at",
    "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
    "cancelling_at", "cancelled_at")
FILE_COLUMNS = ("id", "tenant", "filename", "purpose", "bytes", "created_at")
UPDATABLE = frozenset(BATCH_COLUMNS) - {"id", "tenant", "input_file_id", "endpoint", "created_at"}
CHUNK_BYTES = 1024 * 1024
"""Files are copied (and, in PostgreSQL, stored) in pieces of this size, never whole."""


def batch_from_row(row: Sequence[Any]) -> BatchRecord:
    """The record of a ``batches`` row selected as :data:`BATCH_COLUMNS`."""
    values = dict(zip(BATCH_COLUMNS, row))
    values["metadata"] = json.loads(values["metadata"]) if values["metadata"] else None
    values["data_flags"] = tuple(f for f in values["data_flags"].split(",") if f)
    values["errors"] = [BatchError(**e) for e in json.loads(values["errors"])]
    return BatchRecord(**values)


def column_value(name: str, value: Any) -> Any:
    """``value`` of column ``name`` as stored (JSON text for metadata and errors)."""
    if name == "metadata":
        return json.dumps(value, ensure_ascii=False) if value is not None else None
    if name == "data_flags":
        return ",".join(value)
    if name == "errors":
        return json.dumps([e.to_json() for e in value], ensure_ascii=False)
    return value


def check_updatable(values: Iterable[str]) -> None:
    unknown = set(values) - UPDATABLE
    if unknown:
        raise ValueError(f"update_batch: got {sorted(unknown)}, want columns of {sorted(UPDATABLE)}")


class BatchStorage(Protocol):
    """The Batch API's durable state (see the module docstring)."""

    def close(self) -> None: ...

    # files: an upload is received into staging_path(), then handed over with add_file
    def staging_path(self) -> Path: ...
    def add_file(self, record: FileRecord, staged: Path | None = None) -> None: ...
    def get_file(self, file_id: str, tenant: str) -> FileRecord | None: ...
    def list_files(self, tenant: str, *, after: str | None, limit: int, descending: bool,
                   purpose: str | None) -> tuple[list[FileRecord], bool]: ...
    def delete_file(self, file_id: str, tenant: str) -> bool: ...
    def open_file(self, file_id: str) -> BinaryIO: ...
    def local_path(self, file_id: str) -> Path | None: ...
    def remove_orphans(self) -> int: ...

    # batches and their lines
    def add_batch(self, record: BatchRecord) -> None: ...
    def get_batch(self, batch_id: str, tenant: str | None = None) -> BatchRecord | None: ...
    def list_batches(self, tenant: str, *, after: str | None,
                     limit: int) -> tuple[list[BatchRecord], bool]: ...
    def active_batches(self) -> list[BatchRecord]: ...
    def update_batch(self, batch_id: str, **values: Any) -> None: ...
    def start_lines(self, batch_id: str, model: str, lines: Iterable[tuple[int, str, str]],
                    now: int) -> None: ...
    def pending_lines(self, batch_id: str, *, after: int, limit: int) -> list[tuple[int, str, str]]: ...
    def pending_count(self, batch_id: str) -> int: ...
    def record_results(self, results: Iterable[LineResult]) -> int: ...
    def close_pending(self, batch_id: str, code: str, message: str, *, keep: Iterable[int] = ()) -> int: ...
    def write_results(self, batch_id: str, ok: bool, file_id: str) -> int: ...
    def finish(self, batch_id: str, files: Iterable[FileRecord], **values: Any) -> None: ...
    def replicas_of(self, batch_id: str) -> set[str]: ...
    def add_replica(self, batch_id: str, replica: str) -> None: ...
    def lines(self, batch_id: str) -> Iterator[tuple[int, str, str | None]]: ...
