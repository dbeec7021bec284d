"""The admission queue: fairness between tenants, deadlines, disconnects, priority classes."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from policies import Policy, Workload, load_bundle
from policies.bundle import Bundle, default_bundle_path
from policies.priority import priority_of
from serving.routing.admission import AdmissionQueue, Ticket
from serving.routing.errors import ClientGone, QueueFull, QueueTimeout
from serving.routing.settings import QueueSettings


class Slots:
    """Replica slots as the router counts them: ``limit`` per replica."""

    def __init__(self, limit: int = 1) -> None:
        self.limit, self.used = limit, {}

    def has_room(self, e: str) -> bool:
        return self.used.get(e, 0) < self.limit

    def take(self, e: str, request=None) -> None:
        self.used[e] = self.used.get(e, 0) + 1

    def give_back(self, e: str, request=None) -> None:
        self.used[e] -= 1


def queue_for(slots: Slots, **settings) -> AdmissionQueue:
    return AdmissionQueue(QueueSettings(**settings), has_room=slots.has_room, take=slots.take,
                          give_back=slots.give_back, tick_s=0.01)


def ticket(queue: AdmissionQueue, tenant: str, *, rank: int = 0, replicas=("r",),
           timeout: float = 5.0) -> Ticket:
    now = queue.clock()
    return Ticket(tenant, rank, "crisis" if rank == 0 else "standard", lambda: list(replicas),
                  now + timeout, now)


async def free_one(slots: Slots, queue: AdmissionQueue, replica: str = "r") -> None:
    slots.give_back(replica)
    queue.offer()
    await asyncio.sleep(0)


def test_one_tenants_flood_does_not_starve_another() -> None:
    async def scenario() -> list[str]:
        slots = Slots(limit=1)
        queue = queue_for(slots)
        slots.take("r")  # the replica is busy
        served: list[str] = []

        async def request(tenant: str) -> None:
            await queue.wait(ticket(queue, tenant))
            served.append(tenant)

        flood = [asyncio.ensure_future(request("flooder")) for _ in range(20)]
        await asyncio.sleep(0)
        steady = asyncio.ensure_future(request("steady"))
        await asyncio.sleep(0)
        for _ in range(3):
            await free_one(slots, queue)
        steady_position = served.index("steady") if "steady" in served else None
        for _ in range(20):
            await free_one(slots, queue)
        await asyncio.gather(*flood, steady)
        assert steady_position is not None and steady_position <= 1
        return served

    served = asyncio.run(scenario())
    assert served.count("flooder") == 20 and served.count("steady") == 1


def test_a_request_past_its_deadline_gets_503_with_retry_after() -> None:
    async def scenario() -> QueueTimeout:
        slots = Slots(limit=1)
        queue = queue_for(slots)
        slots.take("r")
        with pytest.raises(QueueTimeout) as info:
            await queue.wait(ticket(queue, "t", timeout=0.05))
        assert queue.waiting == 0
        return info.value

    refusal = asyncio.run(scenario())
    assert refusal.status == 503 and refusal.code == "queue_timeout" and refusal.retry_after >= 1


def test_a_tenant_over_its_share_gets_429_at_once() -> None:
    async def scenario() -> None:
        slots = Slots(limit=1)
        queue = queue_for(slots, max_waiting_per_tenant=2)
        slots.take("r")
        waiting = [asyncio.ensure_future(queue.wait(ticket(queue, "t"))) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull) as info:
            await queue.wait(ticket(queue, "t"))
        assert info.value.status == 429 and info.value.code == "tenant_queue_full"
        for _ in range(2):
            await free_one(slots, queue)
        await asyncio.gather(*waiting)

    asyncio.run(scenario())


def test_a_full_queue_refuses_the_hogs_newest_request_to_admit_another_tenant() -> None:
    async def scenario() -> None:
        slots = Slots(limit=1)
        queue = queue_for(slots, max_waiting=3)
        slots.take("r")
        hog = [asyncio.ensure_future(queue.wait(ticket(queue, "hog"))) for _ in range(3)]
        await asyncio.sleep(0)
        other = asyncio.ensure_future(queue.wait(ticket(queue, "other")))
        await asyncio.sleep(0.01)
        assert hog[2].done() and isinstance(hog[2].exception(), QueueFull)
        assert hog[2].exception().status == 429
        assert queue.waiting == 3
        for _ in range(3):
            await free_one(slots, queue)
        await asyncio.gather(other, *hog[:2])

    asyncio.run(scenario())


def test_a_client_that_disconnects_leaves_the_queue_at_once() -> None:
    async def scenario() -> None:
        slots = Slots(limit=1)
        queue = queue_for(slots)
        slots.take("r")
        gone = asyncio.get_running_loop().create_future()
        waiter = asyncio.ensure_future(queue.wait(ticket(queue, "t", timeout=30), lambda: gone))
        await asyncio.sleep(0)
        assert queue.waiting == 1
        started = queue.clock()
        gone.set_result(None)
        with pytest.raises(ClientGone):
            await waiter
        assert queue.clock() - started < 0.5 and queue.waiting == 0
        await free_one(slots, queue)
        assert slots.used["r"] == 0  # nothing was taken for the departed client

    asyncio.run(scenario())


def test_a_cancelled_request_gives_back_the_slot_it_was_granted() -> None:
    async def scenario() -> None:
        slots = Slots(limit=1)
        queue = queue_for(slots)
        slots.take("r")
        waiter = asyncio.ensure_future(queue.wait(ticket(queue, "t")))
        await asyncio.sleep(0)
        slots.give_back("r")
        queue.offer()  # granted, but its handler is cancelled before it resumes
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.used["r"] == 0

    asyncio.run(scenario())


def test_a_higher_class_is_served_first_but_never_blocks_a_replica_it_cannot_use() -> None:
    async def scenario() -> list[str]:
        slots = Slots(limit=1)
        queue = queue_for(slots)
        slots.take("a")
        slots.take("b")
        served: list[str] = []

        async def request(name: str, rank: int, replicas) -> None:
            await queue.wait(ticket(queue, name, rank=rank, replicas=replicas))
            served.append(name)

        tasks = [asyncio.ensure_future(request("standard-1", 1, ("a",))),
                 asyncio.ensure_future(request("standard-2", 1, ("b",)))]
        await asyncio.sleep(0)
        tasks.append(asyncio.ensure_future(request("crisis", 0, ("a",))))
        await asyncio.sleep(0)
        await free_one(slots, queue, "a")  # crisis first, though it came last
        await free_one(slots, queue, "b")  # crisis cannot use b: the standard request gets it
        await free_one(slots, queue, "a")
        await asyncio.gather(*tasks)
        return served

    assert asyncio.run(scenario()) == ["crisis", "standard-2", "standard-1"]


AT = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)


def policy_with_classes() -> Policy:
    document = load_bundle(default_bundle_path()).model_dump(mode="json")
    document["priority_classes"] = [{"id": "crisis", "under_declaration": True},
                                    {"id": "interior", "tenants": ["fr-interior"]}]
    document["declarations"] = [{
        "id": "decl-flood", "declared_by": {"operator": "fr-ops", "jurisdiction": "FR"},
        "reason": "floods in Alsace",
        "scope": {"tenants": ["fr-health"], "markings": ["PUBLIC"], "models": ["corridor-tiny"],
                  "directions": ["FR->DE"]},
        "valid_from": (AT - dt.timedelta(hours=1)).isoformat(),
        "valid_until": (AT + dt.timedelta(hours=10)).isoformat(),
        "approvals": [{"operator": "de-ops", "jurisdiction": "DE",
                       "at": (AT - dt.timedelta(minutes=30)).isoformat()}]}]
    return Policy(Bundle.model_validate(document))


PRIORITIES = {
    "traffic an active declaration covers is in the crisis class":
        ("fr-health", "PUBLIC", AT, (0, "crisis")),
    "the same traffic after the declaration expired is standard":
        ("fr-health", "PUBLIC", AT + dt.timedelta(hours=11), (2, "standard")),
    "a tenant the bundle names gets its class":
        ("fr-interior", "DR", AT, (1, "interior")),
    "anyone else is standard": ("eu-agency", "PUBLIC", AT, (2, "standard")),
}


@pytest.mark.parametrize("case", PRIORITIES.values(), ids=PRIORITIES.keys())
def test_priority_classes_come_from_the_bundle(case) -> None:
    tenant, marking, at, expected = case
    workload = Workload.create(tenant, marking, model="corridor-tiny")
    assert priority_of(policy_with_classes(), workload, at=at) == expected


def test_a_bundle_without_priority_classes_keeps_its_digest_and_a_bad_class_is_refused(
        default_policy: Policy) -> None:
    document = default_policy.bundle.model_dump(mode="json")
    assert "priority_classes" not in document
    assert all("on_demand" not in model for model in document["models"])
    with pytest.raises(ValueError, match="needs a condition"):
        Bundle.model_validate({**document, "priority_classes": [{"id": "vip"}]})


def test_a_waiting_request_is_never_served_beyond_the_pools_its_own_decision_allowed() -> None:
    """A new bundle that opens another pool while a request waits does not let that request go
    there: its routing entry names the decision it got, which did not allow that pool."""
    from scheduler.current_policy import CurrentPolicy
    from serving.routing import Endpoint, Router, StaticEndpoints
    from serving.routing.dispatch import Dispatch

    document = load_bundle(default_bundle_path()).model_dump(mode="json")
    current = CurrentPolicy(Policy(Bundle.model_validate(document)))
    lyon_pool = next(p for p in document["pools"] if p["id"] == "fr-lyon")
    lyon_pool["accreditations"].append({"id": "dr-homologation", "valid_until": "2031-12-31",
                                        "issuer": "ANSSI"})
    opened = Policy(Bundle.model_validate(document))
    paris = Endpoint("paris", "corridor-tiny", "fr-paris", "FR", None, "http://paris")
    lyon = Endpoint("lyon", "corridor-tiny", "fr-lyon", "FR", None, "http://lyon")
    endpoints = StaticEndpoints([paris])
    router = Router(current, endpoints, cache_ttl=0)
    workload = Workload.create("fr-interior", "DR", model="corridor-tiny")
    assert opened.decide(workload, "fr-lyon").allowed and not current.policy.decide(workload, "fr-lyon").allowed

    async def scenario() -> Endpoint:
        dispatch = Dispatch(router, QueueSettings(replica_concurrency=1, timeout_s=5))
        dispatch.queue.tick_s = 0.01
        route = router.route(workload)
        router.acquire(paris)  # the only allowed replica is busy
        waiter = asyncio.ensure_future(dispatch.acquire(route))
        await asyncio.sleep(0.05)
        current.switch(opened)
        endpoints.items.append(lyon)  # idle, and allowed by the bundle now in force
        await asyncio.sleep(0.1)
        assert not waiter.done(), "served in a pool its own decision did not allow"
        assert [e.pool for e in router.route(workload).candidates] == ["fr-lyon", "fr-paris"]
        router.release(paris)
        return await waiter

    assert asyncio.run(scenario()).pool == "fr-paris"
