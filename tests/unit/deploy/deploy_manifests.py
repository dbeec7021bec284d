"""The rendered KubeRay overlays and the vendored schemas they are validated against."""

from __future__ import annotations

import functools
import json
import shlex
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from kustomize_render import render

REPO = Path(__file__).resolve().parents[3]
KUBERAY = REPO / "deploy" / "kuberay"
SCHEMAS = REPO / "tests" / "testdata" / "schemas"
#: overlay directory → the jurisdiction it installs.
OVERLAYS = {"fr": "FR", "de": "DE"}


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The documents of one overlay (render once, share read-only between tests)."""
    return tuple(render(KUBERAY / "overlays" / overlay))


def find(documents, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def gateway_container(documents) -> dict[str, Any]:
    """The gateway Deployment's one container (``corridor gateway``, the public port)."""
    (gateway,) = find(documents, "Deployment", "corridor-gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    return container


def control_container(documents) -> dict[str, Any]:
    """The control Deployment's one container (``corridor up --gateway-workers 0``)."""
    (control,) = find(documents, "Deployment", "corridor-control")
    (container,) = control["spec"]["template"]["spec"]["containers"]
    return container


#: What the Secret ``corridor-database`` holds in the tests (the operator's real URL never is here).
DATABASE_URL = "postgresql://corridor@db.corridor-fr.example:5432/corridor"


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the process sees it: literal values, and the database URL
    for the one Secret reference the tests stand in for (``corridor-database``)."""
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for e in container["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef", {})
        if ref.get("name") == "corridor-database":
            env[e["name"]] = DATABASE_URL
    return env


def corridor_up_args(container: dict[str, Any]) -> list[str]:
    """The arguments the control process's shell script gives ``corridor up`` (after ``exec corridor up``)."""
    (script,) = container["args"]
    head, found, tail = script.partition("exec corridor up ")
    assert found, f"the control process does not exec corridor up: {script!r}"
    return shlex.split(tail)


def corridor_gateway_args(container: dict[str, Any]) -> list[str]:
    """The arguments of ``corridor gateway`` in the gateway container (no shell)."""
    assert container["command"] == ["corridor", "gateway"], container["command"]
    return [str(arg) for arg in container["args"]]


@functools.cache
def _registry() -> tuple[Registry, dict[str, Any], dict[tuple[str, str], str]]:
    kubernetes = json.loads((SCHEMAS / "kubernetes-v1.33-strict.json").read_text("utf-8"))
    raycluster = json.loads((SCHEMAS / "raycluster-ray.io-v1.json").read_text("utf-8"))
    registry = Registry().with_resources([(kubernetes["$id"], Resource.from_contents(kubernetes)),
                                          (raycluster["$id"], Resource.from_contents(raycluster))])
    kinds = {}
    for name, definition in kubernetes["$defs"].items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            api = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            kinds[(api, gvk["kind"])] = f"{kubernetes['$id']}#/$defs/{name}"
    kinds[("ray.io/v1", "RayCluster")] = raycluster["$id"]
    return registry, kubernetes, kinds


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Every schema violation of one document, as ``path: message`` (an unknown kind is one)."""
    registry, _, kinds = _registry()
    ref = kinds.get((document.get("apiVersion"), document.get("kind")))
    if ref is None:
        return [f"no vendored schema for {document.get('apiVersion')} {document.get('kind')}"]
    validator = jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]
