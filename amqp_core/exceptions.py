"""The exceptions applications catch, with Proton's names (`from proton import Timeout`)."""

from __future__ import annotations

__all__ = [
    "ConnectionException",
    "LinkException",
    "MessageException",
    "ProtonException",
    "SessionException",
    "Timeout",
]


class ProtonException(Exception):
    """Base of the library's exceptions (Proton's name, kept for ported code)."""


class Timeout(ProtonException):
    """A blocking call did not complete in time."""


class ConnectionException(ProtonException):
    """The connection failed or was closed."""


class SessionException(ProtonException):
    """The session failed or was closed."""


class LinkException(ProtonException):
    """The link failed or was closed."""


class MessageException(ProtonException):
    """A message could not be encoded or decoded."""
