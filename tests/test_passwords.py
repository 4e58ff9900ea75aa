"""Password hashing under gevent runs off the event loop, so other greenlets keep running."""
import subprocess
import sys
import textwrap

from emotion_app.passwords import check_password, hash_password


def test_hash_and_check():
    pw_hash = hash_password("correct horse battery")
    assert pw_hash != "correct horse battery"
    assert check_password(pw_hash, "correct horse battery")
    assert not check_password(pw_hash, "wrong")
    assert not check_password(None, "anything")


def test_hashing_does_not_block_other_greenlets():
    # In a gevent-patched process (as in a gunicorn gevent worker), a ticker greenlet must keep
    # ticking while a hash is computed. If hashing ran on the event loop, it would tick 0 times.
    script = textwrap.dedent(
        """
        from gevent import monkey; monkey.patch_all()
        import gevent
        from emotion_app.passwords import hash_password
        ticks = []
        def ticker():
            while True:
                ticks.append(1)
                gevent.sleep(0.005)
        t = gevent.spawn(ticker)
        gevent.sleep(0)
        before = len(ticks)
        hash_password("correct horse battery")
        hash_password("another long password")
        print(len(ticks) - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert int(out.stdout.strip()) >= 5, out
