"""Witnessing the peer's ledger: accepted growth, forged heads, forks, rewritten logs, the cosignatures' bytes."""

from __future__ import annotations

import base64
import doctest
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.canonical import canonical_json
from scheduler.ledger import Ledger, LedgerEntryDraft, LedgerReader, merkle
from scheduler.ledger import checkpoint as c2sp
from scheduler.ledger import witness as witness_module
from scheduler.ledger.exceptions import (
    FormatError,
    PeerForkError,
    PeerInconsistentError,
    PeerSignatureError,
    SignatureError,
    VerificationError,
    WitnessError,
)
from scheduler.ledger.signing import PublicKey, sign_tree_head
from scheduler.ledger.note import Note
from scheduler.ledger.witness import WitnessState, cosigned_bytes, witness
from scheduler.ledger.witness_audit import verify_against_witnessed, verify_witness_item

FR_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"corridor FR ledger").digest())
DE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"corridor DE ledger").digest())
MALLORY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"mallory").digest())
NOW = 1_700_000_000  # 2023-11-14T22:13:20Z


def stamp(i: int) -> str:
    return f"2026-01-02T03:04:{i % 60:02d}.{i:06d}Z"


def leaves(n: int, *, changed: int | None = None) -> list[bytes]:
    """Leaf hashes of n entries; ``changed`` rewrites the entry at that index."""
    out = []
    for i in range(n):
        entry = {"index": i, "kind": "placement", "tenant": "de-bund", "allowed": True}
        if i == changed:
            entry["allowed"] = False
        out.append(merkle.leaf_hash(canonical_json(entry)))
    return out


def head(tree: list[bytes], size: int, *, key: Ed25519PrivateKey = DE_KEY, at: int = 0) -> dict:
    return sign_tree_head(key, size, merkle.root_from_leaf_hashes(tree[:size]), stamp(at)).model_dump()


def proof(tree: list[bytes], first: int, second: int) -> list[str]:
    return [h.hex() for h in merkle.consistency_proof(first, tree[:second])] if first else []


def de_checkpoint(tree_head: dict, key: Ed25519PrivateKey = DE_KEY) -> str:
    return c2sp.sign_checkpoint(c2sp.Checkpoint.of_tree_head("DE", tree_head), key)


def run(tree_head: dict, *, last: WitnessState | None, consistency_proof=None, checkpoint: str | None = None):
    return witness(
        site="FR", signing_key=FR_KEY, peer_site="DE", peer_key=PublicKey.of(DE_KEY.public_key()).model_dump(),
        last=last, tree_head=tree_head, consistency_proof=consistency_proof, checkpoint=checkpoint, now=NOW,
    )


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_module_examples() -> None:
    assert doctest.testmod(witness_module).failed == 0


# --- accepted -----------------------------------------------------------------------------------


def test_first_contact_is_cosigned_and_the_json_cosignature_has_the_documented_bytes() -> None:
    tree = leaves(10)
    served = head(tree, 10)
    result = run(served, last=None, checkpoint=de_checkpoint(served))
    item = result.item()
    assert set(item) == {"site", "tree_head", "cosignature", "checkpoint"}
    assert item["site"] == "DE" and item["tree_head"] == served
    cosignature = item["cosignature"]
    assert cosignature["key_id"] == hashlib.sha256(raw(FR_KEY)).hexdigest()
    assert cosignature["timestamp"] == "2023-11-14T22:13:20.000000Z"
    signed = json.dumps(
        {"site": "DE", "tree_size": 10, "root_hash": served["root_hash"], "timestamp": served["timestamp"]},
        sort_keys=True, separators=(",", ":"),
    ).encode()
    FR_KEY.public_key().verify(base64.b64decode(cosignature["signature"]), signed)
    assert result.state == WitnessState(site="DE", tree_size=10, root_hash=served["root_hash"], timestamp=stamp(0))


