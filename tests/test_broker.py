"""The broker contract, run against the in-process and the Redis backend (a real Redis server)."""
import threading
import time
import uuid

import pytest
import redis

from emotion_app.broker import create_broker
from emotion_app.broker.memory import MemoryBroker
from emotion_app.broker.redis import RedisBroker


class Inbox:
    """Collects what a broker delivers, and waits for it."""

    def __init__(self):
        self.messages = []
        self.arrived = threading.Condition()

    def __call__(self, message):
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()

    def wait_for(self, count, timeout=5):
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
        return list(self.messages)


def wait_listening(broker, timeout=10):
    deadline = time.monotonic() + timeout
    while not broker.listening:
        assert time.monotonic() < deadline, "the listener did not (re)connect"
        time.sleep(0.02)


def broker_factory(url):
    """Make started brokers that share one fresh channel prefix; stop them all afterwards."""
    prefix = f"test_{uuid.uuid4().hex[:8]}"
    made = []

    def factory(prefix=prefix):
        broker = create_broker(url, prefix)
        inbox = Inbox()
        broker.subscribe(inbox)
        broker.start()
        if broker.shared:
            wait_listening(broker)
        made.append(broker)
        return broker, inbox

    return factory, made


@pytest.fixture(params=["memory", "redis"])
def make_broker(request):
    """Brokers of each backend, for the contract every backend keeps."""
    url = None if request.param == "memory" else request.getfixturevalue("redis_url")
    factory, made = broker_factory(url)
    yield factory
    for broker in made:
        broker.stop()


@pytest.fixture
def make_redis_broker(redis_url):
    """Redis brokers standing for several worker processes."""
    factory, made = broker_factory(redis_url)
    yield factory
    for broker in made:
        broker.stop()


def test_publish_reaches_this_process_once_as_json(make_broker):
    broker, inbox = make_broker()
    broker.publish({"kind": "event", "user_id": "7", "event": {"id": 1, "tags": ("a", "b")}})
    time.sleep(0.2 if broker.shared else 0)  # give an echo through Redis the time to (wrongly) arrive
    # Exactly once, and as decoded JSON (the tuple became a list), whichever backend carries it.
    assert inbox.messages == [{"kind": "event", "user_id": "7", "event": {"id": 1, "tags": ["a", "b"]}}]


def test_a_failing_handler_does_not_break_publish(make_broker):
    broker, inbox = make_broker()
    calls = []

    def explode(message):
        calls.append(message)
        raise RuntimeError("bug in a hub")

    broker.subscribe(explode)
    broker.publish({"kind": "event", "n": 1})  # no exception reaches the publisher
    assert calls == [{"kind": "event", "n": 1}]


def test_health_reports_ok(make_broker):
    broker, _ = make_broker()
    assert broker.health() is None


def test_a_ticket_is_taken_once(make_broker):
    broker, _ = make_broker()
    broker.put_ticket("k1", '{"sub": "1"}', ttl=30)
    assert broker.take_ticket("k1") == '{"sub": "1"}'
    assert broker.take_ticket("k1") is None
    assert broker.take_ticket("never-made") is None


def test_a_ticket_expires(make_broker):
    broker, _ = make_broker()
    broker.put_ticket("k2", "v", ttl=1)
    time.sleep(1.2)
    assert broker.take_ticket("k2") is None


def test_a_ticket_is_taken_by_one_of_many_concurrent_takers(make_redis_broker):
    # Several processes race for one ticket (a replayed URL): exactly one gets it.
    brokers = [make_redis_broker()[0] for _ in range(4)]
    for round_ in range(20):
        brokers[0].put_ticket(f"race{round_}", "v", ttl=30)
        results = []
        threads = [threading.Thread(target=lambda b=b: results.append(b.take_ticket(f"race{round_}"))) for b in brokers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 4 and results.count("v") == 1 and results.count(None) == 3


def test_expired_memory_tickets_do_not_accumulate():
    broker = create_broker(None, "p")
    for n in range(100):
        broker.put_ticket(f"k{n}", "v", ttl=0.01)
    time.sleep(0.02)
    broker.put_ticket("last", "v", ttl=30)
    assert list(broker._tickets) == ["last"]


def test_messages_reach_other_processes_exactly_once(make_redis_broker):
    first, first_inbox = make_redis_broker()
    second, second_inbox = make_redis_broker()
    for n in range(3):
        first.publish({"kind": "event", "n": n})
    assert second_inbox.wait_for(3) == [{"kind": "event", "n": n} for n in range(3)]
    time.sleep(0.2)
    assert len(first_inbox.messages) == 3 and len(second_inbox.messages) == 3


def test_other_prefixes_are_not_heard(make_redis_broker):
    talker, _ = make_redis_broker(prefix=f"test_{uuid.uuid4().hex[:8]}")
    listener, inbox = make_redis_broker()
    talker.publish({"kind": "event"})
    time.sleep(0.3)
    assert inbox.messages == []


def test_malformed_messages_on_the_channel_are_skipped(make_redis_broker, redis_url):
    broker, inbox = make_redis_broker()
    raw = redis.Redis.from_url(redis_url)
    for junk in [b"\xff\xfe", b"no-space-here", b"abc {not json", b"0123 [1,2"]:
        raw.publish(broker.channel, junk)
    raw.publish(broker.channel, 'someoneelse {"kind":"event","n":1}')
    assert inbox.wait_for(1) == [{"kind": "event", "n": 1}]
    assert broker.listening
    raw.close()


def test_redis_restart_publish_survives_and_listener_comes_back(private_redis):
    prefix = f"test_{uuid.uuid4().hex[:8]}"
    here, elsewhere = RedisBroker(private_redis.url, prefix), RedisBroker(private_redis.url, prefix)
    here_inbox, elsewhere_inbox = Inbox(), Inbox()
    here.subscribe(here_inbox)
    elsewhere.subscribe(elsewhere_inbox)
    elsewhere.start()
    wait_listening(elsewhere)

    private_redis.stop()
    here.publish({"kind": "event", "n": "during outage"})  # no exception: stored data is not at risk
    assert here_inbox.messages == [{"kind": "event", "n": "during outage"}]  # local delivery still works
    assert "redis unreachable" in here.health()
    deadline = time.monotonic() + 10
    while elsewhere.listening:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    private_redis.start()
    wait_listening(elsewhere, timeout=15)  # backoff is capped at 5 s
    here.publish({"kind": "event", "n": "after restart"})
    assert elsewhere_inbox.wait_for(1) == [{"kind": "event", "n": "after restart"}]
    assert here.health() is None and elsewhere.health() is None
    here.stop()
    elsewhere.stop()


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="REDIS_URL"):
        create_broker("amqp://localhost")
    assert isinstance(create_broker(None), MemoryBroker)
