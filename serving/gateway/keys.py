"""API key records and the file that holds them, shared by every gateway worker.

A record is everything about a key but its secret: id, name, role, tenant or
jurisdiction or audit scope, when it was created and by whom, when it expires,
when it was revoked, when it was last used, and an optional minimum marking. The
secret is kept only as the SHA-256 of the whole key.

:class:`KeyFile` keeps the records in one JSON file (mode 0600). Every change is
made under an exclusive lock on a lock file beside it, re-reading the file first,
then replacing it atomically; every reader checks the file's identity (inode,
size, modification time) before each use and re-reads it when it changed. So a
revocation made through one gateway worker stops the key on every worker at the
next request. With several gateway processes on several machines, :func:`open_key_store`
keeps the records in PostgreSQL instead (:mod:`serving.gateway.pg_keys`).

>>> parse_expiry("30d", now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)).isoformat()
'2026-01-31T00:00:00+00:00'
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_expiry(value: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An expiry from ``30d``/``12h``/``90m``/``2w`` (from now), an ISO date (end of that day,
    UTC) or an ISO date-time with a time zone; anything else is a ValueError showing a form."""
    now = now or utc_now()
    text = value.strip()
    match = _DURATION.match(text)
    if match:
        return now + dt.timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"expiry: got {value!r}, want 30d, 12h, 2026-12-31 or "
                         f"2026-12-31T18:00:00Z") from exc
    if moment.tzinfo is None:
        raise ValueError(f"expiry: got {value!r} without a time zone, e.g. 2026-12-31T18:00:00Z")
    return moment.astimezone(dt.UTC)


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class KeyRecord:
    """One API key, without its secret (``sha256`` is the hash of the whole key)."""

    id: str
    sha256: str
    role: str
    tenant: str | None = None
    jurisdiction: str | None = None
    scope: tuple[str, ...] = ()
    name: str | None = None
    created_at: str | None = None
    created_by: str | None = None
    expires_at: str | None = None
    revoked_at: str | None = None
    revoked_by: str | None = None
    last_used_at: str | None = None
    minimum_marking: str | None = None

    def status(self, now: dt.datetime) -> str:
        """``revoked``, ``expired`` or ``active`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        expires = _time(self.expires_at)
        if expires is not None and now >= expires:
            return "expired"
        return "active"

    def to_json(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """What ``GET /admin/keys`` shows: everything but the hash, and the status now."""
        out = {k: v for k, v in asdict(self).items() if k != "sha256"}
        out["scope"] = list(self.scope)
        out["status"] = self.status(now or utc_now())
        return out

    @classmethod
    def from_json(cls, key_id: str, value: dict[str, Any]) -> KeyRecord:
        known = {f for f in cls.__dataclass_fields__ if f != "id"}
        fields = {k: v for k, v in value.items() if k in known}
        fields["scope"] = tuple(fields.get("scope") or ())
        return cls(id=key_id, **fields)


@dataclass
class KeyFile:
    """The records, in a JSON file when ``path`` is given (else in memory only)."""

    path: Path | None = None
    records: dict[str, KeyRecord] = field(default_factory=dict)
    _stamp: tuple[int, int, int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.path is not None:
            self.path = Path(self.path)
            self.refresh()

    def refresh(self) -> dict[str, KeyRecord]:
        """The records, re-read first if another process (or worker) changed the file."""
        if self.path is None:
            return self.records
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return self.records
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        if stamp != self._stamp:
            with self._lock:
                raw = json.loads(self.path.read_text("utf-8") or "{}")
                self.records = {k: KeyRecord.from_json(k, v) for k, v in raw.items()}
                self._stamp = stamp
        return self.records

    def update(self, change: Callable[[dict[str, KeyRecord]], Any]) -> Any:
        """Apply ``change`` to fresh records under the file lock and write them; return its result."""
        if self.path is None:
            with self._lock:
                return change(self.records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._stamp = None
            records = dict(self.refresh())
            result = change(records)
            self._write(records)
            return result
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        """Nothing to release (the PostgreSQL twin closes its connections)."""

    def _write(self, records: dict[str, KeyRecord]) -> None:
        assert self.path is not None
        data = {k: {f: v for f, v in asdict(r).items() if f != "id"} for k, r in records.items()}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)
        with self._lock:
            self.records = records
            info = os.stat(self.path)
            self._stamp = (info.st_ino, info.st_size, info.st_mtime_ns)


def open_key_store(path: Path | None, *, database: str | None = None) -> Any:
    """The site's key records: :class:`KeyFile` at ``path`` (the embedded default; None: in
    memory), or the PostgreSQL ``database`` shared by every gateway process
    (:class:`serving.gateway.pg_keys.PgKeyRecords`, same interface; ``path`` is then unused)."""
    if database is None:
        return KeyFile(path)
    from serving.gateway.pg_keys import PgKeyRecords

    return PgKeyRecords(database)
