"""Crisis declarations of the operator API: two persons across the border, time-boxed, durable.

A declaration names its scope (tenants, markings, models, directions), a
reason and a window of at most the bundle's ``settings.crisis_max_hours``,
counted from the moment it is declared. Its status is what
:meth:`policies.Declaration.status` computes::

    declare ─► pending ─(approved by an operator of the other jurisdiction)─► active
                 │   └─ window ends ─► expired ◄─ window ends ─┤
                 └─ revoke ─► revoked ◄─ revoke (either side, at once) ─┘

The declarer backs it for their own jurisdiction; it turns active only when
an operator of the other jurisdiction approves. The declarer approving their
own declaration is refused; a second operator of the same jurisdiction may
approve, but it stays pending. Every step (``declared``, ``approved``,
``activated``, ``expired``, ``revoked``) is a ``crisis`` entry in the ledger,
written before the step takes effect. State lives in ``crisis.json`` in
``$CORRIDOR_HOME`` (written atomically), so declarations survive restarts;
an expiry that fell while the installation was down is logged at start.

The rulebook and the scheduler read :meth:`CrisisRegistry.declarations` (the
declarations not yet ended, as :class:`policies.Declaration`); listeners
(:meth:`~CrisisRegistry.subscribe`) hear of every change, e.g.
:class:`HealOnChange` runs a healing pass at once so crossed replicas are
placed, or drained and removed, within seconds.

Errors, each one HTTP status in the operator API::

    CrisisError
    ├── InvalidDeclaration   400  bad scope, reason or window (``param`` names it)
    ├── SelfApproval         403  the declarer approving their own declaration
    ├── UnknownDeclaration   404  no declaration with that id
    ├── WrongState           409  approving or revoking what no longer allows it
    └── CrisisStoreError          crisis.json cannot be read (the installation does not start)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from policies import Declaration, Policy, PolicyError, parse_marking
from policies.bundle import JURISDICTIONS, Approval, Operator, Scope
from scheduler.ledger import LedgerEntryDraft
from scheduler.periodic import Periodic

log = logging.getLogger(__name__)

STORE_FILENAME = "crisis.json"
DIRECTIONS = ("FR->DE", "DE->FR")


class CrisisError(Exception):
    """Base class of the crisis registry's errors."""

    code = "crisis_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


class InvalidDeclaration(CrisisError):
    """A scope, reason or window the registry cannot accept; ``param`` names the field."""

    code = "invalid_declaration"


class SelfApproval(CrisisError):
    """The declarer tried to approve their own declaration (two-person rule)."""

    code = "self_approval"


class UnknownDeclaration(CrisisError):
    """No declaration has this id."""

    code = "declaration_not_found"


class WrongState(CrisisError):
    """The declaration's status (or an earlier approval) does not allow this step."""

    code = "invalid_state"


class CrisisStoreError(CrisisError):
    """The store file is unreadable or invalid; fix or move it, the ledger keeps the history."""

    code = "crisis_store_error"


class CrisisRecord(BaseModel):
    """A declaration as stored: the rulebook's fields plus who revoked it and what was logged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    declared_by: Operator
    reason: str
    scope: Scope
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    approvals: list[Approval] = Field(default_factory=list)
    revoked_at: AwareDatetime | None = None
    revoked_by: Operator | None = None
    activated_logged: bool = False
    ended_logged: bool = False

    def declaration(self) -> Declaration:
        """The rulebook's view of this record."""
        return Declaration(id=self.id, declared_by=self.declared_by, reason=self.reason,
                           scope=self.scope, valid_from=self.valid_from,
                           valid_until=self.valid_until, approvals=self.approvals,
                           revoked_at=self.revoked_at)

    def status(self, at: dt.datetime) -> str:
        return self.declaration().status(at)

    def to_json(self, at: dt.datetime) -> dict[str, Any]:
        """The wire shape of the operator API."""
        declaration = self.declaration()
        backed = declaration.sides(at)
        return {
            "id": self.id, "object": "crisis.declaration", "status": declaration.status(at),
            "scope": self.scope.model_dump(), "reason": self.reason,
            "declared_by": self.declared_by.model_dump(),
            "approvals": [a.model_dump(mode="json") for a in self.approvals],
            "backed_by": [j for j in JURISDICTIONS if j in backed],
            "awaiting": [j for j in JURISDICTIONS if j not in backed],
            "valid_from": _iso(self.valid_from), "valid_until": _iso(self.valid_until),
            "valid_for_hours": round((self.valid_until - self.valid_from).total_seconds() / 3600, 6),
            "revoked_at": _iso(self.revoked_at) if self.revoked_at else None,
            "revoked_by": self.revoked_by.model_dump() if self.revoked_by else None,
        }


