"""Logging set-up: app logs to stderr, as text or one JSON object per line, with the request id and user
of the request (or socket) that logged them, and no secret in any line.

A token can reach a log line in many ways: a URL with `?token=` or `?ticket=` in an error message, an
`Authorization` header echoed by a library, a traceback whose exception quotes a value. The filter below
sits on every handler (the app's, and gunicorn's access and error logs) and masks them all, whatever
logged the line.

This module uses the standard library only: gunicorn.conf.py loads it in the server's master process,
which must not import the app (see there).
"""
import contextvars
import json
import logging
import re
import secrets
import time

SECRETS = (
    # name=value in URLs, query strings and form-like text
    (
        re.compile(r"(?i)\b(token|ticket|access_token|refresh_token|password|current_password|new_password)=[^&\s\"'<>]+"),
        r"\1=[redacted]",
    ),
    # JSON-like "name": "value"
    (
        re.compile(r"(?i)([\"'](?:access_token|refresh_token|token|ticket|password|current_password|new_password)[\"']\s*:\s*[\"'])[^\"']*"),
        r"\1[redacted]",
    ),
    (re.compile(r"(?i)\bBearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [redacted]"),
    # Any JWT, wherever it appears (a header and a payload, both base64url JSON objects, and a signature)
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[redacted jwt]"),
)
SERVER_LOGGERS = ("", "gunicorn.error", "gunicorn.access")


# The request (or socket) being served by the current greenlet: {"request_id": ..., "user_id": ...}.
# gevent gives every greenlet its own context, so concurrent requests never see each other's.
CURRENT = contextvars.ContextVar("emotion_app_request", default=None)


def bind(**fields):
    """Attach fields (request_id, user_id) to every log line of the current request or socket."""
    CURRENT.set({**(CURRENT.get() or {}), **fields})


def without_caller(logger, level, msg, *args):
    """Log like `logger.log(level, msg, *args)`, without looking up the file and line that logged (no
    format here shows them).

    The look-up makes objects of the calling frames, which then live as long as those frames run: for a
    socket's handler, as long as the socket (about 0.9 KB each).
    """
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, "(unknown file)", 0, msg, args, None))


def redact(text):
    """`text` with every token, ticket and password value replaced by a marker."""
    for pattern, replacement in SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Masks secrets in a record's message and traceback before any handler formats it."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logged as it is, redacted
            message = str(record.msg)
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and user_id when known, and
    the traceback (if any) as `exception`."""

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(CURRENT.get() or {})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines for people, with the request id and user at the end when known."""

    def format(self, record):
        line = super().format(record)
        context = CURRENT.get()
        if context:
            line += " [" + " ".join(f"{k}={v}" for k, v in context.items()) + "]"
        return line


def install(log_format, loggers=SERVER_LOGGERS):
    """Redact every handler of `loggers`; with log_format "json", make their lines JSON objects."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            # By class name: the server loads this module under another name (gunicorn.conf.py).
            if not any(type(f).__name__ == "RedactSecrets" for f in handler.filters):
                handler.addFilter(RedactSecrets())
            # This module's own class, replacing the master's copy: its context variable is this one.
            if log_format == "json" and type(handler.formatter) is not JsonFormatter:
                handler.setFormatter(JsonFormatter())


def configure_logging(app):
    """Send app logs to stderr at LOG_LEVEL (unless a server set up logging), in LOG_FORMAT, redacted."""
    if not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(app.config["LOG_LEVEL"])
    logging.getLogger("emotion_app").setLevel(app.config["LOG_LEVEL"])
    install(app.config["LOG_FORMAT"])


REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def configure_request_ids(app):
    """Give every request an id (the proxy's X-Request-ID when it is sane) that its log lines carry, and
    echo it in the answer; a socket keeps its handshake's id for life."""
    from flask import request  # noqa: PLC0415 - this module must also load without Flask (server master)

    @app.before_request
    def start_request():
        given = request.headers.get("X-Request-ID", "")
        CURRENT.set({"request_id": given if REQUEST_ID.fullmatch(given) else secrets.token_hex(8)})

    @app.after_request
    def echo_request_id(response):
        context = CURRENT.get()
        if context:
            response.headers["X-Request-ID"] = context["request_id"]
        return response
