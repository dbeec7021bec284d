"""The test server itself: it starts, serves a fresh database per test, and survives a restart."""

from __future__ import annotations

import psycopg


def test_a_fresh_database_per_test_and_its_data_survives_a_crash_restart(postgres_server, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        assert connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        connection.execute("CREATE TABLE kept (n int)")
        connection.execute("INSERT INTO kept VALUES (7)")
    postgres_server.stop("immediate")
    postgres_server.start()
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT n FROM kept").fetchall() == [(7,)]