_RECORDS = TypeAdapter(list[CrisisRecord])


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CrisisRegistry:
    """The operator API's declarations (see the module docstring); thread-safe.

    ``ledger`` needs ``append_many``; ``path`` is the store file (None: memory
    only, for tests). ``clock`` returns the current UTC time.
    """

    def __init__(self, policy: Policy, ledger: Any, path: str | Path | None, *,
                 clock: Callable[[], dt.datetime] = _utc_now, tick_s: float = 1.0) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s: got {tick_s!r}, want seconds > 0, e.g. 1.0")
        self.policy = policy
        self.ledger = ledger
        self.path = Path(path) if path is not None else None
        self.clock = clock
        self.tick_s = tick_s
        self._lock = threading.RLock()
        self._records: dict[str, CrisisRecord] = {}
        self._current: tuple[Declaration, ...] = ()
        self._listeners: list[Callable[[], Any]] = []
        self._ticker = Periodic(self.tick, tick_s, "corridor-crisis", log, "crisis registry: tick failed")
        if self.path is not None and self.path.exists():
            self._records = {r.id: r for r in self._read()}
        self._rebuild()

    # -- reading ------------------------------------------------------------

    def declarations(self) -> tuple[Declaration, ...]:
        """Declarations not yet ended, for the rulebook (cheap: rebuilt only on change)."""
        return self._current

    def get(self, declaration_id: str) -> CrisisRecord:
        record = self._records.get(declaration_id)
        if record is None:
            raise UnknownDeclaration(f"no crisis declaration {declaration_id!r}", param="id")
        return record

    def list(self) -> list[CrisisRecord]:
        """Every declaration, newest first."""
        return sorted(self._records.values(), key=lambda r: r.valid_from, reverse=True)

    def subscribe(self, listener: Callable[[], Any]) -> None:
        """Call ``listener()`` (in the changing thread) after every change of status."""
        self._listeners.append(listener)

    # -- steps --------------------------------------------------------------

    def declare(self, operator: Operator, *, scope: Mapping[str, Any] | Scope, reason: str,
                valid_for_hours: float) -> CrisisRecord:
        """Declare; it is pending until an operator of the other jurisdiction approves."""
        clean = self._check(scope, reason, valid_for_hours)
        now = self.clock()
        record = CrisisRecord(
            id="crisis_" + secrets.token_hex(8), declared_by=operator, reason=reason.strip(),
            scope=clean, valid_from=now,
            valid_until=now + dt.timedelta(hours=float(valid_for_hours)))
        with self._lock:
            self._commit(record, [("declared", operator)], now)
        return record

    def approve(self, declaration_id: str, operator: Operator) -> CrisisRecord:
        """Approve as ``operator``; raises :class:`SelfApproval` for the declarer."""
        with self._lock:
            record = self.get(declaration_id)
            now = self.clock()
            status = record.status(now)
            if status != "pending":
                raise WrongState(f"declaration {record.id} is {status}; only a pending declaration "
                                 f"can be approved")
            if operator.operator == record.declared_by.operator:
                raise SelfApproval(
                    f"{operator.operator} declared {record.id} and cannot approve it: an operator "
                    f"of {_other(record.declared_by.jurisdiction)} must approve (two-person rule)")
            if any(a.operator == operator.operator for a in record.approvals):
                raise WrongState(f"{operator.operator} has already approved {record.id}")
            approval = Approval(operator=operator.operator, jurisdiction=operator.jurisdiction, at=now)
            updated = record.model_copy(update={"approvals": [*record.approvals, approval]})
            steps: list[tuple[str, Operator | None]] = [("approved", operator)]
            if updated.status(now) == "active":
                steps.append(("activated", None))
                updated = updated.model_copy(update={"activated_logged": True})
            self._commit(updated, steps, now)
            return updated

    def revoke(self, declaration_id: str, operator: Operator) -> CrisisRecord:
        """Revoke at once, by an operator of either jurisdiction."""
        with self._lock:
            record = self.get(declaration_id)
            now = self.clock()
            status = record.status(now)
            if status not in ("pending", "active"):
                raise WrongState(f"declaration {record.id} is already {status}")
            updated = record.model_copy(update={"revoked_at": now, "revoked_by": operator,
                                                "ended_logged": True})
            self._commit(updated, [("revoked", operator)], now)
            return updated

    def tick(self) -> int:
        """Log the steps that time took (expiry); return how many declarations changed."""
        with self._lock:
            now = self.clock()
            changed = 0
            for record in list(self._records.values()):
                if record.ended_logged:
                    continue
                status = record.status(now)
                if status == "active" and not record.activated_logged:
                    self._commit(record.model_copy(update={"activated_logged": True}),
                                 [("activated", None)], now)
                    changed += 1
                elif status in ("expired", "revoked"):
                    self._commit(record.model_copy(update={"ended_logged": True}),
                                 [(status, None)], now)
                    changed += 1
            return changed

    # -- ticking ------------------------------------------------------------

    def start(self) -> CrisisRegistry:
        """Run :meth:`tick` every ``tick_s`` in a daemon thread (expiry is then logged within it)."""
        self.tick()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()

    # -- internals ----------------------------------------------------------

    def _check(self, scope: Mapping[str, Any] | Scope, reason: str, hours: Any) -> Scope:
        """The scope with markings normalised; :class:`InvalidDeclaration` names what is wrong."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidDeclaration("reason: give the reason for the declaration, e.g. "
                                     "'fr-paris down after a cyber attack'", param="reason")
        maximum = self.policy.bundle.settings.crisis_max_hours
        if (isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours)
                or not 0 < hours <= maximum):
            raise InvalidDeclaration(f"valid_for_hours: got {hours!r}, want a number of hours > 0 "
                                     f"and at most {maximum:g} (settings.crisis_max_hours)",
                                     param="valid_for_hours")
        raw = scope.model_dump() if isinstance(scope, Scope) else dict(scope)
        for key in raw:
            if key not in ("tenants", "markings", "models", "directions"):
                raise InvalidDeclaration(f"scope.{key}: unknown field; a scope has tenants, markings, "
                                         f"models and directions", param=f"scope.{key}")
        lists: dict[str, list[str]] = {}
        for key in ("tenants", "markings", "models", "directions"):
            values = raw.get(key)
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise InvalidDeclaration(f"scope.{key}: got {values!r}, want a non-empty list of "
                                         f"strings", param=f"scope.{key}")
            lists[key] = values
        for i, tenant in enumerate(lists["tenants"]):
            if tenant not in self.policy.tenants:
                raise InvalidDeclaration(f"scope.tenants[{i}]: unknown tenant {tenant!r}; known: "
                                         f"{', '.join(sorted(self.policy.tenants))}",
                                         param=f"scope.tenants[{i}]")
        for i, model in enumerate(lists["models"]):
            if model not in self.policy.models:
                raise InvalidDeclaration(f"scope.models[{i}]: unknown model {model!r}; known: "
                                         f"{', '.join(sorted(self.policy.models))}",
                                         param=f"scope.models[{i}]")
        markings = []
        for i, value in enumerate(lists["markings"]):
            try:
                marking = parse_marking(value)
            except PolicyError as exc:
                raise InvalidDeclaration(f"scope.markings[{i}]: {exc}",
                                         param=f"scope.markings[{i}]") from exc
            if not marking.placeable:
                raise InvalidDeclaration(f"scope.markings[{i}]: {marking.id} is above restricted and "
                                         f"never runs on this platform, in a crisis or not",
                                         param=f"scope.markings[{i}]")
            markings.append(marking.id)
        for i, direction in enumerate(lists["directions"]):
            if direction not in DIRECTIONS:
                raise InvalidDeclaration(f"scope.directions[{i}]: got {direction!r}, want "
                                         f"{' or '.join(DIRECTIONS)}", param=f"scope.directions[{i}]")
        return Scope(tenants=list(dict.fromkeys(lists["tenants"])), markings=list(dict.fromkeys(markings)),
                     models=list(dict.fromkeys(lists["models"])),
                     directions=list(dict.fromkeys(lists["directions"])))

    def _commit(self, record: CrisisRecord, steps: Sequence[tuple[str, Operator | None]],
                now: dt.datetime) -> None:
        """Ledger first (the step is on record before it takes effect), then the store, then
        the rulebook's view and the listeners."""
        status = record.status(now)
        sides = sorted(record.declaration().sides(now))
        self.ledger.append_many([
            LedgerEntryDraft(kind="crisis", declaration=record.id, policy_digest=self.policy.digest,
                             detail={"step": step, "status": status,
                                     "operator": operator.model_dump() if operator else None,
                                     "reason": record.reason, "scope": record.scope.model_dump(),
                                     "valid_from": _iso(record.valid_from),
                                     "valid_until": _iso(record.valid_until), "backed_by": sides})
            for step, operator in steps])
        records = {**self._records, record.id: record}
        self._write(records)
        self._records = records
        self._rebuild()
        log.warning("crisis declaration %s: %s (%s)", record.id, ", ".join(s for s, _ in steps), status)
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener must not undo a logged step
                log.exception("crisis registry: listener failed")

    def _rebuild(self) -> None:
        self._current = tuple(r.declaration() for r in self._records.values() if not r.ended_logged)

    def _read(self) -> list[CrisisRecord]:
        assert self.path is not None
        return read_declarations(self.path)

    def _write(self, records: Mapping[str, CrisisRecord]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"declarations": [r.model_dump(mode="json") for r in records.values()]},
                          indent=1, ensure_ascii=False)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


