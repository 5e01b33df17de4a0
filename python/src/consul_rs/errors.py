"""The exceptions of consul_rs.

Every failure the native layer reports is a :class:`ConsulError` carrying the SDK's error
``code`` (``"NOT_FOUND"``, ``"TIMEOUT"``, ...) and, when an agent answered, its
``http_status``. Subclasses also derive from the matching built-in exception, so
``except KeyError`` or ``except TimeoutError`` work as expected.
"""

from __future__ import annotations

__all__ = [
    "ConsulError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ACLNotFoundError",
    "ConflictError",
    "ConsulTimeoutError",
    "ConsulConnectionError",
    "NoLeaderError",
    "ShutdownError",
    "ForkedError",
    "WouldDeadlockError",
    "TooLargeError",
]


class ConsulError(Exception):
    """Base class of every consul_rs error."""

    code: str
    """The SDK error code, e.g. ``"NOT_FOUND"``."""
    http_status: int | None
    """The agent's HTTP status, when one answered."""

    def __init__(self, message: str, code: str = "INTERNAL", http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(ConsulError, ValueError):
    """An argument was refused (locally or with HTTP 400); the message names it."""


class NotFoundError(ConsulError, KeyError):
    """The addressed object does not exist (HTTP 404 where absence is an error)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class PermissionDeniedError(ConsulError, PermissionError):
    """ACL refusal: HTTP 403 (``Permission denied: token with AccessorID '…' lacks permission
    'key:write' on "foo"``) or 401 (``ACL support disabled``). The message keeps the agent's text."""


class ACLNotFoundError(PermissionDeniedError):
    """The token sent is unknown or expired (HTTP 403 ``ACL not found``)."""


class ConflictError(ConsulError):
    """A conflict: a transaction rolled back (HTTP 409) or a lock is held elsewhere."""


class ConsulTimeoutError(ConsulError, TimeoutError):
    """No answer or no change in time."""


class ConsulConnectionError(ConsulError, ConnectionError):
    """The agent could not be reached."""


class NoLeaderError(ConsulError):
    """The cluster has no leader."""


class ShutdownError(ConsulError):
    """The client, watch or embedded agent is shut down."""


class ForkedError(ConsulError, RuntimeError):
    """An embedded Agent was used in a process forked after it started."""


class WouldDeadlockError(ConsulError, RuntimeError):
    """A blocking call was made where it would deadlock (inside the SDK's async runtime)."""


class TooLargeError(ConsulError, ValueError):
    """A request or value is over a size limit (HTTP 413)."""


def _invalid(message: str) -> InvalidArgumentError:
    """The error for a value refused in this process, before any request is sent.

    Every binding refuses bad values with its one invalid-argument error (here
    :class:`InvalidArgumentError`, so ``except ConsulError`` and ``except ValueError`` both catch
    it, as they catch the same refusal made by the native SDK). Wrong *types* stay
    ``TypeError``, as everywhere in Python."""
    return InvalidArgumentError(message, "INVALID_ARGUMENT")
