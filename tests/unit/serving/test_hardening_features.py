"""What the hardening added beyond fixing the findings: prefix-cache salts per tenant, client
addresses behind trusted proxies, OIDC from corridor.yaml, backoff of failing batch steps, and
the error boundary's correlation id."""

from __future__ import annotations

import io
import json
import logging
import time

import openai

from serving.batch import BatchSettings, ExecutionSettings
import pytest
import yaml

from serving.config import ConfigError, load_run_config
from serving.gateway.clients import ClientAddresses, parse_networks
from serving.installation.access import gateway_options, jwt_verifier
from serving.routing.cache_salt import CacheSalts
from stub_upstream import ServerThread, make_stub

from gateway_stack import endpoint
from hardened_stack import hardened_stack


class Recording:
    """A stub upstream that keeps every JSON body it was sent."""

    def __init__(self, name: str) -> None:
        self.app = make_stub(name)
        self.bodies: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(json.loads(body))
        done = False

        async def replay():
            nonlocal done
            if done:
                return await receive()
            done = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def test_each_tenant_gets_its_own_cache_salt_and_a_salt_sent_by_the_caller_is_replaced(tmp_path):
    recorder = Recording("fr-paris")
    with hardened_stack(tmp_path) as stack, ServerThread(recorder) as upstream:
        stack.endpoints.items[:] = [endpoint("fr-paris", upstream.url),
                                    endpoint("fr-paris", upstream.url, "minilm", "embed")]
        for tenant in ("fr-interior", "fr-health", "fr-interior"):
            assert stack.chat(f"{tenant}/app", cache_salt="guessed-salt-of-someone-else").status_code == 200
        assert stack.call("POST", "/v1/embeddings", "fr-interior/app",
                          json={"model": "minilm", "input": "x"}).status_code == 200
        salts = [body["cache_salt"] for body in recorder.bodies]
        assert "guessed-salt-of-someone-else" not in salts
        assert salts[0] == salts[2] == salts[3] != salts[1]
        assert salts[0] == stack.gateway.cache_salts.salt("fr-interior")
        assert all(len(s) == 64 and "/" not in s and "@" not in s for s in salts)
        assert recorder.bodies[0]["messages"] == [{"role": "user", "content": "x"}], "the rest unchanged"


def run_batch(admin, lines):
    """Submit ``lines`` as one chat batch and wait (15 s at most) for it to complete."""
    content = "\n".join(json.dumps(line) for line in lines).encode()
    file_id = admin.files.create(file=("in.jsonl", io.BytesIO(content)), purpose="batch").id
    batch = admin.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                 completion_window="24h")
    deadline = time.monotonic() + 15
    while (batch := admin.batches.retrieve(batch.id)).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    return batch


def test_batch_lines_alone_and_in_bulk_carry_their_tenants_cache_salt_not_one_a_line_sent(tmp_path):
    recorder = Recording("fr-paris")
    bulk_on = BatchSettings(execution=ExecutionSettings(bulk_lines=16))  # off by default
    with hardened_stack(tmp_path, batch_settings=bulk_on) as stack, ServerThread(recorder) as upstream:
        stack.endpoints.items[:] = [endpoint("fr-paris", upstream.url)]
        admin = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys["fr-interior/admin"],
                              max_retries=0)
        salt = stack.gateway.cache_salts.salt("fr-interior")
        lines = [{"custom_id": f"l{n}", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "corridor-tiny", "cache_salt": sent,
                           "messages": [{"role": "user", "content": f"q{n}"}]}}
                 for n, sent in enumerate(("mine", "another", "mine", "another"))]
        assert run_batch(admin, lines[:1]).request_counts.completed == 1
        assert [b["cache_salt"] for b in recorder.bodies] == [salt]  # a line alone
        assert run_batch(admin, lines).request_counts.completed == 4
        bulk = [b for b in recorder.bodies[1:] if isinstance(b["messages"][0], list)]
        assert bulk, "the lines went to the replica in bulk"
        assert {b["cache_salt"] for b in recorder.bodies} == {salt}


def test_the_cache_salt_secret_is_created_once_private_and_kept(tmp_path):
    first = CacheSalts.open(tmp_path)
    assert oct((tmp_path / "cache-salt.key").stat().st_mode & 0o777) == "0o600"
    assert CacheSalts.open(tmp_path).salt("t") == first.salt("t") != CacheSalts().salt("t")


def test_forwarded_addresses_are_believed_only_from_trusted_proxies():
    clients = ClientAddresses(parse_networks(["10.0.0.0/8"]))
    assert clients.resolve("10.0.0.5", ["198.51.100.1, 203.0.113.7"]) == "203.0.113.7"
    assert clients.resolve("10.0.0.5", ["198.51.100.1, 10.9.9.9"]) == "198.51.100.1"
    assert clients.resolve("192.0.2.1", ["203.0.113.7"]) == "192.0.2.1", "an untrusted peer"
    assert clients.resolve("10.0.0.5", ["not-an-address"]) == "10.0.0.5"
    with pytest.raises(ValueError, match="10.0.0.0/8"):
        parse_networks(["ten"])


