"""The registry of run-time crisis declarations (see :mod:`scheduler.crisis` for the states).

The declarer backs a declaration for their own jurisdiction; it turns active
only when an operator of the other jurisdiction approves. The declarer
approving their own declaration is refused; a second operator of the same
jurisdiction may approve, but it stays pending. Every step (``declared``,
``approved``, ``activated``, ``expired``, ``revoked``) is a ``crisis`` entry in
the ledger, written before the step takes effect; then the store, then the
rulebook's view (:meth:`CrisisRegistry.declarations`) and the listeners
(:meth:`CrisisRegistry.subscribe`). An expiry that fell while the installation
was down is logged at start.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol


from policies import Declaration, Policy
from policies.bundle import JURISDICTIONS, Approval, Operator, Scope
from scheduler.crisis.errors import SelfApproval, UnknownDeclaration, WrongState
from scheduler.crisis.peering import InvalidStep, SiteSigner, declaration_of, same_body
from scheduler.crisis.validation import check_declaration
from scheduler.crisis.record import CrisisRecord, iso
from scheduler.crisis.store import read_declarations, write_declarations
from scheduler.ledger import LedgerEntryDraft
from scheduler.periodic import Periodic

log = logging.getLogger(__name__)


class LedgerAppender(Protocol):
    """The one ledger operation the registry needs."""

    def append_many(self, drafts: Sequence[LedgerEntryDraft]) -> list[dict[str, Any]]: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _other(jurisdiction: str) -> str:
    return next(j for j in JURISDICTIONS if j != jurisdiction)


class CrisisRegistry:
    """The operator API's declarations (see the module docstring); thread-safe.

    ``path`` is the store file (None: memory only, for tests). ``clock``
    returns the current UTC time; :meth:`start` runs :meth:`tick` every
    ``tick_s`` so expiry is logged within that time.
    """

    def __init__(self, policy: Policy, ledger: LedgerAppender, path: str | Path | None, *,
                 clock: Callable[[], dt.datetime] = _utc_now, tick_s: float = 1.0,
                 signer: SiteSigner | None = None) -> None:
        if tick_s <= 0:
            raise ValueError(f"tick_s: got {tick_s!r}, want seconds > 0, e.g. 1.0")
        self.policy = policy
        self.ledger = ledger
        self.path = Path(path) if path is not None else None
        self.clock = clock
        self.tick_s = tick_s
        self.signer = signer  # two sites: sign this site's steps, verify the peer's
        self._lock = threading.RLock()
        self._records: dict[str, CrisisRecord] = {}
        self._current: tuple[Declaration, ...] = ()
        self._listeners: list[Callable[[], Any]] = []
        self._ticker = Periodic(self.tick, tick_s, "corridor-crisis", log, "crisis registry: tick failed")
        if self.path is not None and self.path.exists():
            self._records = {r.id: r for r in read_declarations(self.path)}
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
        return sorted(self._records.values(), key=lambda r: r.declaration.valid_from, reverse=True)

    def subscribe(self, listener: Callable[[], Any]) -> None:
        """Call ``listener()`` (in the changing thread) after every change of status."""
        self._listeners.append(listener)

    # -- steps --------------------------------------------------------------

    def declare(self, operator: Operator, *, scope: Mapping[str, Any] | Scope, reason: str,
                valid_for_hours: float) -> CrisisRecord:
        """Declare; it is pending until an operator of the other jurisdiction approves."""
        clean = check_declaration(self.policy, scope, reason, valid_for_hours)
        now = self.clock()
        record = CrisisRecord(declaration=Declaration(
            id="crisis_" + secrets.token_hex(8), declared_by=operator, reason=reason.strip(),
            scope=clean, valid_from=now, valid_until=now + dt.timedelta(hours=float(valid_for_hours))))
        with self._lock:
            record = self._signed(record, "declare", operator, now)
            self._commit(record, [("declared", operator)], now)
        return record

    def approve(self, declaration_id: str, operator: Operator) -> CrisisRecord:
        """Approve as ``operator``; raises :class:`SelfApproval` for the declarer."""
        with self._lock:
            record = self.get(declaration_id)
            declaration = record.declaration
            now = self.clock()
            status = record.status(now)
            if status != "pending":
                raise WrongState(f"declaration {record.id} is {status}; only a pending declaration "
                                 f"can be approved")
            if operator.operator == declaration.declared_by.operator:
                raise SelfApproval(
                    f"{operator.operator} declared {record.id} and cannot approve it: an operator "
                    f"of {_other(declaration.declared_by.jurisdiction)} must approve (two-person rule)")
            if any(a.operator == operator.operator for a in declaration.approvals):
                raise WrongState(f"{operator.operator} has already approved {record.id}")
            approval = Approval(operator=operator.operator, jurisdiction=operator.jurisdiction, at=now)
            updated = self._signed(record.updated(approvals=[*declaration.approvals, approval]),
                                   "approve", operator, now)
            return self._approved(updated, operator, now)

    def revoke(self, declaration_id: str, operator: Operator) -> CrisisRecord:
        """Revoke at once, by an operator of either jurisdiction."""
        with self._lock:
            record = self.get(declaration_id)
            now = self.clock()
            status = record.status(now)
            if status not in ("pending", "active"):
                raise WrongState(f"declaration {record.id} is already {status}")
            updated = record.updated(revoked_at=now).model_copy(
                update={"revoked_by": operator, "ended_logged": True})
            updated = self._signed(updated, "revoke", operator, now)
            self._commit(updated, [("revoked", operator)], now)
            return updated

    # -- the peer site's steps ---------------------------------------------------

    def receive(self, signed: Mapping[str, Any]) -> CrisisRecord:
        """Apply a step signed by the peer site, once its signature verifies; idempotent.

        Raises :class:`~scheduler.crisis.peering.InvalidStep` for a step that does not
        verify, and :class:`WrongState` for one the declaration's state does not allow.
        """
        if self.signer is None:
            raise WrongState("this installation has no peer site; crisis steps are not received")
        step = self.signer.verify(signed)
        with self._lock:
            now = self.clock()
            record = self._records.get(step.declaration_id)
            if record is not None and any(s.get("signature") == signed.get("signature") for s in record.steps):
                return record  # already applied
            operator = Operator(operator=step.operator, jurisdiction=step.site)
            if step.action == "declare":
                if record is not None:
                    raise WrongState(f"declaration {step.declaration_id} exists already")
                record = CrisisRecord(declaration=declaration_of(step), steps=[dict(signed)])
                self._commit(record, [("declared", operator)], now, site=step.site)
                return record
            if record is None:
                raise UnknownDeclaration(f"no crisis declaration {step.declaration_id!r}", param="id")
            if not same_body(record.declaration, step):
                raise InvalidStep(f"the {step.action} step of {record.id} names another declaration body "
                                  f"than the one declared", param="step.declaration_digest")
            record = record.model_copy(update={"steps": [*record.steps, dict(signed)]})
            if step.action == "revoke":
                if record.status(now) not in ("pending", "active"):
                    return record
                updated = record.updated(revoked_at=now).model_copy(
                    update={"revoked_by": operator, "ended_logged": True})
                self._commit(updated, [("revoked", operator)], now, site=step.site)
                return updated
            if record.status(now) != "pending" or step.site == record.declaration.declared_by.jurisdiction:
                self._commit(record, [], now)  # kept for the record; changes nothing
                return record
            approval = Approval(operator=step.operator, jurisdiction=step.site, at=now)
            return self._approved(record.updated(approvals=[*record.declaration.approvals, approval]),
                                  operator, now, site=step.site)

    def unsent_steps(self) -> list[dict[str, Any]]:
        """This site's signed steps the peer has not acknowledged, oldest first."""
        with self._lock:
            return [step for record in self._records.values() for step in record.unsent]

    def mark_sent(self, signature: str) -> None:
        """The peer acknowledged the step with this signature."""
        with self._lock:
            for record in self._records.values():
                if any(step["signature"] == signature for step in record.unsent):
                    kept = [s for s in record.unsent if s["signature"] != signature]
                    self._store(record.model_copy(update={"unsent": kept}))

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

    def _signed(self, record: CrisisRecord, action: str, operator: Operator,
                now: dt.datetime) -> CrisisRecord:
        """With a peer site: the record with this site's signed step, queued for the peer."""
        if self.signer is None:
            return record
        signed = self.signer.sign(record.declaration, action, operator, now)
        return record.model_copy(update={"steps": [*record.steps, signed],
                                         "unsent": [*record.unsent, signed]})

    def _approved(self, updated: CrisisRecord, operator: Operator, now: dt.datetime,
                  site: str | None = None) -> CrisisRecord:
        steps: list[tuple[str, Operator | None]] = [("approved", operator)]
        if updated.status(now) == "active":
            steps.append(("activated", None))
            updated = updated.model_copy(update={"activated_logged": True})
        self._commit(updated, steps, now, site=site)
        return updated

    def _store(self, record: CrisisRecord) -> None:
        records = {**self._records, record.id: record}
        if self.path is not None:
            write_declarations(self.path, records.values())
        self._records = records

    def _commit(self, record: CrisisRecord, steps: Sequence[tuple[str, Operator | None]],
                now: dt.datetime, site: str | None = None) -> None:
        """Ledger first (the step is on record before it takes effect), then the store, then
        the rulebook's view and the listeners."""
        declaration = record.declaration
        status = record.status(now)
        sides = sorted(declaration.sides(now))
        signed = record.steps[-1] if record.steps and steps and steps[0][1] is not None else None
        self.ledger.append_many([
            LedgerEntryDraft(kind="crisis", declaration=record.id, policy_digest=self.policy.digest,
                             detail={"step": step, "status": status,
                                     "operator": operator.model_dump() if operator else None,
                                     "reason": declaration.reason, "scope": declaration.scope.model_dump(),
                                     "valid_from": iso(declaration.valid_from),
                                     "valid_until": iso(declaration.valid_until), "backed_by": sides,
                                     "declaration": declaration.to_json(),
                                     **({"site": site} if site else {}),
                                     **({"signed_step": signed} if signed and operator else {})})
            for step, operator in steps])
        self._store(record)
        self._rebuild()
        log.warning("crisis declaration %s: %s (%s)", record.id, ", ".join(s for s, _ in steps), status)
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a listener must not undo a logged step
                log.exception("crisis registry: listener failed")

    def _rebuild(self) -> None:
        self._current = tuple(r.declaration for r in self._records.values() if not r.ended_logged)
