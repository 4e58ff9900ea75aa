"""`Client`: log in, set and read emotions, and watch them live."""
from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import httpx

from .backoff import Backoff
from .errors import ApiError, AuthError, Revoked, Unreachable
from .http import Http
from .models import Device, Event, User
from .tokens import Tokens
from .watch import Watch

# Refusals of an update worth sending again (with the same client_msg_id) a little later.
RETRY_STATUSES = (429, 502, 503, 504)


class Client:
    """A client of one emotion_app server.

    `device` names this device (shown to the user's other devices and stored with its updates).
    `tokens` resumes a login kept from before; `on_tokens` is called with the new `Tokens` after
    every login and refresh, and with None after logout, so they can be stored. `timeout` bounds each
    HTTP request and socket handshake; `retry_timeout` is how long `set` keeps trying through an
    outage. `heartbeat`: seconds of silence on the socket before it sends a ping; `heartbeat_timeout`:
    how long it then waits for any frame before it gives the connection up. `backoff` is the
    reconnect schedule (each watch and each `set` use a fresh copy of it).
    """

    def __init__(
        self,
        base_url: str = "http://localhost:8000",
        *,
        device: str | None = None,
        tokens: Tokens | None = None,
        on_tokens: Callable[[Tokens | None], None] | None = None,
        timeout: float = 10.0,
        retry_timeout: float = 30.0,
        heartbeat: float = 20.0,
        heartbeat_timeout: float = 10.0,
        backoff: Backoff | None = None,
        refresh_margin: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = Http(base_url, timeout, transport)
        self.device = device
        self.timeout = timeout
        self.retry_timeout = retry_timeout
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout
        self.backoff = backoff or Backoff()
        self.refresh_margin = refresh_margin
        self._tokens = tokens
        self._on_tokens = on_tokens
        self._refresh_lock = threading.Lock()
        self._set_lock = threading.Lock()
        self._watch: Watch | None = None

    @property
    def base_url(self) -> str:
        """The server's base URL (`http://host:port`)."""
        return self._http.base_url

    @property
    def tokens(self) -> Tokens | None:
        """The current login's tokens, or None when logged out."""
        return self._tokens

    def close(self) -> None:
        """Stop any watch and close the HTTP connections."""
        if self._watch is not None:
            self._watch.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- accounts ------------------------------------------------------------------------------------

    def register(self, username: str, password: str) -> User:
        """Create an account (it does not log in)."""
        return User.from_json(
            self._http.request("POST", "/api/auth/register", json={"username": username, "password": password})
        )

    def login(self, username: str, password: str) -> User:
        """Log in and keep the tokens; raises AuthError for a wrong username or password."""
        try:
            body = self._http.request("POST", "/api/auth/login", json={"username": username, "password": password})
        except ApiError as exc:
            if exc.status == 401:
                raise AuthError(exc.message, exc.code) from None
            raise
        self._set_tokens(Tokens.from_login(body))
        return User.from_json(body["user"])

    def logout(self) -> None:
        """End this login on the server (its sockets close) and forget the tokens.

        The tokens are forgotten even when the server cannot be told (then Unreachable is raised).
        """
        tokens = self._tokens
        if tokens is None:
            return
        self._set_tokens(None)
        try:
            self._http.request("POST", "/api/auth/logout", token=tokens.refresh_token)
        except ApiError as exc:
            if exc.status != 401:  # 401: the session had ended already
                raise

    def me(self) -> User:
        """The logged-in user."""
        return User.from_json(self._call("GET", "/api/auth/me"))

    def refresh(self) -> Tokens:
        """Get a new access token now (normally done by itself shortly before the old one expires)."""
        return self._refresh()

    # ---- emotions --------------------------------------------------------------------------------------

    def set(self, emotion: str, client_msg_id: str | None = None, *, timestamp: datetime | None = None) -> Event:
        """Set the current emotion and return the stored event.

        Sent over the socket while a `watch()` is connected, otherwise over HTTP. Network errors and
        503s are retried for up to `retry_timeout` seconds with the same `client_msg_id`, so the
        update is stored once however often it is sent.
        """
        client_msg_id = client_msg_id or uuid.uuid4().hex
        stamp = (timestamp or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
        body: dict[str, Any] = {"emotion": emotion, "timestamp": stamp, "client_msg_id": client_msg_id}
        with self._set_lock:
            watch = self._watch
            if watch is not None and watch.connected:
                return watch.submit({"type": "emotion_update", **body}, self.retry_timeout)
            if self.device:
                body["device"] = self.device
            return self._post_event(body)

    def _post_event(self, body: dict[str, Any]) -> Event:
        schedule = self.backoff.copy()
        deadline = schedule.clock() + self.retry_timeout
        while True:
            try:
                return Event.from_json(self._call("POST", "/api/emotions", json=body))
            except Unreachable as exc:
                error: Exception = exc
                retry_after = None
            except ApiError as exc:
                if isinstance(exc, AuthError) or exc.status not in RETRY_STATUSES:
                    raise
                error, retry_after = exc, exc.retry_after
            left = deadline - schedule.clock()
            if left <= 0:
                raise error
            schedule.wait(min(schedule.next_delay(retry_after), left))

    def current(self) -> Event | None:
        """The latest event, or None when no emotion was set yet."""
        body = self._call("GET", "/api/emotions/current")
        return Event.from_json(body) if body.get("id") is not None else None

    def history(self, limit: int | None = 50, before: int | None = None) -> Iterator[Event]:
        """Up to `limit` events (None: all), newest first, older than event id `before` if given.

        Pages are fetched as the iterator is consumed.
        """
        left = limit
        while left is None or left > 0:
            page = 100 if left is None else min(left, 100)
            body = self._call("GET", "/api/emotions", params={"limit": page, "before": before})
            events = body.get("events") or []
            for item in events[: left if left is not None else None]:
                yield Event.from_json(item)
            if left is not None:
                left -= len(events)
            before = body.get("next_before")
            if before is None or not events:
                return

    def devices(self) -> list[Device]:
        """The user's devices online now (every open socket, on every server)."""
        body = self._call("GET", "/api/devices")
        return [Device.from_json(item) for item in body.get("online") or []]

    def stats(self, days: int = 7, tz: str | None = None) -> dict[str, Any]:
        """Time spent in each emotion per day over the last `days` days (today included) in time zone
        `tz` (an IANA name; the server's default, UTC, if None): the JSON of `/api/emotions/stats`."""
        start = _today(tz) - timedelta(days=max(days, 1) - 1)
        body: dict[str, Any] = self._call(
            "GET", "/api/emotions/stats", params={"from": start.isoformat(), "bucket": "day", "tz": tz}
        )
        return body

    # ---- watching ----------------------------------------------------------------------------------------

    def watch(self, since: int | None = None) -> Watch:
        """Start watching the user's events live; see `Watch`.

        Without `since` the stream starts at the current state (`Connected.current`); with it, every
        event after that id comes first.
        """
        watch = Watch(
            self,
            since=since,
            backoff=self.backoff.copy(),
            heartbeat=self.heartbeat,
            heartbeat_timeout=self.heartbeat_timeout,
            connect_timeout=self.timeout,
        )
        self._watch = watch
        return watch

    subscribe = watch

    def _watch_ended(self, watch: Watch) -> None:
        if self._watch is watch:
            self._watch = None

    # ---- tokens ------------------------------------------------------------------------------------------

    def _set_tokens(self, tokens: Tokens | None) -> None:
        self._tokens = tokens
        if self._on_tokens is not None:
            self._on_tokens(tokens)

    def _access_token(self) -> str:
        """A valid access token, renewed first if it expires soon."""
        tokens = self._tokens
        if tokens is None:
            raise AuthError("Not logged in", "not_logged_in")
        lifetime = tokens.lifetime
        margin = min(self.refresh_margin, lifetime / 4) if lifetime else self.refresh_margin
        if tokens.expires_within(margin):
            tokens = self._refresh(stale=tokens.access_token)
        return tokens.access_token

    def _refresh(self, stale: str | None = None) -> Tokens:
        """Exchange the refresh token for a new access token.

        With `stale`, nothing is done if the access token is no longer that one (another thread
        renewed it meanwhile). Raises Revoked or AuthError when the server refuses the refresh token.
        """
        with self._refresh_lock:
            tokens = self._tokens
            if tokens is None:
                raise AuthError("Not logged in", "not_logged_in")
            if stale is not None and tokens.access_token != stale:
                return tokens
            try:
                body = self._http.request("POST", "/api/auth/refresh", token=tokens.refresh_token)
            except ApiError as exc:
                if exc.status == 401:
                    raise _auth_failure(exc) from None
                raise
            tokens = tokens.with_access(body["access_token"])
            self._set_tokens(tokens)
            return tokens

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """An authenticated request; an expired access token is renewed once and the request repeated."""
        token = self._access_token()
        try:
            return self._http.request(method, path, json=json, params=params, token=token)
        except ApiError as exc:
            if exc.status != 401:
                raise
            if exc.code != "token_expired":
                raise _auth_failure(exc) from None
        token = self._refresh(stale=token).access_token
        try:
            return self._http.request(method, path, json=json, params=params, token=token)
        except ApiError as exc:
            if exc.status == 401:
                raise _auth_failure(exc) from None
            raise


def _auth_failure(exc: ApiError) -> AuthError:
    if exc.code == "token_revoked":
        return Revoked(exc.message)
    return AuthError(exc.message, exc.code)


def _today(tz: str | None) -> date:
    if tz:
        try:
            from zoneinfo import ZoneInfo

            return datetime.now(ZoneInfo(tz)).date()
        except (ImportError, ValueError, KeyError, OSError):
            pass  # the server says whether it knows the zone
    return datetime.now(timezone.utc).date()
