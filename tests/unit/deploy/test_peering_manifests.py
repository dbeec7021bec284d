"""The KubeRay overlays carry the peer link: each site's control process runs its own site, its
identity and the peer's CA are mounted where ``corridor up`` (and ``corridor gateway``) read them,
the peer Service passes 8100 through to the control process, and the NetworkPolicies open nothing
but that port to and from the peer site's address."""

from __future__ import annotations

import ipaddress
import json
import posixpath
from pathlib import Path
from urllib.parse import urlsplit

import click.testing
import pytest

import serving.cli.up
from serving.cli import load_command
from serving.federation.identity import CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE
from serving.federation.sites import other_site
from serving.installation.settings import UpConfig

from deploy_manifests import (KUBERAY, OVERLAYS, container_env, control_container, corridor_gateway_args,
                              corridor_up_args, find, gateway_container, rendered)
from kustomize_render import render

OVERLAY_IDS = list(OVERLAYS)
PEER_PORT = 8100
GATEWAY_PODS = {"matchLabels": {"app.kubernetes.io/name": "corridor-gateway"}}
CONTROL_PODS = {"matchLabels": {"app.kubernetes.io/name": "corridor-control"}}
PEER_LINK_PODS = {"matchLabels": {"corridor.eu/peer-link": "true"}}  # the control process and the gateway pods
EVERY_POD: dict = {}
ONE_HOST = "ipBlock: one host"


def start_gateway(container: dict, monkeypatch) -> tuple[int, UpConfig | None, str]:
    """Run ``corridor up`` with the gateway's arguments and environment, up to the site it would start.

    Returns the exit code, the configuration handed to the site (None when ``corridor up`` refused
    before), and the output.
    """
    started: list[UpConfig] = []
    monkeypatch.setattr(serving.cli.up, "_site", started.append)
    monkeypatch.setattr(serving.cli.up, "_corridor", lambda *a: pytest.fail("the gateway starts both sites"))
    env = container_env(container)
    result = click.testing.CliRunner().invoke(load_command("up"), corridor_up_args(container), env=env)
    return result.exit_code, (started[0] if started else None), result.output


def peer_config(overlay: str, monkeypatch):
    code, config, output = start_gateway(control_container(rendered(overlay)), monkeypatch)
    assert code == 0 and config is not None, output
    return config


def gateway_pod(overlay: str) -> dict:
    (gateway,) = find(rendered(overlay), "Deployment", "corridor-gateway")
    return gateway["spec"]["template"]


