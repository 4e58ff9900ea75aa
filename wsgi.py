"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`."""
import sys

from config import ConfigError
from emotion_app import create_app

try:
    app = create_app()
except ConfigError as exc:
    # A one-line reason that names the variable to set, instead of a traceback.
    sys.exit(f"emotion_app: configuration error: {exc}")
