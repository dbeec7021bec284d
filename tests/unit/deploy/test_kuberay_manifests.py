"""The KubeRay overlays render, validate against the vendored schemas, and say what the design needs."""

from __future__ import annotations

import copy
import ipaddress
import shutil
import subprocess
import tomllib

import pytest
import yaml

from serving.cli import load_command

from deploy_manifests import (KUBERAY, OVERLAYS, control_container, corridor_gateway_args, corridor_up_args,
                              find, gateway_container, rendered, schema_errors)
from kustomize_render import KustomizeError, render

OVERLAY_IDS = list(OVERLAYS)


def workers(overlay: str) -> list[dict]:
    (cluster,) = find(rendered(overlay), "RayCluster", "corridor")
    return cluster["spec"]["workerGroupSpecs"]


def pod_specs(overlay: str) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod the overlay runs: the gateway, the control process, the Ray
    head, each worker group."""
    documents = rendered(overlay)
    (cluster,) = find(documents, "RayCluster", "corridor")
    (gateway,) = find(documents, "Deployment", "corridor-gateway")
    (control,) = find(documents, "Deployment", "corridor-control")
    return [("gateway", gateway["spec"]["template"]["spec"]),
            ("control", control["spec"]["template"]["spec"]),
            ("ray head", cluster["spec"]["headGroupSpec"]["template"]["spec"]),
            *((g["groupName"], g["template"]["spec"]) for g in cluster["spec"]["workerGroupSpecs"])]


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_every_rendered_document_validates_against_the_kubernetes_and_kuberay_schemas(overlay) -> None:
    for document in rendered(overlay):
        assert schema_errors(document) == [], f"{document['kind']}/{document['metadata']['name']}"


def test_a_misspelled_field_fails_validation() -> None:
    (cluster,) = find(rendered("fr"), "RayCluster")
    broken = copy.deepcopy(cluster)
    broken["spec"]["workerGroupSpecs"][0]["label"] = broken["spec"]["workerGroupSpecs"][0].pop("labels")
    assert schema_errors(broken) == [
        "spec/workerGroupSpecs/0: Additional properties are not allowed ('label' was unexpected)"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl (with its built-in kustomize) here")
@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_test_renderer_agrees_with_kubectl_kustomize(overlay) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(KUBERAY / "overlays" / overlay)],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    theirs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out) if d}
    mine = {(d["kind"], d["metadata"]["name"]): d for d in rendered(overlay)}
    assert mine == theirs


def test_the_renderer_refuses_a_field_it_does_not_implement(tmp_path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match="unsupported fields \\['namePrefix'\\]"):
        render(tmp_path)


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_each_overlay_installs_one_namespace_of_its_jurisdiction(overlay) -> None:
    documents = rendered(overlay)
    (namespace,) = find(documents, "Namespace")
    assert namespace["metadata"]["name"] == f"corridor-{overlay}"
    assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {
        f"corridor-{overlay}"}
    assert all(d["metadata"]["labels"]["corridor.eu/jurisdiction"] == OVERLAYS[overlay] for d in documents)
    assert "unassigned" not in yaml.safe_dump(list(documents))


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_autoscaler_v2_is_enabled(overlay) -> None:
    (cluster,) = find(rendered(overlay), "RayCluster")
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert cluster["spec"]["autoscalerOptions"]["version"] == "v2"
    assert all(g["template"]["spec"]["restartPolicy"] == "Never" for g in workers(overlay))


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_worker_groups_request_gpus_and_are_pinned_to_their_pools_nodes(overlay) -> None:
    for group in workers(overlay):
        spec = group["template"]["spec"]
        (container,) = spec["containers"]
        resources = container["resources"]
        assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
        assert resources["requests"] == resources["limits"]
        assert spec["nodeSelector"] == {"corridor.eu/pool": group["groupName"]}
        assert {"key": "corridor.eu/pool", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_head_runs_no_work(overlay) -> None:
    (cluster,) = find(rendered(overlay), "RayCluster")
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert "labels" not in cluster["spec"]["headGroupSpec"]  # the head is in no pool


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_control_process_joins_the_head_service_and_keeps_its_state_on_the_claim(overlay) -> None:
    documents = rendered(overlay)
    (cluster,) = find(documents, "RayCluster")
    (gateway,) = find(documents, "Deployment", "corridor-control")
    (service,) = find(documents, "Service", "corridor-control")
    (claim,) = find(documents, "PersistentVolumeClaim", "corridor-state")
    pod = gateway["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    command = " ".join(container["command"] + container["args"])
    assert f"--address={cluster['metadata']['name']}-head-svc:6379" in command  # KubeRay's head service
    up_args = corridor_up_args(container)
    assert " ".join(up_args[up_args.index("--ray-address"):][:2]) == "--ray-address auto"
    assert " ".join(up_args[up_args.index("--host"):][:2]) == "--host 0.0.0.0"
    assert gateway["spec"]["replicas"] == 1 and gateway["spec"]["strategy"]["type"] == "Recreate"
    home = {e["name"]: e.get("value") for e in container["env"]}["CORRIDOR_HOME"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes[mounts[home]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for p in container["ports"]}
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_no_pod_may_send_traffic_outside_the_cluster(overlay) -> None:
    policies = find(rendered(overlay), "NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "Egress" in p["spec"]["policyTypes"]
            and not p["spec"].get("egress")]
    assert deny, "no default-deny egress policy for every pod"
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule without `to` allows everything"
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert network.num_addresses == 1, f"{policy['metadata']['name']}: {network} is not one host"
                    pods, ports = policy["spec"]["podSelector"], {p["port"] for p in rule["ports"]}
                    assert (pods, ports) in (
                        ({"matchLabels": {"ray.io/node-type": "head"}}, {443, 6443}),  # the API server (autoscaler)
                        ({"matchLabels": {"corridor.eu/peer-link": "true"}}, {8100}),  # the peer API
                    ), policy["metadata"]["name"]
                else:
                    assert set(peer) <= {"podSelector", "namespaceSelector"}


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_every_container_runs_as_non_root_without_privilege_escalation(overlay) -> None:
    for where, spec in pod_specs(overlay):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_images_come_from_the_jurisdictions_registry_with_a_pinned_tag(overlay) -> None:
    for where, spec in pod_specs(overlay):
        for container in spec["containers"]:
            image = container["image"]
            assert image.startswith(f"registry.{overlay}.example/corridor/"), where
            assert ":" in image.rsplit("/", 1)[1] and not image.endswith(":latest"), where


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_every_ray_container_and_the_control_process_use_ray_token_authentication(overlay) -> None:
    (cluster,) = find(rendered(overlay), "RayCluster")
    envs = [cluster["spec"]["autoscalerOptions"]["env"]]
    envs += [c["env"] for where, spec in pod_specs(overlay) if where != "gateway" for c in spec["containers"]]
    for env in envs:
        by_name = {e["name"]: e for e in env}
        assert by_name["RAY_AUTH_MODE"]["value"] == "token"
        assert by_name["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "corridor-ray-token", "key": "auth_token"}


@pytest.mark.parametrize("overlay", OVERLAY_IDS)
def test_the_control_and_gateway_commands_use_options_their_commands_have(overlay) -> None:
    for name, args in (("up", corridor_up_args(control_container(rendered(overlay)))),
                       ("gateway", corridor_gateway_args(gateway_container(rendered(overlay))))):
        command = load_command(name)
        known = {opt for param in command.params for opt in param.opts}
        assert {arg for arg in args if arg.startswith("--")} <= known, name


def test_the_clusters_ray_version_is_the_one_corridor_pins() -> None:
    pins = tomllib.loads((KUBERAY.parents[1] / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    (ray_pin,) = [p for p in pins if p.startswith("ray==")]
    for overlay in OVERLAY_IDS:
        (cluster,) = find(rendered(overlay), "RayCluster")
        assert cluster["spec"]["rayVersion"] == ray_pin.removeprefix("ray==")
