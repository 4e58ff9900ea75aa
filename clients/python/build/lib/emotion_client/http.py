"""JSON over HTTP with httpx: one place that turns answers into values or errors."""
from __future__ import annotations

from typing import Any, Mapping

import httpx

from . import __version__
from .errors import ApiError, Unreachable

USER_AGENT = f"emotion-client/{__version__}"


class Http:
    """A small JSON client for one server; every failure becomes `ApiError` or `Unreachable`."""

    def __init__(self, base_url: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> Any:
        """Send one request; return the parsed JSON body of a 2xx answer, else raise ApiError.

        Raises Unreachable when the server cannot be reached or the connection drops mid-request.
        """
        headers = {"Authorization": f"Bearer {token}"} if token else None
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._client.request(method, path, json=json, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise Unreachable(f"Cannot reach {self.base_url}: {_describe(exc)}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        error = ApiError.from_body(response.status_code, body)
        if error.retry_after is None and "Retry-After" in response.headers:
            try:
                error.retry_after = float(response.headers["Retry-After"])
            except ValueError:
                pass
        raise error

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in text.lower() else (text or "cannot connect")
    return text or type(exc).__name__
