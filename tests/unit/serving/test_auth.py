"""API keys (hashes only, constant-time compare) and OIDC bearer JWTs verified against a JWKS file."""

import datetime as dt
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from serving.gateway.auth import Authenticator, JwtVerifier, KeyStore


def test_keys_are_stored_only_as_hashes_and_authenticate_to_their_principal(tmp_path):
    store = KeyStore(tmp_path / "api-keys.json")
    key = store.issue("app", tenant="fr-interior")
    on_disk = (tmp_path / "api-keys.json").read_text()
    assert key not in on_disk and key.split("_", 2)[2] not in on_disk
    assert oct((tmp_path / "api-keys.json").stat().st_mode & 0o777) == "0o600"
    principal = KeyStore(tmp_path / "api-keys.json").authenticate(key)
    assert (principal.role, principal.tenant) == ("app", "fr-interior")


@pytest.mark.parametrize("presented", ["", "cor_", "cor_nokey_x", "Bearer", "cor_{id}_wrongsecret"])
def test_malformed_or_wrong_keys_authenticate_nobody(presented):
    store = KeyStore()
    key_id = store.issue("auditor", scope=("*",)).split("_")[1]
    assert store.authenticate(presented.format(id=key_id)) is None


def test_roles_need_what_they_act_for():
    store = KeyStore()
    with pytest.raises(ValueError, match="needs a tenant"):
        store.issue("app")
    with pytest.raises(ValueError, match="jurisdiction FR or DE"):
        store.issue("operator", jurisdiction="US")
    with pytest.raises(ValueError, match="unknown role"):
        store.issue("root")


class TestJwt:
    @pytest.fixture
    def verifier(self, tmp_path):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid="idp-1", alg="RS256", use="sig")
        (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
        verifier = JwtVerifier(tmp_path / "jwks.json", issuer="https://idp.example.gouv.fr",
                               audience="corridor")
        return verifier, key

    def token(self, key, kid="idp-1", **claims):
        now = dt.datetime.now(dt.timezone.utc)
        payload = {"iss": "https://idp.example.gouv.fr", "aud": "corridor", "sub": "agent-42",
                   "exp": now + dt.timedelta(minutes=5), "corridor_roles": ["app"],
                   "corridor_tenant": "fr-interior", **claims}
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})

    def test_a_valid_token_maps_to_tenant_and_role(self, verifier):
        verifier, key = verifier
        principal = Authenticator(KeyStore(), verifier).authenticate(self.token(key))
        assert (principal.subject, principal.role, principal.tenant) == ("jwt:agent-42", "app", "fr-interior")

    @pytest.mark.parametrize("claims", [
        {"aud": "someone-else"}, {"iss": "https://evil.example"},
        {"exp": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)}, {"corridor_roles": ["root"]}],
        ids=["wrong audience", "wrong issuer", "expired", "no known role"])
    def test_tokens_that_fail_a_check_authenticate_nobody(self, verifier, claims):
        verifier, key = verifier
        assert verifier.authenticate(self.token(key, **claims)) is None

    def test_a_token_signed_by_another_key_authenticates_nobody(self, verifier):
        verifier, _ = verifier
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        assert verifier.authenticate(self.token(other)) is None
        assert verifier.authenticate(self.token(other, kid="unknown")) is None