def read_declarations(path: str | Path) -> list[CrisisRecord]:
    """The records of a store file (``corridor status`` reads them without the registry)."""
    try:
        document = json.loads(Path(path).read_text("utf-8"))
        return _RECORDS.validate_python(document.get("declarations", []) if isinstance(document, dict)
                                        else None)
    except (OSError, ValueError, ValidationError) as exc:
        raise CrisisStoreError(f"{path}: cannot read crisis declarations ({exc}); the ledger's "
                               f"crisis entries hold their history") from exc


def _other(jurisdiction: str) -> str:
    return next(j for j in JURISDICTIONS if j != jurisdiction)


class HealOnChange:
    """A registry listener that runs a scheduler healing pass at once, in its own thread.

    Changes arriving while a pass runs are folded into one more pass, so a
    burst of steps costs at most two passes. Pass ``deployments.heal``.
    """

    def __init__(self, heal: Callable[[], Any]) -> None:
        self.heal = heal
        self.passes = 0
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="corridor-crisis-heal", daemon=True)
        self._thread.start()

    def __call__(self) -> None:
        self._wanted.set()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            try:
                self.heal()
            except Exception:  # noqa: BLE001 - the periodic pass will try again
                log.exception("healing after a crisis declaration change failed")
            self.passes += 1
