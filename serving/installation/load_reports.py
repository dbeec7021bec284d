"""The gateway workers' load, reported to the control process's autoscaler through the site's
database.

With several gateway processes (``corridor up --gateway-workers N``, or the gateway Deployment
of ``deploy/kuberay``) the control process autoscales but the requests are in the workers. Each
worker upserts its :class:`~serving.routing.load.GatewayLoad` — requests in flight per replica
id, queued per model — as its one row of ``gateway_load`` (in the site's schema, as every
store's tables) every ``period_s`` (0.5 s); an idle worker says so once and then writes nothing.
The control process adds the rows written within ``stale_after_s`` (3 s, by the database's
clock) to its own load: the row of a worker that died stops counting then, so it does not keep
replicas up. A worker deletes its row when it stops; rows older than :data:`PRUNE_AFTER_S` are
deleted by the control process.

While the database does not answer, the control process's load is its own alone and marked
incomplete: the autoscaler may scale up on it, never down (:mod:`serving.autoscale`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from scheduler.database_sessions import create_tables, transaction
from scheduler.periodic import Periodic
from serving.installation.published import Outage
from serving.routing.load import GatewayLoad

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_load (
    worker text PRIMARY KEY,
    body jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""

IDLE = GatewayLoad().to_json()  # the body of a worker with nothing in flight or queued

#: Rows older than this (seconds) are deleted: workers that died without deleting theirs.
PRUNE_AFTER_S = 600


def fresh_total(reports: Iterable[tuple[GatewayLoad, float]], stale_after_s: float) -> GatewayLoad:
    """The sum of the ``(load, age in seconds)`` reports at most ``stale_after_s`` old.

    >>> fresh_total([(GatewayLoad({"r1": 2}), 0.4), (GatewayLoad({"r1": 5}), 9.0)], 3.0).outstanding
    {'r1': 2}
    """
    return GatewayLoad.total(load for load, age in reports if age <= stale_after_s)


class LoadTable:
    """The rows of ``gateway_load`` over ``pool``, a pool for the site's database that its owner
    shares (reports open no connection of their own). Each method raises
    :class:`~scheduler.database.DatabaseUnavailable` when the database does not answer."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._schema = False

    def _ensure(self) -> None:
        if not self._schema:
            create_tables(self.pool, SCHEMA)
            self._schema = True

    def write(self, worker: str, load: GatewayLoad) -> None:
        self._ensure()
        with transaction(self.pool) as connection:
            connection.execute(
                "INSERT INTO gateway_load (worker, body) VALUES (%s, %s::jsonb) "
                "ON CONFLICT (worker) DO UPDATE SET body = excluded.body, updated_at = now()",
                (worker, json.dumps(load.to_json(), sort_keys=True)))

    def delete(self, worker: str) -> None:
        self._ensure()
        with transaction(self.pool) as connection:
            connection.execute("DELETE FROM gateway_load WHERE worker = %s", (worker,))

    def read(self) -> list[tuple[GatewayLoad, float]]:
        """Every report with its age in seconds (by the database's clock); rows older than
        :data:`PRUNE_AFTER_S` are deleted first."""
        self._ensure()
        with transaction(self.pool) as connection:
            connection.execute("DELETE FROM gateway_load "
                               "WHERE updated_at < now() - make_interval(secs => %s)", (PRUNE_AFTER_S,))
            rows = connection.execute("SELECT body, extract(epoch FROM now() - updated_at)::float8 "
                                      "FROM gateway_load").fetchall()
        return [(GatewayLoad.from_json(body), age) for body, age in rows]


class LoadPublisher:
    """A gateway worker's side: its ``load()`` as row ``worker`` (default ``host/pid``) of the
    ``table``, every ``period_s``."""

    def __init__(self, table: LoadTable, load: Callable[[], GatewayLoad], *,
                 worker: str | None = None, period_s: float = 0.5) -> None:
        self.table, self.load = table, load
        self.worker = worker or f"{socket.gethostname()}/{os.getpid()}"
        self._last: dict[str, Any] | None = None  # the body written last
        self._outage = Outage("reporting this gateway's load")
        self._loop = Periodic(lambda: self._outage.run(self.publish), period_s, "corridor-load-report",
                              log, "reporting this gateway's load failed")

    def publish(self) -> bool:
        """Write the load now, unless it is nothing and nothing was written last; True when
        written. Raises :class:`~scheduler.database.DatabaseUnavailable`."""
        load = self.load()
        body = load.to_json()
        if body == IDLE and self._last == IDLE:
            return False
        self.table.write(self.worker, load)
        self._last = body
        return True

    def start(self) -> LoadPublisher:
        self._loop.start()
        return self

    def stop(self) -> None:
        """Stop reporting and delete this worker's row (best effort: it goes stale anyway)."""
        self._loop.stop()
        if self._last is not None:
            self._outage.run(lambda: self.table.delete(self.worker))


class SiteLoad:
    """The control process's side: its ``own()`` load plus the fresh ``reports()`` of the workers
    (:meth:`LoadTable.read`), for the :class:`~serving.autoscale.Autoscaler`. While the reports
    cannot be read, the own load alone, incomplete (logged once when the outage starts and once
    when it ends)."""

    def __init__(self, own: Callable[[], GatewayLoad],
                 reports: Callable[[], Iterable[tuple[GatewayLoad, float]]], *,
                 stale_after_s: float = 3.0) -> None:
        self.own, self.reports, self.stale_after_s = own, reports, stale_after_s
        self._outage = Outage("reading the gateway workers' load (no scaling down meanwhile)")

    def __call__(self) -> GatewayLoad:
        workers = self._outage.run(lambda: fresh_total(self.reports(), self.stale_after_s))
        own = self.own()
        if workers is None:
            return GatewayLoad(own.outstanding, own.queued, complete=False)
        return GatewayLoad.total([own, workers])
