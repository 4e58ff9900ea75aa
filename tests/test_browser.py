"""The page, used the way a person uses it: headless Chromium (Debian's, driven by Playwright) against a
real gunicorn server, one browser context per device.

Every page is watched for the whole test (see browserhelpers.py): a console error, an uncaught exception, a
Content-Security-Policy violation or a request to any other host fails the test.
"""
import csv
import io
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from browserhelpers import (  # noqa: F401 (fixtures)
    TZ, browser, devices, history, new_username, register, serious_findings, wait_until,
)
from conftest import TEST_SECRETS
from emotion_app import create_app
from emotion_app.extensions import db
from seed import seed_events


def seed(server, user_id, moments):
    """Store events of `user_id` at known times: `moments` is [(aware datetime, emotion, device)], oldest first.

    The API stamps the server's clock, so a history in the past is written to the server's database.
    """
    app = create_app({"SQLALCHEMY_DATABASE_URI": server.env["DATABASE_URL"], **TEST_SECRETS})
    seed_events(app, user_id, [{"created_at": at, "emotion": emotion, "device": device} for at, emotion, device in moments])
    with app.app_context():
        db.engine.dispose()


# ---------------------------------------------------------------------------------------------- tests


def test_register_log_out_and_log_in_again(live_server, devices):
    device = devices(live_server)
    username = new_username()
    device.log_in(username, register=True)
    expect(device.page.locator("#username")).to_have_text(username)
    device.page.click("#logout")
    expect(device.page.locator("#auth")).to_be_visible()
    expect(device.page.locator("#notice")).to_have_text("Logged out.")
    device.log_in(username)
    expect(device.page.locator("#now-emotion")).to_have_text("No emotion set yet")


def test_two_devices_of_a_user_see_each_others_updates_and_presence(live_server, devices):
    username, _ = register(live_server)
    laptop, phone = devices(live_server), devices(live_server, width=390, height=844)
    stranger = devices(live_server)
    laptop.log_in(username)
    laptop.rename("Laptop")
    phone.log_in(username)
    # A name is shown as text, never as markup.
    phone.rename("Pixel <b>8</b>")
    stranger.log_in(new_username(), register=True)

    for device in (laptop, phone):
        expect(device.page.locator("#device-list .device-name")).to_have_count(2)
        assert sorted(device.device_names()) == ["Laptop", "Pixel <b>8</b>"]
        assert device.page.locator("#device-list b").count() == 0
    expect(laptop.page.locator("#device-list .device", has_text="Laptop")).to_contain_text("this device")

    laptop.set_emotion("happy")
    phone.expect_now("happy", timeout=1_000)
    expect(phone.page.locator("#now-meta")).to_contain_text("from Laptop")
    # A key press sets an emotion too (2 is the second of the vocabulary: sad).
    phone.page.locator("body").press("2")
    laptop.expect_now("sad", timeout=1_000)
    expect(laptop.page.locator("#now-meta")).to_contain_text("from Pixel <b>8</b>")
    expect(laptop.page.locator("#timeline-days .entry")).to_have_count(2)
    assert laptop.entries() == phone.entries()

    # The other user sees none of it: no emotion, no entries, only their own device.
    expect(stranger.page.locator("#now-emotion")).to_have_text("No emotion set yet")
    assert stranger.page.locator("#timeline-days .entry").count() == 0
    assert len(stranger.device_names()) == 1

    phone.close()
    expect(laptop.page.locator("#device-list .device-name")).to_have_count(1)
    assert laptop.device_names() == ["Laptop"]


def test_an_update_made_while_the_server_restarts_shows_once_after_reconnecting(server_factory, devices):
    server = server_factory()
    # A second server on the same database stays up while the first one restarts.
    other = server_factory(DATABASE_URL=server.env["DATABASE_URL"])
    username, _ = register(server)
    token = other.login(username)["access_token"]
    device = devices(server)
    device.log_in(username)
    device.set_emotion("happy")
    device.expect_now("happy")

    with device.server_down():
        server.stop()  # SIGTERM: the socket is closed with 1012
        expect(device.page.locator("#status")).not_to_have_text("Online")
        status, event = other.request("POST", "/api/emotions", {"emotion": "surprised"}, token=token)
        assert status == 201, event
        server.start()
        device.expect_online(timeout=40_000)
    device.expect_now("surprised")
    stored = [e["id"] for e in history(server, token)]
    expect(device.page.locator("#timeline-days .entry")).to_have_count(len(stored))
    assert device.entries() == stored  # each event once, newest first


