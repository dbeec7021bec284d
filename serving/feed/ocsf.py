"""OCSF 1.1-style records of Corridor's security events, for the defence centre's SIEM.

Every security-relevant event becomes one record in the shape of the Open
Cybersecurity Schema Framework (OCSF 1.1), so a SOC's SIEM ingests it with
its stock JSON or OCSF parser:

=====================  ==========================  ===============================
event (metadata.        OCSF class (class_uid)      source
event_code)
=====================  ==========================  ===============================
auth_failure_burst     Authentication (3002)       ``security`` ledger entry
policy_refusal         API Activity (6003)         the gateway, with its ledger entry
rate_limited           API Activity (6003)         the gateway (no ledger entry)
node_quarantined       Detection Finding (2004)    ``security`` ledger entry
model_digest_mismatch  Detection Finding (2004)    ``security`` ledger entry
placement_violation    Detection Finding (2004)    ``violation`` ledger entry
ledger_tamper          Detection Finding (2004)    ``corridor audit verify``
crisis_<step>          Entity Management (3004)    ``crisis`` ledger entry
api_key_issued,        Account Change (3001)       ``security`` ledger entry
api_key_revoked
=====================  ==========================  ===============================

Every record carries ``class_uid``, ``class_name``, ``category_uid``,
``category_name``, ``activity_id``, ``activity_name``, ``type_uid``
(``class_uid * 100 + activity_id``), ``severity_id``/``severity``, ``time``
(epoch milliseconds) and ``time_dt``, ``status_id``/``status``,
``message``, ``actor``, ``resources`` (what the event is about), ``metadata``
(product, OCSF version, ``event_code``, a unique ``uid``), and in
``unmapped`` Corridor's own facts — ``ledger_index`` wherever the event is
also a ledger entry, so an analyst can fetch it with its inclusion proof.
Pure functions: building a record writes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

OCSF_VERSION = "1.1.0"
PRODUCT = {"name": "Corridor", "vendor_name": "Corridor", "version": "0.1.0"}

#: class_uid -> (class_name, category_uid, category_name)
CLASSES: dict[int, tuple[str, int, str]] = {
    2004: ("Detection Finding", 2, "Findings"),
    3001: ("Account Change", 3, "Identity & Access Management"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    3004: ("Entity Management", 3, "Identity & Access Management"),
    6003: ("API Activity", 6, "Application Activity"),
}
SEVERITIES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical",
              6: "Fatal"}
STATUSES = {0: "Unknown", 1: "Success", 2: "Failure", 99: "Other"}
FINDING_STATUSES = {1: "New"}

#: Crisis step -> (Entity Management activity_id, activity_name, severity_id)
CRISIS_STEPS: dict[str, tuple[int, str, int]] = {
    "declared": (1, "Create", 3),
    "approved": (3, "Update", 3),
    "activated": (10, "Activate", 4),
    "expired": (11, "Deactivate", 2),
    "revoked": (9, "Disable", 3),
}


def _time_fields(at: dt.datetime | None) -> dict[str, Any]:
    at = at or dt.datetime.now(dt.timezone.utc)
    return {"time": int(at.timestamp() * 1000),
            "time_dt": at.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")}


def ocsf_record(class_uid: int, activity_id: int, activity_name: str, *, event_code: str,
                severity_id: int, message: str, actor: Mapping[str, Any],
                resources: Sequence[Mapping[str, Any]], status_id: int,
                at: dt.datetime | None = None, ledger_index: int | None = None,
                unmapped: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """One OCSF-style record; ``fields`` adds class-specific attributes (``src_endpoint`` …).

    >>> r = ocsf_record(2004, 1, "Create", event_code="x", severity_id=4, message="m",
    ...                 actor={}, resources=[{"type": "ray_node", "uid": "n1"}], status_id=1,
    ...                 at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), ledger_index=7)
    >>> (r["class_name"], r["type_uid"], r["severity"], r["time"], r["unmapped"]["ledger_index"])
    ('Detection Finding', 200401, 'High', 1767225600000, 7)
    """
    class_name, category_uid, category_name = CLASSES[class_uid]
    statuses = FINDING_STATUSES if class_uid == 2004 else STATUSES
    extra = dict(unmapped or {})
    if ledger_index is not None:
        extra["ledger_index"] = ledger_index
    return {
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": category_uid, "category_name": category_name,
        "activity_id": activity_id, "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "severity_id": severity_id, "severity": SEVERITIES[severity_id],
        **_time_fields(at),
        "status_id": status_id, "status": statuses.get(status_id, "Other"),
        "message": message,
        "actor": dict(actor),
        "resources": [dict(r) for r in resources],
        "metadata": {"version": OCSF_VERSION, "product": PRODUCT, "event_code": event_code,
                     "uid": str(uuid.uuid4()), "log_name": "security-events"},
        **{k: v for k, v in fields.items() if v is not None},
        "unmapped": extra,
    }


# -- records for events that are not (only) ledger entries ----------------------------------


def policy_refusal_record(item: Mapping[str, Any], *, endpoint: str | None = None) -> dict[str, Any]:
    """A request the rulebook refused, from its ``routing`` ledger item (``allowed`` false)."""
    entry = item["entry"]
    workload = entry.get("workload") or {}
    reasons = list(entry.get("reasons") or [])
    severity = 4 if {"CLASSIFIED_NEVER", "MARKING_SPILLAGE"} & set(reasons) else 2
    path = endpoint or (entry.get("detail") or {}).get("endpoint")
    return ocsf_record(
        6003, 1, "Create", event_code="policy_refusal", severity_id=severity, status_id=2,
        at=_parse_ts(entry.get("timestamp")), ledger_index=item.get("index"),
        message=f"request of tenant {entry.get('tenant')} ({workload.get('marking')} data, "
                f"model {workload.get('model')}) refused by policy: {', '.join(reasons)}",
        actor={"user": {"uid": entry.get("tenant"), "type": "tenant"}},
        resources=[{"type": "model", "uid": workload.get("model"),
                    "data": {"marking": workload.get("marking"),
                             "data_flags": workload.get("data_flags", [])}}],
        api={"operation": path, "service": {"name": "corridor-gateway"}},
        status_detail=", ".join(reasons),
        unmapped={"decision_id": entry.get("decision_id"), "reasons": reasons,
                  "policy_digest": entry.get("policy_digest")})


def rate_limited_record(tenant: str, *, limit_per_minute: int, retry_after_s: float,
                        endpoint: str | None, source: str | None) -> dict[str, Any]:
    """A tenant that ran out of its request quota (reported once per episode, not per 429)."""
    return ocsf_record(
        6003, 1, "Create", event_code="rate_limited", severity_id=2, status_id=2,
        message=f"tenant {tenant} exceeded {limit_per_minute} requests per minute; "
                f"throttled with 429 for about {retry_after_s:.0f} s",
        actor={"user": {"uid": tenant, "type": "tenant"}},
        resources=[{"type": "api", "uid": endpoint or "/v1"}],
        api={"operation": endpoint, "service": {"name": "corridor-gateway"}},
        src_endpoint={"ip": source} if source else None,
        status_detail="rate_limit_exceeded",
        unmapped={"requests_per_minute": limit_per_minute})


def tamper_record(*, check: str, message: str, index: int | None, tree_size: int | None,
                  ledger: str) -> dict[str, Any]:
    """What ``corridor audit verify`` found wrong with the stored ledger."""
    where = f" at index {index}" if index is not None else ""
    return ocsf_record(
        2004, 1, "Create", event_code="ledger_tamper", severity_id=5, status_id=1,
        message=f"ledger verification failed{where} (check {check}): {message}",
        actor={"app_name": "corridor audit verify", "user": {"name": _login()}},
        resources=[{"type": "ledger", "uid": ledger}], ledger_index=index,
        finding_info={"uid": f"tamper-{uuid.uuid4()}", "title": "ledger tamper detected",
                      "types": [check]},
        unmapped={"check": check, "tree_size": tree_size})


# -- records for ledger entries ---------------------------------------------------------------


#: Findings above High: a peer site's ledger that fails its checks stops the corridor's trust.
_FINDING_SEVERITY = {"peer_ledger_inconsistent": 5}


def record_for_entry(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of a ``security``, ``violation`` or ``crisis`` ledger item; None for other kinds."""
    entry = item["entry"]
    kind = entry["kind"]
    detail = entry.get("detail") or {}
    at = _parse_ts(entry.get("timestamp"))
    index = item.get("index", entry.get("index"))
    if kind == "crisis":
        return _crisis_record(entry, detail, at, index)
    if kind == "violation":
        return ocsf_record(
            2004, 1, "Create", event_code="placement_violation", severity_id=4, status_id=1,
            at=at, ledger_index=index,
            message=f"replica {detail.get('replica')} of {detail.get('deployment')} landed on node "
                    f"{entry.get('node_id')} against its decision for pool {entry.get('pool')} "
                    f"({', '.join(entry.get('reasons') or [])}); {detail.get('action', 'killed')}",
            actor={"app_name": "corridor-scheduler"},
            resources=[{"type": "replica", "uid": detail.get("replica"),
                        "data": {"deployment": detail.get("deployment"), "pool": entry.get("pool")}},
                       {"type": "ray_node", "uid": entry.get("node_id"),
                        "labels": _labels(detail.get("landed_labels"))}],
            finding_info=_finding(index, "placement violation", entry.get("reasons")),
            unmapped={"tenant": entry.get("tenant"), "reasons": entry.get("reasons")})
    if kind != "security":
        return None
    event = detail.get("event") or ("node_quarantined" if detail.get("action") == "quarantine"
                                     else "security_finding")
    if event == "auth_failure_burst":
        source = detail.get("source")
        return ocsf_record(
            3002, 1, "Logon", event_code=event, severity_id=3, status_id=2, at=at,
            ledger_index=index,
            message=f"{detail.get('failures')} failed authentications from {source} within "
                    f"{detail.get('window_s')} s; source throttled for {detail.get('window_s')} s",
            actor={"user": {"uid": None, "type": "unknown"}},
            resources=[{"type": "api", "uid": detail.get("endpoint") or "/"}],
            src_endpoint={"ip": source}, count=detail.get("failures"),
            status_detail="invalid credentials", unmapped={"window_s": detail.get("window_s")})
    if event in ("api_key_issued", "api_key_revoked"):
        issued = event == "api_key_issued"
        return ocsf_record(
            3001, 1 if issued else 6, "Create" if issued else "Delete", event_code=event,
            severity_id=2 if issued else 3, status_id=1, at=at, ledger_index=index,
            message=f"API key {detail.get('key_id')} ({detail.get('role')}"
                    f"{', tenant ' + str(entry.get('tenant')) if entry.get('tenant') else ''}) "
                    f"{'issued' if issued else 'revoked'} by {detail.get('by')}",
            actor={"user": {"uid": detail.get("by"), "type": "operator"}},
            resources=[{"type": "api_key", "uid": detail.get("key_id"), "name": detail.get("name")}],
            unmapped={k: v for k, v in detail.items() if k != "event"})
    if event == "node_quarantined":
        return ocsf_record(
            2004, 1, "Create", event_code=event, severity_id=4, status_id=1, at=at,
            ledger_index=index, message=detail.get("message") or "node quarantined",
            actor={"app_name": "corridor-scheduler"},
            resources=[{"type": "ray_node", "uid": entry.get("node_id"),
                        "labels": _labels(detail.get("labels")),
                        "data": {"claimed_pool": detail.get("claimed_pool"),
                                 "jurisdiction": entry.get("jurisdiction")}}],
            finding_info=_finding(index, "node quarantined", entry.get("reasons")),
            unmapped={"reasons": entry.get("reasons")})
    resource = ({"type": "model", "uid": detail["model"]} if detail.get("model")
                else {"type": "site", "uid": detail["site"]} if detail.get("site")
                else {"type": "corridor", "uid": entry.get("policy_digest")})
    return ocsf_record(
        2004, 1, "Create", event_code=event, severity_id=_FINDING_SEVERITY.get(event, 4), status_id=1,
        at=at, ledger_index=index,
        message=detail.get("message") or event.replace("_", " "),
        actor={"app_name": "corridor"}, resources=[resource],
        finding_info=_finding(index, event.replace("_", " "), entry.get("reasons")),
        unmapped={k: v for k, v in detail.items() if k not in ("message",)})


