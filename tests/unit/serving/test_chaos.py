"""Chaos under load: replicas killed and a whole pool's node lost while three tenants send
requests. No answer ever comes from a pool the rulebook denies the request, every failure is a
well-formed 503 with Retry-After (or a 429 with Retry-After when a tenant's unthrottled senders
outrun its request quota), and nothing is left outstanding once the load stops."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from policies import Workload
from stub_upstream import ServerThread, make_stub

from gateway_stack import endpoint
from hardened_stack import hardened_stack

#: Who sends what, and the pools the default bundle allows for it.
SENDERS = [("fr-interior", "DR"), ("de-federal-it", "VS-NfD"), ("fr-health", "PUBLIC")]


def allowed_pools(stack, tenant: str, marking: str) -> set[str]:
    workload = Workload.create(tenant, marking, model="corridor-tiny")
    evaluation = stack.gateway.policy.decide_all(workload, at=dt.datetime.now(dt.timezone.utc))
    return {d.pool for d in evaluation.decisions if d.allowed}


def test_killing_replicas_and_a_node_under_load_never_serves_from_a_denied_pool(tmp_path):
    with hardened_stack(tmp_path, pools=()) as stack:
        replicas = {"paris-1": "fr-paris", "paris-2": "fr-paris", "lyon": "fr-lyon",
                    "frankfurt-1": "de-frankfurt", "frankfurt-2": "de-frankfurt", "berlin": "de-berlin"}
        stubs = {name: ServerThread(make_stub(pool)).__enter__() for name, pool in replicas.items()}
        try:
            stack.endpoints.items[:] = [endpoint(pool, stubs[name].url, replica=name)
                                        for name, pool in replicas.items()]
            allowed = {s: allowed_pools(stack, *s) for s in SENDERS}
            assert allowed[("fr-interior", "DR")] == {"fr-paris"}
            answers: list[tuple[tuple[str, str], int, dict, str]] = []
            stop = threading.Event()

            def load(sender: tuple[str, str]) -> None:
                tenant, marking = sender
                headers = {"authorization": f"Bearer {stack.keys[f'{tenant}/app']}",
                           "x-corridor-marking": marking}
                body = {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]}
                with httpx.Client(base_url=stack.url, headers=headers, timeout=20) as client:
                    while not stop.is_set():
                        response = client.post("/v1/chat/completions", json=body)
                        answers.append((sender, response.status_code, dict(response.headers),
                                        response.text))

            with ThreadPoolExecutor(max_workers=6) as pool:
                for sender in SENDERS * 2:
                    pool.submit(load, sender)
                time.sleep(1.0)
                stubs["paris-1"].__exit__()           # a replica dies
                stubs["frankfurt-1"].__exit__()
                time.sleep(1.0)
                stack.endpoints.items[:] = [e for e in stack.endpoints.items  # the Paris node is lost
                                            if e.pool != "fr-paris"]
                stubs["paris-2"].__exit__()
                time.sleep(1.0)
                stop.set()
        finally:
            for name in ("lyon", "frankfurt-2", "berlin"):
                stubs[name].__exit__()

    statuses = Counter(status for _, status, _, _ in answers)
    assert statuses[200] > 50 and statuses[503] > 0, statuses
    assert set(statuses) <= {200, 429, 503}, statuses
    for sender, status, headers, text in answers:
        if status == 200:
            assert headers["x-corridor-pool"] in allowed[sender], (sender, headers["x-corridor-pool"])
        else:
            error = httpx.Response(status, text=text).json()["error"]
            assert set(error) == {"message", "type", "code", "param"}
            expected = ("rate_limit_exceeded",) if status == 429 else ("no_replica_available",
                                                                       "upstream_unavailable")
            assert error["code"] in expected, error
            assert int(headers["retry-after"]) > 0
            assert "127.0.0.1" not in error["message"]
    after_loss = [h["x-corridor-pool"] for _, s, h, _ in answers[-30:] if s == 200]
    assert "fr-paris" not in after_loss, "a lost node's replicas are no longer routed to"
    assert all(count == 0 for count in stack.gateway.router.outstanding.values())
