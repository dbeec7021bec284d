"""Signed crisis declaration steps: exact bytes, forged and altered steps refused, the two-site rule."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Declaration
from scheduler.ledger.signing import PublicKey
from scheduler.crisis.declaration_rule import declaration_state, is_active
from scheduler.crisis.steps import (
    STEP_TYPE,
    CrisisStep,
    DeclarationBody,
    SignedStep,
    StepError,
    StepFormatError,
    StepSignatureError,
    sign_step,
    verify_step,
)

FR_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"corridor FR ledger").digest())
DE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"corridor DE ledger").digest())
MALLORY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"mallory").digest())
SITE_KEYS = {"FR": PublicKey.of(FR_KEY.public_key()).model_dump(), "DE": DE_KEY.public_key()}
SCOPE = {"tenants": ["de-federal-it"], "markings": ["VS-NfD"], "models": ["corridor-embed"], "directions": ["DE->FR"]}
BODY = DeclarationBody("crisis-1", SCOPE, "Flood: DE embedding pool down", "2026-03-01T10:00:00.000000Z",
                       "2026-03-01T22:00:00.000000Z")
OTHER_BODY = DeclarationBody("crisis-1", {**SCOPE, "tenants": ["de-federal-it", "de-bund"]}, BODY.reason,
                             BODY.valid_from, BODY.valid_until)
KEYS = {"FR": FR_KEY, "DE": DE_KEY}


def step(action: str, site: str, minute: int, *, body: DeclarationBody = BODY, key=None, operator=None) -> dict:
    made = CrisisStep.create(body, action=action, site=site, operator=operator or f"{site.lower()}-duty-officer",
                             timestamp=f"2026-03-01T10:{minute:02d}:00.000000Z")
    return sign_step(made, key or KEYS[site]).to_json()


def canonical(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- the exact bytes ----------------------------------------------------------------------------


def test_signed_step_has_the_documented_fields_and_signs_their_canonical_json() -> None:
    wire = step("declare", "DE", 1)
    assert set(wire) == {"type", "declaration_id", "action", "site", "operator", "timestamp", "declaration_digest",
                         "scope", "reason", "valid_from", "valid_until", "key_id", "signature"}
    assert wire["type"] == STEP_TYPE == "corridor.eu/crisis-step/v1"
    raw = DE_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert wire["key_id"] == hashlib.sha256(raw).hexdigest()
    unsigned = {k: v for k, v in wire.items() if k != "signature"}
    DE_KEY.public_key().verify(base64.b64decode(wire["signature"]), canonical(unsigned))


def test_declaration_digest_is_sha256_of_the_bodys_canonical_json() -> None:
    body = {"id": "crisis-1", "scope": SCOPE, "reason": BODY.reason, "valid_from": BODY.valid_from,
            "valid_until": BODY.valid_until}
    assert BODY.digest() == hashlib.sha256(canonical(body)).hexdigest() == step("approve", "FR", 2)["declaration_digest"]


def test_step_round_trips_through_its_json_text() -> None:
    wire = step("approve", "FR", 3)
    assert verify_step(json.dumps(wire), SITE_KEYS) == verify_step(wire, SITE_KEYS)
    assert SignedStep.from_json(json.dumps(wire).encode()).to_json() == wire


def test_body_of_a_rulebook_declaration() -> None:
    declaration = Declaration(
        id="crisis-1", declared_by={"operator": "de-duty-officer", "jurisdiction": "DE"}, reason=BODY.reason,
        scope=SCOPE, valid_from=dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC),
        valid_until=dt.datetime(2026, 3, 1, 22, tzinfo=dt.UTC),
    )
    assert DeclarationBody.of(declaration) == BODY


# --- forged and altered steps -------------------------------------------------------------------


def _resign_digest(wire: dict, **fields) -> dict:
    """Alter body fields and fix the digest, as a careful forger would."""
    changed = {**wire, **fields}
    body = DeclarationBody(changed["declaration_id"], changed["scope"], changed["reason"], changed["valid_from"],
                           changed["valid_until"])
    return {**changed, "declaration_digest": body.digest()}


def _signed_by(key: Ed25519PrivateKey, *, claim: str | None = None) -> dict:
    wire = step("approve", "FR", 4, key=key)
    return {**wire, "key_id": claim} if claim else wire


FORGERIES = [
    ("a step signed by a key that is no site's", lambda w: _signed_by(MALLORY), StepSignatureError),
    ("a step signed by another key claiming the site's key id",
     lambda w: _signed_by(MALLORY, claim=w["key_id"]), StepSignatureError),
    ("a DE-signed step claiming to be FR's", lambda w: {**w, "site": "DE"}, StepSignatureError),
    ("an approval turned into a revocation", lambda w: {**w, "action": "revoke"}, StepSignatureError),
    ("another operator's name", lambda w: {**w, "operator": "someone-else"}, StepSignatureError),
    ("a moved timestamp", lambda w: {**w, "timestamp": "2026-03-01T09:00:00.000000Z"}, StepSignatureError),
    ("a widened scope with its digest fixed",
     lambda w: _resign_digest(w, scope={**SCOPE, "tenants": ["de-federal-it", "de-bund"]}), StepSignatureError),
    ("a longer window with its digest fixed",
     lambda w: _resign_digest(w, valid_until="2026-03-09T22:00:00.000000Z"), StepSignatureError),
    ("a widened scope with the old digest", lambda w: {**w, "scope": {**SCOPE, "markings": ["VS-NfD", "DR"]}},
     StepFormatError),
    ("another declaration's digest", lambda w: {**w, "declaration_digest": OTHER_BODY.digest()}, StepFormatError),
    ("a signature of zeros", lambda w: {**w, "signature": base64.b64encode(bytes(64)).decode()}, StepSignatureError),
    ("a signature that is not base64", lambda w: {**w, "signature": "not base64!"}, StepSignatureError),
    ("a step with an extra field", lambda w: {**w, "approved": True}, StepFormatError),
    ("a step without its signature", lambda w: {k: v for k, v in w.items() if k != "signature"}, StepFormatError),
    ("a step of another type", lambda w: {**w, "type": "corridor.eu/tree-head/v1"}, StepFormatError),
    ("a step with an unknown action", lambda w: {**w, "action": "activate"}, StepFormatError),
    ("a step with a naive timestamp", lambda w: {**w, "timestamp": "2026-03-01T10:00:00"}, StepFormatError),
]


@pytest.mark.parametrize(("alter", "error"), [(a, e) for _, a, e in FORGERIES], ids=[n for n, _, _ in FORGERIES])
def test_forged_or_altered_step_is_refused(alter, error: type[StepError]) -> None:
    wire = step("approve", "FR", 4)
    verify_step(wire, SITE_KEYS)
    with pytest.raises(error):
        verify_step(alter(wire), SITE_KEYS)


def test_step_of_a_site_without_a_configured_key_is_refused() -> None:
    with pytest.raises(StepSignatureError, match="no ledger key for site DE"):
        verify_step(step("declare", "DE", 1), {"FR": FR_KEY.public_key()})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scope": {**SCOPE, "directions": ["DE->EU"]}}, "scope.directions"),
        ({"scope": {**SCOPE, "tenants": []}}, "scope.tenants"),
        ({"scope": {**SCOPE, "residency": ["FR"]}}, "scope.residency"),
        ({"valid_until": BODY.valid_from}, "want after valid_from"),
        ({"reason": " "}, "reason"),
    ],
    ids=["an unknown direction", "no tenant", "an unknown scope field", "an empty window", "a blank reason"],
)
def test_declaration_body_that_does_not_fit_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(StepFormatError, match=message):
        DeclarationBody(**{**BODY.to_json(), **fields})


# --- the rule -----------------------------------------------------------------------------------

RULES = [
    ("declared by DE and approved by FR is active", [("declare", "DE", 1), ("approve", "FR", 2)], "active"),
    ("declared by FR and approved by DE is active", [("declare", "FR", 1), ("approve", "DE", 2)], "active"),
    ("declared and not yet approved is pending", [("declare", "DE", 1)], "pending"),
    ("approved only by the declaring site is pending", [("declare", "DE", 1), ("approve", "DE", 2)], "pending"),
    ("declared by both sites and approved by none is pending", [("declare", "DE", 1), ("declare", "FR", 2)], "pending"),
    ("revoked by the approving site is revoked",
     [("declare", "DE", 1), ("approve", "FR", 2), ("revoke", "FR", 3)], "revoked"),
    ("revoked by the declaring site is revoked",
     [("declare", "DE", 1), ("approve", "FR", 2), ("revoke", "DE", 3)], "revoked"),
    ("revoked before approval stays revoked", [("declare", "DE", 1), ("revoke", "DE", 2), ("approve", "FR", 3)],
     "revoked"),
    ("an approval with no declaration is unknown", [("approve", "FR", 2)], "unknown"),
    ("no step at all is unknown", [], "unknown"),
]


@pytest.mark.parametrize(("steps", "status"), [(s, st_) for _, s, st_ in RULES], ids=[n for n, _, _ in RULES])
def test_declaration_status(steps: list, status: str) -> None:
    state = declaration_state("crisis-1", [step(*s) for s in steps], SITE_KEYS)
    assert state.status == status
    assert state.active == (status == "active")


def test_approval_of_another_body_does_not_activate_and_is_reported() -> None:
    state = declaration_state(
        "crisis-1", [step("declare", "DE", 1), step("approve", "FR", 2, body=OTHER_BODY)], SITE_KEYS
    )
    assert state.status == "pending"
    assert [reason for _, reason in state.refused] == [
        f"approve step by FR names another declaration body ({OTHER_BODY.digest()}, declared {BODY.digest()})"
    ]


def test_forged_approval_does_not_activate_and_is_reported() -> None:
    forged = step("approve", "FR", 2, key=MALLORY)
    state = declaration_state("crisis-1", [step("declare", "DE", 1), forged], SITE_KEYS)
    assert state.status == "pending" and not is_active("crisis-1", [step("declare", "DE", 1), forged], SITE_KEYS)
    assert state.refused[0][0] == forged and "key_id" in state.refused[0][1]


def test_forged_revocation_does_not_revoke() -> None:
    steps = [step("declare", "DE", 1), step("approve", "FR", 2), step("revoke", "FR", 3, key=MALLORY)]
    state = declaration_state("crisis-1", steps, SITE_KEYS)
    assert state.status == "active" and state.revoked_by == () and len(state.refused) == 1


def test_altered_approval_does_not_activate() -> None:
    approval = step("approve", "FR", 2)
    approval = {**approval, "operator": "fr-someone-else"}
    assert not is_active("crisis-1", [step("declare", "DE", 1), approval], SITE_KEYS)


def test_steps_of_another_declaration_are_skipped() -> None:
    other = DeclarationBody("crisis-2", SCOPE, BODY.reason, BODY.valid_from, BODY.valid_until)
    steps = [step("declare", "DE", 1), step("approve", "FR", 2, body=other), step("revoke", "DE", 3, body=other)]
    state = declaration_state("crisis-1", steps, SITE_KEYS)
    assert state.status == "pending" and state.refused == ()


def test_state_names_who_declared_approved_and_revoked() -> None:
    steps = [step("declare", "DE", 1), step("approve", "FR", 2), step("revoke", "FR", 3)]
    state = declaration_state("crisis-1", steps, SITE_KEYS)
    assert (state.declared_by, state.approved_by, state.revoked_by, state.body) == ("DE", "FR", ("FR",), BODY)


@pytest.mark.parametrize(
    ("at", "status"),
    [
        ("2026-03-01T10:01:30.000000Z", "pending"),  # declared, not yet approved
        ("2026-03-01T10:02:00.000000Z", "active"),  # the approval's own instant
        ("2026-03-01T10:04:59.000000Z", "active"),
        ("2026-03-01T10:05:00.000000Z", "revoked"),
        ("2026-03-01T09:00:00.000000Z", "unknown"),  # before anything
    ],
)
def test_status_at_a_moment_counts_only_the_steps_made_by_then(at: str, status: str) -> None:
    steps = [step("declare", "DE", 1), step("approve", "FR", 2), step("revoke", "FR", 5)]
    assert declaration_state("crisis-1", steps, SITE_KEYS, at=at).status == status


def test_window_applies_at_a_moment() -> None:
    steps = [step("declare", "DE", 1), step("approve", "FR", 2)]
    assert declaration_state("crisis-1", steps, SITE_KEYS, at=dt.datetime(2026, 3, 1, 21, 59, tzinfo=dt.UTC)).active
    assert declaration_state("crisis-1", steps, SITE_KEYS, at="2026-03-01T22:00:00.000000Z").status == "expired"
    early = DeclarationBody("crisis-1", SCOPE, BODY.reason, "2026-03-01T11:00:00.000000Z", BODY.valid_until)
    steps = [step("declare", "DE", 1, body=early), step("approve", "FR", 2, body=early)]
    assert declaration_state("crisis-1", steps, SITE_KEYS, at="2026-03-01T10:30:00.000000Z").status == "pending"


@settings(max_examples=80, deadline=None)
@given(
    chosen=st.lists(
        st.tuples(st.sampled_from(["declare", "approve", "revoke"]), st.sampled_from(["FR", "DE"]),
                  st.booleans(), st.booleans()),
        max_size=6,
    ),
    order=st.randoms(use_true_random=False),
)
def test_active_exactly_when_one_site_declared_the_other_approved_and_nobody_revoked(chosen, order) -> None:
    """Each drawn step: (action, site, genuine signature?, same body?); any order of arrival."""
    steps, expected_declare = [], None
    for minute, (action, site, genuine, same) in enumerate(chosen, start=1):
        steps.append(step(action, site, minute, body=BODY if same else OTHER_BODY,
                          key=KEYS[site] if genuine else MALLORY))
    good = [(a, s, m) for m, (a, s, g, same) in enumerate(chosen, start=1) if g]
    declares = [(m, s) for a, s, m in good if a == "declare"]
    if declares:
        first_minute, declarer = min(declares)
        expected_declare = (declarer, chosen[first_minute - 1][3])
    revoked = any(a == "revoke" for a, _, _ in good)
    approved = expected_declare is not None and any(
        a == "approve" and s != expected_declare[0] and chosen[m - 1][3] == expected_declare[1] for a, s, m in good
    )
    order.shuffle(steps)
    assert is_active("crisis-1", steps, SITE_KEYS) == (approved and not revoked)
