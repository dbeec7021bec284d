"""The two backends the ledger suites run on: SQLite in the home, PostgreSQL on the tests' server.

A test parametrised with :data:`BACKENDS` asks :func:`ledger_database` for its database: None
(SQLite, ``ledger.db`` in the home) or the URL of a fresh database on the session's server.
The PostgreSQL case carries the ``postgres`` marker, so the unit tier (``-m "not postgres"``)
runs only the SQLite one.
"""

from __future__ import annotations

import hashlib

import pytest

BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


def ledger_database(request: pytest.FixtureRequest, backend: str) -> str | None:
    """None for SQLite; for PostgreSQL the URL of a database made for this test (or module) alone."""
    if backend == "sqlite":
        return None
    name = "l_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return request.getfixturevalue("postgres_server").create_database(name)
