"""End to end: ``corridor up --autarky`` (in-process) serves a real vLLM replica on a real Ray
cluster, and nothing — this process, Ray's nodes and workers, the vLLM server — opens a
socket outside loopback.

Detectors (``tests/egress/egress_hook.py``): the audit hook in this process and, through
``sitecustomize`` on ``PYTHONPATH``, in every Python child (Ray workers, the vLLM server and
its engine); and the kernel's socket tables of the whole process tree, sampled throughout,
which also sees Ray's C++ raylets and GCS server. ``tests/unit/serving/test_no_egress.py``
shows each detector catching a deliberate attempt.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import openai
import pytest
import ray
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ray._private.ray_constants as ray_constants
from policies import default_bundle_path
from policies.signing import OperatorKey, sign_bundle, signature_path
from serving.autarky import AUTARKY_ENV, LOOPBACK_ENV
from serving.installation.installation import Installation
from serving.installation.settings import UpConfig
from serving.models.artifacts import artifact_digest, minilm_directory
from serving.models.demo import MODEL_ID, build_demo_model
from serving.replica.actor import OFFLINE_ENV
from stub_upstream import ServerThread

REPO = Path(__file__).resolve().parents[2]
EGRESS = REPO / "tests" / "egress"
sys.path.insert(0, str(EGRESS))
import egress_hook  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture
def autarkic_home(tmp_path, monkeypatch):
    """A home with a trusted operator key, the demo model built, and a pinned, signed bundle."""
    for key in {**OFFLINE_ENV, **AUTARKY_ENV, **LOOPBACK_ENV}:
        monkeypatch.setenv(key, os.environ.get(key, ""))
        if not os.environ.get(key):
            monkeypatch.delenv(key)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)
    home = tmp_path / "home"
    key = Ed25519PrivateKey.generate()
    home.mkdir()
    (home / "corridor.yaml").write_text(yaml.safe_dump(
        {"operator_keys": [OperatorKey.of("fr-ops", "FR", key.public_key()).model_dump()]}))
    demo = build_demo_model(home / "models" / MODEL_ID)
    digests = {MODEL_ID: artifact_digest(demo), "minilm": artifact_digest(minilm_directory())}
    document = yaml.safe_load(default_bundle_path().read_text())
    document["settings"]["autarky"] = True
    for model in document["models"]:
        if model["id"] in digests:  # corridor-small is not served here, so it need not be pinned
            model["digest"] = digests[model["id"]]
    bundle = tmp_path / "sovereign.yaml"
    bundle.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    signature_path(bundle).write_text(sign_bundle(bundle.read_bytes(), key).to_text())
    log = tmp_path / "egress.jsonl"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EGRESS), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(egress_hook.LOG_VARIABLE, str(log))
    return home, bundle, digests, log


def test_corridor_up_in_autarky_mode_serves_with_no_socket_outside_loopback(autarkic_home):
    home, bundle, digests, log = autarkic_home
    deployments = home / "deployments.yaml"
    deployments.write_text(yaml.safe_dump({"deployments": [
        {"name": "chat-fr", "model": MODEL_ID, "audiences": [{"tenant": "fr-interior", "marking": "DR"}]}]}))
    config = UpConfig(home=home, bundle=bundle, autarky=True, ready_timeout_s=600, deployments=deployments)
    monitor = egress_hook.install()
    with monitor, egress_hook.SocketSampler(period_s=0.1) as sampler:
        with Installation(config) as installation:
            assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
            with ServerThread(installation.app()) as server:
                client = openai.OpenAI(base_url=server.url + "/v1", api_key=installation.keys["fr-interior/app"],
                                       max_retries=0, timeout=120, default_headers={"X-Corridor-Marking": "DR"})
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL_ID, messages=[{"role": "user", "content": "Bonjour"}], max_tokens=8)
                assert raw.parse().usage.completion_tokens > 0
                assert raw.headers["x-corridor-pool"] == "fr-paris"
            assert installation.gateway.model_digests == {MODEL_ID: digests[MODEL_ID]}  # the served one
            policy_entry = installation.ledger.entries(kind="policy", limit=10)["data"][-1]["entry"]
            assert policy_entry["detail"]["autarky"] is True and policy_entry["detail"]["signer"] == "fr-ops"
            assert policy_entry["detail"]["pinned"] == {MODEL_ID: digests[MODEL_ID]}
    assert monitor.loopback > 0, "the audit hook was watching"
    assert monitor.foreign == [], monitor.foreign
    children = egress_hook.watched(log)
    assert any("vllm.entrypoints.openai.api_server" in argv for argv in children), children
    assert any("default_worker.py" in argv for argv in children), children
    attempts = egress_hook.read_log(log)
    assert attempts == [], attempts
    assert sampler.samples > 10 and sampler.found == [], sampler.found
