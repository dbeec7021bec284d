"""A new policy bundle on a running installation, without a restart (``corridor policy apply``).

:meth:`PolicySwitch.plan` validates the bundle (a bundle that fails changes
nothing), checks its signature when one is required (autarky mode, or a bundle
that turns autarky on), and shows the difference in effect: tenants, pools,
accreditations and models added, removed or changed (:func:`policies.diff.bundle_diff`),
and which live replicas the new rules would no longer allow, with the reasons.

:meth:`PolicySwitch.apply` then activates it:

1. the bundle is kept by digest in ``$CORRIDOR_HOME/bundles/`` (with its signature);
2. a ``policy`` ledger entry names the new digest, the previous one, who applied it
   and what changed;
3. :meth:`scheduler.current_policy.CurrentPolicy.switch`: the router, the rate limiter
   and the scheduler read the new policy from the next decision on (the router's
   cache is keyed by digest, so no request is routed by the old rules after this);
4. a healing pass evicts the replicas the new rules deny and places the missing ones
   where they allow (``placement`` entries, ``action: evict`` and ``heal``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies import Bundle, Declaration, Policy, load_bundle
from policies.diff import Change, bundle_diff
from policies.exceptions import BundleSignatureError
from policies.signing import OperatorKey, parse_signature, verify_bundle
from scheduler.current_policy import CurrentPolicy
from scheduler.inventory import LedgerWriter
from scheduler.ledger import LedgerEntryDraft
from scheduler.placement import Placer

BUNDLES_DIRECTORY = "bundles"


@dataclass
class Denied:
    """A live replica the new rules would no longer allow where it runs."""

    deployment: str
    replica: str
    pool: str
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "replica": self.replica, "pool": self.pool,
                "reasons": self.reasons}


@dataclass
class SwitchPlan:
    """What applying a bundle would do (or did)."""

    policy: Policy
    previous: str
    changes: list[Change]
    denied: list[Denied]
    signer: str | None = None
    applied: bool = False
    healed: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        bundle = self.policy.bundle
        return {"policy_digest": self.policy.digest, "previous_digest": self.previous,
                "bundle": {"name": bundle.name, "version": bundle.version},
                "unchanged": self.policy.digest == self.previous, "signed_by": self.signer,
                "changes": [c.to_json() for c in self.changes],
                "no_longer_allowed": [d.to_json() for d in self.denied],
                "applied": self.applied, "healed": self.healed}


class PolicySwitch:
    """Plans and activates new bundles on ``current``; one switch at a time.

    ``deployments`` (the scheduler) is asked which replicas a new policy denies and then
    healed; ``trusted`` are the operator keys whose signatures count; ``autarky`` makes a
    signature required for every bundle.
    """

    def __init__(self, current: CurrentPolicy, ledger: LedgerWriter, home: Path, *,
                 deployments: Any = None, trusted: Sequence[OperatorKey] = (), autarky: bool = False,
                 declarations: Callable[[], Sequence[Declaration]] = tuple) -> None:
        self.current = current
        self.ledger = ledger
        self.home = Path(home)
        self.deployments = deployments
        self.trusted = list(trusted)
        self.autarky = autarky
        self.declarations = declarations
        self._lock = threading.Lock()

    def plan(self, text: str, *, source: str = "bundle.yaml", signature: str | None = None) -> SwitchPlan:
        """Validate ``text`` and show its effect; raises :class:`policies.BundleError` (every
        problem) or :class:`policies.exceptions.BundleSignatureError`; changes nothing."""
        bundle = load_bundle(source, text=text)
        signer = self._check_signature(text, bundle, signature, source)
        policy = Policy(bundle)
        old = self.current.policy
        return SwitchPlan(policy, old.digest, bundle_diff(old.bundle, bundle), self._denied(policy),
                          signer)

    def apply(self, text: str, *, source: str = "bundle.yaml", signature: str | None = None,
              by: str | None = None) -> SwitchPlan:
        """:meth:`plan`, then activate (see the module docstring); the same digest is a no-op."""
        with self._lock:
            plan = self.plan(text, source=source, signature=signature)
            if plan.policy.digest == plan.previous:
                return plan
            path = self._keep(text, plan.policy.digest, signature)
            self.ledger.append_many([LedgerEntryDraft(
                kind="policy", policy_digest=plan.policy.digest,
                detail={"action": "apply", "bundle": plan.policy.bundle.name,
                        "version": plan.policy.bundle.version, "path": str(path),
                        "previous_digest": plan.previous, "by": by, "autarky": self.autarky,
                        "signer": plan.signer,
                        "changes": [str(c) for c in plan.changes],
                        "no_longer_allowed": [d.to_json() for d in plan.denied]})])
            self.current.switch(plan.policy)
            plan.applied = True
        if self.deployments is not None:
            report = self.deployments.heal()
            plan.healed = {"evicted": list(report.evicted), "placed": list(report.placed),
                           "degraded": dict(report.degraded)}
        return plan

    def _check_signature(self, text: str, bundle: Bundle, signature: str | None,
                         source: str) -> str | None:
        required = self.autarky or bundle.settings.autarky
        if signature is None:
            if required:
                raise BundleSignatureError("UNSIGNED", f"{source}: autarky mode accepts only a bundle "
                                           f"signed by an operator key; sign it with `corridor "
                                           f"policy sign {source} --key KEY.pem`")
            return None
        signer = verify_bundle(text.encode("utf-8"), parse_signature(signature, f"{source}.sig"),
                               self.trusted)
        return signer.name

    def _denied(self, policy: Policy) -> list[Denied]:
        if self.deployments is None:
            return []
        placer = Placer(policy)
        declarations = self.declarations()
        out = []
        for view in self.deployments.list():
            admission = placer.admit(view.spec, declarations=declarations)
            for replica in view.replicas:
                if admission.allows(replica.pool):
                    continue
                reasons = ([r.code for r in admission.reasons(replica.pool)]
                           if replica.pool in admission.index else ["UNKNOWN_POOL"])
                out.append(Denied(view.name, replica.id, replica.pool, list(dict.fromkeys(reasons))))
        return out

    def _keep(self, text: str, digest: str, signature: str | None) -> Path:
        directory = self.home / BUNDLES_DIRECTORY
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{digest.removeprefix('sha256:')}.yaml"
        path.write_text(text, "utf-8")
        if signature is not None:
            path.with_name(path.name + ".sig").write_text(signature, "utf-8")
        return path