def _crisis_record(entry: Mapping[str, Any], detail: Mapping[str, Any], at: dt.datetime | None,
                   index: int | None) -> dict[str, Any]:
    step = detail.get("step", "declared")
    activity_id, activity_name, severity = CRISIS_STEPS.get(step, (99, "Other", 3))
    operator = detail.get("operator") or {}
    declaration = entry.get("declaration")
    scope = detail.get("scope") or {}
    who = (f"operator {operator.get('operator')} ({operator.get('jurisdiction')})"
           if operator else "the platform")
    return ocsf_record(
        3004, activity_id, activity_name, event_code=f"crisis_{step}", severity_id=severity,
        status_id=1, at=at, ledger_index=index,
        message=f"crisis declaration {declaration} {step} by {who}: "
                f"{', '.join(scope.get('directions', []))} for tenants "
                f"{', '.join(scope.get('tenants', []))}, markings {', '.join(scope.get('markings', []))}, "
                f"models {', '.join(scope.get('models', []))}; status {detail.get('status')}",
        actor=({"user": {"uid": operator.get("operator"), "type": "operator",
                         "org": {"uid": operator.get("jurisdiction"),
                                 "name": operator.get("jurisdiction")}}}
               if operator else {"app_name": "corridor-crisis"}),
        entity={"type": "crisis_declaration", "uid": declaration},
        resources=[{"type": "crisis_declaration", "uid": declaration,
                    "data": {"scope": scope, "valid_until": detail.get("valid_until"),
                             "status": detail.get("status")}}],
        unmapped={"step": step, "reason": detail.get("reason")})


def _finding(index: int | None, title: str, types: Sequence[str] | None) -> dict[str, Any]:
    uid = f"ledger-{index}" if index is not None else f"corridor-{uuid.uuid4()}"
    return {"uid": uid, "title": title, "types": list(types or [])}


def _labels(labels: Mapping[str, str] | None) -> list[str]:
    return [f"{k}={v}" for k, v in sorted((labels or {}).items())]


def _parse_ts(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _login() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database in some containers
        return str(os.getuid())


# -- sinks ------------------------------------------------------------------------------------
