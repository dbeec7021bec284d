"""The ledger entry: what one leaf of the placement log says.

A leaf's bytes are the canonical JSON (:func:`policies.canonical.canonical_json`)
of the entry dict, which always has exactly these keys, ``null`` where not
applicable: ``index``, ``timestamp``, ``kind``, ``decision_id``, ``tenant``,
``workload``, ``pool``, ``jurisdiction``, ``node_id``, ``allowed``, ``reasons``,
``policy_digest``, ``declaration``, ``detail``.

Callers build a :class:`LedgerEntryDraft` (everything but ``index`` and
``timestamp``); the ledger assigns those two inside the commit, so the order of
indexes is the order of durability. No field holds prompt or completion text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from policies.bundle import Jurisdiction
from policies.canonical import canonical_json

EntryKind = Literal["placement", "routing", "violation", "security", "policy", "crisis", "witness"]

ENTRY_KEYS = frozenset(
    {
        "index", "timestamp", "kind", "decision_id", "tenant", "workload", "pool", "jurisdiction",
        "node_id", "allowed", "reasons", "policy_digest", "declaration", "detail",
    }
)
"""The keys of every entry dict, no more, no fewer."""

TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"


def format_timestamp(moment: datetime) -> str:
    """UTC RFC 3339 with microseconds and ``Z``; sorts like the instant it names.

    >>> format_timestamp(datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    '2025-01-02T03:04:05.000006Z'
    """
    if moment.tzinfo is None:
        raise ValueError(f"timestamp: got naive datetime {moment.isoformat()}, want a timezone-aware one")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_decode = json.JSONDecoder().raw_decode


def parse_leaf(leaf: bytes) -> Any:
    """The JSON value of a leaf's bytes; ValueError if they are not one UTF-8 JSON document.

    >>> parse_leaf(b'{"index":7}')
    {'index': 7}
    """
    text = leaf.decode("utf-8")
    value, end = _decode(text)
    if end != len(text):
        raise ValueError(f"trailing bytes after the JSON document at offset {end}")
    return value


def utc_now() -> str:
    """The current time as :func:`format_timestamp` writes it."""
    return format_timestamp(datetime.now(UTC))


def _json_serialisable(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse what a leaf cannot hold (a set, a datetime, NaN, keys that do not sort, …) when
    the draft is built, so a bad entry fails its caller, not the writer's whole batch.

    Checked by the leaf's own encoder, in C: pydantic's ``JsonValue`` walks every value through
    a Python callback (costing the gateway more per request than the rest of its ledger entry)
    and lets NaN through.

    >>> _json_serialisable({"n": float("nan")})
    Traceback (most recent call last):
    ValueError: not JSON: Out of range float values are not JSON compliant
    """
    try:
        canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_serialisable)]
"""A JSON object of JSON values (tuples are written as arrays)."""


class Workload(BaseModel):
    """What was placed or routed, described by its attributes only (never its text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["replica", "batch", "request"] = Field(description="What the decision was about.")
    model: str | None = Field(default=None, description="Served model name.")
    marking: str | None = Field(default=None, description="Classification marking of the data, e.g. 'DR'.")
    data_flags: list[str] = Field(default_factory=list, description="Data flags such as 'health', 'personal'.")
    resources: JsonObject = Field(default_factory=dict, description="Requested resources, e.g. {'gpus': 1}.")


class LedgerEntryDraft(BaseModel):
    """An entry before the ledger assigns its ``index`` and ``timestamp``.

    Built by the scheduler and the gateway for every decision, allow or deny,
    and passed to :meth:`scheduler.ledger.Ledger.append`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EntryKind = Field(description="placement, routing, violation, security, policy or crisis.")
    decision_id: str | None = Field(default=None, description="Id of the placement decision, if any.")
    tenant: str | None = Field(default=None, description="Tenant the entry concerns.")
    workload: Workload | None = Field(default=None, description="The workload decided on.")
    pool: str | None = Field(default=None, description="Pool chosen or refused.")
    jurisdiction: Jurisdiction | None = Field(default=None, description="Jurisdiction of the pool.")
    node_id: str | None = Field(default=None, description="Ray node id where the work landed.")
    allowed: bool | None = Field(default=None, description="The decision, for kinds that decide.")
    reasons: list[str] = Field(default_factory=list, description="Reason codes, e.g. ['RESIDENCY'].")
    policy_digest: str | None = Field(default=None, description="Digest of the policy bundle that decided.")
    declaration: str | None = Field(default=None, description="Crisis declaration id in force, if any.")
    detail: JsonObject = Field(
        default_factory=dict, description="Extra facts, e.g. a quarantined node's labels or a bad digest."
    )

    def fields(self) -> dict[str, Any]:
        """The entry dict without ``index`` and ``timestamp``: JSON types only, every key present."""
        return self.model_dump(mode="json")


class LedgerEntry(LedgerEntryDraft):
    """A committed entry: the draft plus the ``index`` and ``timestamp`` the ledger assigned."""

    index: int = Field(ge=0, description="0-based sequence index; the leaf index in the Merkle tree.")
    timestamp: str = Field(pattern=TIMESTAMP_PATTERN, description="Commit time, UTC RFC 3339 with microseconds.")