def control_pod(overlay: str) -> dict:
    (control,) = find(rendered(overlay), "Deployment", "corridor-control")
    return control["spec"]["template"]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def selects_gateway(selector: dict, pod_labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"unexpected selector {selector}"
    return selector.get("matchLabels", {}).items() <= pod_labels.items()


def peer_ipblocks(overlay: str, direction: str) -> list[str]:
    """The cidrs of every ipBlock of the peer link's rules in ``direction`` ("ingress": to the
    control process's peer API; "egress": from it and the gateway pods)."""
    side = "from" if direction == "ingress" else "to"
    pods = CONTROL_PODS if direction == "ingress" else PEER_LINK_PODS
    return [peer["ipBlock"]["cidr"] for policy in find(rendered(overlay), "NetworkPolicy")
            if policy["spec"]["podSelector"] == pods
            for rule in policy["spec"].get(direction, []) for peer in rule.get(side, []) if "ipBlock" in peer]


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_each_overlays_gateway_runs_its_own_site_peered_with_the_other(overlay, monkeypatch) -> None:
    config = peer_config(overlay, monkeypatch)
    site = OVERLAYS[overlay]
    assert config.site == site
    assert config.ray_address == "auto" and config.host == "0.0.0.0" and config.port == 8000
    peer = config.peer
    assert peer is not None and peer.site == site and peer.peer == other_site(site)
    assert (peer.listen_host, peer.listen_port) == ("0.0.0.0", PEER_PORT)
    url = urlsplit(peer.peer_url)
    assert url.scheme == "https" and url.port == PEER_PORT and url.hostname
    assert urlsplit(peer.peer_gateway_url).scheme == "https"
    assert config.home == Path("/var/lib/corridor")  # the state claim, not the Secrets


def test_the_two_overlays_run_different_sites(monkeypatch) -> None:
    assert {overlay: peer_config(overlay, monkeypatch).site for overlay in OVERLAY_IDS} == OVERLAYS


def test_a_control_process_started_from_the_base_alone_refuses_to_start(monkeypatch) -> None:
    code, config, output = start_gateway(control_container(render(KUBERAY / "base")), monkeypatch)
    assert code == 2 and config is None
    assert "want FR or DE" in output


def test_a_gateway_pod_started_from_the_base_alone_refuses_to_start() -> None:
    args = corridor_gateway_args(gateway_container(render(KUBERAY / "base")))
    result = click.testing.CliRunner().invoke(load_command("gateway"), args,
                                              env=container_env(gateway_container(render(KUBERAY / "base"))))
    assert result.exit_code == 2 and "want FR or DE" in result.output


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_each_overlays_gateway_pods_forward_to_the_peer_the_control_process_peers_with(overlay, monkeypatch) -> None:
    peer = peer_config(overlay, monkeypatch).peer
    args = corridor_gateway_args(gateway_container(rendered(overlay)))
    assert option(args, "--site") == OVERLAYS[overlay]
    assert option(args, "--peer-url") == peer.peer_url
    assert option(args, "--peer-ca") == str(peer.peer_ca)
    assert option(args, "--identity") == str(peer.identity_dir)
    assert option(args, "--peer-gateway-url") == peer.peer_gateway_url


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_identity_and_the_peer_ca_secrets_are_mounted_where_the_command_points(overlay, monkeypatch) -> None:
    peer = peer_config(overlay, monkeypatch).peer
    for pod in (control_pod(overlay), gateway_pod(overlay)):
        _identity_and_peer_ca_mounted(pod, peer, overlay)


def _identity_and_peer_ca_mounted(pod: dict, peer, overlay: str) -> None:
    (container,) = pod["spec"]["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert len(mounts) == len(container["volumeMounts"])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}

    def secret_at(directory: str) -> dict:
        mount = mounts[directory]
        assert mount.get("readOnly") is True, directory
        assert "subPath" not in mount, "a subPath mount never sees a renewed Secret"
        secret = volumes[mount["name"]]["secret"]
        assert secret.get("optional") is not True, "the pod must not start without it"
        mode = secret["defaultMode"]
        assert mode & 0o007 == 0 and mode & 0o040, f"{directory}: mode {mode:o}, want group-readable only"
        return secret

    identity = secret_at(str(peer.identity_dir))
    assert identity["secretName"] == "corridor-site-identity"
    files = {item["path"]: item["key"] for item in identity["items"]}
    assert files == {name: name for name in (CERT_FILE, KEY_FILE, CA_CERT_FILE)}
    assert CA_KEY_FILE not in files  # the CA's key stays with the operator
    peer_ca = secret_at(posixpath.dirname(str(peer.peer_ca)))
    assert peer_ca["secretName"] == "corridor-peer-ca"
    assert {item["path"]: item["key"] for item in peer_ca["items"]} == {
        posixpath.basename(str(peer.peer_ca)): CA_CERT_FILE}
    assert pod["spec"]["securityContext"]["fsGroup"]  # the group the files are readable by
    assert not find(rendered(overlay), "Secret"), "keys never go into the manifests"


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_peer_service_passes_the_peer_port_through_to_the_control_process(overlay, monkeypatch) -> None:
    peer = peer_config(overlay, monkeypatch).peer
    documents = rendered(overlay)
    pod = control_pod(overlay)
    (container,) = pod["spec"]["containers"]
    (service,) = find(documents, "Service", "corridor-peer")
    (port,) = service["spec"]["ports"]
    assert port["port"] == PEER_PORT and port.get("protocol", "TCP") == "TCP"
    target = {p["name"]: p["containerPort"] for p in container["ports"]}[port["targetPort"]]
    assert target == peer.listen_port == PEER_PORT
    assert service["spec"]["selector"] and service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    # Reachable from the other site; the client's own address kept for the NetworkPolicy's ipBlock.
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert sorted(service["spec"]["loadBalancerSourceRanges"]) == sorted(peer_ipblocks(overlay, "ingress"))
    # TLS is mutual and ends in the control process: nothing in front of it terminates it.
    assert not service["metadata"].get("annotations")
    assert not [d for d in documents if d["kind"] in ("Ingress", "Gateway", "HTTPRoute", "TLSRoute")]
    (gateway_service,) = find(documents, "Service", "corridor-gateway")
    assert gateway_service["spec"]["type"] == "ClusterIP"
    assert PEER_PORT not in {p["port"] for p in gateway_service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_only_the_peer_sites_address_may_reach_the_peer_port(overlay) -> None:
    labels = control_pod(overlay)["metadata"]["labels"]
    sources = []
    for policy in find(rendered(overlay), "NetworkPolicy"):
        if "Ingress" not in policy["spec"]["policyTypes"] or not selects_gateway(policy["spec"]["podSelector"], labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if ports and PEER_PORT not in ports:
                continue
            assert rule.get("from"), f"{policy['metadata']['name']}: admits everyone"
            sources += rule["from"]
    outside = [s["ipBlock"] for s in sources if s != {"podSelector": {}}]  # the namespace's own pods aside
    assert outside, "nothing admits the peer site"
    for block in outside:
        assert set(block) == {"cidr"}, block
        assert ipaddress.ip_network(block["cidr"]).num_addresses == 1, f"{block['cidr']} is not one host"


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_control_process_and_the_gateway_pods_may_reach_the_peer_port_of_the_peer_they_call(
        overlay, monkeypatch) -> None:
    peer = peer_config(overlay, monkeypatch).peer
    (policy,) = find(rendered(overlay), "NetworkPolicy", "corridor-peer-egress")
    assert policy["spec"]["podSelector"] == PEER_LINK_PODS and policy["spec"]["policyTypes"] == ["Egress"]
    for pod in (control_pod(overlay), gateway_pod(overlay)):
        assert selects_gateway(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    (rule,) = policy["spec"]["egress"]
    assert [p["port"] for p in rule["ports"]] == [urlsplit(peer.peer_url).port]
    assert [set(to) for to in rule["to"]] == [{"ipBlock"}]


def admitted(overlay: str) -> set[tuple]:
    """(direction, pods, from/to, ports) of every traffic the overlay's NetworkPolicies allow."""
    out = set()
    for policy in find(rendered(overlay), "NetworkPolicy"):
        pods = json.dumps(policy["spec"]["podSelector"], sort_keys=True)
        for direction, side in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction, []):
                ports = tuple(sorted((p.get("protocol", "TCP"), p["port"], p.get("endPort"))
                                     for p in rule.get("ports", []))) or "every port"
                for peer in rule.get(side) or ["everyone"]:
                    if isinstance(peer, dict) and "ipBlock" in peer and set(peer["ipBlock"]) == {"cidr"} \
                            and ipaddress.ip_network(peer["ipBlock"]["cidr"]).num_addresses == 1:
                        peer = ONE_HOST
                    out.add((direction, pods, json.dumps(peer, sort_keys=True), ports))
    return out


def _rule(direction: str, pods: dict, peer, *ports: tuple[str, int]) -> tuple:
    return (direction, json.dumps(pods, sort_keys=True), json.dumps(peer, sort_keys=True),
            tuple(sorted((protocol, port, None) for protocol, port in ports)) or "every port")


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_deny_by_default_and_nothing_opened_but_the_peer_link(overlay) -> None:
    policies = find(rendered(overlay), "NetworkPolicy")
    assert [p["metadata"]["name"] for p in policies
            if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")] == ["corridor-default-deny"]
    head = {"matchLabels": {"ray.io/node-type": "head"}}
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    assert admitted(overlay) == {
        _rule("ingress", EVERY_POD, {"podSelector": {}}),                        # inside the namespace
        _rule("egress", EVERY_POD, {"podSelector": {}}),
        _rule("egress", EVERY_POD, dns, ("UDP", 53), ("TCP", 53)),
        _rule("ingress", GATEWAY_PODS, {"namespaceSelector": {}}, ("TCP", 8000)),  # the API, in the cluster
        _rule("egress", head, ONE_HOST, ("TCP", 443), ("TCP", 6443)),          # the autoscaler's API server
        _rule("ingress", CONTROL_PODS, ONE_HOST, ("TCP", PEER_PORT)),           # the peer site, in
        _rule("egress", PEER_LINK_PODS, ONE_HOST, ("TCP", PEER_PORT)),          # and out to its peer API
    }
