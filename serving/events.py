"""The security event feed for the defence centre: OCSF-style JSON lines, optionally syslog.

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
=====================  ==========================  ===============================

Every record carries ``class_uid``, ``class_name``, ``category_uid``,
``category_name``, ``activity_id``, ``activity_name``, ``type_uid``
(``class_uid * 100 + activity_id``), ``severity_id``/``severity``, ``time``
(epoch milliseconds) and ``time_dt``, ``status_id``/``status``,
``message``, ``actor``, ``resources`` (what the event is about), ``metadata``
(product, OCSF version, ``event_code``, a unique ``uid``), and in
``unmapped`` Corridor's own facts — ``ledger_index`` wherever the event is
also a ledger entry, so an analyst can fetch it with its inclusion proof.

Sinks: a JSON-lines file (``$CORRIDOR_HOME/security-events.jsonl``, one
``write`` per record on an ``O_APPEND`` descriptor, so the gateway and
``corridor audit verify`` can both append), and optionally syslog: RFC 5424
messages (facility 10, security/authorization; severity from
``severity_id``; MSG the record as ASCII JSON) over UDP (one datagram each,
RFC 5426) or TCP (octet-counting framing, RFC 6587). A syslog outage never
slows the gateway: records queue in memory (bounded) and are dropped, and
counted, when it stays down.

:class:`LedgerFollower` turns ``security``, ``violation`` and ``crisis``
ledger entries into records, whoever wrote them (scheduler, gateway, crisis
registry), from a cursor kept in ``security-events.cursor``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scheduler.periodic import Periodic

log = logging.getLogger(__name__)

OCSF_VERSION = "1.1.0"
PRODUCT = {"name": "Corridor", "vendor_name": "Corridor", "version": "0.1.0"}

#: class_uid -> (class_name, category_uid, category_name)
CLASSES: dict[int, tuple[str, int, str]] = {
    2004: ("Detection Finding", 2, "Findings"),
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

_SYSLOG_FACILITY = 10  # security/authorization messages
_SYSLOG_SEVERITY = {0: 6, 1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 6: 1}  # OCSF severity_id -> RFC 5424


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
    severity = 4 if "CLASSIFIED_NEVER" in reasons else 2
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
                else {"type": "corridor", "uid": entry.get("policy_digest")})
    return ocsf_record(
        2004, 1, "Create", event_code=event, severity_id=4, status_id=1, at=at, ledger_index=index,
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


class FileSink:
    """Appends one JSON line per record to a file; safe across threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def rfc5424(record: Mapping[str, Any], *, hostname: str | None = None,
            app_name: str = "corridor", procid: int | None = None) -> bytes:
    """The RFC 5424 message of a record: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG``.

    MSGID is the OCSF class without spaces (``DetectionFinding``); MSG the record
    as JSON with non-ASCII escaped, so it is plain ASCII and needs no BOM.
    """
    pri = _SYSLOG_FACILITY * 8 + _SYSLOG_SEVERITY.get(int(record.get("severity_id", 0)), 6)
    at = dt.datetime.fromtimestamp(record["time"] / 1000, dt.timezone.utc)
    timestamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = _printable(hostname or socket.gethostname(), 255)
    msgid = _printable(str(record.get("class_name", "-")).replace(" ", "").replace("&", ""), 32)
    message = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
    header = f"<{pri}>1 {timestamp} {host} {_printable(app_name, 48)} {procid or os.getpid()} {msgid} -"
    return f"{header} {message}".encode("ascii")


def _printable(value: str, limit: int) -> str:
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


