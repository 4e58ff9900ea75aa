"""The client's reconnect and retry schedule: exponential backoff with full jitter, capped, never shorter
than a server's retry_after, starting over after a stable connection, with a short cap for a while
after a server restart (1012); checked with an injected clock,
sleep and random source, so nothing here waits for the delays it computes."""
import json
import time

import httpx
import pytest
from emotion_client import ApiError, Backoff, Client, Connected, Disconnected, Tokens, Unreachable

from tests.clienthelpers import close_clients, fast_client, new_user  # noqa: F401 (close_clients is a fixture)
from tests.conftest import free_port


class FakeTime:
    """A clock that moves only when slept on; records every sleep."""

    def __init__(self, real_pause=0.0):
        self.now = 1000.0
        self.sleeps = []
        self.real_pause = real_pause

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        if self.real_pause:
            time.sleep(self.real_pause)  # only so a loop against a real server does not spin


def schedule(fake, randoms, **options):
    values = iter(randoms)
    return Backoff(clock=fake.clock, sleep=fake.sleep, random=lambda: next(values), **options)


def test_full_jitter_doubles_the_ceiling_up_to_the_cap():
    backoff = schedule(FakeTime(), [0.999] * 7 + [0.0, 0.5, 0.25], base=1, cap=8)
    highest = [backoff.next_delay() for _ in range(7)]
    assert highest == pytest.approx([0.999 * c for c in (1, 2, 4, 8, 8, 8, 8)])
    # Each delay is random * ceiling: anywhere from nothing to the ceiling.
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([0.0, 4.0, 2.0])


def test_a_long_outage_does_not_overflow():
    backoff = schedule(FakeTime(), [1.0] * 2000, base=0.5, cap=30)
    assert max(backoff.next_delay() for _ in range(2000)) == 30


def test_retry_after_is_a_floor_never_a_ceiling():
    backoff = schedule(FakeTime(), [0.0, 1.0], base=10, cap=60)
    assert backoff.next_delay(retry_after=5) == 5  # the jitter drew 0: the server's wish wins
    assert backoff.next_delay(retry_after=5) == 20  # the schedule asks for more: it wins


def test_a_stable_connection_starts_the_schedule_over_and_a_short_one_does_not():
    fake = FakeTime()
    backoff = schedule(fake, [1.0] * 10, base=1, cap=100, stable_after=10)
    assert [backoff.next_delay() for _ in range(3)] == [1, 2, 4]
    backoff.connected()
    fake.now += 9.9
    backoff.disconnected()
    assert backoff.next_delay() == 8  # a flapping connection keeps backing off
    backoff.connected()
    fake.now += 10
    backoff.disconnected()
    assert backoff.next_delay() == 1


def test_after_a_server_restart_the_cap_is_short_for_the_window_and_the_count_goes_on():
    fake = FakeTime()
    backoff = schedule(fake, [1.0] * 20, base=0.5, cap=30, restart_cap=2, restart_window=10)
    backoff.server_restarted()
    delays = []
    for _ in range(8):
        delays.append(backoff.next_delay())
        fake.sleep(delays[-1])
    # Within 10 s of the 1012 the cap is 2 s; the eighth failure comes 11.5 s after it: the usual cap
    # applies, and the seven failures before it count.
    assert delays == [0.5, 1, 2, 2, 2, 2, 2, 30]


def test_retry_after_is_still_a_floor_after_a_server_restart():
    backoff = schedule(FakeTime(), [0.0, 1.0], base=1, cap=60, restart_cap=2)
    backoff.server_restarted()
    assert backoff.next_delay(retry_after=5) == 5
    assert backoff.next_delay(retry_after=0.5) == 2


def test_a_connection_ends_the_restart_window_and_other_closes_never_open_one():
    fake = FakeTime()
    backoff = schedule(fake, [1.0] * 20, base=1, cap=100, stable_after=10, restart_cap=2, restart_window=30)
    assert [backoff.next_delay() for _ in range(3)] == [1, 2, 4]  # no 1012 seen: the usual schedule
    backoff.server_restarted()
    assert backoff.restarting and backoff.next_delay() == 2
    backoff.connected()  # the restarted server took it: the restart is over
    assert not backoff.restarting
    fake.now += 1
    backoff.disconnected()  # a short connection lost without 1012 backs off as usual
    assert backoff.next_delay() == 16


def test_a_copy_keeps_the_restart_settings():
    backoff = Backoff(restart_cap=1.5, restart_window=12).copy()
    assert (backoff.restart_cap, backoff.restart_window) == (1.5, 12)
    assert (Backoff().restart_cap, Backoff().restart_window) == (2.0, 30.0)


