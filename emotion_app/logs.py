"""Logging set-up: app logs to stderr, and no secret in any log line.

A token can reach a log line in many ways: a URL with `?token=` or `?ticket=` in an error message, an
`Authorization` header echoed by a library, a traceback whose exception quotes a value. The filter below
sits on every handler (the app's, and gunicorn's access and error logs) and masks them all, whatever
logged the line.
"""
import logging
import re

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


def configure_logging(app):
    """Send app logs to stderr at LOG_LEVEL (unless a server set up logging), and redact every handler."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("emotion_app").setLevel(app.config["LOG_LEVEL"])
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactSecrets) for f in handler.filters):
                handler.addFilter(RedactSecrets())
