"""State that only the Corridor user may read: ``$CORRIDOR_HOME`` 0700, its databases 0600.

The ledger, the batch store (request bodies and results) and the crisis
registry live in ``$CORRIDOR_HOME``. SQLite creates a database's ``-wal`` and
``-shm`` files with the mode of the database file, so creating the database
0600 before SQLite opens it keeps all three private; files left readable by an
earlier version are tightened when opened.
"""

from __future__ import annotations

import os
from pathlib import Path

SIDECARS = ("-wal", "-shm", "-journal")


def private_directory(path: Path | str) -> Path:
    """Create ``path`` (and missing parents) and make it 0700; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def private_file(path: Path | str) -> Path:
    """Create ``path`` empty if absent, 0600 either way; returns it."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def private_database(path: Path | str) -> Path:
    """Prepare a SQLite database file (and any sidecar present) at 0600 before it is opened."""
    path = private_file(path)
    for suffix in SIDECARS:
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.chmod(sidecar, 0o600)
    return path
