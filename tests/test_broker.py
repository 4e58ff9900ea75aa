"""The broker contract, run against the in-process and the Redis backend (a real Redis server)."""
import threading
import time
import uuid

import pytest
import redis

from emotion_app.broker import create_broker
from emotion_app.broker.memory import MemoryBroker
from emotion_app.broker import redis as redis_broker
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


PHONE, TABLET, LAPTOP = "a1" * 8, "b2" * 8, "c3" * 8  # socket ids, as Connection.id makes them


def test_presence_lists_each_socket_with_its_name(make_broker):
    broker, _ = make_broker()
    assert broker.presence_list("7") == [] and broker.presence_count("7") == 0
    assert broker.presence_join("7", PHONE, "Pixel 8") == [{"id": PHONE, "name": "Pixel 8"}]
    joined = broker.presence_join(7, TABLET)  # an unnamed device counts too
    # Sorted by name (unnamed first), then id.
    assert joined == [{"id": TABLET, "name": None}, {"id": PHONE, "name": "Pixel 8"}]
    odd = "Ann's: <b>Mac</b> 📱"  # any character a normalised name may hold, colons included
    online = broker.presence_join("7", LAPTOP, odd)
    assert online == [{"id": TABLET, "name": None}, {"id": LAPTOP, "name": odd}, {"id": PHONE, "name": "Pixel 8"}]
    assert broker.presence_list("7") == online and broker.presence_count("7") == 3
    assert broker.presence_list("8") == []  # other users' lists are their own
    assert broker.presence_leave("7", LAPTOP) == [{"id": TABLET, "name": None}, {"id": PHONE, "name": "Pixel 8"}]
    assert broker.presence_leave("7", TABLET) == [{"id": PHONE, "name": "Pixel 8"}]
    assert broker.presence_leave("7", PHONE) == [] and broker.presence_count("7") == 0


def test_equal_names_are_ordered_by_socket_id(make_broker):
    broker, _ = make_broker()
    broker.presence_join("7", TABLET, "Phone")
    assert broker.presence_join("7", PHONE, "Phone") == [{"id": PHONE, "name": "Phone"}, {"id": TABLET, "name": "Phone"}]


def test_presence_is_shared_by_every_process(make_redis_broker):
    here, _ = make_redis_broker()
    there, _ = make_redis_broker()
    here.presence_join("7", PHONE, "Pixel 8")
    online = there.presence_join("7", TABLET, "iPad")
    assert online == [{"id": PHONE, "name": "Pixel 8"}, {"id": TABLET, "name": "iPad"}]  # plain string order
    assert here.presence_list("7") == online and here.presence_count("7") == 2
    assert here.presence_leave("7", PHONE) == [{"id": TABLET, "name": "iPad"}]
    assert there.presence_list("7") == [{"id": TABLET, "name": "iPad"}]


def test_presence_of_a_process_that_stops_refreshing_expires(make_redis_broker, monkeypatch):
    # The listener refreshes at least once a second (it waits for messages 1 s at most): 2 s is ample.
    monkeypatch.setattr(redis_broker, "PRESENCE_TTL", 2.0)
    monkeypatch.setattr(redis_broker, "PRESENCE_REFRESH", 0.2)
    alive, _ = make_redis_broker()
    dead, _ = make_redis_broker()
    alive.presence_join("7", PHONE, "Pixel 8")
    dead.presence_join("7", TABLET, "iPad")
    dead.stop()  # no listener any more: nothing refreshes its entries, as after a SIGKILL
    time.sleep(3.5)
    # The live process's entry keeps its name through every refresh; the dead one's is gone.
    assert alive.presence_list("7") == [{"id": PHONE, "name": "Pixel 8"}]
    assert alive.presence_count("7") == 1


def test_a_socket_that_leaves_during_a_refresh_is_not_put_back(make_redis_broker):
    broker, _ = make_redis_broker()
    broker.presence_join("7", PHONE, "Pixel 8")
    broker.presence_join("7", TABLET, "iPad")
    client = broker._redis()
    real_pipeline = client.pipeline
    leaving = [lambda: broker.presence_leave("7", PHONE)]

    def pipeline(*args, **kwargs):
        # The phone's socket closes while the refresh is on its way: its removal reaches Redis first.
        pipe = real_pipeline(*args, **kwargs)
        run = pipe.execute

        def execute(*a, **k):
            if leaving:
                leaving.pop()()
            return run(*a, **k)

        pipe.execute = execute
        return pipe

    client.pipeline = pipeline
    try:
        broker._refreshed = 0.0
        broker._refresh_presence()
    finally:
        client.pipeline = real_pipeline
    assert not leaving
    assert broker.presence_list("7") == [{"id": TABLET, "name": "iPad"}]


def test_presence_is_none_while_redis_is_unreachable():
    broker = RedisBroker("redis://127.0.0.1:1/0", "p")  # nothing listens on port 1
    assert broker.presence_join("7", PHONE, "Pixel 8") is None
    assert broker.presence_list("7") is None and broker.presence_count("7") is None
    assert broker.presence_leave("7", PHONE) is None
    broker.stop()


def test_presence_calls_take_one_round_trip(make_redis_broker, monkeypatch):
    broker, _ = make_redis_broker()
    trips = []
    client = broker._redis()
    real_pipeline, real_execute = client.pipeline, client.execute_command

    def pipeline(*args, **kwargs):
        pipe = real_pipeline(*args, **kwargs)
        run = pipe.execute
        pipe.execute = lambda *a, **k: trips.append("pipeline") or run(*a, **k)
        return pipe

    monkeypatch.setattr(client, "pipeline", pipeline)
    monkeypatch.setattr(client, "execute_command", lambda *a, **k: trips.append(a[0]) or real_execute(*a, **k))
    for call in (lambda: broker.presence_join("7", PHONE, "Pixel 8"), lambda: broker.presence_list("7"),
                 lambda: broker.presence_count("7"), lambda: broker.presence_leave("7", PHONE)):
        trips.clear()
        call()
        assert trips == ["pipeline"]


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


def test_the_epoch_changes_whenever_messages_may_have_been_missed(private_redis):
    broker = RedisBroker(private_redis.url, f"test_{uuid.uuid4().hex[:8]}")
    inbox = Inbox()
    broker.subscribe(inbox)
    assert broker.epoch() is None and MemoryBroker().epoch() == 0
    broker.start()  # None until Redis confirms the subscription
    wait_listening(broker)
    first = broker.epoch()
    admin = redis.Redis.from_url(private_redis.url)
    admin.client_kill_filter(_type="pubsub")  # the listener's connection is cut
    deadline = time.monotonic() + 10
    while broker.epoch() in (None, first):
        assert time.monotonic() < deadline, "the listener did not subscribe again"
        time.sleep(0.02)
    admin.publish(broker.channel, 'elsewhere {"kind":"event","n":1}')
    assert inbox.wait_for(1) == [{"kind": "event", "n": 1}]
    admin.close()
    broker.stop()
    assert broker.epoch() is None


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="REDIS_URL"):
        create_broker("amqp://localhost")
    assert isinstance(create_broker(None), MemoryBroker)
