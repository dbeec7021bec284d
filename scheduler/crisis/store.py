"""``crisis.json`` in ``$CORRIDOR_HOME``: every declaration the registry holds, written atomically
(temporary file, fsync, rename; mode 0600). The ledger's ``crisis`` entries keep the history;
this file is the current state, read at start.

:func:`open_crisis_store` gives the registry this file (:class:`FileCrisisStore`) or, for a site
whose gateway runs as several processes, the PostgreSQL table of
:mod:`scheduler.crisis.pg_store`. Both have ``read()``, ``write(records)`` and a cheap
``version()`` that changes with every write, by which a registry notices another process's
change (:meth:`scheduler.crisis.registry.CrisisRegistry.refresh`)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from pydantic import TypeAdapter, ValidationError

from scheduler.crisis.errors import CrisisStoreError
from scheduler.crisis.record import CrisisRecord

STORE_FILENAME = "crisis.json"

_RECORDS = TypeAdapter(list[CrisisRecord])


def read_declarations(path: str | Path) -> list[CrisisRecord]:
    """The records of a store file (``corridor status`` reads them without the registry)."""
    try:
        document = json.loads(Path(path).read_text("utf-8"))
        return _RECORDS.validate_python(document.get("declarations", []) if isinstance(document, dict)
                                        else None)
    except (OSError, ValueError, ValidationError) as exc:
        raise CrisisStoreError(f"{path}: cannot read crisis declarations ({exc}); the ledger's "
                               f"crisis entries hold their history") from exc


def write_declarations(path: Path, records: Iterable[CrisisRecord]) -> None:
    """Replace the store file with ``records``, durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"declarations": [r.model_dump(mode="json") for r in records]},
                      indent=1, ensure_ascii=False)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class CrisisStore(Protocol):
    """Where a registry keeps its declarations (see the module docstring)."""

    def read(self) -> list[CrisisRecord]: ...
    def write(self, records: Iterable[CrisisRecord]) -> None: ...
    def version(self) -> object: ...
    def close(self) -> None: ...


class FileCrisisStore:
    """``crisis.json`` at ``path``; its version is the file's identity (inode, size, mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[CrisisRecord]:
        """The records, none when the file does not exist yet."""
        return read_declarations(self.path) if self.path.exists() else []

    def write(self, records: Iterable[CrisisRecord]) -> None:
        write_declarations(self.path, records)

    def close(self) -> None:
        """Nothing to release (the PostgreSQL twin closes its connections)."""

    def version(self) -> object:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)


def open_crisis_store(home: Path, *, database: str | None = None) -> CrisisStore:
    """``home/crisis.json`` (the embedded default), or the PostgreSQL ``database`` shared by every
    gateway process of the site."""
    if database is None:
        return FileCrisisStore(Path(home) / STORE_FILENAME)
    from scheduler.crisis.pg_store import PgCrisisStore

    return PgCrisisStore(database)