def test_an_emotion_chosen_while_offline_is_stored_once_when_back(server_factory, devices):
    server = server_factory()
    username, _ = register(server)
    token = server.login(username)["access_token"]
    device = devices(server)
    device.log_in(username)

    with device.server_down():
        server.stop()
        expect(device.page.locator("#status")).not_to_have_text("Online")
        device.set_emotion("angry")
        expect(device.page.locator("#now-pending")).to_contain_text("Angry: will be sent when the connection is back")
        server.start()
        device.expect_online(timeout=40_000)
        device.expect_now("angry")
        expect(device.page.locator("#now-pending")).to_be_hidden()
    # Once confirmed, it is not sent again by the next connection.
    sent = []
    device.page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    device.page.click("#developer summary")
    device.page.click("#dev-reconnect")
    device.expect_online()
    device.page.click("#dev-ping")
    expect(device.page.locator("#dev-log .log-in").first).to_contain_text('"type":"pong"')
    assert [frame for frame in sent if "emotion_update" in str(frame)] == []
    events = history(server, token)
    assert [e["emotion"] for e in events] == ["angry"]
    assert events[0]["client_msg_id"]
    assert device.entries() == [events[0]["id"]]


# The page's socket client (socket.js) on a fake WebSocket: each test step says how a socket ends, and the
# "state" events give the delays it chose. Math.random is pinned near 1, so each delay is its ceiling.
SCHEDULE = """async ({steps, options}) => {
  const { EmotionSocket } = await import("/static/js/socket.js");
  const sockets = [];
  let refuse = false;  // new sockets fail before they open, as when the port is closed
  class FakeSocket extends EventTarget {
    constructor(url) {
      super();
      this.readyState = 0;
      sockets.push(this);
      if (refuse) setTimeout(() => this.end(1006), 0);
    }
    accept() {
      this.readyState = 1;
      this.dispatchEvent(new Event("open"));
      const frame = { type: "connection_established", last_event_id: 0 };
      this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
    }
    end(code) {
      this.readyState = 3;
      this.dispatchEvent(new CloseEvent("close", { code }));
    }
    send() {}
    close() { this.readyState = 3; }
  }
  const random = Math.random;
  Math.random = () => 0.999;
  const until = async (check) => { while (!check()) await new Promise((done) => setTimeout(done, 5)); };
  const socket = new EmotionSocket({
    ticket: async () => "ticket", WebSocketImpl: FakeSocket, heartbeat: 0, ...options,
  });
  const offline = [];
  let restartedAt = 0;
  socket.addEventListener("state", ({ detail }) => {
    if (detail.state === "offline") {
      offline.push({ code: detail.code, retryIn: Math.round(detail.retryIn), sinceRestart: Date.now() - restartedAt });
    }
  });
  try {
    socket.start();
    for (const [action, arg] of steps) {
      if (action === "accept") {
        await until(() => sockets.length && sockets.at(-1).readyState === 0);
        sockets.at(-1).accept();
      } else if (action === "close") {
        if (arg === 1012) restartedAt = Date.now();
        sockets.at(-1).end(arg);
      } else if (action === "refuse") {
        refuse = arg;
      } else if (action === "until_delay_over") {
        await until(() => offline.length && offline.at(-1).retryIn > arg);
      } else if (action === "until_delays") {
        await until(() => offline.length >= arg);
      }
    }
  } finally {
    socket.stop();
    Math.random = random;
  }
  return offline;
}"""
OPTIONS = {"backoffBase": 20, "backoffCap": 5000, "restartBackoffCap": 80, "restartWindow": 600, "handshakeTimeout": 60_000}


def ceilings(failures, cap=5000, base=20):
    return [round(0.999 * min(cap, base * 2 ** (n - 1))) for n in failures]


