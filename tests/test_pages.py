"""The page at `/` and its static files, read as files (tests/test_browser.py uses them in a browser)."""
import hashlib
import re
from pathlib import Path
from html.parser import HTMLParser

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "emotion_app" / "static"


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


def test_index_loads_its_modules_the_chart_library_and_the_stylesheet_from_static(client):
    parser = parse_index(client)
    scripts = {attrs.get("src"): attrs for tag, attrs in parser.tags if tag == "script"}
    sheets = [attrs.get("href") for tag, attrs in parser.tags if tag == "link" and attrs.get("rel") == "stylesheet"]
    assert scripts["/static/js/main.js"].get("type") == "module"
    assert "defer" in scripts["/static/vendor/chart.umd.min.js"]
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


def _static(client, path):
    response = client.get(path)
    assert response.status_code == 200, path
    text = response.get_data(as_text=True)
    response.close()
    return response, text


def _scripts():
    return sorted((STATIC / "js").rglob("*.js"))


def test_static_files_are_served(client):
    files = [("/static/style.css", "text/css"), ("/static/vendor/chart.umd.min.js", "javascript")]
    files += [(f"/static/{path.relative_to(STATIC).as_posix()}", "javascript") for path in _scripts()]
    assert len(files) >= 10
    for path, kind in files:
        response, text = _static(client, path)
        assert kind in response.content_type, path
        assert text.strip(), path


def test_modules_import_only_modules_that_exist_and_nothing_from_other_hosts():
    for path in _scripts():
        source = path.read_text()
        for target in re.findall(r'^import .* from "([^"]+)";$', source, re.M):
            assert target.startswith("./") or target.startswith("../"), f"{path.name} imports {target}"
            assert (path.parent / target).resolve().is_file(), f"{path.name} imports missing {target}"
        assert not re.search(r"https?://", source), f"{path.name} names another host"


def test_the_socket_module_is_a_library_without_the_page():
    """The browser client library depends on nothing of the page: no DOM look-ups, no imports."""
    source = (STATIC / "js" / "socket.js").read_text()
    assert not re.search(r"^import ", source, re.M)
    assert "document." not in source and "getElementById" not in source


def test_the_vendored_chart_library_matches_its_pinned_checksum():
    script = (ROOT / "scripts" / "vendor-chartjs.sh").read_text()
    pinned = re.search(r"^SHA256=([0-9a-f]{64})$", script, re.M).group(1)
    vendored = STATIC / "vendor" / "chart.umd.min.js"
    assert hashlib.sha256(vendored.read_bytes()).hexdigest() == pinned
    assert "MIT" in (STATIC / "vendor" / "chart.js.LICENSE.md").read_text()


def test_every_element_the_scripts_look_up_is_on_the_page(client):
    parser = parse_index(client)
    ids = {attrs["id"] for _tag, attrs in parser.tags if attrs.get("id")}
    wanted = set()
    for path in _scripts():
        if path.name == "apidocs.js":
            continue  # the script of /api/docs (test_the_docs_page_script_finds_its_element)
        source = path.read_text()
        wanted |= set(re.findall(r'(?:\$|getElementById)\("([\w-]+)"\)', source))
    assert len(wanted) > 20, "the scripts look up no elements by id"
    assert wanted <= ids, f"the scripts look up ids missing from the page: {sorted(wanted - ids)}"


def test_the_docs_page_script_finds_its_element(client):
    page = client.get("/api/docs").get_data(as_text=True)
    wanted = set(re.findall(r'getElementById\("([\w-]+)"\)', (STATIC / "js" / "apidocs.js").read_text()))
    assert wanted and all(f'id="{name}"' in page for name in wanted)


def test_the_vendored_swagger_ui_matches_its_pinned_checksums():
    script = (ROOT / "scripts" / "vendor-swagger-ui.sh").read_text()
    for name, setting in (("swagger-ui-bundle.js", "BUNDLE_SHA256"), ("swagger-ui.css", "CSS_SHA256")):
        pinned = re.search(rf"^{setting}=([0-9a-f]{{64}})$", script, re.M).group(1)
        vendored = STATIC / "vendor" / "swagger-ui" / name
        assert hashlib.sha256(vendored.read_bytes()).hexdigest() == pinned, name
    assert "Apache License" in (STATIC / "vendor" / "swagger-ui" / "LICENSE").read_text()


def test_ids_are_unique(client):
    parser = parse_index(client)
    ids = [attrs["id"] for _tag, attrs in parser.tags if attrs.get("id")]
    assert len(ids) == len(set(ids))


def test_the_page_opens_sockets_with_tickets_never_with_its_token():
    main = (STATIC / "js" / "main.js").read_text()
    socket = (STATIC / "js" / "socket.js").read_text()
    assert "ticket: () => api.ticket()" in main and "token:" not in main
    assert "/api/ws-ticket" in (STATIC / "js" / "api.js").read_text()
    assert "`ticket=${" in socket