def test_cosigned_checkpoint_carries_the_peers_signature_and_this_sites_cosignature_v1() -> None:
    tree = leaves(10)
    served = head(tree, 10)
    note = run(served, last=None, checkpoint=de_checkpoint(served)).checkpoint
    text, _, lines = note.partition("\n\n")
    root = base64.b64encode(bytes.fromhex(served["root_hash"])).decode()
    assert text == f"corridor.eu/DE/ledger\n10\n{root}"
    names = [line.split(" ")[1] for line in lines.splitlines()]
    assert names == ["corridor.eu/DE/ledger", "corridor.eu/FR/witness"]
    assert c2sp.verify_checkpoint(note, DE_KEY.public_key(), site="DE").tree_size == 10
    assert c2sp.verify_cosignature(note, FR_KEY.public_key(), site="FR") == NOW
    blob = base64.b64decode(lines.splitlines()[1].split(" ")[2])
    FR_KEY.public_key().verify(blob[12:], b"cosignature/v1\ntime %d\n" % NOW + (text + "\n").encode())


def test_without_the_peers_checkpoint_the_cosigned_checkpoint_is_built_from_the_head() -> None:
    served = head(leaves(3), 3)
    note = run(served, last=None).checkpoint
    assert Note.parse(note).text == c2sp.Checkpoint.of_tree_head("DE", served).body().decode()
    assert c2sp.verify_cosignature(note, FR_KEY.public_key(), site="FR") == NOW


def test_growth_with_a_valid_consistency_proof_is_cosigned_and_moves_the_state() -> None:
    tree = leaves(37)
    first = run(head(tree, 10), last=None)
    second = run(head(tree, 37, at=1), last=first.state, consistency_proof=proof(tree, 10, 37))
    assert (second.state.tree_size, second.state.timestamp) == (37, stamp(1))
    third = run(head(tree, 37, at=1), last=second.state, consistency_proof=[])
    assert third.state == second.state


def test_the_peers_whole_proof_answer_is_accepted_when_its_sizes_match() -> None:
    tree = leaves(20)
    last = run(head(tree, 5), last=None).state
    answer = {"first": 5, "second": 20, "consistency_path": proof(tree, 5, 20)}
    assert run(head(tree, 20), last=last, consistency_proof=answer).state.tree_size == 20


def test_witness_item_verifies_for_an_auditor() -> None:
    tree = leaves(10)
    served = head(tree, 10)
    item = run(served, last=None, checkpoint=de_checkpoint(served)).item()
    checked = verify_witness_item(item, witness_site="FR", witness_key=FR_KEY.public_key(),
                                  peer_key=PublicKey.of(DE_KEY.public_key()))
    assert checked.tree_size == 10


# --- refused ------------------------------------------------------------------------------------

TREE = leaves(40)
LAST = WitnessState.of_tree_head("DE", head(TREE, 20))
OTHER = leaves(40, changed=3)


def altered(tree_head: dict, **fields) -> dict:
    return {**tree_head, **fields}


