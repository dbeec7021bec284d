"""Shared fixtures for every tier."""

from __future__ import annotations

import pytest

from policies import Policy


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    """The shipped default bundle, compiled."""
    return Policy.load()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"postgres_url", "postgres_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the session (``tests/postgres_server.py``), started on
    first use; tests that use it carry the ``postgres`` marker. A machine without the server
    binaries fails here, naming ``make postgres-deps``."""
    from tests.postgres_server import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """The URL of a fresh, empty database on the session's server, for this test alone."""
    import hashlib

    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return postgres_server.create_database(name)