class SyslogSink:
    """Sends records as RFC 5424 messages to ``udp://host:port`` or ``tcp://host:port``.

    Sending happens in a daemon thread; at most ``max_queue`` records wait.
    ``dropped`` counts records lost to a full queue or a target that stays down.
    """

    def __init__(self, url: str, *, max_queue: int = 10_000, hostname: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("udp", "tcp") or not parts.hostname or parts.port is None:
            raise ValueError(f"syslog: got {url!r}, want udp://HOST:PORT or tcp://HOST:PORT")
        self.url = url
        self.transport, self.address = parts.scheme, (parts.hostname, parts.port)
        self.hostname = hostname
        self.dropped = 0
        self.sent = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(max_queue)
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._loop, name="corridor-syslog", daemon=True)
        self._thread.start()

    def write(self, record: Mapping[str, Any]) -> None:
        try:
            self._queue.put_nowait(rfc5424(record, hostname=self.hostname))
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until every queued record was sent or dropped (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()

    def _loop(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message is None:
                    return
                self._send(message)
            finally:
                self._queue.task_done()

    def _send(self, message: bytes) -> None:
        for attempt in range(2):
            try:
                if self._sock is None:
                    self._sock = self._connect()
                if self.transport == "udp":
                    self._sock.send(message)
                else:
                    self._sock.sendall(str(len(message)).encode("ascii") + b" " + message)
                self.sent += 1
                return
            except OSError as exc:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                if attempt:
                    self.dropped += 1
                    log.warning("syslog %s: record dropped (%s)", self.url, exc)

    def _connect(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        sock = socket.socket(family, kind)
        sock.settimeout(2.0)
        sock.connect(self.address)
        return sock


class SecurityFeed:
    """Where security records go: the JSON-lines file and, if configured, syslog."""

    def __init__(self, path: str | Path, *, syslog: str | None = None) -> None:
        self.path = Path(path)
        self.sinks: list[Any] = [FileSink(self.path)]
        self.syslog = SyslogSink(syslog) if syslog else None
        if self.syslog is not None:
            self.sinks.append(self.syslog)
        self.emitted = 0

    def emit(self, record: Mapping[str, Any]) -> None:
        """Write one record to every sink; a failing sink never raises into the caller."""
        self.emitted += 1
        for sink in self.sinks:
            try:
                sink.write(record)
            except Exception:  # noqa: BLE001 - the feed must never break serving
                log.exception("security feed: %s failed", type(sink).__name__)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class LedgerFollower:
    """Emits the record of every new ``security``, ``violation`` and ``crisis`` ledger entry.

    ``cursor_path`` keeps the next index to read, so a restart neither repeats
    nor skips entries; without one it starts at ``start_at`` (default: the
    ledger's current size, i.e. only new entries).
    """

    KINDS = ("security", "violation", "crisis")

    def __init__(self, ledger: Any, feed: SecurityFeed, *, cursor_path: Path | None = None,
                 start_at: int | None = None, period_s: float = 0.5) -> None:
        self.ledger = ledger
        self.feed = feed
        self.cursor_path = cursor_path
        self.period_s = period_s
        saved = None
        if cursor_path is not None and cursor_path.exists():
            try:
                saved = int(cursor_path.read_text("utf-8").strip())
            except ValueError:
                saved = None
        self.cursor = saved if saved is not None else (ledger.size if start_at is None else start_at)
        self._lock = threading.Lock()
        self._follower = Periodic(self.poll, period_s, "corridor-events", log,
                                  "security feed: following the ledger failed")

    def poll(self) -> int:
        """Emit records for entries committed since the last poll; return how many."""
        with self._lock:
            size = self.ledger.size
            if size <= self.cursor:
                return 0
            items: list[Mapping[str, Any]] = []
            for kind in self.KINDS:
                after = self.cursor - 1
                while True:
                    page = self.ledger.entries(kind=kind, after=after, limit=500)
                    batch = [i for i in page["data"] if i["index"] < size]
                    items.extend(batch)
                    if not page["has_more"] or len(batch) < len(page["data"]):
                        break
                    after = page["data"][-1]["index"]
            for item in sorted(items, key=lambda i: i["index"]):
                record = record_for_entry(item)
                if record is not None:
                    self.feed.emit(record)
            self.cursor = size
            self._save()
            return len(items)

    def start(self) -> LedgerFollower:
        self._follower.start()
        return self

    def stop(self) -> None:
        self._follower.stop()
        try:
            self.poll()
        except Exception:  # noqa: BLE001 - the ledger may be closed already
            pass

    def _save(self) -> None:
        if self.cursor_path is None:
            return
        temporary = self.cursor_path.with_suffix(".tmp")
        temporary.write_text(str(self.cursor), "utf-8")
        os.replace(temporary, self.cursor_path)


def open_feed(home: Path, *, file: str | Path | None = None, syslog: str | None = None,
              ledger: Any = None, start: bool = True) -> tuple[SecurityFeed, LedgerFollower | None]:
    """The feed of an installation in ``home``, and (with a ledger) its follower, started."""
    path = Path(file) if file is not None else home / "security-events.jsonl"
    if not path.is_absolute():
        path = home / path
    feed = SecurityFeed(path, syslog=syslog)
    follower = None
    if ledger is not None:
        follower = LedgerFollower(ledger, feed, cursor_path=path.with_name(path.stem + ".cursor"))
        if start:
            follower.start()
    return feed, follower


def report_tamper(home: Path, *, check: str, message: str, index: int | None,
                  tree_size: int | None) -> Path | None:
    """Append a ``ledger_tamper`` record to ``home``'s feed (and its syslog, if configured).

    Called by ``corridor audit verify`` in its own process; returns the feed's
    path, or None when it could not be written (verification still fails).
    """
    from serving.config import ConfigError, load_run_config

    try:
        config = load_run_config(None, home)
        feed = SecurityFeed(config.events_path(home), syslog=config.security_events.syslog)
    except (ConfigError, OSError, ValueError):
        return None
    try:
        feed.emit(tamper_record(check=check, message=message, index=index, tree_size=tree_size,
                                ledger=str(Path(home).resolve() / "ledger.db")))
    finally:
        feed.close()
    return feed.path