def test_behind_a_trusted_proxy_one_clients_bad_keys_throttle_that_client_only(tmp_path):
    with hardened_stack(tmp_path) as stack:
        stack.gateway.clients = ClientAddresses(parse_networks(["127.0.0.1"]))
        bad = {"authorization": "Bearer cor_000000000000_guess"}
        for _ in range(6):
            stack.call("GET", "/v1/models", None, headers={**bad, "x-forwarded-for": "203.0.113.7"})
        throttled = stack.call("GET", "/v1/models", None, headers={**bad, "x-forwarded-for": "203.0.113.7"})
        other = stack.call("GET", "/v1/models", None, headers={**bad, "x-forwarded-for": "203.0.113.8"})
        assert (throttled.status_code, other.status_code) == (429, 401)
        (burst,) = stack.ledger.entries(kind="security", limit=10)["data"]
        assert burst["entry"]["detail"]["source"] == "203.0.113.7"


def test_oidc_trusted_proxies_and_metrics_are_read_from_corridor_yaml(tmp_path, default_policy):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="idp", alg="RS256")
    (tmp_path / "idp.json").write_text(json.dumps({"keys": [jwk]}))
    (tmp_path / "corridor.yaml").write_text(yaml.safe_dump({
        "trusted_proxies": ["10.0.0.0/8"], "metrics": {"public": True},
        "oidc": {"issuer": "https://idp.gouv.fr", "audience": "corridor", "jwks_file": "idp.json",
                 "claims": {"roles": "groups", "tenant": "org"}}}))
    config = load_run_config(None, tmp_path)
    verifier = jwt_verifier(config, tmp_path)
    token = jwt.encode({"iss": "https://idp.gouv.fr", "aud": "corridor", "sub": "a",
                        "exp": int(time.time()) + 60, "groups": ["app"], "org": "fr-interior"},
                       key, algorithm="RS256", headers={"kid": "idp"})
    assert verifier.authenticate(token).tenant == "fr-interior"
    options = gateway_options(config, tmp_path, default_policy)
    assert options["metrics_roles"] is None
    assert options["clients"].resolve("10.1.1.1", ["192.0.2.9"]) == "192.0.2.9"


@pytest.mark.parametrize(("oidc", "message"), [
    ({"issuer": "https://idp", "audience": "c", "jwks_file": "missing.json"}, "export its JWKS there"),
    ({"issuer": "https://idp", "audience": "c", "jwks_file": "x.json", "audiance": "typo"}, "audiance"),
], ids=["missing JWKS file", "misspelt field"])
def test_a_bad_oidc_configuration_fails_before_anything_starts(tmp_path, oidc, message):
    (tmp_path / "corridor.yaml").write_text(yaml.safe_dump({"oidc": oidc}))
    with pytest.raises(ConfigError, match=message):
        jwt_verifier(load_run_config(None, tmp_path), tmp_path)


def test_a_batch_whose_input_cannot_be_read_backs_off_logs_once_then_fails(tmp_path, monkeypatch, caplog):
    import serving.batch.executor as executor

    calls = []

    def unreadable(*args, **kwargs):
        calls.append(time.monotonic())
        raise OSError("disk gone")

    monkeypatch.setattr(executor, "validate_batch", unreadable)
    monkeypatch.setattr(executor, "RETRY_FIRST_S", 0.05)
    caplog.set_level(logging.DEBUG, logger="serving.batch.executor")
    with hardened_stack(tmp_path) as stack:
        admin = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys["fr-interior/admin"],
                              max_retries=0)
        file_id = admin.files.create(file=("in.jsonl", io.BytesIO(b"{}\n")), purpose="batch").id
        batch = admin.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                     completion_window="24h")
        deadline = time.monotonic() + 20
        while (found := admin.batches.retrieve(batch.id)).status != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert found.status == "failed" and found.errors.data[0].code == "validation_unavailable"
    assert len(calls) == executor.VALIDATION_ATTEMPTS
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert all(later >= earlier * 1.5 for earlier, later in zip(gaps, gaps[1:])), gaps
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "disk gone" in r.getMessage()
                or (r.exc_info and "disk gone" in str(r.exc_info[1]))]
    assert len(warnings) == 1, "one traceback per batch, not one per try"


def test_an_unexpected_exception_is_a_500_in_the_openai_format_with_an_id_in_the_log(tmp_path, caplog):
    with hardened_stack(tmp_path) as stack:
        def broken(workload):
            raise ZeroDivisionError("a bug")

        stack.gateway.router.route = broken
        response = stack.chat("fr-interior/app")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    error_id = response.headers["x-corridor-error-id"]
    assert error_id in error["message"] and "ZeroDivisionError" not in response.text
    assert any(error_id in record.getMessage() and record.exc_info for record in caplog.records)
