"""C2SP checkpoints, signed notes and cosignatures: the public vectors, the exact bytes, strict parsing."""

from __future__ import annotations

import base64
import doctest
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from scheduler.ledger import Ledger, LedgerEntryDraft
from scheduler.ledger import checkpoint as cp
from scheduler.ledger import note as note_module
from scheduler.ledger import note_signing
from scheduler.ledger.checkpoint import Checkpoint
from scheduler.ledger.note import COSIGNATURE_V1, ED25519, Note, NoteSignature
from scheduler.ledger.note_signing import (
    NoteVerifier,
    cosignature_timestamp,
    cosigned_message,
    open_note,
    sign_note,
)
from scheduler.ledger.exceptions import FormatError, SignatureError, SigningKeyError
from scheduler.ledger.merkle import EMPTY_ROOT

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "testdata" / "c2sp" / "vectors.json").read_text())

FR_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"corridor FR ledger").digest())
DE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"corridor DE ledger").digest())
ROOT = hashlib.sha256(b"a root").digest()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.mark.parametrize("module", [note_module, note_signing, cp], ids=lambda m: m.__name__)
def test_module_examples(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# --- the public vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["signed_notes"], ids=lambda c: c["source"][:60])
def test_published_signed_note_verifies_with_its_verifier_keys(case: dict) -> None:
    vkeys = case.get("vkeys") or [case["vkey"]]
    verifiers = [NoteVerifier.from_vkey(v) for v in vkeys]
    note, verified = open_note(case["note"].encode("utf-8"), verifiers)
    assert [(s.name, s.key_id) for s in verified] == [(v.name, v.key_id) for v in verifiers]
    assert note.encode() == case["note"].encode("utf-8")
    if "checkpoint" in case:
        point = Checkpoint.parse(note.text)
        assert (point.origin, point.tree_size) == (case["checkpoint"]["origin"], case["checkpoint"]["tree_size"])


@pytest.mark.parametrize("case", VECTORS["signed_notes"], ids=lambda c: c["source"][:60])
def test_published_signed_note_with_one_changed_letter_is_rejected(case: dict) -> None:
    verifiers = [NoteVerifier.from_vkey(v) for v in case.get("vkeys") or [case["vkey"]]]
    altered = case["note"].replace("e", "E", 1)
    assert altered != case["note"]
    with pytest.raises(SignatureError):
        open_note(altered, verifiers)


@pytest.mark.parametrize("case", VECTORS["sign"], ids=lambda c: c["source"][:60])
def test_signing_with_the_published_seed_gives_the_published_note_byte_for_byte(case: dict) -> None:
    _, _, name, key_id, material = case["skey"].split("+", 4)
    decoded = base64.b64decode(material)
    assert decoded[0] == ED25519
    key = Ed25519PrivateKey.from_private_bytes(decoded[1:])
    signature = sign_note(case["text"], key, name)
    assert f"{signature.key_id:08x}" == key_id
    assert str(Note(case["text"], (signature,))) == case["want"]


@pytest.mark.parametrize("case", VECTORS["vkeys"], ids=lambda c: c["vkey"][:30])
def test_verifier_key_parses_to_its_name_key_id_and_type_and_writes_back_the_same(case: dict) -> None:
    verifier = NoteVerifier.from_vkey(case["vkey"])
    assert (verifier.name, f"{verifier.key_id:08x}", verifier.signature_type) == (
        case["name"], case["key_id"], case["type"],
    )
    assert verifier.vkey() == case["vkey"]


@pytest.mark.parametrize("case", VECTORS["bad_vkeys"], ids=lambda c: c["vkey"][:40])
def test_malformed_verifier_key_is_refused(case: dict) -> None:
    with pytest.raises(FormatError):
        NoteVerifier.from_vkey(case["vkey"])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # key id off by one
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case hex
        "PeterNeumann+c74f20a3",  # no key
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space in the name
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # bad base64
        "PeterNeumann+c74f20a3+AxpcQcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",  # type 0x03
    ],
)
def test_verifier_key_that_does_not_hash_to_its_id_or_is_mangled_is_refused(vkey: str) -> None:
    with pytest.raises(FormatError):
        NoteVerifier.from_vkey(vkey)


