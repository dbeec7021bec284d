"""``corridor up``: one site (``--site``), or one installation of every pool, on this machine or
an existing Ray cluster.
Steps, each shown as it runs:

0. Autarky mode only (``--autarky`` or the bundle's setting): the bundle's
   signature, local endpoints, every offline switch (:mod:`serving.autarky`);
   after step 2, every served model pinned and matching — else refuse.
1. Ray: a local cluster with one labelled node per pool (a site's own pools
   only), declaring GPUs that do not exist (or join ``--ray-address``).
2. Models: the artifacts of the models the deployments file names, as the bundle
   says (:mod:`serving.models.catalog`); refuse a model whose digest does not match
   a pinned one (``security`` entry). Other models are resolved when deployed.
3. Ledger: open it, archive the bundle by digest, record it (``policy`` entry);
   the security feed follows it; crisis declarations come from ``crisis.json``.
4. Replicas: the deployments file (``--deployments``, default the demo set in
   ``deployments.yaml``; at a site, those for its own tenants), placed under the rulebook.
5. Gateway with every API (and, at a site, its peer link); demo keys in ``demo-keys.json``.
   The router, the limiter and the scheduler read one
   :class:`~scheduler.current_policy.CurrentPolicy` (``corridor policy apply``).

One module because starting and stopping a site is one sequence of steps whose order
matters; the parts that need no such order live in ``settings``, ``site``, ``keys`` and
``adapters``.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from policies import Policy, default_bundle_path
from scheduler.crisis import CrisisRegistry
from scheduler.current_policy import CurrentPolicy
from scheduler.deployments import Deployments
from scheduler.inventory import Inventory
from scheduler.private_files import private_directory
from scheduler.ledger import Ledger, LedgerEntryDraft
from serving.autarky import (AutarkyError, AutarkyReport, apply_offline_env, check_bundle,
                             endpoint_problems, model_problems)
from serving.batch import BatchSettings, DeploymentProvisioner, ExecutionSettings
from serving.config import load_run_config
from serving.feed import LedgerFollower, SecurityFeed, open_feed
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.gateway.limits import RateLimiter
from serving.federation.runtime import Federation
from serving.installation.access import gateway_options, jwt_verifier
from serving.installation.adapters import CatalogConfigs, DeploymentEndpoints, SchedulerView
from serving.installation.control import ControlPublisher, serve_control
from serving.installation.keys import demo_keystore
from serving.installation.load_reports import LoadTable, SiteLoad
from serving.installation.stores import (auth_throttle_options, limiter_options, open_batches,
                                         open_bundles, open_crisis, open_site_ledger)
from serving.installation.site import federation_of, serve_site, signer_of, witness_of
from serving.autoscale import Autoscaler
from serving.deployments_file import default_deployments_path, load_deployments
from serving.installation.settings import UpConfig, own_pools, serves_here
from serving.models.catalog import ModelCatalog
from serving.policy_switch import PolicySwitch
from serving.reconcile import Reconciler
from serving.replica.actor import OFFLINE_ENV, VLLMReplica
from serving.routing import Router
from serving.routing.load import GatewayLoad
from serving.routing.on_demand import OnDemand
from serving.routing.scoring import Scoring


class Installation:
    """A running Corridor: Ray, replicas, ledger and gateway app; stop() undoes start()."""

    def __init__(self, config: UpConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.policy = Policy.load(config.bundle)
        self.current = CurrentPolicy(self.policy)
        self.declared = load_deployments(config.deployments or default_deployments_path(), self.policy)
        self.run_config = load_run_config(config.config_file, config.home)
        self.jwt = jwt_verifier(self.run_config, config.home)  # a bad OIDC setup fails before Ray
        self.autarky = config.autarky or self.policy.bundle.settings.autarky
        self.autarky_report: AutarkyReport | None = None
        self.model_digests: dict[str, str] = {}
        self.crisis: CrisisRegistry | None = None
        self.events: SecurityFeed | None = None
        self.follower: LedgerFollower | None = None
        self.cluster = None
        self.ledger: Ledger | None = None
        self.deployments: Deployments | None = None
        self.endpoints: DeploymentEndpoints | None = None
        self.gateway: Gateway | None = None
        self.federation: Federation | None = None
        self.reconciler: Reconciler | None = None
        self.autoscaler: Autoscaler | None = None
        self.keys: dict[str, str] = {}
        self.bundles: Any = None
        self.control: ControlPublisher | None = None

    # -- start ----------------------------------------------------------------

    def start(self) -> Installation:
        home = private_directory(self.config.home)
        os.environ.update(OFFLINE_ENV)
        if self.autarky:
            self._step("autarky: signed bundle, local endpoints, offline switches", self._check_autarky)
        self._step("Ray cluster", self._start_ray)
        models = self._step("models", self._prepare_models)
        if self.autarky:
            problems = (model_problems(self.policy, self.model_digests)
                        + endpoint_problems(replica_configs=models.values()))
            if problems:
                self._refuse(problems)
            self.autarky_report.pinned = dict(self.model_digests)
        self.ledger = self.ledger or open_site_ledger(home, self.config.database, self.config.ledger_key)
        self.bundles = open_bundles(home, self.config.database)
        self.bundles.put(self.policy.bundle)  # kept by digest, for replay
        self.ledger.append(LedgerEntryDraft(kind="policy", policy_digest=self.policy.digest,
                                            detail={"bundle": self.policy.bundle.name,
                                                    "version": self.policy.bundle.version,
                                                    "path": str(self.config.bundle or default_bundle_path()),
                                                    "autarky": self.autarky,
                                                    **(self.autarky_report.to_json()
                                                       if self.autarky_report else {})}))
        self.events, self.follower = open_feed(self.run_config.events_path(home),
                                               syslog=self.run_config.security_events.syslog,
                                               ledger=self.ledger)
        self.federation = federation_of(self.config, self.policy, self.ledger)
        self.crisis = open_crisis(self.policy, self.ledger, home, self.config.database,
                                  signer=signer_of(self.config, self.federation)).start()
        if self.federation is not None:
            self.federation.crisis = self.crisis
            self.crisis.subscribe(self.federation.crisis_changed)
        self.deployments = Deployments(self.current, self.ledger, VLLMReplica,
                                       inventory=Inventory(self.current, ledger=self.ledger,
                                                           site=self.config.site),
                                       declarations=self.crisis.declarations)
        self.reconciler = Reconciler(self.deployments, self.catalog,
                                     ready_timeout_s=self.config.ready_timeout_s)
        self._step("replicas placed", lambda: self._deploy(models))
        self.deployments.start()
        self.crisis.subscribe(self.deployments.request_heal)
        self.endpoints = DeploymentEndpoints(self.deployments).start()
        if self.config.database is not None:
            self.control = ControlPublisher(self.config.database, self.endpoints, self.current,
                                            self.model_digests, self.federation, self.crisis).start()
        self._wait_ready()
        # One mechanism places replicas when work needs them: batches, and on-demand models.
        provisioner = DeploymentProvisioner(self.deployments,
                                            CatalogConfigs(self.catalog, self.current, models))
        router = Router(self.current, self.endpoints, declarations=self.crisis.declarations,
                        scoring=Scoring(self.run_config.routing))
        limits = limiter_options(self.config.database)  # shared by the limiter and the token quota
        self.gateway = Gateway(policy=self.policy, ledger=self.ledger,
                               auth=Authenticator(self._keystore(), self.jwt), router=router,
                               on_demand=OnDemand(self.current, provisioner, self.run_config.on_demand),
                               operator_view=SchedulerView(self.deployments),
                               crisis=self.crisis, events=self.events,
                               limiter=RateLimiter(self.current, ledger=self.ledger, feed=self.events,
                                                   auth_failures=self.run_config.auth_throttle.failures,
                                                   auth_window_s=self.run_config.auth_throttle.window_s,
                                                   **limits, **auth_throttle_options(self.config.database)),
                               model_digests=self.model_digests, deploying=self.reconciler,
                               site=self.config.site, federation=self.federation,
                               witness=witness_of(self.config, self.federation, self.ledger),
                               **gateway_options(self.run_config, home, self.policy, limits,
                                                 database=self.config.database))
        self.gateway.policy_switch = PolicySwitch(
            self.current, self.ledger, home, deployments=self.deployments, autarky=self.autarky,
            trusted=self.run_config.operator_keys, declarations=self.crisis.declarations)
        self.current.subscribe(self._switched)
        # Requests in flight and queued here, plus, with a database, the gateway workers' reports.
        load: Callable[[], GatewayLoad] = self.gateway.dispatch.load
        if self.control is not None:
            load = SiteLoad(load, LoadTable(self.control.publisher.pool).read)
        self.autoscaler = Autoscaler(self.reconciler, load).start()
        # Batches resume where they stopped: their state is in the home directory.
        self.gateway.batches = open_batches(home, self.config.database, provisioner=provisioner,
                                            settings=BatchSettings(execution=ExecutionSettings(
                                                bulk_lines=self.run_config.batch.bulk_lines)))
        # The policy and the other long-lived objects never die: keep the collector's full
        # passes off them (on a large bundle they cost tens of milliseconds of p99).
        gc.freeze()
        return self

    def app(self):
        assert self.gateway is not None, "start() first"
        return create_app(self.gateway)

    def serve(self, log_level: str = "warning") -> None:
        """Serve the gateway (and, at a site with a peer, the peer API over mutual TLS) until Ctrl-C."""
        assert self.gateway is not None, "start() first"
        if self.config.gateway_workers != 1:
            serve_control(self.app(), self.gateway, self.config, log_level)
        else:
            serve_site(self.app(), self.gateway, self.config, log_level)

    def _step(self, title: str, action):
        started = time.monotonic()
        with self.console.status(f"[bold]{title}[/] …"):
            result = action()
        self.console.print(f"[green]✓[/] {title} ({time.monotonic() - started:.0f} s)")
        return result

    def _start_ray(self) -> None:
        import ray

        if self.config.ray_address:
            ray.init(address=self.config.ray_address, logging_level="WARNING")
            return
        from ray.cluster_utils import Cluster

        loopback = {"node_ip_address": "127.0.0.1"} if self.autarky else {}
        self.cluster = Cluster(initialize_head=True,
                               head_node_args={"num_cpus": 1, "num_gpus": 0,
                                               "include_dashboard": False, **loopback})
        for pool in own_pools(self.config.site, self.policy):
            self.cluster.add_node(num_cpus=1, num_gpus=self.config.gpus_per_node,
                                  labels=dict(pool.node_selector), **loopback)
        ray.init(address=self.cluster.address, logging_level="WARNING")
        self.cluster.wait_for_nodes()

    def _prepare_models(self) -> dict[str, dict[str, Any]]:
        """Model id → replica config, for the models the deployments file names; an artifact
        that cannot be found, or whose digest does not match a pinned one, refuses the model."""
        models = self.config.models or Path(os.environ.get("CORRIDOR_MODELS") or self.config.home / "models")
        host = self.config.replica_host or ("0.0.0.0" if self.config.ray_address else "127.0.0.1")
        self.catalog = ModelCatalog(models, max_model_len=self.config.max_model_len, defaults={
            "env": {"VLLM_CPU_KVCACHE_SPACE": str(self.config.kv_cache_gib)},
            "ready_timeout_s": self.config.ready_timeout_s,
            "log_dir": str(self.config.home / "logs"), "host": host,
            "log_stats": self.config.engine_metrics or self.run_config.routing.reads_engine_metrics})
        self.model_digests = self.catalog.digests  # shared with the gateway: grows as models deploy
        named = dict.fromkeys(d.model for d in self.declared.deployments
                              if serves_here(self.config.site, self.policy, d.audiences))
        configs, refused = self.catalog.prepare(self.policy.models[m] for m in named)
        for no in refused:  # a digest mismatch is a security event; a missing artifact is not
            if no.mismatched_digest:
                self._security(no.message, model=no.model, digest=no.mismatched_digest)
            else:
                self.console.print(f"  [yellow]{no.message}[/]", highlight=False)
        return configs

    def _deploy(self, models: dict[str, Any]) -> None:
        assert self.reconciler is not None
        mine = [d for d in self.declared.deployments
                if d.model in models and serves_here(self.config.site, self.policy, d.audiences)]
        for step in self.reconciler.apply(mine):
            if step.error is not None:  # e.g. a jurisdiction's own cluster has no pool for it
                self.console.print(f"  [yellow]{step.name}: not placed[/] — {step.error}",
                                   highlight=False)
                continue
            for pool in step.pools:
                self.console.print(f"  {step.name} → pool {pool}", highlight=False)

    def _switched(self, old: Policy, new: Policy) -> None:
        """A new policy is in force: the objects that keep their own reference follow it."""
        self.policy = self.gateway.policy = self.crisis.policy = new  # type: ignore[union-attr]
        self.bundles.put(new.bundle)
        if self.federation is not None:
            self.federation.own_digest = new.digest

    def _wait_ready(self) -> None:
        assert self.deployments is not None and self.endpoints is not None
        wanted = sum(view.spec.replicas for view in self.deployments.list())
        deadline = time.monotonic() + self.config.ready_timeout_s
        started = time.monotonic()
        with self.console.status("[bold]vLLM servers starting[/] …") as status:
            while time.monotonic() < deadline:
                self.deployments.heal()
                ready = len(self.endpoints.refresh())
                status.update(f"[bold]vLLM servers starting[/] … {ready}/{wanted} ready "
                              f"({time.monotonic() - started:.0f} s)")
                if ready >= wanted:
                    break
                time.sleep(2.0)
        ready = len(self.endpoints.endpoints())
        colour = "green" if ready >= wanted else "yellow"
        self.console.print(f"[{colour}]✓[/] {ready}/{wanted} replicas serving "
                           f"({time.monotonic() - started:.0f} s)")

    def _keystore(self) -> KeyStore:
        store, self.keys = demo_keystore(self.config.home, self.policy, self.config.site,
                                         database=self.config.database)
        return store

    def _security(self, message: str, **detail: Any) -> None:
        self.console.print(f"[bold red]security:[/] {message}", highlight=False)
        if self.ledger is None:
            self.ledger = open_site_ledger(self.config.home, self.config.database, self.config.ledger_key)
        self.ledger.append(LedgerEntryDraft(kind="security", policy_digest=self.policy.digest,
                                            detail={"event": "model_digest_mismatch",
                                                    "message": message, **detail}))

    def _check_autarky(self) -> None:
        """Before anything starts: the bundle's signature, local endpoints, offline switches."""
        problems = endpoint_problems(ray_address=self.config.ray_address,
                                     syslog=self.run_config.security_events.syslog)
        try:
            bundle = check_bundle(self.config.bundle or default_bundle_path(), self.policy,
                                  self.run_config.operator_keys,
                                  jurisdictions=("FR", "DE") if self.config.peer else ())
        except AutarkyError as exc:
            problems = exc.problems + problems
        if problems:
            self._refuse(problems)
        env = apply_offline_env(loopback=self.config.ray_address is None)
        self.autarky_report = AutarkyReport(bundle, env=env)

    def _refuse(self, problems: list[str]) -> None:
        """Record an autarky refusal (ledger ``security`` entry, security feed), then raise it."""
        self.ledger = self.ledger or open_site_ledger(self.config.home, self.config.database, self.config.ledger_key)
        feed, follower = open_feed(self.run_config.events_path(self.config.home),
                                   syslog=self.run_config.security_events.syslog,
                                   ledger=self.ledger, start=False)
        try:
            self.ledger.append(LedgerEntryDraft(
                kind="security", allowed=False, reasons=["AUTARKY_REFUSED"],
                policy_digest=self.policy.digest,
                detail={"event": "autarky_refused", "message": "; ".join(problems),
                        "problems": problems}))
            assert follower is not None
            follower.poll()
        finally:
            feed.close()
        raise AutarkyError(problems)

    # -- stop -----------------------------------------------------------------

    def stop(self) -> None:
        """Stop the replicas (and their vLLM servers), Ray, and close the ledger."""
        import ray

        if self.autoscaler is not None:
            self.autoscaler.stop()
        if self.endpoints is not None:
            self.endpoints.stop()
        if self.control is not None:
            self.control.stop()
        if self.crisis is not None:
            self.crisis.stop()
        if self.deployments is not None:
            try:
                self.deployments.close(release=True)
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                self.console.print(f"[yellow]while stopping replicas:[/] {exc}")
        if ray.is_initialized():
            ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
        if self.follower is not None:
            self.follower.stop()
        if self.events is not None:
            self.events.close()
        if self.ledger is not None:
            self.ledger.latest_tree_head()
            self.ledger.close()

    def __enter__(self) -> Installation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> list[str]:
        """What runs where, for the console."""
        lines = [f"policy {self.policy.bundle.name} {self.policy.digest}"]
        assert self.deployments is not None
        for view in self.deployments.list():
            for r in view.replicas:
                lines.append(f"{view.name:<11} {view.spec.model:<14} pool {r.pool:<13} {r.jurisdiction} "
                             f"node {r.node_id[:12]}  {r.endpoint or '(not ready)'}")
        return lines