REFUSALS = [
    ("a head signed by another key is refused as a bad signature",
     dict(tree_head=head(TREE, 30, key=MALLORY), consistency_proof=proof(TREE, 20, 30)), PeerSignatureError),
    ("a head whose root was changed after signing is refused as a bad signature",
     dict(tree_head=altered(head(TREE, 30), root_hash=head(OTHER, 30)["root_hash"]),
          consistency_proof=proof(OTHER, 20, 30)), PeerSignatureError),
    ("a head whose size was changed after signing is refused as a bad signature",
     dict(tree_head=altered(head(TREE, 30), tree_size=31), consistency_proof=proof(TREE, 20, 31)), PeerSignatureError),
    ("an unsigned head of the witnessed size with another root is a bad signature, not a fork",
     dict(tree_head=altered(head(TREE, 20), root_hash=head(OTHER, 20)["root_hash"])), PeerSignatureError),
    ("a checkpoint signed by another key is refused as a bad signature",
     dict(tree_head=head(TREE, 30), consistency_proof=proof(TREE, 20, 30),
          checkpoint=de_checkpoint(head(TREE, 30), MALLORY)), PeerSignatureError),
    ("a signed head of the witnessed size with another root is a fork",
     dict(tree_head=head(OTHER, 20)), PeerForkError),
    ("a signed head smaller than the witnessed one is a fork (rollback)",
     dict(tree_head=head(TREE, 19)), PeerForkError),
    ("a signed checkpoint of the head's size with another root is a fork",
     dict(tree_head=head(TREE, 30), consistency_proof=proof(TREE, 20, 30),
          checkpoint=de_checkpoint(head(OTHER, 30))), PeerForkError),
    ("a signed head of a rewritten log with its own proof is inconsistent",
     dict(tree_head=head(OTHER, 30), consistency_proof=proof(OTHER, 20, 30)), PeerInconsistentError),
    ("a proof with one hash changed is inconsistent",
     dict(tree_head=head(TREE, 30), consistency_proof=["00" * 32, *proof(TREE, 20, 30)[1:]]), PeerInconsistentError),
    ("a proof with a hash missing is inconsistent",
     dict(tree_head=head(TREE, 30), consistency_proof=proof(TREE, 20, 30)[:-1]), PeerInconsistentError),
    ("no proof for a grown head is inconsistent",
     dict(tree_head=head(TREE, 30)), PeerInconsistentError),
    ("a proof for other sizes than asked is inconsistent",
     dict(tree_head=head(TREE, 30),
          consistency_proof={"first": 19, "second": 30, "consistency_path": proof(TREE, 19, 30)}), PeerInconsistentError),
    ("a proof hash that is not hex is inconsistent",
     dict(tree_head=head(TREE, 30), consistency_proof=["zz" * 32] * 3), PeerInconsistentError),
    ("a proof of one string instead of a list is inconsistent",
     dict(tree_head=head(TREE, 30), consistency_proof="00" * 32), PeerInconsistentError),
]


@pytest.mark.parametrize(("kwargs", "error"), [(k, e) for _, k, e in REFUSALS], ids=[n for n, _, _ in REFUSALS])
def test_witness_refuses(kwargs: dict, error: type[WitnessError]) -> None:
    with pytest.raises(error) as caught:
        run(last=LAST, **kwargs)
    assert caught.value.site == "DE"
    assert type(caught.value) is error  # the three failures stay distinct


def test_empty_tree_head_must_carry_the_hash_of_the_empty_string() -> None:
    fake = sign_tree_head(DE_KEY, 0, hashlib.sha256(b"x").digest(), stamp(0)).model_dump()
    with pytest.raises(PeerInconsistentError, match="SHA-256 of the empty string"):
        run(fake, last=None)
    assert run(head([], 0), last=None).state.tree_size == 0


def test_first_contact_with_a_proof_is_refused() -> None:
    with pytest.raises(PeerInconsistentError, match="want 0"):
        run(head(TREE, 10), last=None, consistency_proof=proof(TREE, 3, 10))


def test_fork_error_names_both_sizes() -> None:
    with pytest.raises(PeerForkError) as caught:
        run(head(TREE, 12), last=LAST)
    assert (caught.value.tree_size, caught.value.witnessed) == (12, 20)
    assert "rolled back" in str(caught.value)


def test_checkpoint_of_another_size_than_the_head_asks_for_both_again() -> None:
    with pytest.raises(FormatError, match="fetch both again"):
        run(head(TREE, 30), last=LAST, consistency_proof=proof(TREE, 20, 30), checkpoint=de_checkpoint(head(TREE, 31)))