@pytest.mark.parametrize("case", VECTORS["checkpoints"], ids=lambda c: c["source"][:60])
def test_published_checkpoint_parses(case: dict) -> None:
    note = Note.parse(case["note"])
    point = Checkpoint.parse(note.text, origin=case["origin"])
    assert (point.origin, point.tree_size) == (case["origin"], case["tree_size"])
    assert point.root_hash == base64.b64decode(case["root_hash"])
    assert point.body().decode() == note.text
    assert note.signatures[0].name == case["origin"]


def test_published_cosignature_line_carries_its_timestamp_and_signs_the_published_message() -> None:
    case = VECTORS["cosignatures"][0]
    note = Note.parse(case["note"])
    (line,) = [s for s in note.signatures if s.name == case["name"]]
    assert len(line.signature) == 8 + 64
    assert cosignature_timestamp(line) == case["timestamp"]
    assert cosigned_message(note.text.encode(), case["timestamp"]) == case["signed_message"].encode()


def test_published_bare_cosignature_carries_its_timestamp() -> None:
    case = VECTORS["cosignatures"][1]
    line = NoteSignature.parse_line(f"— somebody {case['signature']}")
    assert cosignature_timestamp(line) == case["timestamp"]


@pytest.mark.parametrize("case", VECTORS["bad_notes"], ids=lambda c: repr(c["note"][-30:]))
def test_published_malformed_note_is_refused(case: dict) -> None:
    with pytest.raises(FormatError):
        Note.parse(case["note"])


def test_note_with_invalid_utf8_is_refused() -> None:
    good = VECTORS["signed_notes"][1]["note"].encode()
    with pytest.raises(FormatError, match="UTF-8"):
        Note.parse(b"\xff" + good)


# --- Corridor's checkpoints: the exact bytes ------------------------------------------------------


def test_checkpoint_body_is_origin_size_and_base64_root_each_ending_in_newline() -> None:
    point = Checkpoint(cp.origin("FR"), 20852163, ROOT)
    assert point.body() == b"corridor.eu/FR/ledger\n20852163\n" + base64.b64encode(ROOT) + b"\n"


def test_ledger_signature_line_uses_the_origin_as_key_name_and_the_spec_key_id() -> None:
    note = cp.sign_checkpoint(Checkpoint(cp.origin("DE"), 7, ROOT), DE_KEY)
    text, _, line = note.partition("\n\n")
    assert text + "\n" == f"corridor.eu/DE/ledger\n7\n{base64.b64encode(ROOT).decode()}\n"
    match = re.fullmatch(r"\u2014 corridor\.eu/DE/ledger ([A-Za-z0-9+/=]+)\n", line)
    assert match, line
    blob = base64.b64decode(match.group(1))
    want_id = hashlib.sha256(b"corridor.eu/DE/ledger\n\x01" + raw(DE_KEY)).digest()[:4]
    assert blob[:4] == want_id
    DE_KEY.public_key().verify(blob[4:], (text + "\n").encode())


def test_cosignature_line_is_key_id_timestamp_and_signature_over_the_cosignature_v1_message() -> None:
    body = Checkpoint(cp.origin("DE"), 7, ROOT).body()
    note = cp.add_cosignature(cp.sign_checkpoint(Checkpoint.parse(body), DE_KEY), FR_KEY, site="FR", timestamp=1_700_000_000)
    line = note.rstrip("\n").split("\n")[-1]
    name, encoded = line.removeprefix("\u2014 ").split(" ")
    assert name == "corridor.eu/FR/witness"
    blob = base64.b64decode(encoded)
    assert len(blob) == 4 + 8 + 64
    assert blob[:4] == hashlib.sha256(b"corridor.eu/FR/witness\n\x04" + raw(FR_KEY)).digest()[:4]
    assert blob[4:12] == (1_700_000_000).to_bytes(8, "big")
    FR_KEY.public_key().verify(blob[12:], b"cosignature/v1\ntime 1700000000\n" + body)
    assert cp.verify_cosignature(note, FR_KEY.public_key(), site="FR") == 1_700_000_000
    assert cp.verify_checkpoint(note, DE_KEY.public_key(), site="DE") == Checkpoint.parse(body)


