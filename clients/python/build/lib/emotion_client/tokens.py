"""A login's tokens, and when its access token expires."""
from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, replace
from typing import Any, Mapping


def _claims(token: str) -> dict[str, Any]:
    # Read, never verified: only the server can check a token; the client just wants its lifetime.
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class Tokens:
    """The access and refresh token of one login, with the user they belong to."""

    access_token: str
    refresh_token: str
    username: str | None = None
    user_id: str | None = None

    @classmethod
    def from_login(cls, body: Mapping[str, Any]) -> Tokens:
        """Build from the answer of `POST /api/auth/login`."""
        user = body.get("user") or {}
        return cls(body["access_token"], body["refresh_token"], user.get("username"), user.get("id"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tokens:
        """Build from what `to_json` wrote."""
        return cls(data["access_token"], data["refresh_token"], data.get("username"), data.get("user_id"))

    def to_json(self) -> dict[str, Any]:
        """A JSON object to store (it holds secrets: keep it private)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "username": self.username,
            "user_id": self.user_id,
        }

    def with_access(self, access_token: str) -> Tokens:
        """The same login with a new access token."""
        return replace(self, access_token=access_token)

    @property
    def expires_at(self) -> float | None:
        """When the access token expires (Unix time), if it says."""
        exp = _claims(self.access_token).get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None

    @property
    def lifetime(self) -> float | None:
        """How long access tokens of this server live, seconds, if the token says."""
        claims = _claims(self.access_token)
        exp, iat = claims.get("exp"), claims.get("iat")
        if isinstance(exp, (int, float)) and isinstance(iat, (int, float)):
            return float(exp - iat)
        return None

    def expires_within(self, margin: float, now: float | None = None) -> bool:
        """Whether the access token expires within `margin` seconds (False when unknown)."""
        expires_at = self.expires_at
        if expires_at is None:
            return False
        return expires_at - (time.time() if now is None else now) <= margin

    def __repr__(self) -> str:
        # Tokens are secrets: never in a log line or a traceback.
        return f"Tokens(username={self.username!r}, user_id={self.user_id!r})"