def test_witnessing_oneself_or_with_another_peers_state_is_a_caller_error() -> None:
    with pytest.raises(FormatError, match="other site"):
        witness(site="DE", signing_key=FR_KEY, peer_site="DE", peer_key=DE_KEY.public_key(), last=None,
                tree_head=head(TREE, 3), now=NOW)
    fr_state = WitnessState(site="FR", tree_size=1, root_hash="00" * 32, timestamp=stamp(0))
    with pytest.raises(FormatError, match="site got FR, want DE"):
        run(head(TREE, 3), last=fr_state)


def test_malformed_head_is_a_format_error_naming_the_field() -> None:
    with pytest.raises(FormatError, match="root_hash"):
        run(altered(head(TREE, 3), root_hash="XYZ"), last=None)


# --- a real peer ledger, rewritten --------------------------------------------------------------


def _key_file(directory: Path, key: Ed25519PrivateKey) -> Path:
    path = directory / "key.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _drafts(count: int, *, start: int = 0, denied: int | None = None) -> list[LedgerEntryDraft]:
    return [
        LedgerEntryDraft(kind="placement", tenant="de-bund", decision_id=f"dec-{i}", allowed=i != denied)
        for i in range(start, start + count)
    ]


def test_witness_detects_a_peer_ledger_rewritten_by_someone_holding_its_key(tmp_path: Path) -> None:
    key = _key_file(tmp_path, DE_KEY)
    with Ledger.open(tmp_path / "honest", signing_key_path=key) as honest:
        honest.append_many(_drafts(10))
        state = run(honest.latest_tree_head(), last=None).state

        # The honest log grows: its own proof is accepted.
        honest.append_many(_drafts(5, start=10))
        grown = honest.latest_tree_head()
        accepted = run(grown, last=state, consistency_proof=honest.consistency_proof(10, 15))
        assert accepted.state.tree_size == 15
        honest_export = list(honest.export())

    # An operator with file access and the key rebuilds the log with entry 4 changed, and re-signs.
    with Ledger.open(tmp_path / "rewritten", signing_key_path=key) as rewritten:
        rewritten.append_many(_drafts(10, denied=4))
        same_size = rewritten.latest_tree_head()
        with pytest.raises(PeerForkError, match="two heads of size 10"):
            run(same_size, last=state)
        rewritten.append_many(_drafts(5, start=10))
        forged = rewritten.latest_tree_head()
        with pytest.raises(PeerInconsistentError, match="witnessed head of size 10"):
            run(forged, last=state, consistency_proof=rewritten.consistency_proof(10, 15))
        rewritten_export = list(rewritten.export())
        witnessed = [state, accepted.state]

        # corridor audit verify --peer: the log by its entries, and by its head and proofs.
        with pytest.raises(PeerForkError, match="rewritten"):
            verify_against_witnessed(witnessed, peer_site="DE", entries=rewritten_export)
        with pytest.raises(PeerInconsistentError):
            verify_against_witnessed(witnessed, peer_site="DE", tree_head=forged, peer_key=rewritten.public_key(),
                                     consistency_proof=rewritten.consistency_proof)

    report = verify_against_witnessed(witnessed, peer_site="DE", entries=honest_export)
    assert (report.tree_size, report.witnessed) == (15, 2)
    with LedgerReader.open(tmp_path / "honest", public_key=DE_KEY.public_key()) as reader:
        report = verify_against_witnessed(witnessed, peer_site="DE", tree_head=reader.latest_tree_head(),
                                          peer_key=reader.public_key(), consistency_proof=reader.consistency_proof)
    assert (report.tree_size, report.witnessed) == (15, 2)


# --- verify_against_witnessed -------------------------------------------------------------------


def _export(n: int, *, changed: int | None = None) -> list[dict]:
    items = []
    for i in range(n):
        entry = {"index": i, "kind": "placement", "tenant": "de-bund", "allowed": i != changed}
        items.append({"index": i, "leaf_hash": merkle.leaf_hash(canonical_json(entry)).hex(), "entry": entry})
    return items