def test_cosignature_with_its_timestamp_changed_does_not_verify() -> None:
    body = Checkpoint(cp.origin("DE"), 7, ROOT).body()
    line = cp.cosign(body, FR_KEY, cp.witness_name("FR"), 1_700_000_000)
    moved = NoteSignature(line.name, line.key_id, (1_700_000_001).to_bytes(8, "big") + line.signature[8:])
    note = Note(body.decode(), (moved,))
    with pytest.raises(SignatureError):
        cp.verify_cosignature(note, FR_KEY.public_key(), site="FR")


def test_cosignature_is_not_taken_for_a_plain_note_signature_of_the_same_key() -> None:
    body = Checkpoint(cp.origin("DE"), 7, ROOT).body()
    line = cp.cosign(body, FR_KEY, cp.origin("FR"), 1_700_000_000)  # same name as the ledger key
    note = Note(body.decode(), (line,))
    with pytest.raises(SignatureError, match="no signature of a known key"):
        open_note(note, [NoteVerifier(cp.origin("FR"), FR_KEY.public_key(), ED25519)])


def test_cosignature_timestamp_beyond_2_to_the_63_is_refused() -> None:
    body = Checkpoint(cp.origin("DE"), 7, ROOT).body()
    with pytest.raises(FormatError, match="2\\*\\*63"):
        cp.cosign(body, FR_KEY, cp.witness_name("FR"), 2**63)


