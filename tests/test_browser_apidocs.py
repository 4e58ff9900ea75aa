"""/api/docs in Debian's Chromium: Swagger UI, from the vendored files, shows every operation of this server's
OpenAPI document within the page's Content-Security-Policy, and a person can authorize and set an emotion
with "Try it out"."""
import json

from browserhelpers import Device, browser  # noqa: F401 (fixture)
from playwright.sync_api import expect


def test_the_docs_page_shows_the_api_and_sets_an_emotion_with_try_it_out(live_server, browser):  # noqa: F811
    operations = sum(len(item) for item in live_server.request("GET", "/api/openapi.json")[1]["paths"].values())
    tokens = live_server.login()
    device = Device(browser, live_server)
    try:
        page = device.page
        page.goto(live_server.url + "/api/docs")
        expect(page.locator(".opblock")).to_have_count(operations, timeout=15_000)
        expect(page.locator(".info .title")).to_contain_text("emotion_app HTTP API")
        # Authorize with the access token, as a person reading the page would.
        page.click(".btn.authorize")
        page.locator(".modal-ux input[type=text]").first.fill(tokens["access_token"])
        page.locator(".modal-ux button.authorize").first.click()
        page.locator(".modal-ux .btn-done").first.click()
        operation = page.locator("#operations-emotions-emotions_post_emotion")
        operation.locator(".opblock-summary").click()
        operation.locator(".try-out__btn").click()
        operation.locator("textarea.body-param__text").fill(json.dumps({"emotion": "surprised"}))
        operation.locator(".execute").click()
        expect(operation.locator(".live-responses-table tbody .response-col_status").first).to_have_text("201", timeout=10_000)
        status, current = live_server.request("GET", "/api/emotions/current", token=tokens["access_token"])
        assert (status, current["emotion"]) == (200, "surprised")
        assert device.problems == []
    finally:
        device.close()
