"""``crisis.json`` in ``$CORRIDOR_HOME``: every declaration the registry holds, written atomically
(temporary file, fsync, rename; mode 0600). The ledger's ``crisis`` entries keep the history;
this file is the current state, read at start."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

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
