"""The state a worker holds for the users read lately: a user's next device gets its first frame from it,
never older than the database, and nothing is held across a broker interruption or for longer than its
lifetime."""
from emotion_app.heldstate import HeldStates
from emotion_app.hub import Hub


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Epoch:
    """The broker's epoch() as a test sets it (None: its listener is away)."""

    def __init__(self):
        self.value = 1

    def __call__(self):
        return self.value


def event(seq, emotion="happy"):
    return {"id": 100 + seq, "seq": seq, "user_id": "7", "emotion": emotion}


class FakeConnection:
    """What the hub needs of a socket's Connection."""

    def __init__(self, user_id="7"):
        self.user_id = user_id

    def push_event(self, seq, frame, stored_at):
        pass


def test_nothing_is_held_until_a_database_read_confirms_it():
    states = HeldStates(Epoch())
    states.saw("7", event(3))
    assert states.get("7") is None and len(states) == 0  # an event alone says nothing of those before it
    states.confirm(states.reading("7"), "7", event(3), 3)
    assert states.get("7") == (event(3), 3)


def test_events_move_the_state_on_and_never_back():
    states = HeldStates(Epoch())
    states.confirm(states.reading("7"), "7", event(3), 3)
    states.saw("7", event(5, "sad"))
    states.saw("7", event(4, "angry"))  # published earlier elsewhere, arriving late
    assert states.get("7") == (event(5, "sad"), 5)


def test_an_event_seen_while_the_read_ran_is_not_hidden_by_the_older_read():
    states = HeldStates(Epoch())
    mark = states.reading("7")
    states.saw("7", event(4, "sad"))  # committed after the read's snapshot, delivered during the read
    states.saw("8", event(9))  # another user's: nothing held or read for them
    states.confirm(mark, "7", event(3), 3)
    assert states.get("7") == (event(4, "sad"), 4)
    assert states.get("8") is None and len(states) == 1


def test_a_failed_read_leaves_nothing_behind():
    states = HeldStates(Epoch())
    states.reading("7")
    states.abandon("7")
    states.saw("7", event(4))
    assert len(states) == 0


def test_a_user_without_events_is_held_as_such():
    states = HeldStates(Epoch())
    states.confirm(states.reading("7"), "7", None, 0)
    assert states.get("7") == (None, 0)
    states.saw("7", event(1))
    assert states.get("7") == (event(1), 1)


def test_nothing_is_used_across_a_broker_interruption():
    epoch = Epoch()
    states = HeldStates(epoch)
    states.confirm(states.reading("7"), "7", event(3), 3)
    epoch.value = 2  # the listener reconnected: events may have been lost meanwhile
    assert states.get("7") is None
    states.confirm(states.reading("7"), "7", event(4), 4)
    assert states.get("7") == (event(4), 4)


def test_a_read_during_which_the_broker_was_interrupted_is_not_held():
    epoch = Epoch()
    states = HeldStates(epoch)
    mark = states.reading("7")
    epoch.value = 2
    states.confirm(mark, "7", event(3), 3)
    assert states.get("7") is None
    epoch.value = None  # listener away: nothing confirmed, nothing used
    states.confirm(states.reading("7"), "7", event(3), 3)
    assert states.get("7") is None


def test_a_state_is_read_again_after_its_lifetime():
    clock = Clock()
    states = HeldStates(Epoch(), lifetime=60, clock=clock)
    states.confirm(states.reading("7"), "7", event(3), 3)
    clock.now += 59
    assert states.get("7") == (event(3), 3)
    clock.now += 1
    assert states.get("7") is None


def test_past_the_most_users_held_everything_is_dropped():
    states = HeldStates(Epoch(), max_users=2)
    for user in ("1", "2", "3"):
        states.confirm(states.reading(user), user, None, 0)
    assert len(states) == 1 and states.get("3") == (None, 0) and states.get("1") is None


def test_off_holds_nothing_more():
    states = HeldStates(Epoch())
    states.confirm(states.reading("7"), "7", event(3), 3)
    states.off()
    states.confirm(states.reading("7"), "7", event(3), 3)
    assert states.get("7") is None and len(states) == 0


def test_the_hub_keeps_the_state_of_users_read_lately_with_or_without_sockets_here():
    hub = Hub(Epoch())
    hub.dispatch({"kind": "event", "user_id": "8", "event": {**event(1), "user_id": "8", "timestamp": None}})
    assert len(hub.states) == 0  # never read here
    conn = FakeConnection()
    hub.attach(conn)
    hub.states.confirm(hub.states.reading("7"), "7", event(3), 3)
    hub.dispatch({"kind": "event", "user_id": 7, "event": {**event(4, "sad"), "timestamp": None}})
    assert hub.states.get("7")[1] == 4
    hub.detach(conn)
    hub.dispatch({"kind": "event", "user_id": 7, "event": {**event(5, "angry"), "timestamp": None}})
    assert hub.states.get("7") == ({**event(5, "angry"), "timestamp": None}, 5)  # the device coming back starts here


def test_a_hub_without_a_broker_epoch_holds_nothing():
    hub = Hub()
    hub.states.confirm(hub.states.reading("7"), "7", event(3), 3)
    assert hub.states.get("7") is None
