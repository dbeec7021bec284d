"""Autarky mode refuses what it cannot vouch for: unsigned bundles, unpinned models, remote endpoints.

The ``Installation`` cases run ``corridor up``'s own start-up up to the point
of refusal; Ray is not started (autarky checks the bundle before Ray, the
models right after it, and Ray plays no part in either check).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ray._private.ray_constants as ray_constants
from policies import Policy, Workload, default_bundle_path, load_bundle
from policies.signing import OperatorKey, sign_bundle, signature_path
from scheduler.ledger import LedgerReader
from serving.autarky import (AUTARKY_ENV, LOOPBACK_ENV, AutarkyError, apply_offline_env, check_bundle,
                             endpoint_problems, is_local_host, model_problems)
from serving.installation.installation import Installation
from serving.installation.settings import UpConfig
from serving.models.artifacts import artifact_digest, minilm_directory
from serving.replica.actor import OFFLINE_ENV

FR_KEY = Ed25519PrivateKey.generate()
TRUSTED = [OperatorKey.of("fr-ops", "FR", FR_KEY.public_key())]


def write_bundle(path: Path, *, digests: dict[str, str] | None = None, sign_with=FR_KEY) -> Policy:
    document = yaml.safe_load(default_bundle_path().read_text())
    for model in document["models"]:
        if digests and model["id"] in digests:
            model["digest"] = digests[model["id"]]
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    path.write_text(text)
    if sign_with is not None:
        signature_path(path).write_text(sign_bundle(path.read_bytes(), sign_with).to_text())
    return Policy(load_bundle(path, text=text))


@pytest.fixture
def preserved_env(monkeypatch):
    """Whatever autarky sets in this process is undone after the test."""
    for key in {**OFFLINE_ENV, **AUTARKY_ENV, **LOOPBACK_ENV}:
        monkeypatch.setenv(key, os.environ.get(key, ""))
        if key not in os.environ or os.environ[key] == "":
            monkeypatch.delenv(key)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", ray_constants.ENABLE_RAY_CLUSTER)


class TestBundleSignature:
    def test_a_bundle_signed_by_a_listed_operator_key_passes(self, tmp_path):
        path = tmp_path / "prod.yaml"
        policy = write_bundle(path)
        check = check_bundle(path, policy, TRUSTED)
        assert (check.signer.name, check.digest) == ("fr-ops", policy.digest)

    @pytest.mark.parametrize(("sign_with", "trusted", "code"), [
        (None, TRUSTED, "UNSIGNED"),
        (Ed25519PrivateKey.generate(), TRUSTED, "UNTRUSTED_KEY"),
        (FR_KEY, [], "no operator_keys"),
    ], ids=["an unsigned bundle", "a bundle signed by a key the configuration does not list",
            "a configuration that trusts no key"])
    def test_anything_else_is_refused(self, tmp_path, sign_with, trusted, code):
        path = tmp_path / "prod.yaml"
        policy = write_bundle(path, sign_with=sign_with)
        with pytest.raises(AutarkyError, match=code):
            check_bundle(path, policy, trusted)

    def test_a_bundle_changed_after_signing_is_refused(self, tmp_path):
        path = tmp_path / "prod.yaml"
        policy = write_bundle(path)
        path.write_text(path.read_text().replace("- FR\n", "- FR\n    - DE\n", 1))
        with pytest.raises(AutarkyError, match="BAD_SIGNATURE"):
            check_bundle(path, policy, TRUSTED)


class TestPinnedModels:
    def test_an_unpinned_model_is_refused(self, default_policy):
        (problem,) = model_problems(default_policy, {"corridor-tiny": "sha256:" + "1" * 64})
        assert "no pinned digest" in problem and "sha256:" + "1" * 64 in problem

    def test_a_digest_that_does_not_match_the_pin_is_refused(self, tmp_path):
        policy = write_bundle(tmp_path / "b.yaml", digests={"corridor-tiny": "sha256:" + "2" * 64})
        (problem,) = model_problems(policy, {"corridor-tiny": "sha256:" + "3" * 64})
        assert "does not match the pinned" in problem

    def test_pinned_and_matching_is_fine(self, tmp_path):
        policy = write_bundle(tmp_path / "b.yaml", digests={"corridor-tiny": "sha256:" + "2" * 64})
        assert model_problems(policy, {"corridor-tiny": "sha256:" + "2" * 64}) == []

    def test_request_workloads_carrying_another_digest_are_denied_by_the_rulebook(self, tmp_path):
        policy = write_bundle(tmp_path / "b.yaml", digests={"corridor-tiny": "sha256:" + "2" * 64})
        good = Workload.create("fr-interior", "DR", model="corridor-tiny", model_digest="sha256:" + "2" * 64)
        bad = Workload.create("fr-interior", "DR", model="corridor-tiny", model_digest="sha256:" + "3" * 64)
        assert policy.decide(good, "fr-paris").allowed
        assert policy.decide(bad, "fr-paris").codes == ["MODEL_DIGEST_MISMATCH"]


class TestEndpoints:
    @pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "10.4.0.2", "192.168.1.9",
                                      "ray-head", "head.corridor.svc", "gw.cluster.local"])
    def test_local_hosts(self, host):
        assert is_local_host(host)

    @pytest.mark.parametrize("host", ["huggingface.co", "8.8.8.8", "169.254.169.254", "2001:4860::8888",
                                      "usage-stats.ray.io", "203.0.113.7"])
    def test_hosts_that_are_not_local(self, host):
        assert not is_local_host(host)

    def test_every_remote_endpoint_of_the_configuration_is_named(self):
        problems = endpoint_problems(
            ray_address="ray://ray.example.org:10001", syslog="udp://siem.example.org:514",
            replica_configs=[{"engine_args": ["--otlp-traces-endpoint", "http://collector.example.com:4317"]}],
            environ={"HF_ENDPOINT": "https://huggingface.co", "HTTPS_PROXY": "http://proxy.example.net:3128",
                     "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4317", "PATH": "/usr/bin"})
        text = "\n".join(problems)
        assert len(problems) == 5, text
        for host in ("ray.example.org", "siem.example.org", "collector.example.com", "huggingface.co",
                     "proxy.example.net"):
            assert host in text

    def test_local_endpoints_pass(self):
        assert endpoint_problems(ray_address="10.0.0.5:6379", syslog="tcp://127.0.0.1:6514",
                                 environ={"HTTPS_PROXY": "http://proxy.internal:3128"}) == []


def test_the_offline_switches_reach_the_environment(preserved_env):
    values = apply_offline_env(loopback=True)
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_NO_USAGE_STATS", "RAY_USAGE_STATS_ENABLED",
                "HF_HUB_DISABLE_TELEMETRY", "DO_NOT_TRACK", "VLLM_HOST_IP"):
        assert os.environ[key] == values[key]
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert ray_constants.ENABLE_RAY_CLUSTER is False


class TestCorridorUp:
    """``corridor up --autarky`` refuses, writes why to the ledger and the feed, starts nothing."""

    def home(self, tmp_path, *, trusted=True) -> Path:
        home = tmp_path / "home"
        home.mkdir()
        (home / "corridor.yaml").write_text(yaml.safe_dump(
            {"operator_keys": [k.model_dump() for k in TRUSTED] if trusted else []}))
        demo = home / "models" / "corridor-tiny"  # a prebuilt artifact, so nothing is built
        demo.mkdir(parents=True)
        (demo / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
        return home

    def refused(self, installation: Installation, monkeypatch) -> AutarkyError:
        monkeypatch.setattr(installation, "_start_ray", lambda: None)
        try:
            with pytest.raises(AutarkyError) as info:
                installation.start()
        finally:
            installation.stop()
        return info.value

    def security_entries(self, home):
        with LedgerReader.open(home) as reader:
            return [i["entry"] for i in reader.entries(kind="security", limit=100)["data"]]

    def test_an_unsigned_bundle_is_refused_before_anything_starts(self, tmp_path, monkeypatch, preserved_env):
        home = self.home(tmp_path)
        bundle = tmp_path / "prod.yaml"
        write_bundle(bundle, sign_with=None)
        installation = Installation(UpConfig(home=home, bundle=bundle, autarky=True))
        monkeypatch.setattr(installation, "_prepare_models", lambda: pytest.fail("models prepared"))
        error = self.refused(installation, monkeypatch)
        assert "UNSIGNED" in str(error)
        (entry,) = self.security_entries(home)
        assert entry["detail"]["event"] == "autarky_refused" and "UNSIGNED" in entry["detail"]["message"]
        records = [json.loads(line) for line in (home / "security-events.jsonl").read_text().splitlines()]
        assert records[-1]["metadata"]["event_code"] == "autarky_refused"

    def test_an_unpinned_model_is_refused(self, tmp_path, monkeypatch, preserved_env):
        home = self.home(tmp_path)
        bundle = tmp_path / "prod.yaml"
        demo_digest = artifact_digest(home / "models" / "corridor-tiny")
        write_bundle(bundle, digests={"corridor-tiny": demo_digest})  # minilm left unpinned
        installation = Installation(UpConfig(home=home, bundle=bundle, autarky=True))
        error = self.refused(installation, monkeypatch)
        assert len(error.problems) == 1 and "model minilm has no pinned digest" in error.problems[0]
        assert installation.model_digests == {"corridor-tiny": demo_digest,
                                              "minilm": artifact_digest(minilm_directory())}
        assert self.security_entries(home)[-1]["detail"]["event"] == "autarky_refused"

    def test_the_bundle_setting_alone_turns_autarky_on(self, tmp_path, monkeypatch, preserved_env):
        home = self.home(tmp_path, trusted=False)
        bundle = tmp_path / "prod.yaml"
        document = yaml.safe_load(default_bundle_path().read_text())
        document["settings"]["autarky"] = True
        bundle.write_text(yaml.safe_dump(document))
        installation = Installation(UpConfig(home=home, bundle=bundle))
        assert installation.autarky
        assert "no operator_keys" in str(self.refused(installation, monkeypatch))


def test_a_site_of_the_corridor_refuses_a_joint_bundle_signed_by_one_jurisdiction_only(tmp_path):
    from policies.signing import signatures_text

    bundle = tmp_path / "joint.yaml"
    bundle.write_bytes(default_bundle_path().read_bytes())
    key = Ed25519PrivateKey.generate()
    signature_path(bundle).write_text(signatures_text([sign_bundle(bundle.read_bytes(), key)]))
    trusted = [OperatorKey.of("fr-ops", "FR", key.public_key())]
    policy = Policy.load(bundle)
    assert check_bundle(bundle, policy, trusted).signer.jurisdiction == "FR"  # one site alone: enough
    with pytest.raises(AutarkyError) as info:
        check_bundle(bundle, policy, trusted, jurisdictions=("FR", "DE"))
    assert "operator of DE" in str(info.value)