def _export_tree(n: int, *, changed: int | None = None) -> list[bytes]:
    return [bytes.fromhex(item["leaf_hash"]) for item in _export(n, changed=changed)]


def test_export_consistent_with_every_witnessed_head_passes() -> None:
    tree = _export_tree(25)
    witnessed = [WitnessState.of_tree_head("DE", head(tree, n)) for n in (0, 1, 7, 8, 25)]
    report = verify_against_witnessed(witnessed, peer_site="DE", entries=_export(25))
    assert (report.tree_size, report.witnessed) == (25, 5)
    assert verify_against_witnessed([head(tree, 7)], peer_site="DE", entries=_export(30)).tree_size == 30


def test_truncated_export_is_a_fork() -> None:
    witnessed = [head(_export_tree(25), 25)]
    with pytest.raises(PeerForkError, match="truncated"):
        verify_against_witnessed(witnessed, peer_site="DE", entries=_export(24))


def test_export_whose_item_does_not_hash_to_its_leaf_hash_fails_verification() -> None:
    items = _export(5)
    items[2] = {**items[2], "entry": {**items[2]["entry"], "allowed": False}}
    with pytest.raises(VerificationError) as caught:
        verify_against_witnessed([], peer_site="DE", entries=items)
    assert (caught.value.check, caught.value.index) == ("leaf_hash", 2)
    skipped = _export(5)
    del skipped[3]
    with pytest.raises(VerificationError, match="want 3"):
        verify_against_witnessed([], peer_site="DE", entries=skipped)


def test_current_head_smaller_than_a_witnessed_one_is_a_fork() -> None:
    tree = _export_tree(25)
    with pytest.raises(PeerForkError):
        verify_against_witnessed([head(tree, 25)], peer_site="DE", tree_head=head(tree, 24),
                                 peer_key=DE_KEY.public_key(), consistency_proof=lambda a, b: proof(tree, a, b))


def test_current_head_not_signed_by_the_peer_is_refused() -> None:
    tree = _export_tree(25)
    with pytest.raises(PeerSignatureError):
        verify_against_witnessed([head(tree, 3)], peer_site="DE", tree_head=head(tree, 25, key=MALLORY),
                                 peer_key=DE_KEY.public_key(), consistency_proof=lambda a, b: proof(tree, a, b))


def test_two_witnessed_heads_of_one_size_are_a_fork() -> None:
    with pytest.raises(PeerForkError, match="two witnessed heads of size 5"):
        verify_against_witnessed([head(_export_tree(9), 5), head(_export_tree(9, changed=1), 5)],
                                 peer_site="DE", entries=_export(9))


def test_verify_against_witnessed_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError):
        verify_against_witnessed([], peer_site="DE")
    with pytest.raises(ValueError):
        verify_against_witnessed([], peer_site="DE", entries=[], tree_head=head([], 0))


# --- auditor's check of a /audit/witness item ---------------------------------------------------


def _item() -> dict:
    served = head(TREE, 10)
    return run(served, last=None, checkpoint=de_checkpoint(served)).item()


def _check(item: dict) -> None:
    verify_witness_item(item, witness_site="FR", witness_key=FR_KEY.public_key(), peer_key=DE_KEY.public_key())


@pytest.mark.parametrize(
    "change",
    [
        lambda i: i["cosignature"].update(signature=base64.b64encode(bytes(64)).decode()),
        lambda i: i["cosignature"].update(timestamp="2023-11-14T22:13:21.000000Z"),
        lambda i: i["cosignature"].update(key_id=hashlib.sha256(raw(MALLORY)).hexdigest()),
        lambda i: i.update(checkpoint=de_checkpoint(head(TREE, 11))),
        lambda i: i.update(tree_head=head(TREE, 11)),
        lambda i: i.update(site="FR"),
        lambda i: i.update(extra=1),
    ],
    ids=[
        "a cosignature signature of zeros", "a cosignature timestamp one second late",
        "a cosignature claiming another key", "the checkpoint of another head",
        "another tree head than the one cosigned", "the witness's own site", "an unknown field",
    ],
)
def test_witness_item_altered_is_refused(change) -> None:
    item = _item()
    change(item)
    with pytest.raises((SignatureError, FormatError)):
        _check(item)


