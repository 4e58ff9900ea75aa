"""The service's Prometheus metrics, summed over every gunicorn worker (served at /metrics, health.py).

Under gunicorn each worker writes its figures to files in PROMETHEUS_MULTIPROC_DIR (set and emptied by
gunicorn.conf.py before the workers start) and `render()` reads them all, whichever worker answers.
Without it (tests, `flask run`) the figures are this process's own.
"""
import os

# prometheus_client writes a worker's figures into this directory as soon as a metric is defined (below);
# it must exist even where no server made it (e.g. `flask db upgrade` with the variable set).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import (  # noqa: E402 - after the directory exists
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

SOCKETS_OPEN = Gauge("emotion_app_sockets_open", "Open WebSockets", multiprocess_mode="livesum")
HANDSHAKES = Counter("emotion_app_handshakes", "WebSocket handshakes, by result (accepted or the refusal's code)", ["result"])
FRAMES = Counter("emotion_app_frames", "Frames received from devices, by type (invalid: not understood)", ["type"])
UPDATES_STORED = Counter("emotion_app_updates_stored", "Emotion updates committed to the database")
# One sample per update sent to a device, so its _count is the number of deliveries (a separate counter
# would cost each send another write).
DELIVERY_SECONDS = Histogram(
    "emotion_app_delivery_seconds",
    "Updates sent to devices, by time from the update's commit to the send",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
QUEUE_DROPS = Counter("emotion_app_queue_drops", "Devices disconnected because their outbound queue was full")
BROKER_RECONNECTS = Counter("emotion_app_broker_reconnects", "Times the broker listener lost Redis and reconnected")
REVOCATION_CHECKS = Counter(
    "emotion_app_revocation_checks",
    "Token revocation checks, by where the answer came from (cache: the worker's tokens found not revoked; database)",
    ["source"],
)
FIRST_STATES = Counter(
    "emotion_app_first_states",
    "Where a new socket's first state came from (held: kept by its worker since a recent read; database)",
    ["source"],
)
DATABASE_ERRORS = Counter("emotion_app_database_errors", "Operations that failed because the database was unavailable")
DETECTIONS = Counter(
    "emotion_app_detections",
    "Emotion detections asked for, by what was read (text, face, text+face) and outcome (ok or the error code)",
    ["kind", "outcome"],
)
DETECTION_SECONDS = Histogram(
    "emotion_app_detection_seconds",
    "Time the models took per detection (image decoding included), by what was read",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
RATE_LIMITED = Counter("emotion_app_rate_limited", "Requests and frames refused by a rate limit, by limit", ["limit"])


def render():
    """All the metrics in Prometheus text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry)
