"""A gateway worker: one of the processes serving a site's public port when it runs several
(``corridor up --gateway-workers N``, or the gateway Deployment of ``deploy/kuberay``).

A worker never joins Ray. It serves the request path — inference, the Batch API's files and
batches, audit queries, crisis and key administration — against the site's shared stores in
PostgreSQL (:mod:`serving.installation.stores`), and learns from the control process, through
the same database (:mod:`serving.installation.published`), the live replicas, the policy in
force, the served models' digests and the peer's state; it reports its load there for the
control process's autoscaler (:mod:`serving.installation.load_reports`). Its crisis steps are
stored unsent; the control process's loop sends them to the peer. What only the control
process can do (deployments, ``policy apply``, pools, the peer state, the witness) it passes on
to the control port (:class:`ControlPassthrough`); with the control process down, those answer
503 and the request path goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import uvicorn
from fastapi import FastAPI, Request

from policies import Policy
from scheduler.current_policy import CurrentPolicy
from scheduler.ledger import PublicKey
from serving.config import load_run_config
from serving.gateway import Authenticator, Gateway, create_app
from serving.gateway.auth import ROLES
from serving.gateway.errors import GatewayError, Unavailable
from serving.gateway.limits import RateLimiter
from serving.installation.access import gateway_options, jwt_verifier
from serving.installation.load_reports import LoadPublisher, LoadTable
from serving.installation.published import PEER, POLICY, PublishedEndpoints, PublishedState
from serving.installation.settings import UpConfig
from serving.installation.site import federation_of, signer_of
from serving.installation.stores import (auth_throttle_options, limiter_options, open_batches,
                                         open_bundles, open_crisis, open_keys, open_site_ledger)
from serving.routing import Router
from serving.routing.scoring import Scoring

log = logging.getLogger(__name__)

#: Paths only the control process serves; a worker passes them on to its control port.
CONTROL_PATHS = ("/admin/deployments", "/admin/policy", "/admin/pools", "/admin/peer",
                 "/audit/witness", "/audit/checkpoint")
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"host",
               b"upgrade", b"te", b"trailer", b"proxy-authorization", b"proxy-authenticate"}


class ControlPassthrough:
    """ASGI middleware: requests under :data:`CONTROL_PATHS` go to the control process whole (the
    caller's credentials with them: the control process checks the role), the rest to ``app``.

    ``admit`` (given a Starlette request) authenticates the caller here first, so a failed
    credential counts against the caller's own address in this worker's throttle, never against
    the worker's address at the control process (which would throttle every caller)."""

    def __init__(self, app: Any, control_url: str, *, max_body_bytes: int = 8 * 1024 * 1024,
                 timeout_s: float = 600.0, admit: Callable[[Request], object] | None = None) -> None:
        self.app, self.control_url, self.admit = app, control_url.rstrip("/"), admit
        self.max_body_bytes, self.timeout_s = max_body_bytes, timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            async def closing(message: dict[str, Any]) -> None:
                if message["type"] == "lifespan.shutdown.complete" and self._session is not None:
                    await self._session.close()
                await send(message)

            await self.app(scope, receive, closing)
            return
        if scope["type"] != "http" or not scope["path"].startswith(CONTROL_PATHS):
            await self.app(scope, receive, send)
            return
        if self.admit is not None:
            try:
                self.admit(Request(scope))
            except GatewayError as refusal:
                await refusal.response()(scope, receive, send)
                return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes or not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.lower() not in _HOP_BY_HOP]
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.control_url + scope["path"] + (f"?{query}" if query else "")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=self.timeout_s, sock_connect=2.0))
        try:
            async with self._session.request(scope["method"], url, data=bytes(body), headers=headers,
                                             allow_redirects=False) as answer:
                payload = await answer.read()
                status = answer.status
                out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
                       if k.lower().encode("latin-1") not in _HOP_BY_HOP]
        except (aiohttp.ClientError, asyncio.TimeoutError):
            refusal = Unavailable("the site's control process is not reachable now (deployments, "
                                  "policy, pools, peer and witness are served there); retry shortly",
                                  code="control_unavailable", headers={"Retry-After": "5"})
            await refusal.response()(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [*out, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})



