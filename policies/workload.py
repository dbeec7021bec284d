"""Workloads: what asks the rulebook for a place (a replica, a batch job, a request)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from policies.bundle import DATA_FLAGS
from policies.exceptions import UnknownDataFlagError
from policies.markings import Marking, parse_marking

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


@dataclass(frozen=True, slots=True)
class Workload:
    """What the rulebook decides about. Carries no prompt or completion text, ever.

    ``model`` may be None only to ask "where could this tenant's data go at
    all" (``corridor policy explain`` without ``--model``); the scheduler and
    the gateway always name the model. ``model_digest`` is the digest of the
    artifact actually loaded, checked against the pinned one in autarky mode.
    """

    tenant: str
    marking: Marking
    kind: WorkloadKind = "request"
    data_flags: frozenset[str] = frozenset()
    model: str | None = None
    model_digest: str | None = None
    gpus: int = 0
    id: str | None = field(default=None, compare=False)

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
    ) -> Workload:
        """Build a workload from user-facing values (marking spellings, flag lists)."""
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
        )

    def summary(self) -> dict[str, Any]:
        """The JSON summary used in decisions and ledger entries."""
        return {
            "kind": self.kind,
            "tenant": self.tenant,
            "model": self.model,
            "marking": self.marking.id,
            "data_flags": sorted(self.data_flags),
            "resources": {"gpus": self.gpus},
        }
