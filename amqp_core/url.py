"""`Url`: the AMQP address parser and builder of Proton's Python API.

Proton marks `Url` deprecated in favour of plain strings, but its tutorial still uses it
(``Url(opts.address).path``), so it is kept with Proton's exact behaviour, quirks
included: the default port prints as its service name (``amqp://host:amqp``), a missing
host becomes ``0.0.0.0``, and text without ``scheme://`` is read as ``host:port/path``.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import quote, unquote, urlparse, urlunparse

__all__ = ["Url"]


def _split_host_port(netloc: str) -> tuple[str | None, str | None]:
    """Split ``user:pw@host:port`` into a lower-cased host (an IPv6 literal keeps its
    brackets) and the port text; either is None when absent."""
    host_port = netloc.rpartition("@")[2]
    pieces = host_port.split("]")
    bracketed = pieces[0] + "]" if len(pieces) > 1 else ""
    rest = pieces[-1]
    # Like Proton, only the text between the first and second colon after the literal
    # is the port: a bare IPv6 address without brackets yields no host at all.
    name, colon, after = rest.partition(":")
    port = after.split(":")[0] if colon else ""
    host = (bracketed + name).lower()
    return host or None, port or None


def _is_ipv6_literal(host: str) -> bool:
    return host.startswith("[") and host.endswith("]")


class Url:
    """An AMQP URL, ``<scheme>://<user>:<password>@<host>:<port>/<path>``.

    Any part may be missing from the text. With ``defaults=True`` (the default) the
    scheme, host and port are then filled in (see `defaults`). Keyword arguments
    (``scheme``, ``username``, ``password``, ``host``, ``port``, ``path``) replace the
    parts parsed from the text.
    """

    AMQPS = "amqps"
    AMQP = "amqp"

    class Port(int):
        """A port number that may be given as a service name ("amqps"): it is the
        number as an int and prints as it was given."""

        name: str

        def __new__(cls, value: int | str) -> Url.Port:
            port = super().__new__(cls, cls._number(value))
            port.name = str(value)
            return port

        @staticmethod
        def _number(value: int | str) -> int:
            try:
                number = int(value)
            except ValueError:
                pass
            else:
                # The system's resolver would quietly take 99999 as 99999 % 65536.
                if not 0 <= number <= 65535:
                    raise ValueError(f"port {number} is out of range: 0 to 65535")
                return number
            assert isinstance(value, str)
            try:
                return socket.getservbyname(value)
            except OSError:
                # Not every system lists amqp and amqps in /etc/services.
                fallback = {Url.AMQPS: 5671, Url.AMQP: 5672}.get(value)
                if fallback is None:
                    raise ValueError(
                        f"Not a valid port number or service name: {value!r}"
                    ) from None
                return fallback

        def __eq__(self, other: object) -> bool:
            return str(self) == other or int(self) == other

        def __ne__(self, other: object) -> bool:
            return not self == other

        __hash__ = int.__hash__

        def __str__(self) -> str:
            return self.name

    scheme: str | None
    username: str | None
    password: str | None

    def __init__(self, url: str | Url | None = None, defaults: bool = True, **kwargs: Any) -> None:
        self._params: str | None
        self._query: str | None
        self._fragment: str | None
        self._host: str | None
        self._port: int | str | None
        self._path: str | None
        if isinstance(url, Url):
            self.scheme, self.username, self.password = url.scheme, url.username, url.password
            self._host, self._port, self._path = url._host, url._port, url._path
            self._params, self._query, self._fragment = url._params, url._query, url._fragment
        elif url:
            self._parse(url)
        else:
            self.scheme = self.username = self.password = None
            self._host = self._port = self._path = None
            self._params = self._query = self._fragment = None
        for name, value in kwargs.items():
            getattr(self, name)  # an AttributeError for a name that is not a part
            setattr(self, name, value)
        if defaults:
            self.defaults()

    def _parse(self, text: str) -> None:
        if not text.startswith("//"):
            # "host:port/path" has no scheme: urlparse would read "host" as one.
            before, _, after = text.partition(":")
            if "/" in before or not after.startswith("//"):
                text = "//" + text
        parts = urlparse(text)
        self.scheme = parts.scheme or None
        self.username = unquote(parts.username) if parts.username else parts.username
        self.password = unquote(parts.password) if parts.password else parts.password
        self._host, self._port = _split_host_port(parts.netloc)
        self._path = parts.path or None
        self._params, self._query, self._fragment = parts.params, parts.query, parts.fragment

    @property
    def path(self) -> str | None:
        """The path, without its leading slash."""
        if self._path and self._path.startswith("/"):
            return self._path[1:]
        return self._path

    @path.setter
    def path(self, path: str | None) -> None:
        self._path = path if not path or path.startswith("/") else "/" + path

    @property
    def host(self) -> str | None:
        """The host name, IPv4 dotted quad or IPv6 literal (without brackets)."""
        if self._host and _is_ipv6_literal(self._host):
            return self._host[1:-1]
        return self._host

    @host.setter
    def host(self, host: str | None) -> None:
        if host and ":" in host and not _is_ipv6_literal(host):
            host = f"[{host}]"
        self._host = host

    @property
    def port(self) -> Url.Port | None:
        """The port as a `Url.Port`, or None."""
        return Url.Port(self._port) if self._port else None

    @port.setter
    def port(self, port: int | str | None) -> None:
        self._port = port

    @property
    def _netloc(self) -> str:
        host_port = self._host or ""
        if self._port:
            host_port += f":{self._port}"
        user = quote(self.username) if self.username else ""
        if self.password:
            user += ":" + quote(self.password)
        if self.username or self.password:
            user += "@"
        return user + host_port

    def __str__(self) -> str:
        netloc = self._netloc
        rest = (self._path, self._params, self._query, self._fragment)
        if self.scheme and not netloc and not any(rest):
            return self.scheme + "://"
        return urlunparse((self.scheme or "", netloc, *(part or "" for part in rest)))

    def __repr__(self) -> str:
        return f"Url('{self}')"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]  # mutable, and equal to its str()

    def defaults(self) -> Url:
        """Fill in a missing scheme (amqp), host (0.0.0.0) and port (the scheme's
        service: 5672 for amqp, 5671 for amqps); return self."""
        self.scheme = self.scheme or self.AMQP
        self._host = self._host or "0.0.0.0"
        self._port = self._port or self.Port(self.scheme)
        return self
