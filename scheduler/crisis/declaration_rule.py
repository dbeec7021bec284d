"""The rule that makes a crisis declaration active, from the signed steps both sites received.

A declaration is active only when a ``declare`` step of one site and an
``approve`` step of the other site both verify
(:func:`~scheduler.crisis.steps.verify_step`) and name the same
body, no ``revoke`` of either site verifies, and (given a time) the time is
inside the window. Steps that do not verify or do not fit are left out and
listed in :attr:`DeclarationState.refused`, for the caller's security feed;
they never count.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from scheduler.crisis.steps import (
    ACTIONS,
    CrisisStep,
    DeclarationBody,
    SignedStep,
    SiteKeys,
    StepError,
    step_timestamp,
    verify_step,
)

Status = Literal["unknown", "pending", "active", "expired", "revoked"]


@dataclass(frozen=True)
class DeclarationState:
    """What the verified steps of one declaration add up to.

    ``status``: ``unknown`` (no verified ``declare``), ``pending`` (declared,
    not approved by the other site, or before its window), ``active``,
    ``expired`` (past its window) or ``revoked``. ``refused`` lists each step
    left out and why (forged, altered, another body, approved by the declaring
    site …): raise a security event for them.
    """

    declaration_id: str
    status: Status
    body: DeclarationBody | None = None
    declared_by: str | None = None
    approved_by: str | None = None
    revoked_by: tuple[str, ...] = ()
    refused: tuple[tuple[Any, str], ...] = field(default=())

    @property
    def active(self) -> bool:
        """Whether the declaration lets workloads cross now (status ``active``)."""
        return self.status == "active"


def declaration_state(
    declaration_id: str,
    steps: Iterable[SignedStep | Mapping[str, Any] | str | bytes],
    site_keys: SiteKeys,
    *,
    at: dt.datetime | str | None = None,
) -> DeclarationState:
    """Apply the rule to every step received for ``declaration_id`` (steps of other ids are skipped).

    With ``at``, only steps made by then count, and the window applies.
    """
    moment = step_timestamp("at", at) if at is not None else None
    refused: list[tuple[Any, str]] = []
    verified: list[CrisisStep] = []
    for signed in steps:
        try:
            parsed = signed if isinstance(signed, SignedStep) else SignedStep.from_json(signed)
            if parsed.step.declaration_id != declaration_id:
                continue
            step = verify_step(parsed, site_keys)
        except StepError as exc:
            refused.append((signed, str(exc)))
            continue
        if moment is not None and step.timestamp > moment:
            continue
        verified.append(step)
    verified.sort(key=lambda s: (s.timestamp, ACTIONS.index(s.action), s.site))

    declare = next((s for s in verified if s.action == "declare"), None)
    revoked_by = tuple(sorted({s.site for s in verified if s.action == "revoke"}))
    approved_by = None
    for step in verified:
        if step is declare or step.action == "revoke":
            continue
        if declare is None:
            if step.action == "approve":
                refused.append((step.to_json(), f"approve step by {step.site} before any declare step"))
            continue
        if step.declaration_digest != declare.declaration_digest:
            refused.append((step.to_json(), (f"{step.action} step by {step.site} names another declaration body "
                                             f"({step.declaration_digest}, declared {declare.declaration_digest})")))
        elif step.action == "approve" and step.site == declare.site:
            refused.append((step.to_json(), (f"approve step by the declaring site {step.site}; "
                                             "the other site must approve")))
        elif step.action == "approve" and approved_by is None:
            approved_by = step.site

    body = declare.body() if declare else None
    if revoked_by:
        status: Status = "revoked"
    elif declare is None or body is None:
        status = "unknown"
    elif moment is not None and moment >= body.valid_until:
        status = "expired"
    elif approved_by is None or (moment is not None and moment < body.valid_from):
        status = "pending"
    else:
        status = "active"
    return DeclarationState(
        declaration_id, status, body, declare.site if declare else None, approved_by, revoked_by, tuple(refused)
    )


def is_active(
    declaration_id: str,
    steps: Iterable[SignedStep | Mapping[str, Any] | str | bytes],
    site_keys: SiteKeys,
    *,
    at: dt.datetime | str | None = None,
) -> bool:
    """Whether the declaration is active: declared by one site, approved by the other, not revoked, in its window."""
    return declaration_state(declaration_id, steps, site_keys, at=at).active
