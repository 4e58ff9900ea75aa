"""Group commit on SQLite and PostgreSQL: concurrent writers share transactions, nothing is lost or reordered."""
import threading

import pytest
import sqlalchemy as sa

from emotion_app.extensions import db
from emotion_app.groupcommit import GroupCommitter
from tests.conftest import Auth


def run_writers(count, write, timeout=60):
    """Run `write(n)` for n in range(count), each in its own thread, at once; return what they raised."""
    errors = []

    def run(n):
        try:
            write(n)
        except Exception as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return errors


def test_concurrent_writes_get_gapless_seqs_and_are_announced_in_order(app, auth):
    users = [int(auth.login()["user"]["id"]) for _ in range(3)]
    announced = []
    with app.app_context():
        committer = GroupCommitter(db.engine, announced.extend)
    results = []

    def writer(n):
        for k in range(10):
            results.append(committer.write(users[(n + k) % 3], "happy", None, f"{n}-{k}"))

    assert run_writers(8, writer) == []
    assert len(results) == 80 and all(created for _, created in results)
    assert sorted(e["id"] for e in announced) == sorted(e["id"] for e, _ in results)
    for user in users:
        seqs = [e["seq"] for e in announced if e["user_id"] == str(user)]
        assert seqs == list(range(1, len(seqs) + 1))  # announced in commit order, no gap
    # A repeated client_msg_id is answered with the original, stores and announces nothing.
    event, created = committer.write(users[0], "sad", None, "0-0")
    assert not created and event["client_msg_id"] == "0-0" and len(announced) == 80


def test_each_row_of_a_batch_keeps_its_own_device(app, auth):
    users = [int(auth.login()["user"]["id"]) for _ in range(2)]
    announced = []
    with app.app_context():
        committer = GroupCommitter(db.engine, announced.extend)
    results = []

    def device(n):
        return None if n % 3 == 0 else f"device {n} <{'é' * n}>"

    def writer(n):
        for k in range(5):
            results.append(committer.write(users[k % 2], "happy", None, f"{n}-{k}", device(n)))

    assert run_writers(9, writer) == []
    assert all(event["device"] == device(int(event["client_msg_id"].split("-")[0])) for event, _ in results)
    assert sorted(announced, key=lambda e: e["id"]) == sorted((e for e, _ in results), key=lambda e: e["id"])
    with app.app_context():
        rows = db.session.execute(sa.text("SELECT client_msg_id, device FROM emotion_events")).all()
    assert len(rows) == 45 and all(stored == device(int(mid.split("-")[0])) for mid, stored in rows)


def test_a_failed_batch_reaches_every_caller():
    committer = GroupCommitter(sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none"), lambda events: None)
    with pytest.raises(sa.exc.OperationalError):
        committer.write(1, "sad")
    # The committer is not left stuck behind the failure.
    with pytest.raises(sa.exc.OperationalError):
        committer.write(1, "sad")


def test_two_committers_on_one_database_store_every_update_of_shared_users_without_gaps(app, auth):
    """Two processes' committers (here: two engines) storing updates of the same users at once."""
    users = [int(auth.login()["user"]["id"]) for _ in range(4)]
    announced = []
    with app.app_context():
        engines = [db.engine, sa.create_engine(db.engine.url, **app.config["SQLALCHEMY_ENGINE_OPTIONS"])]
    committers = [GroupCommitter(engine, announced.extend) for engine in engines]

    def writer(n):
        for k in range(15):
            # Each batch names the users in a different order and some users twice.
            committers[n % 2].write(users[(n * 7 + k * 3) % 4], "happy", None, f"{n}-{k}")

    errors = run_writers(12, writer, timeout=120)
    engines[1].dispose()
    assert errors == []
    assert len(announced) == 12 * 15
    for user in users:
        seqs = sorted(e["seq"] for e in announced if e["user_id"] == str(user))
        assert seqs == list(range(1, len(seqs) + 1))


def test_an_update_for_a_missing_user_fails_its_batch_and_stores_nothing(app, auth):
    user = int(auth.login()["user"]["id"])
    announced = []
    with app.app_context():
        committer = GroupCommitter(db.engine, announced.extend)
        with pytest.raises(sa.exc.SQLAlchemyError):
            committer.write(user + 1000, "happy")
        event, created = committer.write(user, "happy")  # the committer goes on
        assert created and event["seq"] == 1 and announced == [event]
        assert db.session.scalar(sa.text("SELECT count(*) FROM emotion_events")) == 1
