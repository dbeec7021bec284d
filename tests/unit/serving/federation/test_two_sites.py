"""Two sites, one corridor: mutual TLS, declarations signed at each site, forwarding only under an
active declaration both sites hold, both ledgers under one decision id, witnessing."""

from __future__ import annotations

import httpx
import pytest

from scheduler.ledger.witness_audit import verify_witness_item
from serving.federation.site_ca import ensure_site_identity

from two_sites import two_sites

EMBED = {"model": "minilm", "input": "Lagebericht"}
SCOPE = {"tenants": ["de-federal-it"], "markings": ["VS-NfD"], "models": ["minilm"], "directions": ["DE->FR"]}


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    with two_sites(tmp_path_factory.mktemp("corridor")) as corridor:
        yield corridor


def embed(site, **headers):
    return site.post("/v1/embeddings", "de-federal-it/app", EMBED, **{"X-Corridor-Marking": "VS-NfD", **headers})


def declare(corridor):
    fr, de = corridor["FR"], corridor["DE"]
    made = de.post("/admin/crisis", "DE/operator", {"scope": SCOPE, "reason": "drill", "valid_for_hours": 1})
    assert made.status_code == 200, made.text
    declaration = made.json()["id"]
    corridor.wait(lambda: fr.get(f"/admin/crisis/{declaration}", "FR/operator").status_code == 200,
                  what="the declaration to reach FR")
    return declaration


def declare_and_approve(corridor):
    """A declaration made at DE, approved at FR, and active at both."""
    fr, de = corridor["FR"], corridor["DE"]
    declaration = declare(corridor)
    fr.post(f"/admin/crisis/{declaration}/approve", "FR/operator", {})
    corridor.wait(lambda: de.get(f"/admin/crisis/{declaration}", "DE/operator").json()["status"] == "active",
                  what="the approval to reach DE")
    return declaration


def _context(ca, cert=None):
    import ssl

    context = ssl.create_default_context(cafile=ca)
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def test_the_peer_api_admits_only_the_peer_sites_certificate(corridor, tmp_path):
    fr = corridor["FR"]
    url = fr.peer_server.url + "/peer/v1/hello"
    ca = str(corridor.home / "FR" / "identity" / "site-ca.pem")
    with pytest.raises(httpx.HTTPError):  # no client certificate
        httpx.get(url, verify=_context(ca), timeout=5)
    stranger = ensure_site_identity(tmp_path / "stranger", "DE")  # a DE identity of another CA
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=_context(ca, (str(stranger.cert), str(stranger.key))), timeout=5)
    de = corridor.home / "DE" / "identity"
    answer = httpx.get(url, verify=_context(ca, (str(de / "site.pem"), str(de / "site-key.pem"))), timeout=5)
    assert answer.status_code == 200 and answer.json()["site"] == "FR"


def test_a_kept_alive_connection_is_answered_without_waiting_for_a_delayed_ack(corridor):
    """Both listeners of a site share one loop (as ``serve_site`` runs them). Under the plain
    asyncio loop every answer after the first on a kept-alive connection took >= 40 ms (the
    client's delayed ACK); on uvicorn's own loop choice it takes about a millisecond."""
    import statistics
    import time

    with httpx.Client(base_url=corridor["DE"].url) as client:
        client.get("/healthz")
        times = []
        for _ in range(15):
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.030, f"median {statistics.median(times) * 1000:.1f} ms"


