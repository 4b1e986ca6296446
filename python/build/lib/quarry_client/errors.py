"""Exceptions raised by :mod:`quarry_client`, one class per protocol ``data.kind``.

Every server error becomes a :class:`QuarryError` subclass chosen by ``data.kind``
(PROTOCOL.md §8 and §10); ``code``, ``message``, ``kind`` and ``data`` are kept.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type


class QuarryError(Exception):
    """A JSON-RPC error answered by the sidecar (or the supervisor)."""

    kind: str = "unknown"

    def __init__(
        self,
        message: str,
        *,
        code: int = 0,
        kind: Optional[str] = None,
        data: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        if kind is not None:
            self.kind = kind
        self.data: Dict[str, Any] = data or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, kind={self.kind!r}, message={self.message!r})"


class ParseError(QuarryError):
    """-32700: the sidecar could not parse a line."""

    kind = "parse_error"


class InvalidRequest(QuarryError):
    """-32600: not a valid request object."""

    kind = "invalid_request"


class MessageTooLarge(InvalidRequest):
    """-32600: the request line exceeded the size limit."""

    kind = "message_too_large"


class DuplicateId(InvalidRequest):
    """-32600: a request id still in flight was reused."""

    kind = "duplicate_id"


class MethodNotFound(QuarryError):
    """-32601: unknown method."""

    kind = "method_not_found"


class InvalidParams(QuarryError):
    """-32602: params fail the method's schema; ``data['details']['field']`` names it."""

    kind = "invalid_params"


class InternalError(QuarryError):
    """-32603: a bug or a panic in the sidecar (it keeps running)."""

    kind = "internal"


class QuarryCancelled(QuarryError):
    """-32800: the request was cancelled."""

    kind = "cancelled"


class QuarryTimeout(QuarryError):
    """-32001: the deadline passed (``data['stage']`` is ``queued`` or ``running``)."""

    kind = "timeout"


class Overloaded(QuarryError):
    """-32002: the sidecar's queue was full."""

    kind = "overloaded"


class ShuttingDown(QuarryError):
    """-32003: the sidecar is shutting down."""

    kind = "shutting_down"


class SidecarExited(QuarryError):
    """-32004: the sidecar died with the request in flight (``exitCode``/``signal``)."""

    kind = "sidecar_exited"


class SidecarUnavailable(QuarryError):
    """-32005: the supervisor gave up restarting the sidecar."""

    kind = "sidecar_unavailable"


class NotFound(QuarryError):
    """-32010: no such document, collection, watch or path."""

    kind = "not_found"


class InvalidPath(QuarryError):
    """-32011: a path that cannot be used."""

    kind = "invalid_path"


class UnsupportedContent(QuarryError):
    """-32012: a file that cannot be read as text."""

    kind = "unsupported_content"


class StorageError(QuarryError):
    """-32013: the vector store failed."""

    kind = "storage"


class ConnectionLost(QuarryError):
    """The sidecar process went away (unsupervised), or the client was closed."""

    kind = "connection_lost"


ERRORS_BY_KIND: Dict[str, Type[QuarryError]] = {
    cls.kind: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MessageTooLarge,
        DuplicateId,
        MethodNotFound,
        InvalidParams,
        InternalError,
        QuarryCancelled,
        QuarryTimeout,
        Overloaded,
        ShuttingDown,
        SidecarExited,
        SidecarUnavailable,
        NotFound,
        InvalidPath,
        UnsupportedContent,
        StorageError,
    )
}


def error_from_response(error: Dict[str, Any]) -> QuarryError:
    """The exception for a JSON-RPC ``error`` object."""
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = ERRORS_BY_KIND.get(kind or "", QuarryError)
    return cls(
        str(error.get("message", "")),
        code=int(error.get("code", 0)),
        kind=kind,
        data=data,
    )
