"""Throwaway X.509 certificates for TLS tests, made with the openssl command line."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def openssl(*arguments: str | Path) -> None:
    subprocess.run(["openssl", *map(str, arguments)], check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    certificate, key = directory / f"{name}.pem", directory / f"{name}.key"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", certificate, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return certificate, key


def issue(
    directory: Path, ca: Path, ca_key: Path, name: str, usage: str, alt_names: str
) -> tuple[Path, Path]:
    """A certificate for `name` signed by the CA: (certificate, key). `usage` is
    serverAuth or clientAuth; `alt_names` the subjectAltName value."""
    key, request = directory / f"{name}.key", directory / f"{name}.csr"
    certificate, extensions = directory / f"{name}.pem", directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={alt_names}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", request, "-subj", f"/CN={name}",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", certificate, "-days", "2", "-extfile", extensions,
    )  # fmt: skip
    return certificate, key


@dataclass
class Certificates:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate it signed for localhost and 127.0.0.1, a client
    certificate it signed, and a second CA that signed nothing."""
    ca, ca_key = make_ca(directory, "test-ca")
    other_ca, _ = make_ca(directory, "other-ca")
    server_cert, server_key = issue(
        directory, ca, ca_key, "localhost", "serverAuth", "DNS:localhost,IP:127.0.0.1"
    )
    client_cert, client_key = issue(
        directory, ca, ca_key, "test-client", "clientAuth", "DNS:test-client"
    )
    return Certificates(ca, other_ca, server_cert, server_key, client_cert, client_key)
