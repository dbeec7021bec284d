"""A site's side of the corridor while it runs: the peer link, what it learned of the peer, and
the three loops that keep the two sites in step.

- **hello**: on start and every ``hello_period_s``, ask the peer for its site, ledger public key
  and bundle digest. Forwarding needs a peer whose digest equals this site's (the joint bundle);
  a mismatch stops forwarding with a clear reason until it matches again.
- **crisis steps**: send this site's signed crisis steps the peer has not acknowledged, with
  exponential backoff while it is unreachable (a revocation holds locally at once, and is sent
  when the peer returns).
- **witnessing** (:mod:`serving.federation.witnessing`): countersign the peer's tree heads.

Every loop runs in the gateway's event loop and never blocks it (ledger work in threads).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler.crisis import CrisisRegistry
from scheduler.ledger import PublicKey
from serving.federation.link import PeerLink, PeerRefused, PeerUnavailable
from serving.federation.sites import PeerConfig

log = logging.getLogger(__name__)


@dataclass
class PeerState:
    """What this site knows of its peer now; ``halted`` says why forwarding is stopped, if it is."""

    public_key: PublicKey | None = None
    policy_digest: str | None = None
    reachable: bool = False
    halted: str | None = None  # set by the witness on an inconsistent peer ledger; an operator clears it

    def forwarding_refusal(self, own_digest: str) -> tuple[str, str] | None:
        """``(code, message)`` when requests may not be forwarded now, else None."""
        if self.halted:
            return "peer_halted", f"forwarding to the peer site is stopped: {self.halted}"
        if not self.reachable or self.policy_digest is None:
            return "peer_unavailable", "the peer site is not reachable now; retry later"
        if self.policy_digest != own_digest:
            return ("peer_policy_mismatch", f"the peer site runs policy {self.policy_digest}, this site "
                    f"{own_digest}; nothing is forwarded until both load the same joint bundle")
        return None


@dataclass
class Federation:
    """This site's peer link and loops; built by ``corridor up --site``, started with the app."""

    config: PeerConfig
    link: PeerLink
    own_digest: str
    own_key: PublicKey
    crisis: CrisisRegistry | None = None
    on_mismatch: Callable[[str, str], None] | None = None  # (peer digest, own digest) -> report
    hello_period_s: float = 10.0
    #: False in a gateway worker of a site with several: the link only; the control process runs
    #: the loops and publishes what it learns into ``state`` (``serving.installation.published``).
    loops: bool = True
    state: PeerState = field(default_factory=PeerState)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _crisis_wake: asyncio.Event | None = None

    @property
    def site(self) -> str:
        return self.config.site

    @property
    def peer(self) -> str:
        return self.config.peer

    def site_keys(self) -> dict[str, Any]:
        """Ledger public keys by site, for verifying crisis steps: this site's and the peer's (once known)."""
        keys: dict[str, Any] = {self.site: self.own_key}
        if self.state.public_key is not None:
            keys[self.peer] = self.state.public_key
        return keys

    def hello_body(self) -> dict[str, Any]:
        """What this site answers to the peer's hello."""
        return {"site": self.site, "policy_digest": self.own_digest,
                "ledger_public_key": self.own_key.model_dump()}

    async def start(self, *extra: Callable[[], Any]) -> None:
        """Open the link and start the loops (``extra``: more loop coroutines, e.g. the witness)."""
        await self.link.start()
        if not self.loops:
            return
        self._crisis_wake = asyncio.Event()
        for loop in (self._hello_loop, self._crisis_loop, *extra):
            self._tasks.append(asyncio.create_task(loop(), name=f"corridor-peer-{loop.__name__}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.link.close()

    def crisis_changed(self) -> None:
        """A crisis registry listener: send new steps now (thread-safe)."""
        wake = self._crisis_wake
        if wake is not None:
            try:
                asyncio.get_running_loop()
                wake.set()
            except RuntimeError:  # called from the registry's thread
                loop = self._tasks[0].get_loop() if self._tasks else None
                if loop is not None:
                    loop.call_soon_threadsafe(wake.set)

    async def hello(self) -> None:
        """Ask the peer who it is; record its key (pinned after first contact) and bundle digest."""
        try:
            body = await self.link.get_json("/peer/v1/hello")
        except (PeerUnavailable, PeerRefused) as exc:
            self.state.reachable = False
            log.info("peer site %s: hello failed: %s", self.peer, exc)
            return
        key = PublicKey.model_validate(body["ledger_public_key"])
        if body.get("site") != self.peer:
            self.state.reachable = False
            log.error("the peer link answers as site %r, want %s", body.get("site"), self.peer)
            return
        if self.state.public_key is not None and key != self.state.public_key:
            self.state.halted = (f"the peer's ledger key changed from {self.state.public_key.key_id[:12]}… "
                                 f"to {key.key_id[:12]}…")
            log.error("peer site %s: %s", self.peer, self.state.halted)
            return
        self.state.public_key = key
        mismatch = body.get("policy_digest") != self.own_digest
        if mismatch and self.state.policy_digest != body.get("policy_digest") and self.on_mismatch:
            self.on_mismatch(str(body.get("policy_digest")), self.own_digest)
        self.state.policy_digest = body.get("policy_digest")
        self.state.reachable = True

    async def _hello_loop(self) -> None:
        delay = 0.5
        while True:
            await self.hello()
            delay = self.hello_period_s if self.state.reachable else min(delay * 2, self.hello_period_s)
            await asyncio.sleep(delay)

    async def _crisis_loop(self) -> None:
        """Send unsent crisis steps; back off exponentially (capped) while the peer is away."""
        assert self._crisis_wake is not None
        delay = 0.5
        while True:
            sent_all = await self.send_crisis_steps()
            delay = 0.5 if sent_all else min(delay * 2, 30.0)
            self._crisis_wake.clear()
            try:
                await asyncio.wait_for(self._crisis_wake.wait(), timeout=delay if not sent_all else 5.0)
            except TimeoutError:
                pass

    async def send_crisis_steps(self) -> bool:
        """Send every unsent step, oldest first; True when none is left."""
        if self.crisis is None:
            return True
        for step in await asyncio.to_thread(self.crisis.unsent_steps):
            try:
                await self.link.post_json("/peer/v1/crisis/steps", step)
            except PeerUnavailable:
                return False
            except PeerRefused as exc:
                # The peer read the step and will never take it (e.g. it already ended there):
                # keep it in our record, stop resending it.
                log.warning("peer site %s refused crisis step %s of %s: %s", self.peer, step["action"],
                            step["declaration_id"], exc)
            await asyncio.to_thread(self.crisis.mark_sent, step["signature"])
        return True
