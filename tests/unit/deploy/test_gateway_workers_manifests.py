"""The gateway runs as a Deployment of several pods on the site's PostgreSQL database, beside one
control process: a disruption budget keeps one serving, readiness waits for the database, the
database URL comes from a Secret, and the request path needs neither Ray nor the control pod."""

from __future__ import annotations

from pathlib import Path

import click.testing
import pytest

import serving.cli.up
import serving.installation.worker
from serving.cli import load_command
from serving.installation.settings import UpConfig

from deploy_manifests import (DATABASE_URL, OVERLAYS, container_env, control_container, corridor_gateway_args,
                              corridor_up_args, find, gateway_container, rendered)

OVERLAY_IDS = list(OVERLAYS)


def deployment(overlay: str, name: str) -> dict:
    (found,) = find(rendered(overlay), "Deployment", name)
    return found


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def started_worker(overlay: str, monkeypatch) -> UpConfig:
    """The configuration ``corridor gateway`` builds from the gateway container (nothing served)."""
    built: list[tuple[UpConfig, str | None]] = []

    class Recorded:
        def __init__(self, config, control_url):
            built.append((config, control_url))

        def start(self):
            return self

    monkeypatch.setattr(serving.installation.worker, "Worker", Recorded)
    monkeypatch.setattr(serving.installation.worker, "serve_worker", lambda *a, **k: None)
    container = gateway_container(rendered(overlay))
    result = click.testing.CliRunner().invoke(load_command("gateway"), corridor_gateway_args(container),
                                              env=container_env(container))
    assert result.exit_code == 0, result.output
    ((config, control_url),) = built
    config.control_url = control_url  # type: ignore[attr-defined]
    return config


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_gateway_is_two_or_more_pods_that_a_disruption_or_a_rollout_never_takes_all_down(overlay) -> None:
    gateway = deployment(overlay, "corridor-gateway")
    replicas = gateway["spec"]["replicas"]
    assert replicas >= 2
    rolling = gateway["spec"]["strategy"]
    assert rolling["type"] == "RollingUpdate" and rolling["rollingUpdate"]["maxUnavailable"] == 0
    (budget,) = find(rendered(overlay), "PodDisruptionBudget", "corridor-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < replicas  # a drain may proceed, one pod at a time
    anti = gateway["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_gateway_readiness_is_the_endpoint_that_fails_while_the_database_is_down(overlay) -> None:
    (container,) = deployment(overlay, "corridor-gateway")["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # a database outage restarts nothing


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_both_processes_take_the_database_url_from_the_secret_and_the_same_ledger_key(overlay, monkeypatch) -> None:
    for container in (control_container(rendered(overlay)), gateway_container(rendered(overlay))):
        (database,) = [e for e in container["env"] if e["name"] == "CORRIDOR_DATABASE"]
        assert database["valueFrom"]["secretKeyRef"] == {"name": "corridor-database", "key": "url"}
        assert "postgresql://" not in str(container)  # never the URL (and its password) in a manifest
    up_args = corridor_up_args(control_container(rendered(overlay)))
    gateway_args = corridor_gateway_args(gateway_container(rendered(overlay)))
    assert option(up_args, "--ledger-key") == option(gateway_args, "--ledger-key")
    for name in ("corridor-control", "corridor-gateway"):
        pod = deployment(overlay, name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        key_dir = str(Path(option(gateway_args, "--ledger-key")).parent)
        volume = {v["name"]: v for v in pod["volumes"]}[mounts[key_dir]]
        assert volume["secret"]["secretName"] == "corridor-ledger-key", name
    worker = started_worker(overlay, monkeypatch)
    assert worker.database == DATABASE_URL and worker.ledger_key == Path(option(gateway_args, "--ledger-key"))


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_gateway_pods_serve_the_site_without_ray_and_reach_the_control_service(overlay, monkeypatch) -> None:
    worker = started_worker(overlay, monkeypatch)
    assert worker.site == OVERLAYS[overlay] and (worker.host, worker.port) == ("0.0.0.0", 8000)
    (container,) = deployment(overlay, "corridor-gateway")["spec"]["template"]["spec"]["containers"]
    assert not [e for e in container["env"] if e["name"].startswith("RAY_")]  # no Ray token either
    pod = deployment(overlay, "corridor-gateway")["spec"]["template"]["spec"]
    assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]  # no state of its own
    (service,) = find(rendered(overlay), "Service", "corridor-control")
    control = deployment(overlay, "corridor-control")["spec"]["template"]
    assert service["spec"]["selector"].items() <= control["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert worker.control_url == f"http://{service['metadata']['name']}:{port['port']}"  # type: ignore[attr-defined]


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_control_process_serves_no_public_port_and_its_control_api_on_the_services_port(
        overlay, monkeypatch) -> None:
    started: list[UpConfig] = []
    monkeypatch.setattr(serving.cli.up, "_site", started.append)
    container = control_container(rendered(overlay))
    result = click.testing.CliRunner().invoke(load_command("up"), corridor_up_args(container),
                                              env=container_env(container))
    assert result.exit_code == 0, result.output
    (config,) = started
    assert config.gateway_workers == 0 and config.database == DATABASE_URL
    (service,) = find(rendered(overlay), "Service", "corridor-control")
    (port,) = service["spec"]["ports"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config.control_port == ports[port["targetPort"]] == port["port"]
    (public,) = find(rendered(overlay), "Service", "corridor-gateway")
    gateway_labels = deployment(overlay, "corridor-gateway")["spec"]["template"]["metadata"]["labels"]
    assert public["spec"]["selector"].items() <= gateway_labels.items()
    control_labels = deployment(overlay, "corridor-control")["spec"]["template"]["metadata"]["labels"]
    assert not public["spec"]["selector"].items() <= control_labels.items()
