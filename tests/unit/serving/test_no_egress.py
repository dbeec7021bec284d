"""No egress in autarky mode: the detectors catch a deliberate attempt, a full request cycle makes none.

Detectors (``tests/egress/egress_hook.py``): an audit hook on ``socket.connect``
and friends in this process and, through ``sitecustomize``, in Python
children; and the kernel's socket tables of the whole process tree. The
deliberate connect may fail or not (whatever answers at the edge of the sandbox); either
way the attempt is caught.
Addresses are from TEST-NET-3 (RFC 5737), which no real host uses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies import Policy, default_bundle_path, load_bundle
from policies.signing import OperatorKey, sign_bundle, signature_path
from scheduler.ledger import Ledger
from serving.autarky import AUTARKY_ENV, LOOPBACK_ENV, check_bundle, endpoint_problems, model_problems
from scheduler.crisis import CrisisRegistry
from serving.feed import LedgerFollower, SecurityFeed
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.routing import Endpoint, Router, StaticEndpoints
from serving.gateway.limits import RateLimiter
from serving.models.artifacts import artifact_digest
from serving.loopback import free_port
from stub_upstream import ServerThread

REPO = Path(__file__).resolve().parents[3]
EGRESS = REPO / "tests" / "egress"
STUB = REPO / "tests" / "stub_upstream.py"
sys.path.insert(0, str(EGRESS))
import egress_hook  # noqa: E402

OUTSIDE = ("203.0.113.7", 443)


def probed_env(log: Path, **extra: str) -> dict[str, str]:
    """The environment of a child watched by the audit hook (``sitecustomize`` on its path)."""
    path = os.pathsep.join([str(EGRESS), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, egress_hook.LOG_VARIABLE: str(log), **extra}


class TestTheDetectorsWork:
    def test_the_audit_hook_catches_a_connect_outside_loopback_in_this_process(self):
        monitor = egress_hook.install()
        with monitor:
            with socket.socket() as sock:
                sock.settimeout(0.3)
                try:
                    sock.connect(OUTSIDE)
                except OSError:
                    pass  # refused, unreachable or timed out: the attempt is what counts
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(b"x", ("203.0.113.8", 53))
        targets = [(f["event"], f["target"]) for f in monitor.foreign]
        assert ("socket.connect", repr(OUTSIDE)) in targets
        assert ("socket.sendto", repr(("203.0.113.8", 53))) in targets

    def test_a_host_name_lookup_counts_as_an_attempt_but_localhost_does_not(self):
        monitor = egress_hook.install()
        with monitor:
            socket.getaddrinfo("localhost", 80)
            socket.getaddrinfo("127.0.0.1", 80)
            try:  # resolving an outside name is itself traffic to a name server
                socket.getaddrinfo("huggingface.co.invalid", 443)
            except OSError:
                pass
        assert [f["target"] for f in monitor.foreign] == ["'huggingface.co.invalid'"]

    def test_the_probe_catches_the_attempt_of_a_python_child(self, tmp_path):
        log = tmp_path / "egress.jsonl"
        code = (f"import socket\ntry:\n socket.create_connection({OUTSIDE!r}, timeout=0.3)\n"
                f"except OSError:\n pass\n")
        subprocess.run([sys.executable, "-c", code], env=probed_env(log), check=True, timeout=60)
        (found,) = egress_hook.read_log(log)
        assert found["event"] == "socket.connect" and "203.0.113.7" in found["target"]

    @pytest.mark.parametrize("kind", ["tcp", "udp"])
    def test_the_socket_tables_catch_a_child_that_no_hook_watches(self, kind):
        connect = ("s = socket.create_connection(('203.0.113.7', 443), timeout=5)" if kind == "tcp" else
                   "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('203.0.113.7', 53))")
        code = f"import socket, time\ntry:\n {connect}\nexcept OSError:\n pass\ntime.sleep(5)\n"
        child = subprocess.Popen([sys.executable, "-c", code])
        try:
            deadline, found = time.monotonic() + 5, []
            while not found and time.monotonic() < deadline:
                found = egress_hook.foreign_sockets()
                time.sleep(0.02)
        finally:
            child.kill()
            child.wait()
        assert found and found[0]["pid"] == child.pid and found[0]["remote"].startswith("203.0.113.7:")




def test_a_full_request_cycle_in_autarky_mode_opens_no_socket_outside_loopback(tmp_path):
    """Signed and pinned bundle, offline switches, the gateway with every service, a replica
    stand-in as a child process; inference, streaming, embeddings, a refusal, a crisis drill,
    audit, metrics and a failed login — all on loopback."""
    artifacts = {}
    for model in ("corridor-tiny", "corridor-small", "minilm"):
        directory = tmp_path / "models" / model
        directory.mkdir(parents=True)
        (directory / "config.json").write_text(f'{{"name": "{model}"}}')
        artifacts[model] = artifact_digest(directory)
    document = yaml.safe_load(default_bundle_path().read_text())
    document["settings"]["autarky"] = True
    for model in document["models"]:
        model["digest"] = artifacts[model["id"]]
    bundle = tmp_path / "prod.yaml"
    bundle.write_text(yaml.safe_dump(document, sort_keys=False))
    key = Ed25519PrivateKey.generate()
    signature_path(bundle).write_text(sign_bundle(bundle.read_bytes(), key).to_text())
    policy = Policy(load_bundle(bundle))
    check_bundle(bundle, policy, [OperatorKey.of("fr-ops", "FR", key.public_key())])
    assert model_problems(policy, artifacts) == []

    syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    syslog.bind(("127.0.0.1", 0))
    syslog.settimeout(5)
    syslog_url = f"udp://127.0.0.1:{syslog.getsockname()[1]}"
    log = tmp_path / "egress.jsonl"
    child_env = probed_env(log, **AUTARKY_ENV, **LOOPBACK_ENV)
    assert endpoint_problems(syslog=syslog_url, environ=child_env) == []

    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(STUB), "--port", str(port), "--name", "fr-paris"],
        env=child_env, cwd=REPO)
    monitor = egress_hook.install()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.post(url + "/v1/completions", content=b"{}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        keys = KeyStore()
        app_key = keys.issue("app", tenant="fr-interior")
        operators = {j: keys.issue("operator", jurisdiction=j) for j in ("FR", "DE")}
        with Ledger.open(tmp_path / "home") as ledger, egress_hook.SocketSampler() as sampler, monitor:
            feed = SecurityFeed(tmp_path / "home" / "security-events.jsonl", syslog=syslog_url)
            follower = LedgerFollower(ledger, feed, start_at=0)
            crisis = CrisisRegistry(policy, ledger, tmp_path / "home" / "crisis.json").start()
            endpoints = StaticEndpoints([Endpoint("r1", "corridor-tiny", "fr-paris", "FR", "n1", url),
                                         Endpoint("r2", "minilm", "fr-paris", "FR", "n1", url)])
            gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(keys),
                              router=Router(policy, endpoints, declarations=crisis.declarations),
                              crisis=crisis, events=feed, limiter=RateLimiter(policy, ledger=ledger, feed=feed),
                              model_digests=artifacts)
            with ServerThread(create_app(gateway)) as server:
                client = openai.OpenAI(base_url=server.url + "/v1", api_key=app_key, max_retries=0,
                                       default_headers={"X-Corridor-Marking": "DR"})
                raw = client.chat.completions.with_raw_response.create(
                    model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
                assert raw.headers["x-corridor-pool"] == "fr-paris"
                assert len(list(client.chat.completions.create(
                    model="corridor-tiny", messages=[{"role": "user", "content": "x"}], stream=True))) == 4
                assert client.embeddings.create(model="minilm", input="x").data
                with pytest.raises(openai.PermissionDeniedError):
                    client.with_options(default_headers={"X-Corridor-Marking": "SECRET"}).chat.completions.create(
                        model="corridor-tiny", messages=[{"role": "user", "content": "x"}])

                def operator(method, path, side, **kwargs):
                    return httpx.request(method, server.url + path, timeout=10,
                                         headers={"authorization": f"Bearer {operators[side]}"}, **kwargs)

                body = {"scope": {"tenants": ["fr-interior"], "markings": ["DR"], "models": ["corridor-tiny"],
                                  "directions": ["FR->DE"]}, "reason": "drill", "valid_for_hours": 1}
                declaration = operator("POST", "/admin/crisis", "FR", json=body).json()["id"]
                assert operator("POST", f"/admin/crisis/{declaration}/approve", "DE", json={}).status_code == 200
                assert operator("POST", f"/admin/crisis/{declaration}/revoke", "FR", json={}).status_code == 200
                assert httpx.get(server.url + "/v1/models",
                                 headers={"authorization": "Bearer cor_000000000000_x"}).status_code == 401
                assert operator("GET", "/metrics", "FR").status_code == 200
                follower.poll()
                feed.syslog.flush()
            crisis.stop()
            feed.close()
            ledger.latest_tree_head()
        assert syslog.recv(65535).startswith(b"<")
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
        syslog.close()
    assert monitor.loopback > 0, "the audit hook was watching"
    assert monitor.foreign == [], monitor.foreign
    assert any("stub_upstream.py" in argv for argv in egress_hook.watched(log)), "the child was watched"
    assert egress_hook.read_log(log) == [], "the replica stand-in tried to reach outside"
    assert sampler.samples > 3 and sampler.found == [], sampler.found