def test_a_watch_on_an_unreachable_server_follows_the_schedule_without_sleeping():
    fake = FakeTime()
    client = Client(
        f"http://127.0.0.1:{free_port()}",  # nothing listens there
        tokens=Tokens("not.a-token.really", "refresh"),
        backoff=schedule(fake, [0.5] * 10_000, base=1, cap=4),
        timeout=1,
    )
    started = time.monotonic()
    with client.watch() as watch:
        items = [watch.get(timeout=5) for _ in range(6)]
    assert time.monotonic() - started < 3, "the watch slept for real"
    assert all(isinstance(item, Disconnected) and item.code == 1006 for item in items)
    assert [item.retry_in for item in items] == [0.5, 1, 2, 2, 2, 2]
    assert fake.sleeps[:6] == [0.5, 1, 2, 2, 2, 2]


def test_a_watch_waits_as_long_as_a_429_says(server_factory):
    server = server_factory(WS_MAX_SOCKETS_PER_USER=1)
    tokens = server.login()
    held, _ = server.device(tokens["access_token"])  # the user's one allowed socket
    fake = FakeTime(real_pause=0.02)
    client = fast_client(
        server.url, tokens=Tokens.from_login(tokens), backoff=schedule(fake, [0.0] * 10_000, base=0.1, cap=1)
    )
    with client.watch() as watch:
        refused = watch.get(timeout=5)
        assert isinstance(refused, Disconnected) and refused.code == 429
        assert refused.retry_in == 5 and fake.sleeps[0] == 5  # retry_after of too_many_sockets
        held.close()
        while not isinstance(item := watch.get(timeout=5), Connected):
            assert isinstance(item, Disconnected) and item.retry_in == 5


def test_a_watch_retries_quickly_while_its_server_restarts_then_backs_off_as_usual(server_factory):
    server = server_factory()
    fake = FakeTime(real_pause=0.01)
    client = fast_client(server.url, tokens=Tokens.from_login(server.login()), backoff=schedule(
        fake, [1.0] * 10_000, base=0.5, cap=30, restart_cap=2, restart_window=9))
    with client.watch() as watch:
        assert isinstance(watch.get(timeout=5), Connected)
        server.stop()  # SIGTERM: the socket is closed with 1012, then nothing listens on the port
        restart, *refused = [watch.get(timeout=20) for _ in range(8)]
    assert isinstance(restart, Disconnected) and restart.code == 1012 and restart.retry_in == 0
    # While the server drains, a handshake gets 503 draining (retry_after 1); once it is gone, none connects.
    assert all(isinstance(item, Disconnected) and item.code in (503, 1006) for item in refused), refused
    first = 1 if refused[0].code == 503 else 0.5
    # The seventh failure comes 9.5 s or more after the 1012: the usual cap, with six failures before it.
    assert [item.retry_in for item in refused] == [first, 1, 2, 2, 2, 2, 30]
    assert fake.sleeps[:7] == [first, 1, 2, 2, 2, 2, 30]


def _mock(answers, seen):
    """An httpx transport that answers POST /api/emotions from `answers` in turn and records bodies."""

    def handler(request):
        seen.append(json.loads(request.content))
        status, body = answers.pop(0)
        if isinstance(status, type):
            raise status("connection reset", request=request)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handler)


EVENT = {"id": 9, "seq": 1, "user_id": "1", "emotion": "happy", "timestamp": "2026-11-26T10:00:00.000Z",
         "client_timestamp": None, "device": None, "client_msg_id": "abc"}


def test_set_retries_503_and_network_errors_with_the_same_id_honouring_retry_after():
    fake, seen = FakeTime(), []
    answers = [
        (503, {"status": 503, "error": "database_unavailable", "message": "down", "retry_after": 3}),
        (httpx.ReadError, None),
        (200, {**EVENT, "duplicate": True}),
    ]
    client = Client(
        "http://emotions.test",
        tokens=Tokens("a.b.c", "refresh"),
        backoff=schedule(fake, [0.5] * 10, base=1, cap=10),
        transport=_mock(answers, seen),
    )
    event = client.set("happy", client_msg_id="abc")
    assert event.id == 9 and event.client_msg_id == "abc"
    assert [body["client_msg_id"] for body in seen] == ["abc"] * 3
    assert fake.sleeps == [3, 1]  # retry_after, then the schedule's second step (0.5 * 2)


def test_set_gives_up_after_retry_timeout_of_the_injected_clock():
    fake = FakeTime()
    client = Client(
        f"http://127.0.0.1:{free_port()}",
        tokens=Tokens("a.b.c", "refresh"),
        retry_timeout=20,
        backoff=schedule(fake, [1.0] * 100, base=1, cap=8),
    )
    started = time.monotonic()
    with pytest.raises(Unreachable):
        client.set("happy")
    assert time.monotonic() - started < 3
    assert fake.sleeps == [1, 2, 4, 8, 5]  # the last wait ends at the deadline
    client.close()


def test_a_refused_update_is_not_retried(live_server):
    client = fast_client(live_server.url)
    new_user(client)
    with pytest.raises(ApiError) as refused:
        client.set("bored")
    assert refused.value.status == 400 and refused.value.code == "unknown_emotion"
