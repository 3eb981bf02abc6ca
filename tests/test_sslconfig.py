"""`SSLDomain` takes Proton's settings, and `ssl_context` turns them into real TLS.

Certificates are made for each test session with the `openssl` command line: a CA, a
server certificate for localhost signed by it, a client certificate, and a second CA
that signed nothing of ours. Handshakes run over a loopback socket pair.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from amqp_core.sslconfig import SSL, SSLDomain, SSLException, ssl_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

KEY_PASSWORD = "s3cret"


class Certificates(NamedTuple):
    ca: str
    other_ca: str
    server_cert: str
    server_key: str
    server_key_encrypted: str
    client_cert: str
    client_key: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(name: str, cwd: Path) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=cwd,
    )  # fmt: skip


def _make_leaf(name: str, extensions: str, cwd: Path) -> None:
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=cwd,
    )  # fmt: skip
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    where = tmp_path_factory.mktemp("certs")
    _make_ca("ca", where)
    _make_ca("other-ca", where)
    _make_leaf(
        "localhost",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        where,
    )
    _make_leaf(
        "client",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        where,
    )
    _openssl(
        "pkey", "-in", "localhost.key", "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
        "-out", "localhost-encrypted.key",
        cwd=where,
    )  # fmt: skip
    return Certificates(
        ca=str(where / "ca.pem"),
        other_ca=str(where / "other-ca.pem"),
        server_cert=str(where / "localhost.pem"),
        server_key=str(where / "localhost.key"),
        server_key_encrypted=str(where / "localhost-encrypted.key"),
        client_cert=str(where / "client.pem"),
        client_key=str(where / "client.key"),
    )


class Outcome(NamedTuple):
    client_error: BaseException | None
    server_error: BaseException | None
    client_seen_by_server: dict[str, Any] | None


def handshake(server: SSLDomain, client: SSLDomain, server_hostname: str = "localhost") -> Outcome:
    """Run a TLS handshake between the two domains' contexts and one exchange of data
    (so that a server's rejection of the client, sent after a TLS 1.3 handshake, shows)."""
    server_context, client_context = ssl_context(server), ssl_context(client)
    server_socket, client_socket = socket.socketpair()
    server_socket.settimeout(5)
    client_socket.settimeout(5)
    result: dict[str, Any] = {}

    def serve() -> None:
        try:
            with server_context.wrap_socket(server_socket, server_side=True) as tls:
                result["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            result["error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    client_error: BaseException | None = None
    try:
        with client_context.wrap_socket(client_socket, server_hostname=server_hostname) as tls:
            if tls.recv(2) != b"ok":
                raise ConnectionError("the server closed the connection")
    except (OSError, ssl.SSLError) as exc:
        client_error = exc
    finally:
        client_socket.close()
        thread.join(10)
        server_socket.close()
    return Outcome(client_error, result.get("error"), result.get("peer"))


def server_domain(certs: Certificates) -> SSLDomain:
    domain = SSLDomain(SSLDomain.MODE_SERVER)
    domain.set_credentials(certs.server_cert, certs.server_key, None)
    return domain


def client_domain(trusted: str) -> SSLDomain:
    domain = SSLDomain(SSLDomain.MODE_CLIENT)
    domain.set_trusted_ca_db(trusted)
    return domain


def test_server_authentication_only(certs: Certificates) -> None:
    outcome = handshake(server_domain(certs), client_domain(certs.ca))
    assert outcome.client_error is None and outcome.server_error is None
    assert not outcome.client_seen_by_server  # no client certificate was asked for


def _subject(peer: dict[str, Any] | None) -> dict[str, str]:
    assert peer is not None
    return {key: value for rdn in peer["subject"] for key, value in rdn}


def test_server_and_client_authentication(certs: Certificates) -> None:
    server = server_domain(certs)
    server.set_trusted_ca_db(certs.ca)
    server.set_peer_authentication(SSLDomain.VERIFY_PEER, certs.ca)
    client = client_domain(certs.ca)
    client.set_credentials(certs.client_cert, certs.client_key, None)
    outcome = handshake(server, client)
    assert outcome.client_error is None and outcome.server_error is None
    assert _subject(outcome.client_seen_by_server)["commonName"] == "client"


def test_server_refuses_a_client_without_a_certificate(certs: Certificates) -> None:
    server = server_domain(certs)
    server.set_trusted_ca_db(certs.ca)
    server.set_peer_authentication(SSLDomain.VERIFY_PEER, certs.ca)
    outcome = handshake(server, client_domain(certs.ca))
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert outcome.client_error is not None


def test_server_refuses_a_client_certificate_from_another_ca(certs: Certificates) -> None:
    server = server_domain(certs)
    server.set_trusted_ca_db(certs.other_ca)
    server.set_peer_authentication(SSLDomain.VERIFY_PEER, certs.other_ca)
    client = client_domain(certs.ca)
    client.set_credentials(certs.client_cert, certs.client_key, None)
    outcome = handshake(server, client)
    assert isinstance(outcome.server_error, ssl.SSLError)
    assert outcome.client_error is not None


def test_wrong_ca_fails_verification(certs: Certificates) -> None:
    outcome = handshake(server_domain(certs), client_domain(certs.other_ca))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert outcome.client_error.verify_message == "unable to get local issuer certificate"


def test_system_cas_do_not_trust_a_private_ca(certs: Certificates) -> None:
    outcome = handshake(server_domain(certs), SSLDomain(SSLDomain.MODE_CLIENT))
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


def test_hostname_mismatch_fails_only_under_verify_peer_name(certs: Certificates) -> None:
    client = client_domain(certs.ca)  # a client verifies the peer name by default
    outcome = handshake(server_domain(certs), client, server_hostname="wrong.example")
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "wrong.example" in outcome.client_error.verify_message
    client.set_peer_authentication(SSLDomain.VERIFY_PEER)
    outcome = handshake(server_domain(certs), client, server_hostname="wrong.example")
    assert outcome.client_error is None and outcome.server_error is None


def test_ip_address_is_checked_against_the_certificate(certs: Certificates) -> None:
    outcome = handshake(server_domain(certs), client_domain(certs.ca), server_hostname="127.0.0.1")
    assert outcome.client_error is None


def test_anonymous_peer_accepts_any_server_certificate(certs: Certificates) -> None:
    client = client_domain(certs.other_ca)
    client.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
    outcome = handshake(server_domain(certs), client, server_hostname="wrong.example")
    assert outcome.client_error is None and outcome.server_error is None


def test_encrypted_key_with_password(certs: Certificates) -> None:
    server = SSLDomain(SSLDomain.MODE_SERVER)
    server.set_credentials(certs.server_cert, certs.server_key_encrypted, KEY_PASSWORD)
    outcome = handshake(server, client_domain(certs.ca))
    assert outcome.client_error is None and outcome.server_error is None
    with pytest.raises(SSLException):
        SSLDomain(SSLDomain.MODE_SERVER).set_credentials(
            certs.server_cert, certs.server_key_encrypted, "wrong"
        )


def test_server_without_credentials_has_no_context() -> None:
    with pytest.raises(SSLException, match="set_credentials"):
        ssl_context(SSLDomain(SSLDomain.MODE_SERVER))


def test_client_context_settings(certs: Certificates) -> None:
    default = ssl_context(SSLDomain(SSLDomain.MODE_CLIENT))
    assert default.check_hostname and default.verify_mode == ssl.CERT_REQUIRED
    client = client_domain(certs.ca)
    client.set_peer_authentication(SSLDomain.VERIFY_PEER)
    context = ssl_context(client)
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    client.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
    assert ssl_context(client).verify_mode == ssl.CERT_NONE


# The API agrees with Proton's: constants, and which calls succeed or raise.


def test_constants_are_protons() -> None:
    proton = pytest.importorskip("proton")
    for name in ("MODE_CLIENT", "MODE_SERVER", "VERIFY_PEER", "VERIFY_PEER_NAME", "ANONYMOUS_PEER"):
        assert getattr(SSLDomain, name) == getattr(proton.SSLDomain, name), name
    assert SSL.present() is True and proton.SSL.present() is True


CALLS: dict[str, Any] = {
    "client verify peer, system CAs": ("MODE_CLIENT", [("set_peer_authentication", "VERIFY_PEER")]),
    "client anonymous": ("MODE_CLIENT", [("set_peer_authentication", "ANONYMOUS_PEER")]),
    "client allows unsecured": ("MODE_CLIENT", [("allow_unsecured_client",)]),
    "server allows unsecured": ("MODE_SERVER", [("allow_unsecured_client",)]),
    "server verify without CA db": (
        "MODE_SERVER",
        [("set_peer_authentication", "VERIFY_PEER", "ca")],
    ),
    "server verify without trusted CAs": (
        "MODE_SERVER",
        [("set_trusted_ca_db", "ca"), ("set_peer_authentication", "VERIFY_PEER")],
    ),
    "server verify": (
        "MODE_SERVER",
        [
            ("set_credentials", "server_cert", "server_key", None),
            ("set_trusted_ca_db", "ca"),
            ("set_peer_authentication", "VERIFY_PEER_NAME", "ca"),
        ],
    ),
    "missing CA file": ("MODE_CLIENT", [("set_trusted_ca_db", "/nonexistent/ca.pem")]),
    "missing certificate": (
        "MODE_SERVER",
        [("set_credentials", "/nonexistent", "/nonexistent", None)],
    ),
    "key that is not the certificate's": (
        "MODE_CLIENT",
        [("set_credentials", "server_cert", "client_key", None)],
    ),
    "client credentials": ("MODE_CLIENT", [("set_credentials", "client_cert", "client_key", None)]),
}


def _run(
    domain_class: Any, certs: Certificates, mode: str, calls: list[tuple[Any, ...]]
) -> list[Any]:
    """Make the calls on a new domain; the result of each, or "raised"."""
    domain = domain_class(getattr(domain_class, mode))
    results = []
    for method, *args in calls:
        resolved = [
            getattr(domain_class, arg) if isinstance(arg, str) and arg.isupper() else
            getattr(certs, arg) if isinstance(arg, str) and arg in Certificates._fields else arg
            for arg in args
        ]  # fmt: skip
        try:
            results.append(getattr(domain, method)(*resolved))
        except Exception as exc:
            assert type(exc).__name__ == "SSLException"
            results.append("raised")
    return results


@pytest.mark.parametrize("case", list(CALLS))
def test_calls_succeed_or_fail_as_in_proton(case: str, certs: Certificates) -> None:
    proton = pytest.importorskip("proton")
    mode, calls = CALLS[case]
    assert _run(SSLDomain, certs, mode, calls) == _run(proton.SSLDomain, certs, mode, calls)
