"""Workloads: what asks the rulebook for a place (a replica, a batch job, a request)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from policies.bundle import DATA_FLAGS
from policies.exceptions import UnknownDataFlagError
from policies.markings import Marking, parse_caveat, parse_marking

WorkloadKind = Literal["replica", "batch", "request"]


def parse_data_flags(value: str | Iterable[str] | None) -> frozenset[str]:
    """Parse data flags from a header value or a list; unknown → :class:`UnknownDataFlagError`.

    >>> sorted(parse_data_flags("health, Personal"))
    ['health', 'personal']
    """
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    flags = set()
    for item in items:
        flag = item.strip().lower()
        if not flag:
            continue
        if flag not in DATA_FLAGS:
            raise UnknownDataFlagError(item.strip(), list(DATA_FLAGS))
        flags.add(flag)
    return frozenset(flags)


def parse_caveats(value: str | Iterable[str] | None) -> frozenset[str]:
    """Parse national-only caveats (header ``X-Corridor-Caveats``, a batch field) to canonical ids;
    unknown → :class:`policies.exceptions.UnknownCaveatError`.

    >>> sorted(parse_caveats("Spécial France"))
    ['SPECIAL FRANCE']
    """
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(parse_caveat(item.strip()).id for item in items if item.strip())


@dataclass(frozen=True, slots=True)
class MarkingRaise:
    """Why a workload runs at a higher marking than its caller declared (downgrade guard).

    ``by`` is ``"tenant"`` or ``"key"``; ``source`` the tenant id or API key id
    whose ``minimum`` applied.
    """

    declared: str
    minimum: str
    by: Literal["tenant", "key"]
    source: str

    def to_json(self) -> dict[str, str]:
        return {"declared": self.declared, "minimum": self.minimum, "by": self.by, "source": self.source}


@dataclass(frozen=True, slots=True)
class Workload:
    """What the rulebook decides about. Carries no prompt or completion text, ever.

    ``model`` may be None only to ask "where could this tenant's data go at
    all" (``corridor policy explain`` without ``--model``); the scheduler and
    the gateway always name the model. ``model_digest`` is the digest of the
    artifact actually loaded, checked against the pinned one in autarky mode.
    ``caveats`` are national-only caveats (canonical ids, see
    :func:`parse_caveats`); ``raised`` is set when a minimum marking raised
    the declared one (see :meth:`at_minimum`).
    """

    tenant: str
    marking: Marking
    kind: WorkloadKind = "request"
    data_flags: frozenset[str] = frozenset()
    model: str | None = None
    model_digest: str | None = None
    gpus: int = 0
    id: str | None = field(default=None, compare=False)
    caveats: frozenset[str] = frozenset()
    raised: MarkingRaise | None = None

    @classmethod
    def create(
        cls,
        tenant: str,
        marking: str | Marking,
        *,
        kind: WorkloadKind = "request",
        data_flags: str | Iterable[str] | None = None,
        model: str | None = None,
        model_digest: str | None = None,
        gpus: int = 0,
        id: str | None = None,
        caveats: str | Iterable[str] | None = None,
    ) -> Workload:
        """Build a workload from user-facing values (marking spellings, flag and caveat lists)."""
        if not isinstance(marking, Marking):
            marking = parse_marking(marking)
        return cls(
            tenant=tenant,
            marking=marking,
            kind=kind,
            data_flags=parse_data_flags(data_flags),
            model=model,
            model_digest=model_digest,
            gpus=gpus,
            id=id,
            caveats=parse_caveats(caveats),
        )

    def at_minimum(self, minimum: str | Marking | None, *, by: Literal["tenant", "key"],
                   source: str) -> Workload:
        """This workload, raised to ``minimum`` if its marking's level is below it.

        The first declared marking is kept in ``raised.declared`` across raises.

        >>> w = Workload.create("fr-interior", "PUBLIC").at_minimum("DR", by="key", source="key_1")
        >>> w.marking.id, w.raised.declared, w.raised.by
        ('DR', 'PUBLIC', 'key')
        """
        if minimum is None:
            return self
        if not isinstance(minimum, Marking):
            minimum = parse_marking(minimum)
        if self.marking.level >= minimum.level:
            return self
        declared = self.raised.declared if self.raised is not None else self.marking.id
        return dataclasses.replace(self, marking=minimum,
                                   raised=MarkingRaise(declared, minimum.id, by, source))

    def summary(self) -> dict[str, Any]:
        """The JSON summary of the ledger entry's ``workload`` field (its schema is fixed)."""
        return {
            "kind": self.kind,
            "tenant": self.tenant,
            "model": self.model,
            "marking": self.marking.id,
            "data_flags": sorted(self.data_flags),
            "resources": {"gpus": self.gpus},
        }

    def to_json(self) -> dict[str, Any]:
        """Every fact a decision depends on: :meth:`summary` plus ``caveats``,
        ``marking_raised`` and ``model_digest`` when set; :meth:`from_json` reads it back."""
        value = self.summary()
        if self.caveats:
            value["caveats"] = sorted(self.caveats)
        if self.raised is not None:
            value["marking_raised"] = self.raised.to_json()
        if self.model_digest is not None:
            value["model_digest"] = self.model_digest
        return value

    @classmethod
    def from_json(cls, summary: Mapping[str, Any], *, id: str | None = None) -> Workload:
        """Rebuild a workload from :meth:`to_json` (or :meth:`summary`), e.g. to replay a decision."""
        raised = summary.get("marking_raised")
        return cls(
            tenant=summary["tenant"],
            marking=parse_marking(summary["marking"]),
            kind=summary.get("kind", "request"),
            data_flags=parse_data_flags(summary.get("data_flags", ())),
            model=summary.get("model"),
            model_digest=summary.get("model_digest"),
            gpus=int(summary.get("resources", {}).get("gpus", 0)),
            id=id,
            caveats=parse_caveats(summary.get("caveats", ())),
            raised=MarkingRaise(**raised) if raised else None,
        )


def apply_minimum_marking(workload: Workload, minimum: str | Marking | None, *,
                          key_id: str) -> Workload:
    """The gateway's downgrade guard for an API key that carries a minimum marking.

    Returns ``workload`` raised to ``minimum`` when declared below it; the
    decision then reports ``effective_marking`` and ``marking_raised``. The
    tenant's own ``minimum_marking`` is applied by the rulebook itself.
    """
    return workload.at_minimum(minimum, by="key", source=key_id)
