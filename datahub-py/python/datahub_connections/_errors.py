"""The one exception tree of datahub_connections.

Both modes raise the same classes: local mode from the core's error kinds (mapped once, in the
native module, to the REST API's error codes), remote mode from the API's error body. The map
from code to class is :data:`CODE_CLASSES`, the only place that decides. Messages never hold a
secret: they come from the core or the server, which never put one in an error.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type


class DataHubError(Exception):
    """Every error of datahub_connections.

    ``kind`` is the core's error kind (``not_found``, ``invalid_input``, ``conflict``, …),
    ``code`` the REST API's error code (the same in both modes), ``field`` the input field at
    fault if any, ``status`` the HTTP status in remote mode (``None`` in local mode).
    """

    kind: str = "internal"

    def __init__(
        self,
        message: str,
        *,
        code: Optional[str] = None,
        kind: Optional[str] = None,
        field: Optional[str] = None,
        status: Optional[int] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind
        self.code = code if code is not None else self.kind
        self.field = field
        self.status = status
        self.request_id = request_id

    def __str__(self) -> str:
        if self.field:
            return f"{self.field}: {self.message}"
        return self.message

    def __reduce__(self) -> Any:
        # Pickles (multiprocessing, joblib) keep the class and every attribute.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: Type[DataHubError], message: str, state: Dict[str, Any]) -> DataHubError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class InvalidInput(DataHubError, ValueError):
    """A value broke a rule; ``field`` names it."""

    kind = "invalid_input"


class NotFound(DataHubError, LookupError):
    """No such connection (or one the caller may not view)."""

    kind = "not_found"


class Conflict(DataHubError):
    """A name is taken, or the version given is stale."""

    kind = "conflict"


class StaleVersion(Conflict):
    """The version given is not the stored one: read the connection again and retry."""


class PermissionDenied(DataHubError, PermissionError):
    """The caller is known but may not do this (e.g. a viewer revealing a password)."""

    kind = "permission_denied"


class Unauthenticated(DataHubError):
    """The token or session is missing, wrong, expired or revoked."""

    kind = "unauthenticated"


class RateLimited(DataHubError):
    """Too many attempts; ``retry_after`` says how many seconds to wait."""

    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Unavailable(DataHubError):
    """The store or the server cannot be reached right now; retrying may help."""

    kind = "store"


class KeyringError(DataHubError):
    """The master key is missing, wrong or unsafe, or a sealed value failed to open."""

    kind = "keyring"


class TestFailed(DataHubError):
    """A connection test failed where success was required; ``report`` holds the test report."""

    __test__ = False  # not a pytest test class
    kind = "test_failed"

    def __init__(self, message: str, *, report: Any = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.report = report


class MissingExtra(DataHubError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    kind = "missing_extra"


class InternalError(DataHubError):
    """Something failed inside (I/O, a bug); the message says what, never a secret."""

    kind = "internal"


#: The one map from an error code (the REST API's, which local mode uses too) to its class.
CODE_CLASSES: Dict[str, Type[DataHubError]] = {
    "invalid_input": InvalidInput,
    "malformed_json": InvalidInput,
    "if_match_required": InvalidInput,
    "payload_too_large": InvalidInput,
    "unsupported_media_type": InvalidInput,
    "not_found": NotFound,
    "conflict": Conflict,
    "precondition_failed": StaleVersion,
    "permission_denied": PermissionDenied,
    "cross_origin": PermissionDenied,
    "unauthenticated": Unauthenticated,
    "rate_limited": RateLimited,
    "store_unavailable": Unavailable,
    "store": Unavailable,
    "unavailable": Unavailable,
    "keyring": KeyringError,
    "decrypt_failed": KeyringError,
    "test_failed": TestFailed,
    "io": InternalError,
    "internal": InternalError,
}


def error_from(
    code: str,
    message: str,
    *,
    kind: Optional[str] = None,
    field: Optional[str] = None,
    retry_after: Optional[float] = None,
    status: Optional[int] = None,
    request_id: Optional[str] = None,
    report: Any = None,
) -> DataHubError:
    """The exception for an error code; an unknown code is a :class:`DataHubError`."""
    cls = CODE_CLASSES.get(code, DataHubError)
    kw: Dict[str, Any] = dict(code=code, kind=kind, field=field, status=status, request_id=request_id)
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after, **kw)
    if cls is TestFailed:
        return TestFailed(message, report=report, **kw)
    return cls(message, **kw)
