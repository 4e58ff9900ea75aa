"""Blocking work never freezes a gevent worker: password hashing and PostgreSQL queries yield."""
import subprocess
import sys
import textwrap

TICKER = """
from gevent import monkey; monkey.patch_all()
import gevent
ticks = []
def ticker():
    while True:
        ticks.append(1)
        gevent.sleep(0.005)
"""


def ticks_during(work, setup=""):
    """Run `work` in a gevent-patched interpreter (as a gunicorn gevent worker does) and count how often
    another greenlet ran meanwhile. Work that blocked the event loop would leave it at 0."""
    script = TICKER + textwrap.dedent(setup) + textwrap.dedent(
        f"""
        gevent.spawn(ticker)
        gevent.sleep(0)
        before = len(ticks)
        {work}
        print(len(ticks) - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_password_hashing_yields():
    work = "hash_password('correct horse battery'); hash_password('another long password')"
    assert ticks_during(work, "from emotion_app.passwords import hash_password\n") >= 5


def test_postgres_queries_yield(postgres_server):
    url = postgres_server.url.render_as_string(hide_password=False)
    setup = f"""
    import sqlalchemy as sa
    engine = sa.create_engine({url!r})
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    """
    work = "with engine.connect() as conn: conn.execute(sa.text('SELECT pg_sleep(0.3)'))"
    assert ticks_during(work, setup) >= 10
