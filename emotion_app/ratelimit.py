"""Rate limits: HTTP ones through Flask-Limiter (in Redis when there is one, so every worker counts
together), and a token bucket per socket for its frames.

Every limit is a setting; "off" turns it off. A refused request gets 429 in the one error shape with
`retry_after` (seconds) and a `Retry-After` header; a refused frame gets an error frame saying the same.
"""
import functools
import logging
import math
import time

from flask import current_app
from flask_limiter.util import get_remote_address
from limits import parse_many

from .extensions import limiter
from .http import json_object_or_none

log = logging.getLogger(__name__)


def configure_rate_limits(app):
    """Bind the limiter: Redis storage when REDIS_URL is set (shared by workers and hosts), else memory."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"] or "memory://")
    app.config.setdefault("RATELIMIT_KEY_PREFIX", f"{app.config['BROKER_PREFIX']}:limits")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # A Redis outage must not lock everyone out: count in memory until it is back.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    limiter.init_app(app)


def _setting(name):
    return lambda: current_app.config[name] or "1/second"  # the rate is unused when the limit is off


def _off(name):
    return lambda: current_app.config[name] is None


def _username():
    body = json_object_or_none()
    name = body.get("username") if body else None
    return f"username:{name.lower()[:64]}" if isinstance(name, str) and name else f"address:{get_remote_address()}"


def _failed(response):
    return response.status_code == 401


# Login and register, per client address: slows down account-creation and password-guessing alike.
auth_per_address = limiter.shared_limit(
    _setting("RATE_LIMIT_AUTH"), scope="auth", key_func=get_remote_address, exempt_when=_off("RATE_LIMIT_AUTH")
)
# Failed logins per username, from any address: stops a distributed guess at one account's password.
login_failures_per_username = limiter.limit(
    _setting("RATE_LIMIT_LOGIN_FAILURES"),
    key_func=_username,
    deduct_when=_failed,
    exempt_when=_off("RATE_LIMIT_LOGIN_FAILURES"),
)
# WebSocket handshakes per client address.
_handshakes_per_address = limiter.limit(
    _setting("RATE_LIMIT_HANDSHAKE"), key_func=get_remote_address, exempt_when=_off("RATE_LIMIT_HANDSHAKE")
)


def limit_handshakes(bp):
    """Limit the requests of `bp` (the socket's) per address to RATE_LIMIT_HANDSHAKE, its only limit:
    while that is off, Flask-Limiter does no work for them at all."""
    _handshakes_per_address(bp)
    limiter.only_limit[bp.name] = "RATE_LIMIT_HANDSHAKE"


def detection_wait(app, user_id):
    """Count one detection of `user_id` against RATE_LIMIT_DETECT; return 0, or the whole seconds until the
    next one is allowed (counting nothing).

    HTTP and the socket both call this, so they share one budget per user, kept where Flask-Limiter keeps
    its counts (Redis when there is one: every worker and host counts together).
    """
    rate = app.config["RATE_LIMIT_DETECT"]
    if rate is None:
        return 0
    keys = (app.config["RATELIMIT_KEY_PREFIX"], "detect", str(user_id))
    try:
        strategy = limiter.limiter
        for item in _parsed(rate):
            if not strategy.hit(item, *keys):
                reset_at = strategy.get_window_stats(item, *keys).reset_time
                return max(1, math.ceil(reset_at - time.time()))
    except Exception as exc:  # noqa: BLE001 - like the other limits: a storage outage must not lock users out
        log.warning("detection rate limit not checked (%s: %s)", exc.__class__.__name__, exc)
    return 0


@functools.lru_cache(maxsize=8)
def _parsed(rate):
    return parse_many(rate)


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take()` spends one or says how long to wait."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")  # two per socket (FrameLimiter)

    def __init__(self, rate, burst):
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    def take(self):
        """Spend a token and return 0, or return the seconds until one is available (spending none)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class FrameLimiter:
    """The frame rate of one socket: `rate` per second with a `burst`.

    A frame over the limit is refused. Refusals have a budget of their own (the same rate and burst):
    a device that overshoots now and then only gets errors, one that keeps flooding after being told
    exhausts it and is disconnected.
    """

    __slots__ = ("_frames", "_refusals")  # one per socket

    def __init__(self, rate, burst):
        self._frames = TokenBucket(rate, burst) if rate else None
        self._refusals = TokenBucket(rate, burst) if rate else None

    def check(self):
        """Return (wait, flooding): `wait` > 0 refuses this frame; `flooding` means close the socket."""
        if self._frames is None:
            return 0.0, False
        wait = self._frames.take()
        if not wait:
            return 0.0, False
        return wait, self._refusals.take() > 0
