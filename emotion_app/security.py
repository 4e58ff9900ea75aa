"""What the service tells browsers and believes of proxies: trusted proxy headers, allowed origins (sockets
and CORS), and the security headers of every response."""
from urllib.parse import urlsplit

from flask import current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

# The page loads its script and style from this service and talks to it over HTTP and WebSocket only.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' {ws}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The API docs page (/api/docs): the same, but Swagger UI's stylesheet draws its icons from data: URLs.
DOCS_POLICY = PAGE_POLICY.replace("img-src 'self'", "img-src 'self' data:")
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Retry-After",
    "Access-Control-Max-Age": "600",
}


def configure_security(app):
    """Trust proxy headers only from the configured number of proxies; add origin and header policies."""
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:
        # Each trusted proxy appends one address to X-Forwarded-For; the client's is the one before
        # them. Without trusted proxies those headers are anyone's to forge, so they are ignored.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)
    app.after_request(_headers)


def origin_allowed(origin):
    """True for requests without an Origin (not a browser), from this service's own host, or allow-listed."""
    if origin is None or _listed(origin):
        return True
    # Same origin: the page came from the host this request is addressed to (through trusted proxies,
    # the host the client asked for). The scheme is not compared: TLS often ends at the proxy.
    return urlsplit(origin.strip().lower()).netloc == request.host.lower()


def _listed(origin):
    """True if ALLOWED_ORIGINS names `origin` (compared as the setting stores them) or is "*"."""
    allowed = current_app.config["ALLOWED_ORIGINS"]
    return "*" in allowed or origin.strip().rstrip("/").lower() in allowed


def _cors_origin():
    """The Origin to echo in CORS headers: only an allow-listed one (the service's own needs none)."""
    origin = request.headers.get("Origin")
    if not origin or not request.path.startswith("/api/"):
        return None
    return origin if _listed(origin) else None


def _headers(response):
    if request.blueprint == "ws" and response.status_code == 200:
        # A socket that has ended: its handshake answer went out when it opened, and flask-sock's
        # closing response sends nothing. (Refused handshakes are errors, and get every header.)
        return response
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if response.mimetype == "text/html":
        host = request.host
        policy = DOCS_POLICY if request.endpoint == "apidocs.docs" else PAGE_POLICY
        response.headers["Content-Security-Policy"] = policy.format(ws=f"ws://{host} wss://{host}")
    if request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    origin = _cors_origin()
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.update(CORS_HEADERS)
    response.vary.add("Origin")
    return response
