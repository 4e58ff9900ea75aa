"""Password hashing and checking (that it yields under gevent is in test_gevent.py)."""
from emotion_app.passwords import check_password, hash_password


def test_hash_and_check():
    pw_hash = hash_password("correct horse battery")
    assert pw_hash != "correct horse battery"
    assert check_password(pw_hash, "correct horse battery")
    assert not check_password(pw_hash, "wrong")
    assert not check_password(None, "anything")