def test_the_socket_retries_quickly_while_its_server_restarts_then_backs_off_as_usual(live_server, devices):
    page = devices(live_server).page
    offline = page.evaluate(SCHEDULE, {"options": OPTIONS, "steps": [
        ["accept"], ["refuse", True], ["close", 1012], ["until_delay_over", 80],
    ]})
    restart, *refused = offline
    assert restart["code"] == 1012 and restart["retryIn"] == 0
    assert {item["code"] for item in refused} == {1006}
    # Within 600 ms of the 1012 the cap is 80 ms; the first failure after that meets the usual schedule,
    # with every failure before it counted.
    within, after = refused[:-1], refused[-1]
    assert all(item["sinceRestart"] <= 610 for item in within) and after["sinceRestart"] >= 600
    assert [item["retryIn"] for item in refused] == ceilings(range(1, len(within) + 1), cap=80) + ceilings([len(refused)])
    assert len(within) >= 5 and after["retryIn"] == 4995


def test_the_socket_backs_off_as_usual_after_other_closes_and_once_a_restarted_server_took_it(live_server, devices):
    page = devices(live_server).page
    # A lost connection (no close code) doubles the ceiling up to the usual cap from the first failure.
    lost = page.evaluate(SCHEDULE, {"options": OPTIONS, "steps": [
        ["accept"], ["refuse", True], ["close", 1006], ["until_delays", 6],
    ]})
    assert [item["retryIn"] for item in lost[:6]] == ceilings(range(1, 7))
    # Three lost connections, a 1012, then the restarted server takes it: the next loss backs off as usual.
    after_restart = page.evaluate(SCHEDULE, {"options": OPTIONS, "steps": [
        ["accept"], ["close", 1006], ["accept"], ["close", 1006], ["accept"], ["close", 1006],
        ["accept"], ["close", 1012], ["accept"], ["close", 1006], ["until_delays", 5],
    ]})
    assert [(item["code"], item["retryIn"]) for item in after_restart] == [
        (1006, 20), (1006, 40), (1006, 80), (1012, 0), (1006, 160)]


def test_the_page_renews_its_token_in_band_and_keeps_one_socket(server_factory, devices):
    # Tokens of 4 s, renewed 2 s before they expire: 10 s is two and a half lifetimes.
    server = server_factory(ACCESS_TOKEN_TTL=4, WS_TOKEN_NOTICE=2)
    username, _ = register(server)
    device = devices(server)
    sockets, renewals = [], []
    device.page.on("websocket", lambda ws: (sockets.append(ws), ws.on(
        "framereceived", lambda payload: renewals.append(payload) if '"refreshed"' in str(payload) else None)))
    device.log_in(username)
    device.page.wait_for_timeout(10_000)
    device.expect_online(timeout=1)
    assert len(sockets) == 1 and not sockets[0].is_closed()
    assert len(renewals) >= 2
    device.set_emotion("happy")
    device.expect_now("happy")


