"""The browser test page at `/` and its static files."""
import re
from html.parser import HTMLParser


class PageParser(HTMLParser):
    """Collect what the checks need: tags with their attributes, and the text inside <script>/<style>."""

    def __init__(self):
        super().__init__()
        self.tags = []  # (tag, {attr: value})
        self.inline_code = []  # (tag, text) for non-blank text inside <script> or <style>
        self._open = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = tag

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag == self._open:
            self._open = None

    def handle_data(self, data):
        if self._open and data.strip():
            self.inline_code.append((self._open, data.strip()))


def parse_index(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    parser.close()
    return parser


def test_index_has_a_button_per_emotion(client):
    parser = parse_index(client)
    buttons = {attrs.get("data-emotion") for tag, attrs in parser.tags if tag == "button"}
    emotions = client.application.config["EMOTIONS"]
    assert emotions
    for emotion in emotions:
        assert emotion in buttons, f"no button for {emotion!r}"


def test_index_loads_script_and_stylesheet_from_static(client):
    parser = parse_index(client)
    scripts = [attrs.get("src") for tag, attrs in parser.tags if tag == "script"]
    sheets = [attrs.get("href") for tag, attrs in parser.tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    assert "/static/app.js" in scripts
    assert "/static/style.css" in sheets


def test_index_is_compatible_with_a_strict_content_security_policy(client):
    """script-src 'self'; style-src 'self': no inline code, handlers or style attributes."""
    parser = parse_index(client)
    assert parser.inline_code == []
    for tag, attrs in parser.tags:
        if tag == "script":
            assert attrs.get("src"), "every <script> must load a file"
        handlers = [name for name in attrs if name.startswith("on")]
        assert handlers == [], f"<{tag}> has inline event handlers {handlers}"
        assert "style" not in attrs, f"<{tag}> has an inline style attribute"
        for name in ("href", "src", "action"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:")


def test_static_files_are_served(client):
    for path, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = client.get(path)
        assert response.status_code == 200, path
        assert kind in response.content_type, path
        assert response.data.strip()
        response.close()


def test_connection_card_has_device_count_and_reconnect_controls(client):
    parser = parse_index(client)
    by_id = {attrs["id"]: (tag, attrs) for tag, attrs in parser.tags if attrs.get("id")}
    assert "devices" in by_id, "no element for the number of connected devices"
    assert "retry-info" in by_id, "no element for the reconnect countdown"
    tag, attrs = by_id["reconnect-now"]
    assert tag == "button" and attrs.get("type") == "button"
    assert "hidden" in by_id["retry"][1], "the reconnect box is shown only while waiting to reconnect"


def test_every_element_the_script_looks_up_is_on_the_page(client):
    parser = parse_index(client)
    ids = {attrs["id"] for _tag, attrs in parser.tags if attrs.get("id")}
    response = client.get("/static/app.js")
    script = response.get_data(as_text=True)
    response.close()
    wanted = set(re.findall(r'\$\("([\w-]+)"\)', script))
    assert wanted, "app.js looks up no elements by id"
    assert wanted <= ids, f"app.js looks up ids missing from the page: {sorted(wanted - ids)}"


def test_ids_are_unique(client):
    parser = parse_index(client)
    ids = [attrs["id"] for _tag, attrs in parser.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))


def test_the_page_opens_sockets_with_tickets_never_with_its_token(client):
    script = client.get("/static/app.js").get_data(as_text=True)
    assert "/api/ws-ticket" in script and "/api/ws?ticket=" in script
    assert "?token=" not in script and "&token=" not in script
