"""The twelve findings of the hardening review (issue 14), each as a test that failed before the fix.

Each test drives a gateway assembled like ``corridor up``'s (:mod:`hardened_stack`)
the way the finding was reached: over HTTP, with the official SDK where a client
would use it.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import select
import socket
import stat
import time
from urllib.parse import quote, urlsplit

import openai
import pytest

from scheduler.ledger import Ledger
from serving.batch import BatchSettings, BatchStore
from stub_upstream import ServerThread

from gateway_stack import endpoint
from hardened_stack import hardened_stack
from quota_policy import policy_with

DEEP = "[" * 1100 + "]" * 1100




@pytest.fixture
def stack(tmp_path):
    with hardened_stack(tmp_path) as built:
        yield built


def wait_for(predicate, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


# 1. Lock-out of everyone ---------------------------------------------------------------------

def test_1_bad_keys_from_an_address_never_lock_out_valid_keys_from_it(stack):
    bad = {"authorization": "Bearer cor_000000000000_guess"}
    answers = [stack.call("GET", "/v1/models", None, headers=bad).status_code for _ in range(10)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}, "the bad sender is throttled"
    assert stack.call("GET", "/v1/models", "fr-interior/app").status_code == 200
    assert stack.call("GET", "/audit/tree-head", "*/auditor").status_code == 200
    assert stack.call("GET", "/admin/pools", "FR/operator").status_code == 200
    bursts = stack.ledger.entries(kind="security", limit=100)["data"]
    assert len(bursts) == 1, "one episode, reported once"


# 2. A batch line that stalls the gateway ------------------------------------------------------

def test_2_a_batch_line_nested_too_deep_fails_its_batch_instead_of_looping(stack):
    admin = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys["fr-interior/admin"], max_retries=0)
    good = json.dumps({"custom_id": "ok", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]}})
    deep = '{"custom_id": "deep", "method": "POST", "url": "/v1/chat/completions", "body": ' + DEEP + "}"
    file_id = admin.files.create(file=("in.jsonl", io.BytesIO(f"{good}\n{deep}\n".encode())),
                                 purpose="batch").id
    batch = admin.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                 completion_window="24h")
    failed = wait_for(lambda: (b := admin.batches.retrieve(batch.id)).status == "failed" and b)
    assert [(e.code, e.line) for e in failed.errors.data] == [("invalid_json_line", 2)]
    assert "nested deeper" in failed.errors.data[0].message


# 3. 500s with a plain-text body on bad input ---------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"])
def test_3_a_body_nested_990_levels_is_a_400_in_the_openai_format(stack, path):
    body = '{"model": "corridor-tiny", "messages": ' + "[" * 990 + "]" * 990 + "}"
    response = stack.call("POST", path, "fr-interior/app", content=body,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "json_too_deep"


@pytest.mark.parametrize("body", [
    "[" * 990 + "]" * 990,
    {"input_file_id": "file-x", "endpoint": ["x"], "completion_window": "24h"},
    {"input_file_id": "file-x", "endpoint": {}, "completion_window": "24h"},
], ids=["nested 990 levels", "endpoint as a list", "endpoint as an object"])
def test_3_a_malformed_batch_is_a_400_in_the_openai_format(stack, body):
    content = body if isinstance(body, str) else json.dumps(body)
    response = stack.call("POST", "/v1/batches", "fr-interior/admin", content=content,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert set(response.json()["error"]) == {"message", "type", "code", "param"}


@pytest.mark.parametrize(("params", "status"), [
    ({"after": "9223372036854775808"}, 400),
    ({"since": "0001-01-01T00:00:00+14:00"}, 200),
    ({"until": "9999-12-31T23:59:59-10:00"}, 200),
], ids=["after past 2**63", "since before year 1 in UTC", "until after 9999 in UTC"])
def test_3_audit_filters_at_the_edges_of_the_integers_and_of_time_never_500(stack, params, status):
    response = stack.call("GET", "/audit/entries", "*/auditor", params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"


# 4. Ambiguous marking -------------------------------------------------------------------------

@pytest.mark.parametrize("header", ["X-Corridor-Marking", "X-Corridor-Data"])
def test_4_a_corridor_header_sent_twice_is_a_400_naming_it(stack, header):
    values = ("PUBLIC", "SECRET") if header == "X-Corridor-Marking" else ("health", "personal")
    response = stack.raw("POST", "/v1/chat/completions",
                         [("authorization", f"Bearer {stack.keys['fr-interior/app']}"),
                          (header, values[0]), (header, values[1])],
                         json={"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "duplicate_header"
    assert response.json()["error"]["param"] == header


# 5. Unauthenticated text in the signed ledger and the feed -------------------------------------

def test_5_a_path_sent_with_bad_keys_reaches_neither_ledger_nor_feed(stack):
    marker = "ATTACKER-TEXT-written-into-the-ledger"
    for _ in range(5):
        stack.call("GET", f"/v1/files/{quote(marker)}", None,
                   headers={"authorization": "Bearer cor_000000000000_guess"})
    (burst,) = stack.ledger.entries(kind="security", limit=10)["data"]
    assert burst["entry"]["detail"]["endpoint"] == "/v1/files/{file_id}"
    assert marker not in stack.ledger_text() and marker not in stack.feed_text()


# 6. Readable state ----------------------------------------------------------------------------

def test_6_the_home_its_databases_and_their_wal_and_shm_are_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    (home / "batches.db").touch(mode=0o644)  # left readable by an earlier version
    store = BatchStore(home)
    with Ledger.open(home) as ledger:
        from scheduler.ledger import LedgerEntryDraft
        ledger.append(LedgerEntryDraft(kind="policy", policy_digest="sha256:" + "0" * 64))
        files = [home / name for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm",
                                          "batches.db", "batches.db-wal", "batches.db-shm")]
        modes = {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files if f.exists()}
    store.close()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert {"ledger.db", "batches.db", "ledger.db-wal", "batches.db-wal"} <= set(modes)
    assert set(modes.values()) == {"0o600"}, modes


# 7. Uploads read whole before the 413 ----------------------------------------------------------

def _chunked_upload(url: str, key: str, total: int) -> tuple[int, int]:
    """Send a multipart upload without Content-Length, chunk by chunk, until the gateway answers;
    returns (status, bytes sent when the answer came)."""
    parts = urlsplit(url)
    boundary = "corridorboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n").encode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                  f"Transfer-Encoding: chunked\r\n\r\n").encode())
    sent = 0
    chunk = b"x" * 65536
    pieces = [head] + [chunk] * (total // len(chunk)) + [f"\r\n--{boundary}--\r\n".encode()]
    try:
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sent += len(piece)
            time.sleep(0.002)
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = sock.recv(65536).decode("latin-1")
    sock.close()
    return int(answer.split(" ", 2)[1]), sent


def test_7_an_upload_without_length_is_refused_while_it_streams_in(tmp_path):
    settings = BatchSettings(max_file_bytes=512 * 1024)
    with hardened_stack(tmp_path, batch_settings=settings) as stack:
        status, sent = _chunked_upload(stack.url, stack.keys["fr-interior/admin"], 8 * 1024 * 1024)
        assert status == 413
        assert sent < 2 * 1024 * 1024, f"the gateway read {sent} bytes before refusing"
        assert list((tmp_path / "batches" / "files").iterdir()) == []


# 8. Malformed stream error ----------------------------------------------------------------------

class DyingStream:
    """An upstream that sends one event, half of the next, then drops the connection."""

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        event = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                 "choices": [{"index": 0, "delta": {"content": "tok"}, "finish_reason": None}]}
        await send({"type": "http.response.body", "body": f"data: {json.dumps(event)}\n\n".encode(),
                    "more_body": True})
        await send({"type": "http.response.body", "body": b'data: {"choi', "more_body": True})
        await asyncio.sleep(0.05)
        raise RuntimeError("the replica died")


def test_8_a_replica_dying_mid_event_ends_the_stream_with_an_error_the_sdk_reads(stack):
    with ServerThread(DyingStream()) as dying:
        stack.endpoints.items[:] = [endpoint("fr-paris", dying.url)]
        client = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys["fr-interior/app"],
                               max_retries=0)
        stream = client.chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}], stream=True)
        first = next(stream)
        assert first.choices[0].delta.content == "tok"
        with pytest.raises(openai.APIError) as info:
            list(stream)
        assert not isinstance(info.value, json.JSONDecodeError)
        assert "mid-stream" in str(info.value)


# 9. Quotas that are not enforced ----------------------------------------------------------------

def test_9_tokens_per_minute_come_from_the_usage_replicas_report_streams_included(tmp_path):
    from serving.gateway.token_quota import TokenQuota

    policy = policy_with(tokens_per_minute=14)
    with hardened_stack(tmp_path, policy=policy) as stack:
        stack.gateway.tokens = TokenQuota(policy)
        client = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys["fr-interior/app"],
                               max_retries=0)
        chunks = list(client.chat.completions.create(
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}], stream=True))
        assert all(c.choices for c in chunks), "the usage event the gateway asked for is not relayed"
        assert client.chat.completions.create(   # 7 (stream) + 6 tokens used: 1 left
            model="corridor-tiny", messages=[{"role": "user", "content": "x"}]).usage.total_tokens == 6
        client.chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        assert info.value.body["code"] == "tokens_per_minute_exceeded"
        assert int(info.value.response.headers["retry-after"]) >= 1


def test_9_files_and_batches_calls_count_against_the_tenants_requests_per_minute(tmp_path):
    with hardened_stack(tmp_path, policy=policy_with(requests_per_minute=3)) as stack:
        answers = [stack.call("GET", "/v1/files", "fr-interior/admin").status_code for _ in range(3)]
        assert answers == [200, 200, 200]
        limited = stack.call("GET", "/v1/batches", "fr-interior/admin")
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit_exceeded"


# 10. Loosely typed JWT claims -------------------------------------------------------------------

@pytest.fixture
def idp(tmp_path):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from serving.gateway.auth import JwtVerifier

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="idp", alg="RS256", use="sig")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    verifier = JwtVerifier(tmp_path / "jwks.json", issuer="https://idp.gouv.fr", audience="corridor")

    def token(**claims):
        payload = {"iss": "https://idp.gouv.fr", "aud": "corridor", "sub": "agent",
                   "exp": int(time.time()) + 300, **claims}
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "idp"})

    return verifier, token


@pytest.mark.parametrize(("claims", "path"), [
    ({"corridor_roles": ["auditor"], "corridor_audit_scope": "fr-*x"}, "/audit/entries"),
    ({"corridor_roles": ["app"], "corridor_tenant": ["fr-interior"]}, "/v1/models"),
    ({"corridor_roles": 7, "corridor_tenant": "fr-interior"}, "/v1/models"),
], ids=["scope as a string", "tenant as a list", "roles as an integer"])
def test_10_a_token_whose_claims_have_the_wrong_type_is_a_401(tmp_path, idp, claims, path):
    verifier, token = idp
    with hardened_stack(tmp_path / "stack", jwt=verifier) as stack:
        response = stack.call("GET", path, None, headers={"authorization": f"Bearer {token(**claims)}"})
        assert response.status_code == 401, response.text
        right = token(corridor_roles=["app"], corridor_tenant="fr-interior")
        assert stack.call("GET", "/v1/models", None,
                          headers={"authorization": f"Bearer {right}"}).status_code == 200


# 11. Internal details to anyone -----------------------------------------------------------------

def test_11_metrics_readiness_and_503s_tell_an_anonymous_caller_nothing_internal(stack):
    assert stack.call("GET", "/metrics", None).status_code == 401
    assert "corridor_requests_total" in stack.call("GET", "/metrics", "FR/operator").text
    assert stack.call("GET", "/readyz", None).json() == {"status": "ready"}
    stack.endpoints.items[:] = [endpoint("fr-paris", "http://127.0.0.1:9")]
    response = stack.chat("fr-interior/app")
    assert response.status_code == 503
    assert "127.0.0.1" not in response.text and ":9" not in response.text


# 12. An OpenAPI schema that does not describe the API -------------------------------------------

def test_12_the_schema_describes_bodies_errors_and_real_statuses(stack):
    schema = stack.call("GET", "/openapi.json", None).json()
    paths = schema["paths"]
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/files", "/v1/batches"):
        assert "requestBody" in paths[path]["post"], path
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
            if path not in ("/healthz", "/readyz"):
                for status in ("400", "401", "403"):
                    error = operation["responses"][status]["content"]["application/json"]["schema"]
                    assert error == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
    required = schema["components"]["schemas"]["ErrorDetail"]["required"]
    assert sorted(required) == ["code", "message", "param", "type"]
    wrong_method = stack.call("PUT", "/v1/files", "fr-interior/admin")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET, POST"
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
