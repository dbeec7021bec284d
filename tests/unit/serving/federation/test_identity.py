"""Site identities and the peer link's mutual TLS: real handshakes over loopback, accepted and refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import doctest
import os
import shutil
import socket
import ssl
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from serving.federation import identity as identity_module
from serving.federation import tls as tls_module
from serving.federation.identity import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CERT_FILE,
    KEY_FILE,
    IdentityError,
    SiteIdentity,
    certificate_fingerprint,
    certificate_site,
)
from serving.federation.site_ca import ensure_site_identity
from serving.federation.tls import client_context, peer_site, server_context


@pytest.fixture(scope="module")
def sites(tmp_path_factory) -> dict[str, SiteIdentity]:
    """The two sites, an impostor of each (same site names, their own CAs) and a re-issued DE certificate."""
    root = tmp_path_factory.mktemp("identities")
    out = {
        "FR": ensure_site_identity(root / "fr", "FR"),
        "DE": ensure_site_identity(root / "de", "DE"),
        "FR-impostor": ensure_site_identity(root / "fr-impostor", "FR"),
        "DE-impostor": ensure_site_identity(root / "de-impostor", "DE"),
    }
    reissued = root / "de-reissued"
    reissued.mkdir()
    for name in (CA_CERT_FILE, CA_KEY_FILE):
        shutil.copy2(root / "de" / name, reissued / name)
    out["DE-reissued"] = ensure_site_identity(reissued, "DE")
    return out


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize("module", [identity_module, tls_module], ids=lambda m: m.__name__)
def test_module_examples(module) -> None:
    assert doctest.testmod(module).failed == 0


# --- files and certificates ---------------------------------------------------------------------


def test_identity_files_are_private_and_reused(tmp_path: Path) -> None:
    first = ensure_site_identity(tmp_path / "fr", "FR")
    assert stat.S_IMODE(os.stat(tmp_path / "fr").st_mode) == 0o700
    for name in (CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE):
        assert stat.S_IMODE(os.stat(tmp_path / "fr" / name).st_mode) == 0o600, name
    contents = {p.name: p.read_bytes() for p in (tmp_path / "fr").iterdir()}
    again = ensure_site_identity(tmp_path / "fr", "FR")
    assert again == first and again.fingerprint == first.fingerprint
    assert {p.name: p.read_bytes() for p in (tmp_path / "fr").iterdir()} == contents
    assert sorted(contents) == sorted([CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE])


def test_site_certificate_names_loopback_and_its_site_and_is_issued_by_the_site_ca(sites) -> None:
    ca, cert = load(sites["FR"].ca_cert), load(sites["FR"].cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp256r1"
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["corridor://site/FR"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=400)
    assert certificate_site(cert) == "FR" and certificate_site(sites["DE"].cert.read_bytes()) == "DE"


def test_extra_host_names_and_addresses_are_added_to_loopback(tmp_path: Path) -> None:
    made = ensure_site_identity(tmp_path, "DE", hostnames=["gateway.de.example"], addresses=["10.0.0.7", "127.0.0.1"])
    names = load(made.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "gateway.de.example"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.0.0.7"]


def test_deleting_the_site_certificate_issues_a_new_one_from_the_same_ca(sites) -> None:
    assert sites["DE-reissued"].ca_pem() == sites["DE"].ca_pem()
    assert sites["DE-reissued"].fingerprint != sites["DE"].fingerprint
    load(sites["DE-reissued"].cert).verify_directly_issued_by(load(sites["DE"].ca_cert))


def test_incomplete_identity_directory_is_refused_naming_what_is_missing(tmp_path: Path) -> None:
    ensure_site_identity(tmp_path, "FR")
    (tmp_path / KEY_FILE).unlink()
    with pytest.raises(IdentityError, match="site-key.pem missing"):
        ensure_site_identity(tmp_path, "FR")


def test_identity_directory_of_the_other_site_is_refused(sites) -> None:
    with pytest.raises(IdentityError, match="speaks for site 'FR', want 'DE'"):
        ensure_site_identity(sites["FR"].cert.parent, "DE")


def test_configured_files_that_do_not_belong_together_are_refused(sites) -> None:
    fr, de = sites["FR"], sites["DE"]
    with pytest.raises(IdentityError, match="does not match the certificate"):
        SiteIdentity.from_files("FR", cert=fr.cert, key=de.key, ca_cert=fr.ca_cert)
    with pytest.raises(IdentityError, match="not issued by the CA"):
        SiteIdentity.from_files("FR", cert=fr.cert, key=fr.key, ca_cert=de.ca_cert)
    with pytest.raises(IdentityError, match="not a CA certificate"):
        SiteIdentity.from_files("FR", cert=fr.cert, key=fr.key, ca_cert=fr.cert)
    with pytest.raises(IdentityError, match="cannot read"):
        SiteIdentity.from_files("FR", cert=fr.cert, key=fr.key, ca_cert=fr.cert.parent / "absent.pem")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peer_ca": b"not a certificate"}, "not a PEM or DER"),
        ({"peer_ca": "SITE_CERT"}, "not a CA certificate"),
        ({"peer_ca": "DE_CA", "peer_fingerprint": "abc"}, "64 hex digits"),
        ({"peer_ca": "DE_CA", "peer_site": "FR"}, "the other site"),
        ({"peer_ca": "DE_CA", "peer_site": "EU"}, "want one of FR, DE"),
    ],
    ids=["a peer CA that is not a certificate", "a peer CA that is a site certificate",
         "a fingerprint that is not SHA-256", "this site as its own peer", "an unknown peer site"],
)
def test_peer_trust_setting_that_cannot_work_fails_at_construction(sites, kwargs: dict, message: str) -> None:
    replace = {"SITE_CERT": sites["DE"].cert, "DE_CA": sites["DE"].ca_cert}
    kwargs = {k: replace.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    for make in (server_context, client_context):
        with pytest.raises(IdentityError, match=message):
            make(sites["FR"], **kwargs)


def test_fingerprint_is_sha256_of_the_der_certificate(sites) -> None:
    import hashlib

    from cryptography.hazmat.primitives import serialization

    der = load(sites["FR"].cert).public_bytes(serialization.Encoding.DER)
    assert sites["FR"].fingerprint == hashlib.sha256(der).hexdigest() == certificate_fingerprint(der)


# --- handshakes over loopback with asyncio ------------------------------------------------------


async def _exchange(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str = "localhost") -> dict:
    """One request over TLS; what each side saw. ``accepted`` only if the echo came back."""
    seen: dict = {"handled": [], "accepted": False, "client_error": None}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["handled"].append(peer_site(writer.get_extra_info("ssl_object")))
        line = await reader.readline()
        writer.write(b"echo " + line)
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname=hostname), 10
        )
        seen["server_site"] = peer_site(writer.get_extra_info("ssl_object"))
        writer.write(b"hello\n")
        await writer.drain()
        seen["accepted"] = await asyncio.wait_for(reader.readline(), 10) == b"echo hello\n"
        writer.close()
    except (ssl.SSLError, ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
        seen["client_error"] = exc
    finally:
        listener.close()
        await listener.wait_closed()
    return seen


def exchange(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str = "localhost") -> dict:
    return asyncio.run(_exchange(server, client, hostname))


def test_peer_with_its_certificate_is_accepted_and_each_side_knows_the_others_site(sites) -> None:
    fr, de = sites["FR"], sites["DE"]
    seen = exchange(
        server_context(fr, peer_ca=de.ca_pem(), peer_site="DE", peer_fingerprint=de.fingerprint),
        client_context(de, peer_ca=fr.ca_cert, peer_site="FR", peer_fingerprint=fr.fingerprint),
    )
    assert seen["accepted"] and seen["handled"] == ["DE"] and seen["server_site"] == "FR"


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_both_loopback_names_verify(sites, hostname: str) -> None:
    fr, de = sites["FR"], sites["DE"]
    assert exchange(server_context(fr, peer_ca=de.ca_cert), client_context(de, peer_ca=fr.ca_cert), hostname)["accepted"]


def test_client_without_a_certificate_is_refused(sites) -> None:
    fr, de = sites["FR"], sites["DE"]
    anonymous = ssl.create_default_context(cafile=fr.ca_cert)  # trusts FR, presents nothing
    seen = exchange(server_context(fr, peer_ca=de.ca_cert), anonymous)
    assert not seen["accepted"] and seen["handled"] == []


def test_client_with_a_certificate_from_another_ca_is_refused(sites) -> None:
    fr, de, impostor = sites["FR"], sites["DE"], sites["DE-impostor"]
    seen = exchange(server_context(fr, peer_ca=de.ca_cert), client_context(impostor, peer_ca=fr.ca_cert))
    assert not seen["accepted"] and seen["handled"] == []


def test_client_with_its_own_sites_certificate_is_refused_by_a_server_trusting_the_peer_ca(sites) -> None:
    fr, de = sites["FR"], sites["DE"]
    seen = exchange(server_context(fr, peer_ca=de.ca_cert), client_context(fr, peer_ca=fr.ca_cert))
    assert not seen["accepted"] and seen["handled"] == []


def test_server_with_a_certificate_from_another_ca_is_refused_by_the_client(sites) -> None:
    fr, de, impostor = sites["FR"], sites["DE"], sites["FR-impostor"]
    seen = exchange(server_context(impostor, peer_ca=de.ca_cert), client_context(de, peer_ca=fr.ca_cert))
    assert not seen["accepted"] and seen["handled"] == []
    assert isinstance(seen["client_error"], ssl.SSLCertVerificationError)


def test_server_pinning_refuses_another_certificate_of_the_same_peer_ca(sites) -> None:
    fr, de, reissued = sites["FR"], sites["DE"], sites["DE-reissued"]
    pinned = server_context(fr, peer_ca=de.ca_cert, peer_fingerprint=de.fingerprint)
    assert exchange(pinned, client_context(de, peer_ca=fr.ca_cert))["accepted"]
    seen = exchange(pinned, client_context(reissued, peer_ca=fr.ca_cert))
    assert not seen["accepted"] and seen["handled"] == []
    # Without the pin, the re-issued certificate of the same CA is accepted.
    assert exchange(server_context(fr, peer_ca=de.ca_cert), client_context(reissued, peer_ca=fr.ca_cert))["accepted"]


def test_client_pinning_refuses_a_server_with_another_certificate(sites) -> None:
    fr, de = sites["FR"], sites["DE"]
    seen = exchange(
        server_context(fr, peer_ca=de.ca_cert),
        client_context(de, peer_ca=fr.ca_cert, peer_fingerprint=sites["DE-reissued"].fingerprint),
    )
    assert not seen["accepted"] and seen["handled"] == []
    assert "pinned" in str(seen["client_error"])


def test_certificate_speaking_for_the_wrong_site_is_refused(sites) -> None:
    fr = sites["FR"]
    # A server misconfigured to trust the FR CA still refuses an FR certificate when it expects DE.
    seen = exchange(server_context(fr, peer_ca=fr.ca_cert, peer_site="DE"), client_context(fr, peer_ca=fr.ca_cert))
    assert not seen["accepted"] and seen["handled"] == []


# --- blocking sockets ---------------------------------------------------------------------------


def _blocking_exchange(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[bool, list]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    outcome: list = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server.wrap_socket(connection, server_side=True) as tls:
                outcome.append(peer_site(tls))
                tls.sendall(b"echo " + tls.recv(100))
        except (ssl.SSLError, OSError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw_socket,
            client.wrap_socket(raw_socket, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"hello")
            accepted = tls.recv(100) == b"echo hello"
    except (ssl.SSLError, OSError):
        accepted = False
    finally:
        thread.join(10)
        listener.close()
    return accepted, outcome


def test_blocking_sockets_accept_the_pinned_peer_and_refuse_another(sites) -> None:
    fr, de, reissued = sites["FR"], sites["DE"], sites["DE-reissued"]
    pinned = server_context(fr, peer_ca=de.ca_cert, peer_site="DE", peer_fingerprint=de.fingerprint)
    accepted, outcome = _blocking_exchange(pinned, client_context(de, peer_ca=fr.ca_cert))
    assert accepted and outcome == ["DE"]
    accepted, outcome = _blocking_exchange(pinned, client_context(reissued, peer_ca=fr.ca_cert))
    assert not accepted and isinstance(outcome[0], tls_module.PeerCertificateError)


# --- uvicorn, as the peer API will run ----------------------------------------------------------


async def _app(scope, receive, send) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"peer ok"})


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_uvicorn_serves_the_peer_and_refuses_a_certificate_that_is_not_pinned(sites, loop: str) -> None:
    fr, de, reissued = sites["FR"], sites["DE"], sites["DE-reissued"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = server_context(fr, peer_ca=de.ca_cert, peer_site="DE", peer_fingerprint=de.fingerprint)
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, loop=loop, lifespan="off", log_level="critical",
                            ssl_context_factory=lambda config, default: context)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        url = f"https://localhost:{port}/"
        with httpx.Client(verify=client_context(de, peer_ca=fr.ca_cert, peer_site="FR")) as client:
            assert client.get(url).text == "peer ok"
        for intruder in (client_context(reissued, peer_ca=fr.ca_cert), ssl.create_default_context(cafile=fr.ca_cert)):
            with httpx.Client(verify=intruder) as client, pytest.raises(httpx.TransportError):
                client.get(url)
    finally:
        server.should_exit = True
        thread.join(10)


def test_identity_imports_no_ray_fastapi_or_vllm() -> None:
    import subprocess
    import sys

    code = ("import sys, serving.federation, serving.federation.identity, serving.federation.site_ca, "
            "serving.federation.tls; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'fastapi', 'vllm', 'uvicorn', 'torch'}))")
    root = Path(__file__).resolve().parents[4]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, cwd=root)
    assert out.stdout.strip() == "[]"