# --- the state ----------------------------------------------------------------------------------


def test_witness_state_round_trips_through_json() -> None:
    state = WitnessState(site="DE", tree_size=12, root_hash="ab" * 32, timestamp=stamp(3))
    assert WitnessState.from_json(json.dumps(state.to_json())) == state
    assert WitnessState.from_json(state.to_json()) == state
    assert state.to_json() == {"site": "DE", "tree_size": 12, "root_hash": "ab" * 32, "timestamp": stamp(3)}


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"site": "DE", "tree_size": "12", "root_hash": "ab" * 32, "timestamp": stamp(3)}, "tree_size"),
        ({"site": "DE", "tree_size": True, "root_hash": "ab" * 32, "timestamp": stamp(3)}, "tree_size"),
        ({"site": "DE", "tree_size": -1, "root_hash": "ab" * 32, "timestamp": stamp(3)}, "tree_size"),
        ({"site": "DE", "tree_size": 1, "root_hash": "AB" * 32, "timestamp": stamp(3)}, "root_hash"),
        ({"site": "DE", "tree_size": 1, "root_hash": "ab" * 32, "timestamp": "yesterday"}, "timestamp"),
        ({"site": "EU", "tree_size": 1, "root_hash": "ab" * 32, "timestamp": stamp(3)}, "site"),
        ({"site": "DE", "tree_size": 1, "root_hash": "ab" * 32, "timestamp": stamp(3), "extra": 1}, "extra"),
        ({"site": "DE", "tree_size": 1, "root_hash": "ab" * 32}, "timestamp"),
        ("{not json", "invalid JSON"),
    ],
    ids=["a size as a string", "a size as a boolean", "a negative size", "an upper-case root",
         "a timestamp that is not RFC 3339", "an unknown site", "an unknown field", "a missing timestamp",
         "text that is not JSON"],
)
def test_witness_state_refuses(value, field: str) -> None:
    with pytest.raises(FormatError, match=field):
        WitnessState.from_json(value)


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), second=st.integers(min_value=1, max_value=70))
def test_any_honest_growth_is_cosigned_and_any_rewritten_prefix_is_refused(data, second: int) -> None:
    first = data.draw(st.integers(min_value=1, max_value=second), label="first")
    tree = leaves(second)
    last = run(head(tree, first), last=None).state
    assert run(head(tree, second), last=last, consistency_proof=proof(tree, first, second)).state.tree_size == second

    changed = data.draw(st.integers(min_value=0, max_value=first - 1), label="changed")
    forged = leaves(second, changed=changed)
    with pytest.raises(PeerForkError if first == second else PeerInconsistentError):
        run(head(forged, second), last=last, consistency_proof=proof(forged, first, second))


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=1, max_value=60), data=st.data())
def test_json_cosignature_covers_every_field_of_the_head(size: int, data) -> None:
    tree = leaves(size)
    result = run(head(tree, size), last=None)
    field = data.draw(st.sampled_from(["site", "tree_size", "root_hash", "timestamp"]))
    fields = {"site": "DE", "tree_size": size, "root_hash": result.state.root_hash, "timestamp": result.state.timestamp}
    fields[field] = {"site": "FR", "tree_size": size + 1, "root_hash": "00" * 32, "timestamp": stamp(59)}[field]
    signature = base64.b64decode(result.cosignature.signature)
    FR_KEY.public_key().verify(signature, cosigned_bytes("DE", result.tree_head))
    with pytest.raises(InvalidSignature):
        FR_KEY.public_key().verify(signature, canonical_json(fields))
