"""A small kustomize renderer for the features ``deploy/kuberay`` uses, so unit tests need no binary.

Supported ``kustomization.yaml`` fields: ``resources`` (files and
directories), ``namespace``, ``labels`` (``pairs`` on ``metadata.labels``
only), ``images`` (``newName``/``newTag``/``digest`` on every container and
init container, custom resources included) and ``patches`` whose patch is an
RFC 6902 JSON patch with a ``target``. Any other field is an error, so a
kustomization using more than this renderer knows fails loudly instead of
rendering something else. Where ``kubectl kustomize`` exists, the tests
compare both renderings.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass"}


class KustomizeError(ValueError):
    """The kustomization uses something this renderer does not support, or is malformed."""


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources of the kustomization in ``directory``, transformed, in resource order."""
    path = Path(directory) / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text("utf-8")) or {}
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{path}: unsupported fields {sorted(unknown)}; supported: {sorted(SUPPORTED)}")
    documents: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        resource = (path.parent / entry).resolve()
        if resource.is_dir():
            documents.extend(render(resource))
        else:
            documents.extend(d for d in yaml.safe_load_all(resource.read_text("utf-8")) if d)
    documents = [copy.deepcopy(d) for d in documents]
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load((path.parent / patch["path"]).read_text("utf-8"))
        if not isinstance(operations, list):
            raise KustomizeError(f"{path}: patch {patch['path']}: only RFC 6902 patches (a list) are supported")
        matched = [d for d in documents if _matches(d, patch.get("target") or {})]
        if not matched:
            raise KustomizeError(f"{path}: patch {patch['path']} matches no resource")
        for document in matched:
            for operation in operations:
                apply_operation(document, operation)
    for group in kustomization.get("labels", []):
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise KustomizeError(f"{path}: labels with includeSelectors/includeTemplates are not supported")
        for document in documents:
            document.setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    for image in kustomization.get("images", []):
        for container in _containers(documents):
            set_image(container, image)
    if "namespace" in kustomization:
        for document in documents:
            if document["kind"] not in CLUSTER_SCOPED:
                document.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    return documents


def _matches(document: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = document["apiVersion"].rpartition("/")
    facts = {"group": group, "version": version, "kind": document["kind"],
             "name": document["metadata"]["name"]}
    return all(facts[key] == value for key, value in target.items())


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _containers(value)


def set_image(container: dict[str, Any], image: dict[str, str]) -> None:
    """Apply one ``images`` entry to a container whose image name matches.

    >>> c = {"image": "corridor-gpu"}
    >>> set_image(c, {"name": "corridor-gpu", "newName": "registry.fr.example/corridor-gpu", "newTag": "0.1.0"})
    >>> c["image"]
    'registry.fr.example/corridor-gpu:0.1.0'
    """
    name, _, digest = container.get("image", "").partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    name, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "")
    if name != image["name"]:
        return
    name = image.get("newName", name)
    if "digest" in image:
        tag, digest = "", image["digest"]
    elif "newTag" in image:
        tag, digest = str(image["newTag"]), ""
    container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r}: want a leading '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(document: Any, path: str) -> tuple[Any, str]:
    *parents, last = _pointer(path)
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, last


def _get(document: Any, path: str) -> Any:
    node, last = _parent(document, path)
    return node[int(last)] if isinstance(node, list) else node[last]


def apply_operation(document: dict[str, Any], operation: dict[str, Any]) -> None:
    """Apply one RFC 6902 operation (add, replace, remove, copy, move, test) in place.

    >>> d = {"a": [{"x": 1}]}
    >>> apply_operation(d, {"op": "copy", "from": "/a/0", "path": "/a/1"})
    >>> apply_operation(d, {"op": "replace", "path": "/a/1/x", "value": 2})
    >>> d
    {'a': [{'x': 1}, {'x': 2}]}
    """
    op = operation["op"]
    if op == "test":
        if _get(document, operation["path"]) != operation["value"]:
            raise KustomizeError(f"test failed at {operation['path']}")
        return
    if op in ("copy", "move"):
        value = copy.deepcopy(_get(document, operation["from"]))
        if op == "move":
            apply_operation(document, {"op": "remove", "path": operation["from"]})
        apply_operation(document, {"op": "add", "path": operation["path"], "value": value})
        return
    node, last = _parent(document, operation["path"])
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            if not 0 <= index <= len(node):
                raise KustomizeError(f"add at {operation['path']}: index out of range")
            node.insert(index, copy.deepcopy(operation["value"]))
        elif op == "replace":
            node[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del node[index]
        else:
            raise KustomizeError(f"unknown op {op!r}")
        return
    if op in ("replace", "remove") and last not in node:
        raise KustomizeError(f"{op} at {operation['path']}: no such member")
    if op in ("add", "replace"):
        node[last] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del node[last]
    else:
        raise KustomizeError(f"unknown op {op!r}")
