"""Crisis declarations across two sites: every step signed by the acting site, verified by the other.

Across the border the two-person rule is one person per site: an operator
declares at one site, an operator of the other site approves at theirs, either
may revoke. The registry of each site signs its own steps with its ledger key
(:class:`SiteSigner`), keeps every signed step in the declaration's record, and
sends the unsent ones to the peer; a step from the peer counts only once the
peer's ledger key verifies it. So a declaration is active at a site only when
both sites' signatures on it verify there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies import Declaration
from policies.bundle import Operator, Scope
from scheduler.crisis.errors import CrisisError
from scheduler.crisis.steps import (CrisisStep, DeclarationBody, SiteKeys, StepError, sign_step,
                                    verify_step)


class InvalidStep(CrisisError):
    """A step from the peer that does not parse or verify (forged, altered, wrong site)."""

    code = "invalid_crisis_step"


class SiteSigner:
    """This site's signer of steps and verifier of the peer's.

    ``peer_keys`` returns the ledger public keys known for the peer (learned over
    the mutual-TLS link); a step whose site has no key is refused.
    """

    def __init__(self, site: str, private_key: Ed25519PrivateKey,
                 peer_keys: Callable[[], SiteKeys]) -> None:
        self.site = site
        self._key = private_key
        self._peer_keys = peer_keys

    def sign(self, declaration: Declaration, action: str, operator: Operator,
             at: dt.datetime) -> dict[str, Any]:
        """The signed ``action`` step of ``operator`` (of this site) on ``declaration``, as JSON."""
        step = CrisisStep.create(DeclarationBody.of(declaration), action=action,  # type: ignore[arg-type]
                                 site=self.site, operator=operator.operator, timestamp=at)
        return sign_step(step, self._key).to_json()

    def verify(self, signed: Mapping[str, Any]) -> CrisisStep:
        """The peer's step once verified; :class:`InvalidStep` otherwise (never this site's own)."""
        try:
            step = verify_step(signed, self._peer_keys())
        except StepError as exc:
            raise InvalidStep(f"crisis step refused: {exc}", param="step") from exc
        if step.site == self.site:
            raise InvalidStep(f"crisis step refused: it claims to come from this site ({self.site}); "
                              f"only the peer's steps are received", param="step.site")
        return step


def declaration_of(step: CrisisStep) -> Declaration:
    """The declaration a peer's ``declare`` step carries, as the rulebook reads it."""
    body = step.body()
    return Declaration(id=body.id, declared_by=Operator(operator=step.operator, jurisdiction=step.site),
                       reason=body.reason, scope=Scope.model_validate(dict(body.scope)),
                       valid_from=_time(body.valid_from), valid_until=_time(body.valid_until))


def same_body(declaration: Declaration, step: CrisisStep) -> bool:
    """Whether ``step`` names exactly what ``declaration`` says (an approval cannot change it)."""
    return DeclarationBody.of(declaration).digest() == step.declaration_digest


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