def test_tree_head_checkpoint_matches_the_ledgers_json_tree_head(tmp_path: Path) -> None:
    key_path = tmp_path / "key.pem"
    key_path.write_bytes(
        FR_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with Ledger.open(tmp_path, signing_key_path=key_path) as ledger:
        ledger.append_many([LedgerEntryDraft(kind="placement", tenant="fr-interior", allowed=True)] * 5)
        head = ledger.latest_tree_head()
    note = cp.sign_tree_head_checkpoint("FR", head, FR_KEY)
    point = cp.verify_checkpoint(note, FR_KEY.public_key(), site="FR")
    assert (point.origin, point.tree_size, point.root_hash_hex) == ("corridor.eu/FR/ledger", 5, head["root_hash"])
    with pytest.raises(SigningKeyError, match="key_id"):
        cp.sign_tree_head_checkpoint("FR", head, DE_KEY)
    with pytest.raises(SignatureError):  # the DE origin names another key
        cp.verify_checkpoint(note, FR_KEY.public_key(), site="DE")
    with pytest.raises(SignatureError):
        cp.verify_checkpoint(note, DE_KEY.public_key(), site="FR")


def test_empty_tree_checkpoint_carries_the_hash_of_the_empty_string() -> None:
    body = Checkpoint(cp.origin("FR"), 0, EMPTY_ROOT).body()
    assert body == b"corridor.eu/FR/ledger\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"


@pytest.mark.parametrize("site", ["fr", "EU", "", "FR/ledger"])
def test_origin_of_an_unknown_site_is_refused(site: str) -> None:
    with pytest.raises(FormatError, match="want one of FR, DE"):
        cp.origin(site)


# --- strict parsing -----------------------------------------------------------------------------

GOOD_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"corridor.eu/FR/ledger\n007\n{GOOD_ROOT}\n", "no leading zero"),
        (f"corridor.eu/FR/ledger\n-1\n{GOOD_ROOT}\n", "ASCII decimal"),
        (f"corridor.eu/FR/ledger\n+5\n{GOOD_ROOT}\n", "ASCII decimal"),
        (f"corridor.eu/FR/ledger\n\u0663\n{GOOD_ROOT}\n", "ASCII decimal"),
        (f"corridor.eu/FR/ledger\n 5\n{GOOD_ROOT}\n", "ASCII decimal"),
        (f"corridor.eu/FR/ledger\n{2**64}\n{GOOD_ROOT}\n", "2\\*\\*64"),
        (f"corridor.eu/FR/ledger\n5\n{GOOD_ROOT}", "final newline"),
        ("corridor.eu/FR/ledger\n5\n", "at least 3"),
        (f"\n5\n{GOOD_ROOT}\n", "empty line"),
        (f"corridor.eu/FR/ledger\n5\n{GOOD_ROOT}\n\nextension\n", "empty line"),
        ("corridor.eu/FR/ledger\n5\nAAAA\n", "want 32"),
        (f"corridor.eu/FR/ledger\n5\n{GOOD_ROOT.rstrip('=')}\n", "base64"),
        (f"corridor.eu/FR/ledger\n5\n{GOOD_ROOT[:-2]}B=\n", "base64"),
        (f"corridor.eu/FR/ledger\n5\n{GOOD_ROOT}\r\n", "control character"),
        (f"corridor.eu/DE/ledger\n5\n{GOOD_ROOT}\n", "origin: got 'corridor.eu/DE/ledger'"),
    ],
    ids=[
        "a tree size with a leading zero", "a negative tree size", "a tree size with a plus sign",
        "a tree size in Arabic-Indic digits", "a tree size with a space", "a tree size of 2**64",
        "a body without its final newline", "a body of two lines", "an empty origin",
        "an empty extension line", "a root of 3 bytes", "a root without its padding",
        "a root in non-canonical base64", "a carriage return", "another site's origin",
    ],
)
def test_malformed_checkpoint_is_refused_with_what_was_wanted(body: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        Checkpoint.parse(body, origin="corridor.eu/FR/ledger")


def test_checkpoint_extension_lines_are_kept_and_signed() -> None:
    body = f"corridor.eu/FR/ledger\n5\n{GOOD_ROOT}\nextension one\n"
    point = Checkpoint.parse(body)
    assert point.extensions == ("extension one",)
    assert point.body().decode() == body


SIGNATURE = base64.b64encode(bytes(4) + bytes(64)).decode()


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (f"text\n\n-- name {SIGNATURE}\n", "want '— <key name>"),
        (f"text\n\n— na+me {SIGNATURE}\n", "key name"),
        (f"text\n\n— name\u00a0x {SIGNATURE}\n", "key name"),
        (f"text\n\n— name  {SIGNATURE}\n", "base64"),
        ("text\n\n— name AAAA\n", "want a 4-byte key id"),
        ("text\n\n— name AAAA!AAA\n", "base64"),
        ("text\n\n" + f"— name {SIGNATURE}\n" * 101, "at most 100"),
        (f"te\txt\n\n— name {SIGNATURE}\n", "control character"),
        (f"text\n\n— name {SIGNATURE}\n\n", "signature line"),
    ],
    ids=[
        "a signature line without the em dash", "a key name with a plus", "a key name with a no-break space",
        "two spaces after the key name", "a signature of four bytes", "a signature that is not base64",
        "101 signature lines", "a tab in the text", "a blank line after the signatures",
    ],
)
def test_malformed_signed_note_is_refused(note: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        Note.parse(note)


def test_note_with_many_signatures_splits_at_the_last_blank_line() -> None:
    text = "para one\n\npara two\n"
    note = Note.parse(text + "\n" + f"— a {SIGNATURE}\n— b {SIGNATURE}\n")
    assert note.text == text
    assert [s.name for s in note.signatures] == ["a", "b"]


# --- verification semantics (signed-note) -------------------------------------------------------


def _two_signed() -> tuple[Note, NoteVerifier, NoteVerifier]:
    body = Checkpoint(cp.origin("FR"), 9, ROOT).body()
    fr = cp.ledger_verifier("FR", FR_KEY.public_key())
    other = NoteVerifier("example.com/other", DE_KEY.public_key())
    note = Note(body.decode(), (sign_note(body, FR_KEY, fr.name), sign_note(body, DE_KEY, other.name)))
    return note, fr, other


def test_signature_of_an_unknown_key_is_ignored() -> None:
    note, fr, _ = _two_signed()
    _, verified = open_note(str(note), [fr])
    assert [s.name for s in verified] == ["corridor.eu/FR/ledger"]


def test_failing_signature_of_a_known_key_rejects_the_note_even_beside_a_good_one() -> None:
    note, fr, other = _two_signed()
    bad = NoteSignature(other.name, other.key_id, bytes(64))
    with pytest.raises(SignatureError, match="example.com/other"):
        open_note(Note(note.text, (note.signatures[0], bad)), [fr, other])


def test_same_name_with_another_key_id_is_an_unknown_key() -> None:
    note, fr, _ = _two_signed()
    renamed = NoteSignature(fr.name, fr.key_id ^ 1, bytes(64))
    _, verified = open_note(Note(note.text, (renamed, note.signatures[0])), [fr])
    assert verified == [note.signatures[0]]
    with pytest.raises(SignatureError, match="no signature of a known key"):
        open_note(Note(note.text, (renamed,)), [fr])


def test_another_name_with_the_same_key_id_is_an_unknown_key() -> None:
    note, fr, _ = _two_signed()
    renamed = NoteSignature("corridor.eu/DE/ledger", fr.key_id, bytes(64))
    _, verified = open_note(Note(note.text, (renamed, note.signatures[0])), [fr])
    assert verified == [note.signatures[0]]


@pytest.mark.parametrize("count", [16, 100])
def test_note_with_up_to_100_signatures_is_accepted(count: int) -> None:
    note, fr, _ = _two_signed()
    others = tuple(NoteSignature(f"witness{i}.example", i, bytes(72)) for i in range(count - 1))
    parsed = Note.parse(Note(note.text, (*others, note.signatures[0])).encode())
    assert len(parsed.signatures) == count
    assert open_note(parsed, [fr])[1] == [note.signatures[0]]


def test_note_signed_by_no_known_key_is_rejected() -> None:
    note, _, _ = _two_signed()
    with pytest.raises(SignatureError, match="no signature of a known key"):
        open_note(str(note), [cp.ledger_verifier("DE", DE_KEY.public_key())])
    with pytest.raises(SignatureError):
        open_note(str(note), [])


def test_adding_a_signature_replaces_the_older_line_of_the_same_key() -> None:
    body = Checkpoint(cp.origin("DE"), 7, ROOT).body()
    note = cp.sign_checkpoint(Checkpoint.parse(body), DE_KEY)
    once = cp.add_cosignature(note, FR_KEY, site="FR", timestamp=100)
    twice = cp.add_cosignature(once, FR_KEY, site="FR", timestamp=200)
    assert len(Note.parse(twice).signatures) == 2
    assert cp.verify_cosignature(twice, FR_KEY.public_key(), site="FR") == 200


def test_cosigning_something_that_is_not_a_checkpoint_is_refused() -> None:
    with pytest.raises(FormatError):
        cp.cosign(b"just one line\n", FR_KEY, cp.witness_name("FR"), 1)


# --- properties ---------------------------------------------------------------------------------

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+\u0085"),
    min_size=1,
    max_size=30,
)
lines = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