class Worker:
    """One gateway worker's services, built from the site's settings (no Ray); stop() closes them."""

    def __init__(self, config: UpConfig, control_url: str | None) -> None:
        if config.database is None:
            raise ValueError("a gateway worker needs the site's database: give --database postgresql://…")
        home, database = config.home, config.database
        self.config, self.control_url = config, control_url
        run_config = load_run_config(config.config_file, home)
        policy = Policy.load(config.bundle)
        self.current = CurrentPolicy(policy)
        self.ledger = open_site_ledger(home, database, config.ledger_key)
        self.bundles = open_bundles(home, database)
        self.state = PublishedState(database)
        self.federation = federation_of(config, policy, self.ledger)
        if self.federation is not None:
            self.federation.loops = False
        self.crisis = open_crisis(policy, self.ledger, home, database,
                                  signer=signer_of(config, self.federation))
        # Scored and queued as in one process; on-demand placement needs the control process's
        # Ray cluster, so a worker sends no request to a model with no live replica (503).
        router = Router(self.current, PublishedEndpoints(self.state), declarations=self.crisis.declarations,
                        scoring=Scoring(run_config.routing))
        limits = limiter_options(database)  # shared by the limiter and the token quota
        self.gateway = Gateway(
            policy=policy, ledger=self.ledger,
            auth=Authenticator(open_keys(home, config.site, database), jwt_verifier(run_config, home)),
            router=router, crisis=self.crisis, site=config.site, federation=self.federation,
            limiter=RateLimiter(self.current, ledger=self.ledger,
                                auth_failures=run_config.auth_throttle.failures,
                                auth_window_s=run_config.auth_throttle.window_s,
                                **limits, **auth_throttle_options(database)),
            ready=self.state.reachable,
            **gateway_options(run_config, home, policy, limits, database=database))
        self.gateway.batches = open_batches(home, database, worker=True)
        self.state.on(POLICY, self._policy)
        self.state.on(PEER, self._peer)
        self.state.every_poll(self.crisis.refresh)  # declarations changed by another process
        # The control process autoscales on this worker's requests too.
        self.load_reports = LoadPublisher(LoadTable(self.state.pool), self.gateway.dispatch.load)

    def _policy(self, body: dict[str, Any]) -> None:
        """The control process applied a bundle (``policy apply``): take it from the archive."""
        self.gateway.model_digests.update(body.get("model_digests", {}))
        digest = body.get("digest")
        if digest and digest != self.current.policy.digest:
            new = self.bundles.policy(digest)
            self.current.switch(new)
            self.gateway.policy = self.crisis.policy = new
            if self.federation is not None:
                self.federation.own_digest = new.digest
            log.warning("policy %s in force (applied through the control process)", digest)

    def _peer(self, body: dict[str, Any]) -> None:
        if self.federation is None:
            return
        state = self.federation.state
        state.reachable, state.policy_digest, state.halted = (body["reachable"], body["policy_digest"],
                                                              body["halted"])
        if body.get("public_key") is not None:
            state.public_key = PublicKey.model_validate(body["public_key"])

    def start(self) -> Worker:
        self.state.start()
        self.load_reports.start()
        return self

    def app(self) -> Any:
        app: FastAPI = create_app(self.gateway)
        if self.control_url is None:
            return app
        return ControlPassthrough(app, self.control_url, max_body_bytes=self.gateway.max_body_bytes,
                                  admit=lambda request: self.gateway.authenticate(request, ROLES))

    def stop(self) -> None:
        self.load_reports.stop()
        self.state.stop()
        self.ledger.close()


def serve_worker(worker: Worker, *, fd: int | None, host: str, port: int,
                 log_level: str = "warning") -> None:
    """Serve ``worker``'s app on the inherited socket ``fd``, or bind ``host:port`` itself."""
    app = worker.app()
    options: dict[str, Any] = {"fd": fd} if fd is not None else {"host": host, "port": port}
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False,
                                           timeout_graceful_shutdown=10, **options))
    try:
        server.run()
    finally:
        worker.stop()
