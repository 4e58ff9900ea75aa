"""The errors the client raises; all derive from `EmotionError`."""
from __future__ import annotations

from typing import Any, Mapping


class EmotionError(Exception):
    """Base of every error of this library."""


class ApiError(EmotionError):
    """The server refused a request: HTTP `status`, its stable error `code` and a `message` for people.

    `retry_after` (seconds) is set on refusals worth retrying (429, 503).
    """

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_body(cls, status: int, body: Any) -> ApiError:
        """Build from an error answer in the service's one JSON error shape (anything else is tolerated)."""
        if not isinstance(body, Mapping):
            return cls(status, f"http_{status}", f"HTTP {status}")
        retry_after = body.get("retry_after")
        return cls(
            status,
            str(body.get("error") or f"http_{status}"),
            str(body.get("message") or f"HTTP {status}"),
            float(retry_after) if isinstance(retry_after, (int, float)) else None,
        )

    def __str__(self) -> str:
        return self.message


class AuthError(ApiError):
    """Not logged in, wrong credentials, or a session that cannot be renewed (401)."""

    def __init__(self, message: str, code: str = "unauthorized", status: int = 401) -> None:
        super().__init__(status, code, message)


class Revoked(AuthError):
    """The login session was ended elsewhere (logout, password change): log in again."""

    def __init__(self, message: str = "The session was revoked: log in again", code: str = "token_revoked") -> None:
        super().__init__(message, code)


class Unreachable(EmotionError):
    """The server could not be reached (connection refused, timed out, or dropped)."""
