"""TLS settings with Proton's API (`SSLDomain`, `SSL.present`) and their translation to
the standard library (`ssl_context`).

An `SSLDomain` records what the application asked for, as Proton's does: a client
verifies the server's certificate and host name against the system's trusted CAs unless
told otherwise; a server presents its certificate and, unless told otherwise, does not
ask clients for one. Each setter checks its files at once (a missing or unreadable
certificate fails where it is configured, as in Proton), and `ssl_context` builds the
`ssl.SSLContext` the I/O layer wraps its sockets with.
"""

from __future__ import annotations

import os
import ssl

__all__ = ["SSL", "SSLDomain", "SSLException", "SSLUnavailable", "ssl_context"]


class SSLException(Exception):
    """A TLS setting that cannot be used (Proton's `SSLException`)."""


class SSLUnavailable(SSLException):
    """No TLS implementation is available (never raised: the standard library has one)."""


class SSLDomain:
    """TLS settings shared by the connections of one side (client or server)."""

    MODE_CLIENT = 1
    MODE_SERVER = 2
    #: Require a certificate signed by a trusted CA.
    VERIFY_PEER = 1
    #: Require no certificate (a server does not ask for one; a client accepts any).
    ANONYMOUS_PEER = 2
    #: VERIFY_PEER, and the certificate must name the host connected to.
    VERIFY_PEER_NAME = 3

    def __init__(self, mode: int) -> None:
        if mode not in (self.MODE_CLIENT, self.MODE_SERVER):
            raise SSLException(f"SSLDomain mode must be MODE_CLIENT or MODE_SERVER, not {mode!r}")
        self.mode = mode
        self.cert_file: str | None = None
        self.key_file: str | None = None
        self.password: str | None = None
        #: Where the CAs that verify peers come from; None means the system's (clients).
        self.trusted_ca_db: str | None = None
        #: The CAs a verifying server names to clients. Proton sends this list in its
        #: certificate request; the standard library cannot, so it is only checked.
        self.trusted_CAs: str | None = None
        self.verify_mode = (
            self.VERIFY_PEER_NAME if mode == self.MODE_CLIENT else self.ANONYMOUS_PEER
        )
        self.allow_unsecured = False

    def set_credentials(self, cert_file: str, key_file: str | None, password: str | None) -> int:
        """Identify this side with a PEM certificate (chain) and its private key (in
        `key_file`, or in `cert_file` when None), decrypted with `password` if given."""
        try:
            _scratch_context().load_cert_chain(cert_file, key_file, password)
        except (OSError, ssl.SSLError) as exc:
            raise SSLException(f"cannot load certificate {cert_file!r}: {exc}") from exc
        self.cert_file, self.key_file, self.password = cert_file, key_file, password
        return 0

    def set_trusted_ca_db(self, certificate_db: str) -> int:
        """Verify peers against the CA certificates in this PEM file (or hashed directory)."""
        try:
            _load_cas(_scratch_context(), certificate_db)
        except (OSError, ssl.SSLError) as exc:
            raise SSLException(f"cannot load trusted CAs {certificate_db!r}: {exc}") from exc
        self.trusted_ca_db = certificate_db
        return 0

    def set_peer_authentication(self, verify_mode: int, trusted_CAs: str | None = None) -> int:
        """Choose how the peer is checked: VERIFY_PEER, VERIFY_PEER_NAME or ANONYMOUS_PEER.

        As in Proton, a server that verifies clients needs its CA database set first and
        `trusted_CAs`, the CAs it tells clients it accepts."""
        if verify_mode not in (self.VERIFY_PEER, self.VERIFY_PEER_NAME, self.ANONYMOUS_PEER):
            raise SSLException(f"unknown verify mode {verify_mode!r}")
        if verify_mode != self.ANONYMOUS_PEER and self.mode == self.MODE_SERVER:
            if self.trusted_ca_db is None:
                raise SSLException("a server cannot verify peers before set_trusted_ca_db()")
            if trusted_CAs is None:
                raise SSLException("a server that verifies peers needs trusted_CAs")
            try:
                _load_cas(_scratch_context(), trusted_CAs)
            except (OSError, ssl.SSLError) as exc:
                raise SSLException(f"cannot load trusted CAs {trusted_CAs!r}: {exc}") from exc
        self.verify_mode = verify_mode
        self.trusted_CAs = trusted_CAs
        return 0

    def allow_unsecured_client(self) -> int:
        """Let a server also accept clients that do not start TLS."""
        if self.mode != self.MODE_SERVER:
            raise SSLException("only a server can allow unsecured clients")
        self.allow_unsecured = True
        return 0


class SSL:
    """Proton's TLS session class; here only its `present` check (the I/O layer owns
    the sessions themselves)."""

    @staticmethod
    def present() -> bool:
        """Whether TLS is available: always, with the standard library's `ssl`."""
        return True


def _scratch_context() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


def _load_cas(context: ssl.SSLContext, certificate_db: str) -> None:
    if os.path.isdir(certificate_db):
        context.load_verify_locations(capath=certificate_db)
    else:
        context.load_verify_locations(cafile=certificate_db)


def ssl_context(domain: SSLDomain) -> ssl.SSLContext:
    """The standard-library context for `domain`'s settings.

    A client checks the server's host name only under VERIFY_PEER_NAME (the caller
    passes ``server_hostname`` when wrapping), and trusts the system's CAs unless
    `set_trusted_ca_db` chose others. A server needs `set_credentials` and asks for a
    client certificate under VERIFY_PEER or VERIFY_PEER_NAME."""
    verifying = domain.verify_mode != SSLDomain.ANONYMOUS_PEER
    if domain.mode == SSLDomain.MODE_CLIENT:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = domain.verify_mode == SSLDomain.VERIFY_PEER_NAME
        context.verify_mode = ssl.CERT_REQUIRED if verifying else ssl.CERT_NONE
        if verifying and domain.trusted_ca_db is None:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        if domain.cert_file is None:
            raise SSLException("a server needs a certificate: call set_credentials()")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.verify_mode = ssl.CERT_REQUIRED if verifying else ssl.CERT_NONE
    if domain.trusted_ca_db is not None and verifying:
        _load_cas(context, domain.trusted_ca_db)
    if domain.cert_file is not None:
        context.load_cert_chain(domain.cert_file, domain.key_file, domain.password)
    return context
