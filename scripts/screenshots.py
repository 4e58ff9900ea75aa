"""Take the pictures of the web app in docs/screenshots/: a laptop and a phone of one user, with two weeks of
history. Starts its own server on a free port with a scratch SQLite database, and Debian's Chromium.

    .venv/bin/python scripts/screenshots.py        # after scripts/test.sh has installed Playwright
"""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
FACES = ROOT / "data" / "detection" / "faces"
BIN = Path(sys.executable).parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER, PASSWORD = "alice", "wonderland"
# A plausible fortnight: (hour, emotion) changes of a day, varied a little from day to day.
DAY = [(7, "neutral"), (9, "happy"), (12, "surprised"), (13, "happy"), (16, "angry"), (17, "sad"), (19, "happy"), (22, "neutral")]


def request(base, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(base + path, data=data, headers=headers), timeout=10) as resp:
        return json.load(resp)


def seed_history(url, user_id, days=14):
    """A fortnight of changes before now, written with their past times (the API stamps the present)."""
    rng = random.Random(7)
    start = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    rows = []
    for day in range(days):
        for hour, emotion in DAY:
            if rng.random() < 0.25:
                emotion = rng.choice(["fearful", "sad", "happy", "disgusted"])
            at = start + timedelta(days=day, hours=hour, minutes=rng.randint(0, 50))
            rows.append({"u": user_id, "e": emotion, "t": at.replace(tzinfo=None), "s": len(rows) + 1,
                         "d": rng.choice(["Laptop", "Pixel 8"])})
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO emotion_events (user_id, emotion, created_at, seq, device) "
                             "VALUES (:u, :e, :t, :s, :d)"), rows)
        conn.execute(sa.text("UPDATE users SET last_seq = :s WHERE id = :u"), {"s": len(rows), "u": user_id})
    engine.dispose()


def main():
    work = Path(tempfile.mkdtemp())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{work}/screens.db"
    env = {**os.environ, "DATABASE_URL": url, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "warning",
           "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"), "RATE_LIMIT_AUTH": "off"}
    subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    server = subprocess.Popen([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                request(base, "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        user = request(base, "/api/auth/register", {"username": USER, "password": PASSWORD})
        seed_history(url, int(user["id"]))
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            pages = {}
            for name, viewport in (("Pixel 8", {"width": 412, "height": 2900}), ("Laptop", {"width": 1280, "height": 1920})):
                context = browser.new_context(viewport=viewport, device_scale_factor=1, locale="en-GB",
                                              timezone_id="Europe/Paris")
                page = context.new_page()
                page.goto(base + "/")
                page.fill("#auth-username", USER)
                page.fill("#auth-password", PASSWORD)
                page.click("button[value=login]")
                page.fill("#device-name", name)
                page.click("#device-form button")
                expect(page.locator("#status")).to_have_text("Online")
                pages[name] = page
            pages["Laptop"].click("#now [data-emotion=happy]")
            for page in pages.values():
                expect(page.locator("#device-list .device")).to_have_count(2)
                expect(page.locator("#now-emotion")).to_have_text("Happy")
                page.wait_for_timeout(500)  # the chart settles
            pages["Laptop"].screenshot(path=OUT / "desktop.png")
            pages["Pixel 8"].screenshot(path=OUT / "phone.png")
            # The detect panel, having read the public-domain astronaut photo with a sentence.
            laptop = pages["Laptop"]
            laptop.fill("#detect-text", "What a wonderful surprise party, I loved every second")
            laptop.check("#detect-combine")
            laptop.set_input_files("#detect-file", FACES / "astronaut-640.jpg")
            expect(laptop.locator("#detect-emotion")).to_have_text("Happy", timeout=60_000)
            laptop.wait_for_timeout(500)
            laptop.locator("#detect").screenshot(path=OUT / "detect.png")
            browser.close()
        print(f"wrote {OUT / 'desktop.png'}, {OUT / 'phone.png'} and {OUT / 'detect.png'}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