def test_a_key_presented_at_the_wrong_site_is_told_the_right_one(corridor):
    de = corridor["DE"]
    answer = httpx.post(de.url + "/v1/chat/completions", timeout=10,
                        headers={"Authorization": f"Bearer {corridor['FR'].keys['fr-interior/app']}"},
                        json={"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "wrong_site"
    assert "site FR" in answer.json()["error"]["message"] and corridor["FR"].url in answer.json()["error"]["message"]


def test_without_a_declaration_nothing_is_forwarded(corridor):
    answer = embed(corridor["DE"])
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "no_replica_available"
    decision = answer.headers["x-corridor-decision"]
    assert corridor["FR"].routing(decision) == [], "the peer never heard of it"


def test_the_drill_declare_at_de_approve_at_fr_forward_then_revoke(corridor):
    fr, de = corridor["FR"], corridor["DE"]
    declaration = declare(corridor)
    assert fr.get(f"/admin/crisis/{declaration}", "FR/operator").json()["status"] == "pending"
    refused = de.post(f"/admin/crisis/{declaration}/approve", "DE/operator", {})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "self_approval"
    approved = fr.post(f"/admin/crisis/{declaration}/approve", "FR/operator", {})
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    assert approved.json()["signed_by"] == ["DE", "FR"]
    corridor.wait(lambda: de.get(f"/admin/crisis/{declaration}", "DE/operator").json()["status"] == "active",
                  what="the approval to reach DE")

    answer = embed(de)
    assert answer.status_code == 200, answer.text
    assert (answer.headers["x-corridor-site"], answer.headers["x-corridor-pool"],
            answer.headers["x-corridor-jurisdiction"]) == ("FR", "fr-paris", "FR")
    assert answer.headers["x-corridor-declaration"] == declaration
    decision = answer.headers["x-corridor-decision"]
    (home,) = de.routing(decision)
    (served,) = fr.routing(decision)
    assert (home["detail"]["site"], home["detail"]["forwarded_to"], home["pool"]) == ("DE", "FR", "fr-paris")
    assert (served["detail"]["site"], served["detail"]["forwarded_from"]) == ("FR", "DE")
    assert served["declaration"] == home["declaration"] == declaration
    assert served["allowed"] is home["allowed"] is True

    streamed = de.post("/v1/chat/completions", "de-federal-it/app",
                       {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]},
                       **{"X-Corridor-Marking": "VS-NfD"})
    assert streamed.headers["x-corridor-site"] == "DE", "home capacity serves at home"

    revoked = fr.post(f"/admin/crisis/{declaration}/revoke", "FR/operator", {})
    assert revoked.json()["status"] == "revoked"
    corridor.wait(lambda: de.get(f"/admin/crisis/{declaration}", "DE/operator").json()["status"] == "revoked",
                  what="the revocation to reach DE")
    after = embed(de)
    assert after.status_code == 503 and "x-corridor-declaration" not in after.headers

    import json

    from typer.testing import CliRunner

    from serving.cli import app

    for site, how in (("FR", "served for DE"), ("DE", "forwarded to FR")):
        result = CliRunner().invoke(app, ["crisis", "report", declaration, "--site-home",
                                          str(corridor.home / site), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert [s["step"] for s in report["steps"]] == ["declared", "approved", "activated", "revoked"]
        assert [(r["tenant"], r["model"], r["pool"], r["how"], r["count"]) for r in report["requests"]] == [
            ("de-federal-it", "minilm", "fr-paris", how, 1)]


def test_a_forged_step_is_refused_by_the_peer_api(corridor):
    fr, de = corridor["FR"], corridor["DE"]
    declaration = declare(corridor)
    step = next(s for s in de.crisis.get(declaration).steps if s["action"] == "declare")
    forged = {**step, "action": "approve", "site": "DE", "operator": "mallory"}
    import asyncio

    from serving.federation.link import PeerLink, PeerRefused

    own = fr.gateway.federation.link  # FR's client certificate: the only one DE's peer API admits
    link = PeerLink(own.base_url, own.context)

    async def send():
        await link.start()
        try:
            await link.post_json("/peer/v1/crisis/steps", forged)
        finally:
            await link.close()

    with pytest.raises(PeerRefused) as info:
        asyncio.run(send())
    assert info.value.status == 403 and info.value.body["error"]["code"] == "invalid_crisis_step"
    assert de.crisis.get(declaration).status(de.crisis.clock()) == "pending"
    fr.post(f"/admin/crisis/{declaration}/revoke", "FR/operator", {})


def test_each_site_witnesses_the_other_and_auditors_can_check_the_cosignatures(corridor):
    fr, de = corridor["FR"], corridor["DE"]
    corridor.wait(lambda: fr.get("/audit/witness", "*/auditor").json()["data"], what="a cosigned DE head")
    corridor.wait(lambda: de.get("/audit/witness", "*/auditor").json()["data"], what="a cosigned FR head")
    item = fr.get("/audit/witness", "*/auditor").json()["data"][-1]
    assert item["site"] == "DE"
    fr_key = fr.get("/audit/public-key", "*/auditor").json()
    de_key = de.get("/audit/public-key", "*/auditor").json()
    verify_witness_item(item, witness_site="FR", witness_key=fr_key, peer_key=de_key)
    entries = fr.ledger.entries(kind="witness", limit=10)["data"]
    assert entries and entries[0]["entry"]["detail"]["site"] == "DE"
    checkpoint = corridor.wait(lambda: "cosignature" not in (text := de.get("/audit/checkpoint", "*/auditor").text)
                               and text.count("\u2014") >= 2 and text, what="DE's checkpoint cosigned by FR")
    assert checkpoint.startswith("corridor.eu/DE/ledger\n")


def test_a_quiet_corridor_stops_recording_witness_entries_of_each_others_records(tmp_path):
    """Each site's ``witness`` entry grows its own log by one, which the peer witnesses next
    cycle: a one-entry step is recorded at most every ``witness_record_s`` (60 s), so with no
    traffic both ledgers settle while cosigning goes on."""
    import time

    with two_sites(tmp_path, witness_period_s=0.2) as corridor:
        fr, de = corridor["FR"], corridor["DE"]
        corridor.wait(lambda: fr.ledger.entries(kind="witness", limit=1)["data"]
                      and de.ledger.entries(kind="witness", limit=1)["data"], what="a witness entry at both")
        time.sleep(1.5)  # both sites witness the other's first record (a one-entry step)
        sizes = (fr.ledger.size, de.ledger.size)
        time.sleep(2.0)  # ten cycles
        assert (fr.ledger.size, de.ledger.size) == sizes
        # ... and each has witnessed the other's newest head, its last record included.
        assert fr.gateway.witness.last.tree_size == de.ledger.size
        assert de.gateway.witness.last.tree_size == fr.ledger.size


def test_reconcile_finds_every_forwarded_request_in_both_ledgers_and_verify_peer_holds(corridor, tmp_path):
    import json

    from typer.testing import CliRunner

    from serving.cli import app

    fr, de = corridor["FR"], corridor["DE"]
    corridor.wait(lambda: fr.gateway.witness.items, what="a witnessed DE head")
    (tmp_path / "sites.json").write_text(json.dumps({"FR": {"url": fr.url}, "DE": {"url": de.url}}))
    auditor = fr.keys["*/auditor"]
    result = CliRunner().invoke(app, ["audit", "reconcile", "--home", str(tmp_path), "--key", auditor])
    assert result.exit_code == 0, result.output
    assert "DE→FR: 1 forwarded, 1 served, 1 in both" in result.output
    checked = CliRunner().invoke(app, ["audit", "verify", "--peer", de.url, "--home", str(corridor.home / "FR"),
                                       "--key", auditor])
    assert checked.exit_code == 0, checked.output
    assert "site DE" in checked.output and "consistent" in checked.output


def test_a_site_on_another_bundle_gets_nothing_forwarded_and_both_say_why(tmp_path):
    import yaml

    from policies import Policy, default_bundle_path, load_bundle

    document = yaml.safe_load(default_bundle_path().read_text())
    document["version"] = document["version"] + "-fr-only"
    other = Policy(load_bundle("fr.yaml", text=yaml.safe_dump(document)))
    with two_sites(tmp_path, policies={"FR": other}) as corridor:
        fr, de = corridor["FR"], corridor["DE"]
        assert de.gateway.federation.state.policy_digest == other.digest != de.gateway.policy.digest
        refusal = de.gateway.federation.state.forwarding_refusal(de.gateway.policy.digest)
        assert refusal is not None and refusal[0] == "peer_policy_mismatch"


def test_a_rewritten_peer_ledger_stops_forwarding_and_is_a_critical_finding(tmp_path):
    from scheduler.ledger import Ledger, LedgerEntryDraft

    with two_sites(tmp_path) as corridor:
        fr, de = corridor["FR"], corridor["DE"]
        corridor.wait(lambda: fr.gateway.witness.last is not None, what="FR to witness DE once")
        witnessed = fr.gateway.witness.last.tree_size
        # DE's operator rewrites history: a new log under the same signing key, grown past the head
        # FR witnessed, served in place of the real one.
        forged_home = tmp_path / "forged"
        forged_home.mkdir()
        (forged_home / "ledger-signing-key.pem").write_bytes((tmp_path / "DE" / "ledger-signing-key.pem").read_bytes())
        forged = Ledger.open(forged_home)
        for _ in range(witnessed + 40):  # longer than anything FR has witnessed
            forged.append(LedgerEntryDraft(kind="policy", policy_digest=de.gateway.policy.digest))
        de.gateway.ledger = forged
        de.gateway.witness.ledger = forged
        halted = corridor.wait(lambda: fr.gateway.federation.state.halted, what="FR to notice")
        assert "inconsistent" in halted or "fork" in halted.lower()
        finding = fr.ledger.entries(kind="security", limit=50)["data"][-1]["entry"]
        assert finding["detail"]["event"] == "peer_ledger_inconsistent" and finding["detail"]["site"] == "DE"
        refusal = fr.gateway.federation.state.forwarding_refusal(fr.gateway.policy.digest)
        assert refusal is not None and refusal[0] == "peer_halted"
        forged.close()


def test_with_the_peer_down_a_crossing_request_is_503_peer_unavailable_and_home_traffic_flows(tmp_path):
    with two_sites(tmp_path) as corridor:
        fr, de = corridor["FR"], corridor["DE"]
        declaration = declare_and_approve(corridor)
        assert embed(de).status_code == 200
        fr.peer_server.server.should_exit = True  # FR's peer API goes away
        corridor.wait(lambda: not de.gateway.federation.state.reachable, timeout_s=15, what="DE to notice")
        answer = embed(de)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "peer_unavailable"
        home = de.post("/v1/chat/completions", "de-federal-it/app",
                       {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]},
                       **{"X-Corridor-Marking": "VS-NfD"})
        assert home.status_code == 200 and home.headers["x-corridor-site"] == "DE"
        revoked = de.post(f"/admin/crisis/{declaration}/revoke", "DE/operator", {})
        assert revoked.json()["status"] == "revoked", "a revocation holds locally while the peer is away"
        assert de.crisis.unsent_steps(), "and waits to be sent"


def test_a_forwarded_request_goes_through_the_peers_routing_and_waits_in_its_queue(tmp_path):
    """At the serving site, a forwarded request is ranked by that site's scorers among the replicas
    the declaration allows there (the scores are in its routing entry), and when they are all
    busy it waits in that site's admission queue rather than overloading them."""
    import concurrent.futures

    from serving.routing import Endpoint

    with two_sites(tmp_path) as corridor:
        fr, de = corridor["FR"], corridor["DE"]
        declare_and_approve(corridor)
        router = fr.gateway.router
        (first,) = [e for e in router.source.endpoints() if e.model == "minilm"]
        second = Endpoint("minilm@fr-paris-2", "minilm", "fr-paris", "FR", "node-fr-paris-2", first.url)
        router.source.items.append(second)

        answer = embed(de)
        assert answer.status_code == 200, answer.text
        (served,) = fr.routing(answer.headers["x-corridor-decision"])
        assert served["detail"]["forwarded_from"] == "DE"
        assert {"prefix", "tokens", "total"} <= set(served["detail"]["scores"])

        router.replica_concurrency = 1
        for replica in (first, second):
            router.scoring.sent(replica.replica_id, None)  # both FR replicas are busy
        queue = fr.gateway.dispatch.queue
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(embed, de)
            corridor.wait(lambda: queue.waiting == 1, what="the forwarded request to wait at FR")
            assert not waiting.done()
            router.scoring.done(first.replica_id, None)  # a slot frees: the queue's tick grants it
            answer = waiting.result(timeout=10)
        assert answer.status_code == 200 and answer.headers["x-corridor-site"] == "FR"
        assert queue.outcomes.labels("de-federal-it", "standard", "admitted")._value.get() == 1
        router.scoring.done(second.replica_id, None)
