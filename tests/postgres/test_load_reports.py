"""The gateway workers' load reports on a real server: what two workers write, the control
process reads summed with its own load; a report that stopped being refreshed no longer counts;
each site's reports stay in its own schema."""

from __future__ import annotations

import psycopg
import pytest

from scheduler.database import ensure_schema, open_pool, site_url
from serving.installation.load_reports import PRUNE_AFTER_S, LoadPublisher, LoadTable, SiteLoad
from serving.routing.load import GatewayLoad

MODEL = "corridor-tiny"


@pytest.fixture
def site(postgres_url):
    """The FR site's database (its own schema), and a pool per process that opens it."""
    url = site_url(postgres_url, "FR")
    ensure_schema(url)
    pools = []

    def pool():
        pools.append(open_pool(url, name=f"process-{len(pools)}", max_size=1, timeout=2.0))
        return pools[-1]

    yield url, pool
    for opened in pools:
        opened.close()


def _age(url: str, worker: str, seconds: float) -> None:
    with psycopg.connect(url) as connection:
        connection.execute("UPDATE gateway_load SET updated_at = now() - make_interval(secs => %s) "
                           "WHERE worker = %s", (seconds, worker))


def test_two_workers_reports_are_summed_with_the_control_processs_own_load_until_one_goes_stale(site):
    url, pool = site
    loads = {"w1": GatewayLoad({"chat-0": 2, "chat-1": 1}, {MODEL: 3}),
             "w2": GatewayLoad({"chat-0": 4}, {MODEL: 1, "other": 2})}
    publishers = [LoadPublisher(LoadTable(pool()), lambda w=w: loads[w], worker=w) for w in loads]
    for publisher in publishers:
        assert publisher.publish() is True
    own = GatewayLoad({"chat-1": 1})
    site_load = SiteLoad(lambda: own, LoadTable(pool()).read, stale_after_s=3.0)

    total = site_load()
    assert total.complete
    assert total.outstanding == {"chat-0": 6, "chat-1": 2}
    assert total.queued == {MODEL: 4, "other": 2}

    loads["w1"] = GatewayLoad({"chat-0": 1})  # a newer report replaces the worker's row
    publishers[0].publish()
    assert site_load().outstanding == {"chat-0": 5, "chat-1": 1}

    _age(url, "w2", 10)  # w2 died: its last report stops counting
    total = site_load()
    assert (total.outstanding, total.queued) == ({"chat-0": 1, "chat-1": 1}, {})

    _age(url, "w2", PRUNE_AFTER_S + 1)  # and is deleted once long dead
    site_load()
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT worker FROM gateway_load").fetchall() == [("w1",)]


def test_an_idle_worker_writes_once_and_a_stopped_one_deletes_its_row(site):
    url, pool = site
    load = {"now": GatewayLoad({"chat-0": 1})}
    publisher = LoadPublisher(LoadTable(pool()), lambda: load["now"], worker="w1")
    assert publisher.publish() is True
    load["now"] = GatewayLoad({"chat-0": 0})
    assert publisher.publish() is True  # says it is idle now
    assert publisher.publish() is False  # and then writes nothing
    assert SiteLoad(GatewayLoad, LoadTable(pool()).read)().outstanding == {}
    publisher.stop()
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT count(*) FROM gateway_load").fetchone() == (0,)


def test_each_site_reads_only_its_own_workers_reports(postgres_url):
    fr, de = site_url(postgres_url, "FR"), site_url(postgres_url, "DE")
    pools = []
    for url in (fr, de):
        ensure_schema(url)
        pools.append(open_pool(url, name=url[-2:], max_size=1, timeout=2.0))
    try:
        LoadPublisher(LoadTable(pools[0]), lambda: GatewayLoad({"chat-0": 3}), worker="w1").publish()
        assert SiteLoad(GatewayLoad, LoadTable(pools[1]).read)().outstanding == {}
        assert SiteLoad(GatewayLoad, LoadTable(pools[0]).read)().outstanding == {"chat-0": 3}
    finally:
        for pool in pools:
            pool.close()