def test_chart_and_summary_show_the_durations_of_a_known_history(live_server, devices):
    username, user_id = register(live_server)
    paris = ZoneInfo(TZ)
    day = (datetime.now(paris) - timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
    seed(live_server, user_id, [
        (day, "happy", "Laptop"),                          # happy 08:00-11:00 (3 h)
        (day + timedelta(hours=3), "sad", "Phone"),        # sad 11:00-12:30 (1.5 h)
        (day + timedelta(hours=4, minutes=30), "happy", None),  # happy 12:30-13:00 (0.5 h)
        (day + timedelta(hours=5), "neutral", "Laptop"),   # neutral from 13:00 on, until now
    ])
    device = devices(live_server)
    device.log_in(username)
    summary = device.page.locator("#summary-rows")
    expect(summary.locator("tr")).to_have_count(3)
    expect(summary.locator("tr[data-emotion=happy] .time")).to_have_text("3 h 30 min")
    expect(summary.locator("tr[data-emotion=sad] .time")).to_have_text("1 h 30 min")
    expect(summary.locator("tr[data-emotion=happy] .longest")).to_contain_text("3 h (from")
    # The emotion in force now is the longest: it has lasted since 13:00 two days ago.
    expect(summary.locator("tr").first).to_have_attribute("data-emotion", "neutral")

    chart = device.page.evaluate("""() => {
        const chart = Chart.getChart(document.getElementById("chart"));
        return {labels: chart.data.labels, series: chart.data.datasets.map((d) => [d.label, d.data])};
    }""")
    assert len(chart["labels"]) == 7
    series = {label.split(" ", 1)[1]: data for label, data in chart["series"]}
    assert set(series) == {"Happy", "Sad", "Neutral"}
    index = 4  # the seeded day, among the last 7 (today is the 7th)
    assert series["Happy"][index] == 3.5
    assert series["Sad"][index] == 1.5
    assert series["Neutral"][index] == 11  # 13:00 to midnight
    assert series["Neutral"][index + 1] == 24
    assert all(value == 0 for name in ("Happy", "Sad") for i, value in enumerate(series[name]) if i != index)

    device.page.click("#stats [data-days='30']")
    expect(device.page.locator("#stats [data-days='30']")).to_have_attribute("aria-pressed", "true")
    wait_until(device.page, "Chart.getChart(document.getElementById('chart')).data.labels.length === 30")


def test_the_timeline_pages_back_as_it_scrolls_grouped_by_day(live_server, devices):
    username, user_id = register(live_server)
    paris = ZoneInfo(TZ)
    start = datetime.now(paris) - timedelta(days=4)
    emotions = ["happy", "sad", "neutral", "angry"]
    seed(live_server, user_id, [(start + timedelta(minutes=45 * i), emotions[i % 4], None) for i in range(120)])
    token = live_server.login(username)["access_token"]
    stored = [e["id"] for e in history(live_server, token)]

    device = devices(live_server, width=390, height=844)
    device.log_in(username)
    entries = device.page.locator("#timeline-days .entry")
    expect(entries).to_have_count(50)
    for count in (100, 120):
        device.page.locator("#timeline-more").scroll_into_view_if_needed()
        expect(entries).to_have_count(count)
    expect(device.page.locator("#timeline-end")).to_be_visible()
    assert device.entries() == stored
    days = device.page.locator("#timeline-days section.day").evaluate_all("s => s.map((d) => d.dataset.day)")
    expected_days = sorted({(start + timedelta(minutes=45 * i)).strftime("%Y-%m-%d") for i in range(120)}, reverse=True)
    assert days == expected_days
    # The newest event was 6 hours ago: yesterday still, before 6 in the morning.
    newest = start + timedelta(minutes=45 * 119)
    today = datetime.now(paris).date()
    expect(device.page.locator("#timeline-days h3").first).to_have_text("Today" if newest.date() == today else "Yesterday")


def test_export_downloads_what_was_stored(live_server, devices):
    username, _ = register(live_server)
    token = live_server.login(username)["access_token"]
    device = devices(live_server)
    device.log_in(username)
    device.rename("Work laptop, desk 3")
    for emotion in ("happy", "sad", "happy"):
        device.set_emotion(emotion)
        device.expect_now(emotion)
    expect(device.page.locator("#timeline-days .entry")).to_have_count(3)
    stored = list(reversed(history(live_server, token)))

    with device.page.expect_download() as info:
        device.page.click("#export-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert [(int(r["id"]), r["emotion"], r["device"], r["timestamp"]) for r in rows] == [
        (e["id"], e["emotion"], "Work laptop, desk 3", e["timestamp"]) for e in stored
    ]

    with device.page.expect_download() as info:
        device.page.click("#export-json")
    assert json.load(open(info.value.path(), encoding="utf-8")) == stored


@pytest.mark.parametrize("width", [1200, 390])
def test_main_views_have_no_serious_accessibility_findings(live_server, devices, width):
    username, _ = register(live_server)
    device = devices(live_server, width=width, height=900)
    assert serious_findings(device.page) == []  # the login form
    device.log_in(username)
    device.set_emotion("happy")
    device.expect_now("happy")
    device.page.click("#developer summary")
    expect(device.page.locator("#summary-rows tr")).to_have_count(1)
    assert serious_findings(device.page) == []  # now, devices, statistics, timeline, developer panel
