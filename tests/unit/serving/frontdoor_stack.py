"""A gateway with the front doors attached — deployments, keys, policy apply — over the real
scheduler on a table of fake Ray nodes (:mod:`fake_ray`), with model artifacts as small
directories, keys for every role in a key file, on loopback."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from policies import Policy, default_bundle_path, load_bundle
from scheduler.current_policy import CurrentPolicy
from scheduler.ledger import Ledger
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.installation.adapters import DeploymentEndpoints
from serving.models.catalog import ModelCatalog
from serving.policy_switch import PolicySwitch
from serving.reconcile import Reconciler
from serving.routing import Router
from stub_upstream import ServerThread

from fake_ray import FakeCluster, table_scheduler


def bundle_document(home: Path) -> dict[str, Any]:
    """The default bundle with each model's artifact a small directory under ``home/models``."""
    document = yaml.safe_load(default_bundle_path().read_text("utf-8"))
    for model in document["models"]:
        directory = home / "models" / model["id"]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(f'{{"name": "{model["id"]}"}}')
        model["artifact"] = {"path": str(directory)}
    return document


def bundle_text(document: dict[str, Any]) -> str:
    return yaml.safe_dump(copy.deepcopy(document), sort_keys=False, allow_unicode=True)


def policy_of(document: dict[str, Any]) -> Policy:
    return Policy(load_bundle("test-bundle.yaml", text=bundle_text(document)))


@dataclass
class FrontStack:
    url: str
    home: Path
    keys: dict[str, str]
    keystore: KeyStore
    gateway: Gateway
    ledger: Ledger
    current: CurrentPolicy
    deployments: Any
    cluster: FakeCluster
    reconciler: Reconciler
    endpoints: DeploymentEndpoints
    document: dict[str, Any]

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[who]}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [i["entry"] for i in self.ledger.entries(kind=kind, limit=1000)["data"]]


def deployment(name: str = "interior-small", model: str = "corridor-small",
               audiences: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A deployments API body (one entry of a deployments file)."""
    return {"name": name, "model": model,
            "audiences": audiences or [{"tenant": "fr-interior", "marking": "DR"}], **fields}


@contextlib.contextmanager
def frontdoor_stack(home: Path, document: dict[str, Any] | None = None) -> Iterator[FrontStack]:
    home.mkdir(parents=True, exist_ok=True)
    document = document or bundle_document(home)
    current = CurrentPolicy(policy_of(document))
    keystore = KeyStore(home / "api-keys.json")
    keys = {f"{t}/{role}": keystore.issue(role, tenant=t)
            for t in current.policy.tenants for role in ("app", "admin")}
    keys["*/auditor"] = keystore.issue("auditor", scope=("*",))
    for side in ("FR", "DE"):
        keys[f"{side}/operator"] = keystore.issue("operator", jurisdiction=side)
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home))
        deployments, cluster = table_scheduler(current, ledger)
        catalog = ModelCatalog(home / "models")
        reconciler = Reconciler(deployments, catalog, ready_timeout_s=5)
        endpoints = DeploymentEndpoints(deployments)
        gateway = Gateway(policy=current.policy, ledger=ledger, auth=Authenticator(keystore),
                          router=Router(current, endpoints), deploying=reconciler,
                          model_digests=catalog.digests)
        gateway.policy_switch = PolicySwitch(current, ledger, home, deployments=deployments)
        current.subscribe(lambda old, new: setattr(gateway, "policy", new))
        server = stack.enter_context(ServerThread(create_app(gateway)))
        yield FrontStack(server.url, home, keys, keystore, gateway, ledger, current, deployments,
                         cluster, reconciler, endpoints, document)
        reconciler.wait_rollouts(10)
