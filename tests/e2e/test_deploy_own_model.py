"""End to end: deploy your own model on a running installation — the second demo chat model
(``corridor-small``) through the deployments API, served by a real vLLM server behind the
gateway to the official openai SDK, then scaled to 0 and removed.

``corridor up`` in-process with an empty deployments file, so the only vLLM server started is
the one this test deploys (a few minutes on 2 cores).
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from serving.installation.installation import Installation
from serving.installation.settings import UpConfig
from stub_upstream import ServerThread

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

SMALL = {"name": "interior-small", "model": "corridor-small", "replicas": 1,
         "audiences": [{"tenant": "fr-interior", "marking": "DR"},
                       {"tenant": "fr-interior", "marking": "PUBLIC"}],
         "engine_args": {"max_model_len": 256}}


@pytest.fixture(scope="module")
def corridor(tmp_path_factory):
    home = tmp_path_factory.mktemp("corridor-home")
    empty = home / "no-deployments.yaml"
    empty.write_text("deployments: []\n")
    config = UpConfig(home=home, deployments=empty, ready_timeout_s=900)
    with Installation(config) as installation:
        with ServerThread(installation.app()) as server:
            installation.url = server.url
            yield installation


def admin(corridor, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, corridor.url + path, timeout=120,
                         headers={"authorization": f"Bearer {corridor.keys['FR/operator']}"}, **kwargs)


def sdk(corridor) -> openai.OpenAI:
    return openai.OpenAI(base_url=corridor.url + "/v1", api_key=corridor.keys["fr-interior/app"],
                         max_retries=0, timeout=120, default_headers={"X-Corridor-Marking": "DR"})


def ask(corridor):
    return sdk(corridor).chat.completions.with_raw_response.create(
        model="corridor-small", messages=[{"role": "user", "content": "Bonjour"}], max_tokens=8)


def test_deploy_serve_scale_to_zero_and_remove_the_second_chat_model(corridor):
    created = admin(corridor, "POST", "/admin/deployments", json=SMALL)
    assert created.status_code == 200, created.text
    assert [r["pool"] for r in created.json()["replicas"]] == ["fr-paris"]

    deadline = time.monotonic() + 900
    while True:  # the vLLM server starts in the background; the gateway answers 503 until it serves
        try:
            raw = ask(corridor)
            break
        except openai.InternalServerError as exc:
            assert exc.status_code == 503, exc
            assert time.monotonic() < deadline, "corridor-small never served"
            time.sleep(3)
    completion = raw.parse()
    assert completion.model == "corridor-small" and completion.usage.completion_tokens > 0
    assert (raw.headers["x-corridor-pool"], raw.headers["x-corridor-jurisdiction"]) == ("fr-paris", "FR")
    decision = raw.headers["x-corridor-decision"]
    routed = corridor.ledger.entries(kind="routing", limit=1000)["data"]
    assert any(i["entry"]["decision_id"] == decision and i["entry"]["workload"]["model"] == "corridor-small"
               for i in routed)

    scaled = admin(corridor, "PATCH", "/admin/deployments/interior-small", json={"replicas": 0})
    assert scaled.status_code == 200 and scaled.json()["replicas"] == []
    deadline = time.monotonic() + 30
    while corridor.endpoints.refresh() and time.monotonic() < deadline:
        time.sleep(0.5)
    with pytest.raises(openai.InternalServerError) as info:
        ask(corridor)
    assert info.value.status_code == 503 and info.value.body["code"] == "no_replica_available"

    assert admin(corridor, "DELETE", "/admin/deployments/interior-small").json()["deleted"]
    assert admin(corridor, "GET", "/admin/deployments/interior-small").status_code == 404
    actions = [i["entry"]["detail"].get("action") for i in corridor.ledger.entries(kind="placement", limit=1000)["data"]
               if i["entry"]["detail"].get("deployment") == "interior-small"]
    # one entry per audience: placed once, released by the scale to 0; nothing was left to remove
    assert actions == ["deploy", "deploy", "scale", "scale"]