@given(
    origin=lines,
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(lines, max_size=3),
)
def test_checkpoint_body_parses_back_to_itself(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    point = Checkpoint(origin, size, root, tuple(extensions))
    assert Checkpoint.parse(point.body()) == point


@given(name=names, key_id=st.integers(min_value=0, max_value=2**32 - 1), signature=st.binary(min_size=1, max_size=80))
def test_signature_line_parses_back_to_itself(name: str, key_id: int, signature: bytes) -> None:
    line = NoteSignature(name, key_id, signature)
    assert NoteSignature.parse_line(line.line()) == line
    assert Note.parse(Note("x\n", (line,)).encode()).signatures == (line,)


@given(size=st.integers(min_value=0, max_value=2**40), root=st.binary(min_size=32, max_size=32),
       timestamp=st.integers(min_value=0, max_value=2**63 - 1))
def test_cosignature_verifies_only_over_the_checkpoint_it_was_made_for(size: int, root: bytes, timestamp: int) -> None:
    point = Checkpoint(cp.origin("DE"), size, root)
    note = cp.add_cosignature(cp.sign_checkpoint(point, DE_KEY), FR_KEY, site="FR", timestamp=timestamp)
    assert cp.verify_cosignature(note, FR_KEY.public_key(), site="FR") == timestamp
    other = Checkpoint(cp.origin("DE"), size + 1, root)
    moved = Note(other.body().decode(), Note.parse(note).signatures)
    with pytest.raises(SignatureError):
        cp.verify_cosignature(moved, FR_KEY.public_key(), site="FR")


def test_key_type_constants_match_the_signed_note_registry() -> None:
    assert (ED25519, COSIGNATURE_V1) == (0x01, 0x04)
