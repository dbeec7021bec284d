"""Detached Ed25519 signatures of policy bundles: only the exact bytes, only a trusted key."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies import default_bundle_path
from policies.exceptions import BundleSignatureError
from policies.signing import (OperatorKey, load_private_key, parse_signature, sign_bundle,
                              signature_path, verify_bundle, verify_bundle_file, write_private_key)

DATA = default_bundle_path().read_bytes()


@pytest.fixture(scope="module")
def fr_key():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def trusted(fr_key):
    return [OperatorKey.of("fr-ops", "FR", fr_key.public_key()),
            OperatorKey.of("de-ops", "DE", Ed25519PrivateKey.generate().public_key())]


def test_a_signature_by_a_trusted_key_names_its_signer(fr_key, trusted):
    signature = sign_bundle(DATA, fr_key, bundle_digest="sha256:" + "0" * 64)
    assert verify_bundle(DATA, signature, trusted).name == "fr-ops"
    assert signature.key_id == trusted[0].key_id


def test_the_signature_is_plain_ed25519_over_the_file_bytes(fr_key, trusted):
    signature = sign_bundle(DATA, fr_key)
    fr_key.public_key().verify(base64.b64decode(signature.signature), DATA)


@pytest.mark.parametrize("change", [
    lambda d: d + b"\n",
    lambda d: d.replace(b"residency: [FR]", b"residency: [FR, DE]", 1),
    lambda d: d.replace(b"#", b" ", 1),
], ids=["a trailing newline", "a residency widened", "a comment changed"])
def test_any_change_to_the_bytes_breaks_it(fr_key, trusted, change):
    signature = sign_bundle(DATA, fr_key)
    with pytest.raises(BundleSignatureError) as info:
        verify_bundle(change(DATA), signature, trusted)
    assert info.value.code == "BAD_SIGNATURE"


def test_a_key_outside_the_configuration_is_untrusted(trusted):
    signature = sign_bundle(DATA, Ed25519PrivateKey.generate())
    with pytest.raises(BundleSignatureError, match="not among the trusted operator keys") as info:
        verify_bundle(DATA, signature, trusted)
    assert info.value.code == "UNTRUSTED_KEY"


def test_the_signer_comes_from_the_configuration_not_the_signature_file(fr_key, trusted):
    signature = sign_bundle(DATA, fr_key)
    forged = json.loads(signature.to_text()) | {"signer": "de-ops"}
    with pytest.raises(BundleSignatureError) as info:
        parse_signature(json.dumps(forged))
    assert info.value.code == "MALFORMED"


def test_files_unsigned_signed_and_malformed(tmp_path, fr_key, trusted):
    bundle = tmp_path / "prod.yaml"
    bundle.write_bytes(DATA)
    with pytest.raises(BundleSignatureError) as info:
        verify_bundle_file(bundle, trusted)
    assert info.value.code == "UNSIGNED" and "corridor policy sign" in str(info.value)
    signature_path(bundle).write_text(sign_bundle(DATA, fr_key).to_text())
    data, signer = verify_bundle_file(bundle, trusted)
    assert (data, signer.jurisdiction) == (DATA, "FR")
    signature_path(bundle).write_text('{"algorithm": "RSA"}')
    with pytest.raises(BundleSignatureError) as info:
        verify_bundle_file(bundle, trusted)
    assert info.value.code == "MALFORMED"


def test_private_keys_are_written_0600_and_never_overwritten(tmp_path):
    path = tmp_path / "ops.pem"
    key = write_private_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert OperatorKey.of("x", "FR", load_private_key(path).public_key()).key_id == \
        OperatorKey.of("x", "FR", key.public_key()).key_id
    with pytest.raises(FileExistsError):
        write_private_key(path)


@pytest.mark.parametrize("public_key", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_public_key_in_the_configuration_is_refused(public_key):
    with pytest.raises(ValueError, match="32-byte"):
        OperatorKey(name="x", jurisdiction="FR", public_key=public_key)


def test_a_joint_bundle_carries_a_signature_of_each_jurisdiction_and_every_one_must_verify(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from policies import default_bundle_path
    from policies.exceptions import BundleSignatureError
    from policies.signing import (OperatorKey, parse_signatures, sign_bundle, signature_path, signatures_text,
                                  verify_bundle_signers, with_signature)

    bundle = tmp_path / "joint.yaml"
    bundle.write_bytes(default_bundle_path().read_bytes())
    keys = {j: Ed25519PrivateKey.generate() for j in ("FR", "DE")}
    trusted = [OperatorKey.of(f"{j.lower()}-ops", j, k.public_key()) for j, k in keys.items()]
    signatures = []
    for key in keys.values():
        signatures = with_signature(signatures, sign_bundle(bundle.read_bytes(), key))
    signature_path(bundle).write_text(signatures_text(signatures))
    _, signers = verify_bundle_signers(bundle, trusted)
    assert [s.jurisdiction for s in signers] == ["FR", "DE"]
    assert len(parse_signatures(signature_path(bundle).read_text())) == 2
    forged = with_signature(signatures, sign_bundle(b"another bundle", keys["DE"]))
    signature_path(bundle).write_text(signatures_text(forged))
    with pytest.raises(BundleSignatureError) as info:
        verify_bundle_signers(bundle, trusted)
    assert info.value.code == "BAD_SIGNATURE", "one bad signature fails the whole file"
