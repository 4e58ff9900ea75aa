"""What the browser tests share: Debian's Chromium driven by Playwright, one browser context per device of a
user, each page watched for the whole test.

A console error, an uncaught exception, a Content-Security-Policy violation or a request to any other host
fails the test (browser network errors are allowed only while a test has taken the server down on purpose).
Test modules import the `browser` and `devices` fixtures from here; a module that needs Chromium started
otherwise (a fake camera) defines its own `browser` with `chromium(...)`, and `devices` uses that one.
"""
import re
import shutil
import time
import uuid
from contextlib import contextmanager

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect, sync_playwright

from conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TZ = "Europe/Paris"
# Reported by the page itself, so that a violation shows up even where Chromium logs nothing.
WATCH_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline code"}`);
});
"""
# What Chromium logs when the server is unreachable or restarting: allowed only during an outage.
OUTAGE_NOISE = re.compile(
    r"net::ERR_CONNECTION_REFUSED|net::ERR_CONNECTION_RESET|net::ERR_EMPTY_RESPONSE|WebSocket connection to .* failed"
    r"|status of 503"
)


@contextmanager
def chromium(*extra_args):
    """Debian's Chromium, headless, with `extra_args`; every context it opens is a fresh profile."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium for a module's tests (a module may define its own, launched otherwise)."""
    with chromium() as launched:
        yield launched


class Device:
    """One device of a user: a browser context with the page open, and what went wrong in it."""

    def __init__(self, browser, server, width=1200, height=900):
        self.server = server
        self.context = browser.new_context(
            timezone_id=TZ, locale="en-GB", viewport={"width": width, "height": height}, accept_downloads=True
        )
        self.context.add_init_script(WATCH_CSP)
        self.page = self.context.new_page()
        self.problems = []
        self.allowed = []  # console errors a test provokes on purpose (patterns)
        self.outage = False
        self.closed = False
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        self.page.on("request", self._on_request)
        self.page.goto(server.url + "/")

    def _on_console(self, message):
        if message.type != "error":
            return
        if self.outage and OUTAGE_NOISE.search(message.text):
            return
        if any(pattern.search(message.text) for pattern in self.allowed):
            return
        self.problems.append(f"console: {message.text}")

    def _on_request(self, request):
        if not re.match(rf"(https?|wss?)://127\.0\.0\.1:{self.server.port}/|(blob|data):", request.url):
            self.problems.append(f"request to another host: {request.url}")

    def log_in(self, username, password=PASSWORD, register=False):
        page = self.page
        page.fill("#auth-username", username)
        page.fill("#auth-password", password)
        page.click("button[value=register]" if register else "button[value=login]")
        expect(page.locator("#app")).to_be_visible()
        self.expect_online()

    def expect_online(self, timeout=10_000):
        expect(self.page.locator("#status")).to_have_text("Online", timeout=timeout)

    def rename(self, name):
        self.page.fill("#device-name", name)
        self.page.click("#device-form button")
        self.expect_online()

    def set_emotion(self, emotion):
        self.page.click(f"#now [data-emotion={emotion}]")

    def expect_now(self, emotion, timeout=5_000):
        expect(self.page.locator("#now-emotion")).to_have_text(emotion.capitalize(), timeout=timeout)

    def entries(self):
        """The timeline's event ids, top to bottom."""
        return [int(i) for i in self.page.locator("#timeline-days .entry").evaluate_all(
            "items => items.map((item) => item.dataset.eventId)")]

    def device_names(self):
        return self.page.locator("#device-list .device-name").all_inner_texts()

    def allow(self, pattern):
        """Allow console errors matching `pattern`: ones the test provokes on purpose."""
        self.allowed.append(re.compile(pattern))

    def allow_http_errors(self, *statuses):
        """Chromium logs every HTTP error answer to a request as a console error: allow these statuses."""
        self.allow(rf"status of ({'|'.join(str(status) for status in statuses)})\b")

    @contextmanager
    def server_down(self):
        """Allow the browser's own network errors while the test keeps the server down."""
        self.outage = True
        try:
            yield
        finally:
            self.outage = False

    def close(self):
        if not self.closed:
            self.closed = True
            self.context.close()


@pytest.fixture
def devices(browser):
    """Open devices with `devices(server)`; each must end the test without a problem."""
    opened = []

    def open_device(server, **kwargs):
        device = Device(browser, server, **kwargs)
        opened.append(device)
        return device

    yield open_device
    problems = [problem for device in opened for problem in device.problems]
    for device in opened:
        device.close()
    assert problems == [], "the page reported problems:\n" + "\n".join(problems)


def new_username():
    return f"user_{uuid.uuid4().hex[:10]}"


def register(server):
    """A new user registered over the API; returns (username, user id)."""
    body = server.login()
    return body["user"]["username"], int(body["user"]["id"])


def history(server, token):
    """Every stored event of the token's user, newest first (all pages)."""
    events, before = [], None
    while True:
        status, page = server.request("GET", "/api/emotions?limit=100" + (f"&before={before}" if before else ""), token=token)
        assert status == 200, page
        events += page["events"]
        before = page["next_before"]
        if before is None:
            return events


def wait_until(page, expression, timeout=10.0):
    """Evaluate `expression` in `page` until it is truthy, or fail after `timeout` seconds.

    Not page.wait_for_function: when its first check is false it polls with eval() inside the page, which
    the page's Content-Security-Policy refuses (and reports, failing the test). page.evaluate is not eval.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(50)


def serious_findings(page):
    """axe's serious and critical accessibility findings on what `page` shows now, one line each."""
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
