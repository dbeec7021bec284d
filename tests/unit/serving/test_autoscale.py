"""The autoscaler's signal: the requests outstanding on a deployment's replicas plus those queued
for its model, summed over the site's gateway processes (the workers' fresh reports only), and
held — never scaled down — while the workers' reports cannot be read."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from policies import Policy, Workload
from scheduler.database import DatabaseUnavailable
from serving.autoscale import Autoscaler
from serving.deployments_file import Autoscale
from serving.installation.load_reports import SiteLoad
from serving.routing import Endpoint, Router, StaticEndpoints
from serving.routing.dispatch import Dispatch
from serving.routing.load import GatewayLoad
from serving.routing.settings import QueueSettings

MODEL = "corridor-tiny"


class Deployments:
    """One deployment ``chat`` of ``MODEL`` as the scheduler shows it: its count and replica ids."""

    def __init__(self, running: int) -> None:
        self.running = running

    def get(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(spec=SimpleNamespace(replicas=self.running, model=MODEL),
                               replicas=[SimpleNamespace(id=f"{name}-{i}") for i in range(self.running)])

    def scale(self, name: str, replicas: int) -> None:
        self.running = replicas


class Reconciler:
    """``chat`` declared with ``replicas: {min: 1, max: 3, target_outstanding: 2}``."""

    def __init__(self, running: int) -> None:
        self.deployments = Deployments(running)
        self._entry = SimpleNamespace(decl=SimpleNamespace(
            replicas=Autoscale(min=1, max=3, target_outstanding=2)), rolling=lambda: False)

    def managed(self) -> dict[str, SimpleNamespace]:
        return {"chat": self._entry}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_requests_queued_for_the_model_alone_make_the_autoscaler_scale_up() -> None:
    """One replica, busy with one request (below the target of 2); three more wait in the
    admission queue: 4 requests want 2 replicas."""
    replica = Endpoint("chat-0", MODEL, "fr-paris", "FR", None, "http://paris")
    router = Router(Policy.load(), StaticEndpoints([replica]), cache_ttl=0)
    workload = Workload.create("fr-interior", "PUBLIC", model=MODEL)
    reconciler = Reconciler(running=1)

    async def scenario() -> tuple[GatewayLoad, dict[str, int], GatewayLoad]:
        dispatch = Dispatch(router, QueueSettings(replica_concurrency=1, timeout_s=5))
        route = router.route(workload)
        router.acquire(replica)  # at its concurrency limit
        waiting = [asyncio.ensure_future(dispatch.acquire(route)) for _ in range(3)]
        await asyncio.sleep(0.05)
        load = dispatch.load()
        scaled = Autoscaler(reconciler, dispatch.load).tick()
        for waiter in waiting:
            waiter.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        return load, scaled, dispatch.load()

    load, scaled, after = asyncio.run(scenario())
    assert (load.outstanding, load.queued) == ({"chat-0": 1}, {MODEL: 3})
    assert scaled == {"chat": 2} and reconciler.deployments.running == 2
    assert after.queued == {}, "a request that left the queue still counts"


def test_requests_queued_for_another_model_do_not_scale_the_deployment() -> None:
    reconciler = Reconciler(running=1)
    assert Autoscaler(reconciler, lambda: GatewayLoad({}, {"other-model": 9})).tick() == {}


@pytest.mark.parametrize("reports, outstanding, queued", [
    pytest.param([(GatewayLoad({"chat-0": 2}, {MODEL: 1}), 0.5),
                  (GatewayLoad({"chat-0": 3, "chat-1": 1}), 2.9)],
                 {"chat-0": 6, "chat-1": 1}, {MODEL: 2},
                 id="fresh worker reports are summed with the own load"),
    pytest.param([(GatewayLoad({"chat-0": 50}, {MODEL: 50}), 3.5)],
                 {"chat-0": 1}, {MODEL: 1}, id="a stale worker report is ignored"),
    pytest.param([], {"chat-0": 1}, {MODEL: 1}, id="no worker reports: the own load"),
])
def test_the_site_load_is_the_own_load_plus_the_fresh_worker_reports(reports, outstanding, queued) -> None:
    own = GatewayLoad({"chat-0": 1}, {MODEL: 1})
    site = SiteLoad(lambda: own, lambda: reports, stale_after_s=3.0)()
    assert (site.outstanding, site.queued, site.complete) == (outstanding, queued, True)


def test_a_dead_workers_last_report_does_not_keep_replicas_up() -> None:
    clock, reconciler = Clock(), Reconciler(running=3)
    dead = [(GatewayLoad({"chat-0": 40}), 30.0)]
    scaler = Autoscaler(reconciler, SiteLoad(GatewayLoad, lambda: dead), calm_s=60, clock=clock)
    assert scaler.tick() == {}
    clock.now = 60.0
    assert scaler.tick() == {"chat": 2}


def test_fresh_worker_reports_scale_up_what_the_control_process_alone_would_not() -> None:
    """The control process serves no public traffic; its workers hold the requests."""
    reconciler = Reconciler(running=1)
    workers = [(GatewayLoad({"chat-0": 2}), 0.2), (GatewayLoad({}, {MODEL: 3}), 0.4)]
    assert Autoscaler(reconciler, GatewayLoad).tick() == {}
    assert Autoscaler(reconciler, SiteLoad(GatewayLoad, lambda: workers)).tick() == {"chat": 2}


def test_while_the_reports_cannot_be_read_the_autoscaler_never_scales_down_and_says_so_once(caplog) -> None:
    clock, reconciler = Clock(), Reconciler(running=3)
    database = {"up": False}

    def reports() -> list[tuple[GatewayLoad, float]]:
        if not database["up"]:
            raise DatabaseUnavailable("the site database did not answer: connection refused")
        return []

    scaler = Autoscaler(reconciler, SiteLoad(GatewayLoad, reports), calm_s=60, clock=clock)
    with caplog.at_level(logging.WARNING):
        for clock.now in (0.0, 60.0, 120.0, 600.0):
            assert scaler.tick() == {}, "scaled down on missing data"
    outage = [r for r in caplog.records if "gateway workers' load" in r.getMessage()]
    assert len(outage) == 1 and "no scaling down" in outage[0].getMessage()

    database["up"] = True  # back: the calm starts over
    clock.now = 601.0
    assert scaler.tick() == {}
    clock.now = 661.0
    assert scaler.tick() == {"chat": 2}


def test_while_the_reports_cannot_be_read_the_own_load_still_scales_up() -> None:
    def unreachable() -> list[tuple[GatewayLoad, float]]:
        raise DatabaseUnavailable("the site database did not answer")

    reconciler = Reconciler(running=1)
    own = GatewayLoad({"chat-0": 5})
    load = SiteLoad(lambda: own, unreachable)()
    assert not load.complete and load.outstanding == {"chat-0": 5}
    assert Autoscaler(reconciler, lambda: load).tick() == {"chat": 2}
