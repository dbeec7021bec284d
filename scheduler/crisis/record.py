"""A crisis declaration as the registry stores it: the rulebook's :class:`~policies.Declaration`
plus who revoked it and which time-driven steps the ledger already has."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from policies import Declaration
from policies.bundle import JURISDICTIONS, Operator


def iso(moment: dt.datetime) -> str:
    """UTC ISO 8601 with ``Z``.

    >>> iso(dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc))
    '2026-11-29T12:00:00Z'
    """
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


class CrisisRecord(BaseModel):
    """``declaration`` is exactly what the rulebook reads; the rest is the registry's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    declaration: Declaration
    revoked_by: Operator | None = None
    activated_logged: bool = False
    ended_logged: bool = False
    #: Two sites: every signed step of this declaration (this site's and the peer's verified
    #: ones), and this site's steps the peer has not yet acknowledged.
    steps: list[dict[str, Any]] = Field(default_factory=list)
    unsent: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def id(self) -> str:
        return self.declaration.id

    def status(self, at: dt.datetime) -> str:
        return self.declaration.status(at)

    def updated(self, **declaration_fields: Any) -> CrisisRecord:
        """A copy whose declaration has ``declaration_fields`` changed."""
        return self.model_copy(update={"declaration": self.declaration.model_copy(update=declaration_fields)})

    def to_json(self, at: dt.datetime) -> dict[str, Any]:
        """The wire shape of the operator API."""
        declaration = self.declaration
        backed = declaration.sides(at)
        return {
            "id": declaration.id, "object": "crisis.declaration", "status": declaration.status(at),
            "scope": declaration.scope.model_dump(), "reason": declaration.reason,
            "declared_by": declaration.declared_by.model_dump(),
            "approvals": [a.model_dump(mode="json") for a in declaration.approvals],
            "backed_by": [j for j in JURISDICTIONS if j in backed],
            "awaiting": [j for j in JURISDICTIONS if j not in backed],
            "valid_from": iso(declaration.valid_from), "valid_until": iso(declaration.valid_until),
            "valid_for_hours": round((declaration.valid_until - declaration.valid_from)
                                     .total_seconds() / 3600, 6),
            "revoked_at": iso(declaration.revoked_at) if declaration.revoked_at else None,
            "revoked_by": self.revoked_by.model_dump() if self.revoked_by else None,
            "signed_by": sorted({step["site"] for step in self.steps}),
            "unsent_steps": len(self.unsent),
        }
