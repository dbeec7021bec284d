"""The Batch API's operations on files and batches, for one tenant at a time.

Called by the gateway's batch routes (:mod:`serving.gateway.batch_api`) with
the authenticated caller's tenant; every lookup is scoped to that tenant, so
another tenant's file or batch is simply not found. Inputs are checked here
and refused with :mod:`serving.batch.errors`; a batch the rulebook refuses
outright (its marking may go nowhere) is :class:`BatchForbidden` naming the
rules and a ``placement`` refusal in the ledger.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from policies import PolicyError, Workload, parse_data_flags, parse_marking
from serving.batch.executor import BatchExecutor
from serving.batch.lifecycle import refusal_entry
from serving.batch.runs import ExecutionSettings
from serving.batch.provisioning import Provisioner
from serving.batch.records import (CANCELLED, CANCELLING, ENDPOINTS, TERMINAL, VALIDATING,
                                   BatchRecord, FileRecord, new_id)
from serving.batch.storage import CHUNK_BYTES, BatchStorage
from serving.batch.store import open_batch_store
from serving.batch.validation import InputLimits
from serving.batch.errors import (BatchConflict, BatchForbidden, BatchNotFound, FileTooLarge,
                                  InvalidBatchRequest)
from serving.batch.ports import BatchPorts

_WINDOW = re.compile(r"^([1-9][0-9]*)([smh])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}
_CREATE_FIELDS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata"})
MARKING_KEY = "corridor_marking"
DATA_KEY = "corridor_data"


@dataclass(frozen=True, slots=True)
class BatchSettings:
    """Limits of the Batch API and how its executor runs.

    ``max_window_s`` bounds ``completion_window``, which takes ``<n>s``,
    ``<n>m`` or ``<n>h`` (OpenAI's ``24h`` included).
    """

    max_file_bytes: int = 200 * 1024 * 1024
    max_window_s: int = 7 * 24 * 3600
    limits: InputLimits = field(default_factory=InputLimits)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_window_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, want an integer >= 1, "
                                 f"e.g. BatchSettings(max_file_bytes=200 * 1024 * 1024)")


def completion_window_seconds(value: Any, maximum: int) -> int:
    """Seconds of a completion window, or a 400.

    >>> completion_window_seconds("24h", 7 * 24 * 3600)
    86400
    """
    match = _WINDOW.match(value) if isinstance(value, str) else None
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if not match or seconds > maximum:
        raise InvalidBatchRequest(f"completion_window: got {value!r}, want a duration such as '24h', "
                         f"'90m' or '30s', at most {maximum // 3600} h",
                         code="invalid_completion_window", param="completion_window")
    return seconds


class BatchService:
    """Files and batches of every tenant: a :class:`BatchStorage` and its :class:`BatchExecutor`."""

    def __init__(self, store: BatchStorage, *, settings: BatchSettings | None = None,
                 provisioner: Provisioner | None = None, clock: Callable[[], float] = time.time,
                 execute: bool = True, shared: bool = False) -> None:
        """``execute=False``: a gateway worker of a site with several; it stores and cancels,
        the control process's executor (``shared=True``) runs the batches."""
        self.store = store
        self.execute = execute
        self.settings = settings or BatchSettings()
        self.clock = clock
        self.executor = BatchExecutor(store, settings=self.settings.execution,
                                      limits=self.settings.limits, provisioner=provisioner,
                                      clock=clock, shared=shared)
        self.ports: BatchPorts | None = None

    @classmethod
    def open(cls, home: Path | str, *, database: str | None = None, **options: Any) -> BatchService:
        """The service on ``home/batches.db`` and ``home/files/`` (``$CORRIDOR_HOME``), or on the
        PostgreSQL ``database`` shared by the site's gateway processes."""
        return cls(open_batch_store(Path(home), database=database), **options)

    async def start(self, ports: BatchPorts) -> None:
        """Resume unfinished batches and start executing (the app's lifespan calls this)."""
        self.ports = ports
        if self.execute:
            await self.executor.start(ports)

    async def stop(self) -> None:
        if self.execute:
            await self.executor.stop()
        self.store.close()

    # -- files ----------------------------------------------------------------

    async def upload(self, tenant: str, filename: str, purpose: Any,
                     source: BinaryIO) -> FileRecord:
        """Store an uploaded file (``purpose`` must be ``batch``) under the caller's tenant."""
        if purpose != "batch":
            raise InvalidBatchRequest(f"purpose: got {purpose!r}, want 'batch' (the only purpose served)",
                             code="invalid_purpose", param="purpose")
        staged = self.store.staging_path()
        size = await asyncio.to_thread(_copy_bounded, source, staged, self.settings.max_file_bytes)
        record = FileRecord(new_id("file-"), tenant, os.path.basename(filename or "input.jsonl"),
                            "batch", size, int(self.clock()))
        try:
            await asyncio.to_thread(self.store.add_file, record, staged)
        finally:
            staged.unlink(missing_ok=True)
        return record

    def staging_path(self) -> Path:
        """A fresh local path to receive an upload into (a crash leaves only a ``.tmp`` file,
        removed at the next start)."""
        return self.store.staging_path()

    async def adopt_upload(self, tenant: str, filename: str | None, purpose: Any,
                           staged: Path, size: int) -> FileRecord:
        """Store a file the gateway already received at ``staged`` (from :meth:`staging_path`,
        size checked while receiving) under the caller's tenant; ``staged`` is consumed."""
        try:
            if purpose != "batch":
                raise InvalidBatchRequest(f"purpose: got {purpose!r}, want 'batch' (the only purpose "
                                          f"served)", code="invalid_purpose", param="purpose")
            if size > self.settings.max_file_bytes:
                raise FileTooLarge(f"the file exceeds the limit of {self.settings.max_file_bytes} "
                                   f"bytes", code="file_too_large", param="file")
            record = FileRecord(new_id("file-"), tenant,
                                os.path.basename(filename or "input.jsonl")[:255], "batch", size,
                                int(self.clock()))
            await asyncio.to_thread(self.store.add_file, record, staged)
        finally:
            staged.unlink(missing_ok=True)
        return record

    def file(self, tenant: str, file_id: str) -> FileRecord:
        record = self.store.get_file(file_id, tenant)
        if record is None:
            raise BatchNotFound(f"no file '{file_id}'", code="file_not_found", param="file_id")
        return record

    def files(self, tenant: str, *, after: str | None, limit: int, order: str,
              purpose: str | None) -> tuple[list[FileRecord], bool]:
        return self.store.list_files(tenant, after=after, limit=limit,
                                     descending=order == "desc", purpose=purpose)

    def content(self, tenant: str, file_id: str) -> tuple[FileRecord, Path | None]:
        """The file (after checking the caller may read it) and where its bytes are on this
        machine, or None when they are in the database (read them with :meth:`read`)."""
        record = self.file(tenant, file_id)
        return record, self.store.local_path(record.id)

    def read(self, file_id: str) -> Iterator[bytes]:
        """The bytes of a file the caller may read (:meth:`content`), piece by piece."""
        with self.store.open_file(file_id) as handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    def delete_file(self, tenant: str, file_id: str) -> None:
        if not self.store.delete_file(file_id, tenant):
            raise BatchNotFound(f"no file '{file_id}'", code="file_not_found", param="file_id")

    # -- batches --------------------------------------------------------------

    async def create(self, tenant: str, payload: Mapping[str, Any], *,
                     marking_header: str | None, data_header: str | None) -> BatchRecord:
        """Accept a batch (status ``validating``): its lines are checked before any runs."""
        unknown = sorted(set(payload) - _CREATE_FIELDS)
        if unknown:
            raise InvalidBatchRequest(f"unknown parameter '{unknown[0]}'; a batch takes input_file_id, "
                             f"endpoint, completion_window and metadata", code="unknown_parameter",
                             param=unknown[0])
        input_file_id = payload.get("input_file_id")
        if not isinstance(input_file_id, str) or not input_file_id:
            raise InvalidBatchRequest("missing required parameter 'input_file_id'",
                             code="missing_required_parameter", param="input_file_id")
        endpoint = payload.get("endpoint")
        if not isinstance(endpoint, str) or endpoint not in ENDPOINTS:
            raise InvalidBatchRequest(f"endpoint: got {endpoint!r}, want one of {', '.join(ENDPOINTS)}",
                             code="invalid_endpoint", param="endpoint")
        window = payload.get("completion_window")
        seconds = completion_window_seconds(window, self.settings.max_window_s)
        metadata = _metadata(payload.get("metadata"))
        source = self.store.get_file(input_file_id, tenant)
        if source is None:
            raise BatchNotFound(f"no file '{input_file_id}'", code="file_not_found", param="input_file_id")
        if source.purpose != "batch":
            raise InvalidBatchRequest(f"file '{input_file_id}' has purpose '{source.purpose}', want 'batch'",
                             code="invalid_input_file", param="input_file_id")
        ports = self._ports()
        policy = ports.router.policy
        known = policy.tenants.get(tenant)
        marking_value = _one_of(marking_header, (metadata or {}).get(MARKING_KEY),
                                "X-Corridor-Marking", f"metadata.{MARKING_KEY}")
        data_value = _one_of(data_header, (metadata or {}).get(DATA_KEY),
                             "X-Corridor-Data", f"metadata.{DATA_KEY}")
        try:
            marking = parse_marking(marking_value or (known.default_marking if known else "PUBLIC"))
        except PolicyError as exc:
            raise InvalidBatchRequest(str(exc), code="unknown_marking", param="X-Corridor-Marking") from exc
        try:
            flags = parse_data_flags(data_value)
        except PolicyError as exc:
            raise InvalidBatchRequest(str(exc), code="unknown_data_flag", param="X-Corridor-Data") from exc
        workload = Workload(tenant=tenant, marking=marking, kind="batch", data_flags=flags)
        now = int(self.clock())
        batch_id = new_id("batch_")
        evaluation = policy.decide_all(workload, declarations=tuple(ports.router.declarations()))
        if not evaluation.allowed:
            await ports.ledger.append_async(refusal_entry(batch_id, evaluation, "create"))
            raise BatchForbidden(evaluation.refusal(), code="policy_denied")
        if known is None or known.quotas.batch_concurrency < 1:
            raise BatchForbidden(f"tenant '{tenant}' has no batch capacity "
                            f"(quotas.batch_concurrency is 0 in the policy bundle)",
                            code="batch_quota_exhausted")
        record = BatchRecord(id=batch_id, tenant=tenant, input_file_id=input_file_id,
                             endpoint=endpoint, completion_window=window, marking=marking.id,
                             data_flags=tuple(sorted(flags)), created_at=now,
                             expires_at=now + seconds, metadata=metadata)
        await asyncio.to_thread(self.store.add_batch, record)
        if self.execute:
            self.executor.submit(record)
        return record

    def batch(self, tenant: str, batch_id: str) -> BatchRecord:
        record = self.store.get_batch(batch_id, tenant)
        if record is None:
            raise BatchNotFound(f"no batch '{batch_id}'", code="batch_not_found", param="batch_id")
        return record

    def batches(self, tenant: str, *, after: str | None,
                limit: int) -> tuple[list[BatchRecord], bool]:
        return self.store.list_batches(tenant, after=after, limit=limit)

    def cancel(self, tenant: str, batch_id: str) -> BatchRecord:
        """Stop starting lines of the batch; lines in flight finish, then it is ``cancelled``."""
        record = self.batch(tenant, batch_id)
        if record.status in (CANCELLING, CANCELLED):
            return record
        if record.status in TERMINAL:
            raise BatchConflict(f"batch '{batch_id}' is {record.status}; only a batch that has not "
                           f"ended can be cancelled", code="batch_not_cancellable")
        if not self.execute:  # the control process's executor takes it from the store
            self.store.update_batch(batch_id, ending=CANCELLED, status=CANCELLING,
                                    cancelling_at=int(self.clock()))
            return self.batch(tenant, batch_id)
        return self.executor.cancel(batch_id) or self.batch(tenant, batch_id)

    def _ports(self) -> BatchPorts:
        if self.ports is None:
            raise RuntimeError("batch service not started: the gateway app's lifespan starts it")
        return self.ports

    def to_openai(self, record: BatchRecord) -> dict[str, Any]:
        """The batch object, with why it waits (``corridor.waiting``) when no line can run."""
        body = record.to_openai()
        if record.status not in TERMINAL and record.status != VALIDATING:
            body["corridor"]["waiting"] = self.executor.waiting(record.id)
        return body


def _one_of(header: str | None, metadata: Any, header_name: str, key: str) -> str | None:
    """The header's value or the metadata's; both given and different is a 400."""
    if header and metadata and header != metadata:
        raise InvalidBatchRequest(f"{header_name} '{header}' and {key} '{metadata}' disagree; give one",
                         code="conflicting_parameters", param=key)
    return header or metadata or None


def _metadata(value: Any) -> dict[str, str] | None:
    """OpenAI's metadata rules: at most 16 string pairs, keys <= 64 and values <= 512 chars."""
    if value is None:
        return None
    if (not isinstance(value, dict) or len(value) > 16
            or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                       for k, v in value.items())):
        raise InvalidBatchRequest("metadata must be an object of at most 16 string pairs (keys up to 64 "
                         "characters, values up to 512)", code="invalid_metadata", param="metadata")
    return dict(value)


def _copy_bounded(source: BinaryIO, staging: Path, limit: int) -> int:
    """Copy ``source`` to ``staging``; 413 beyond ``limit`` bytes."""
    size = 0
    try:
        with staging.open("wb") as out:
            while chunk := source.read(CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(f"the file exceeds the limit of {limit} bytes",
                                          code="file_too_large", param="file")
                out.write(chunk)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return size

