"""When to try again: exponential backoff with full jitter, capped, with an injectable clock, sleep
and random source so the schedule can be tested without waiting."""
from __future__ import annotations

import random as _random
import time
from typing import Callable


class Backoff:
    """The reconnect schedule.

    Attempt n (1, 2, 3 ...) waits a random time between 0 and min(cap, base * 2 ** (n - 1)) seconds
    ("full jitter", so that many devices cut off together do not come back in lockstep), and never
    less than a `retry_after` the server asked for. A connection that stayed up for `stable_after`
    seconds starts the schedule over.

    After a server restart (`server_restarted()`, on close code 1012) the cap is `restart_cap` instead
    of `cap` for `restart_window` seconds, or until a connection is established: a restarting host
    refuses connections for a few seconds and is then ready at once. The attempts keep being counted,
    so a server still down after the window meets the schedule it would have reached without one.

    `clock` (monotonic seconds), `sleep` and `random` (a float in [0, 1)) default to the standard ones;
    `sleep=None` lets the caller wait its own (interruptible) way.
    """

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        stable_after: float = 10.0,
        restart_cap: float = 2.0,
        restart_window: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.stable_after = stable_after
        self.restart_cap = restart_cap
        self.restart_window = restart_window
        self.clock = clock
        self.sleep = sleep
        self.random = random
        self.attempts = 0
        self._connected_at: float | None = None
        self._restarted_at: float | None = None

    def copy(self) -> Backoff:
        """A fresh schedule with the same settings and the same clock, sleep and random source."""
        return Backoff(
            self.base, self.cap, self.stable_after, self.restart_cap, self.restart_window,
            clock=self.clock, sleep=self.sleep, random=self.random,
        )

    @property
    def restarting(self) -> bool:
        """Whether the short cap is in force: a server restart was seen less than `restart_window` ago
        and no connection has been established since."""
        return self._restarted_at is not None and self.clock() - self._restarted_at < self.restart_window

    def ceiling(self, attempt: int) -> float:
        """The longest wait of attempt `attempt` (1-based), with the cap in force now."""
        cap = min(self.cap, self.restart_cap) if self.restarting else self.cap
        # min() before the power would overflow for a long outage.
        return float(min(cap, self.base * 2.0 ** min(attempt - 1, 64)))

    def next_delay(self, retry_after: float | None = None) -> float:
        """Count a failed attempt and return how long to wait before the next one."""
        self.attempts += 1
        delay = self.random() * self.ceiling(self.attempts)
        return max(delay, retry_after or 0.0)

    def server_restarted(self) -> None:
        """Note a close with 1012: the attempts that follow wait at most `restart_cap` for a while."""
        self._restarted_at = self.clock()

    def connected(self) -> None:
        """Note that a connection is up (its lifetime decides whether the schedule starts over); a
        restart, if one was noted, is over."""
        self._connected_at = self.clock()
        self._restarted_at = None

    def disconnected(self) -> None:
        """Note that the connection is gone; after a stable one the next delay is short again."""
        if self._connected_at is not None and self.clock() - self._connected_at >= self.stable_after:
            self.reset()
        self._connected_at = None

    def reset(self) -> None:
        """Start the schedule over."""
        self.attempts = 0

    def wait(self, delay: float, fallback: Callable[[float], object] = time.sleep) -> None:
        """Sleep `delay` seconds with the injected sleep, or with `fallback` when none was given."""
        if delay > 0:
            (self.sleep or fallback)(delay)
