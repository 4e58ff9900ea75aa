"""history: one user with a long history: statistics latency, export throughput and the server's memory."""
import base64
import json
import threading
import time
import urllib.request

from bench.measure import percentiles
from bench.servers import make_users


def history(server, events, days, requests):
    """Stats latency and export throughput for one user with `events` events spread over `days` days."""
    import random

    import sqlalchemy as sa

    if not server.database_url:
        raise SystemExit("history writes its events to the database: give --env DATABASE_URL=... with --url")
    token = make_users(server, 1)[0]
    user_id = int(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"])
    rng = random.Random(1)
    names = ["happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral"]
    now = time.time()
    step = days * 86400 / events
    engine = sa.create_engine(server.database_url)
    started = time.monotonic()
    with engine.begin() as conn:
        insert = sa.text("INSERT INTO emotion_events (user_id, emotion, created_at, seq, device) "
                         "VALUES (:u, :e, :t, :s, :d)")
        for first in range(0, events, 10_000):
            conn.execute(insert, [
                {"u": user_id, "e": rng.choice(names), "s": n + 1, "d": rng.choice(["Laptop", "Phone", None]),
                 "t": _utc(now - (events - n) * step)}
                for n in range(first, min(events, first + 10_000))
            ])
        conn.execute(sa.text("UPDATE users SET last_seq = :s WHERE id = :u"), {"s": events, "u": user_id})
    engine.dispose()
    seeded_s = time.monotonic() - started

    def get(path):
        req = urllib.request.Request(server.url + path, headers={"Authorization": f"Bearer {token}"})
        return urllib.request.urlopen(req, timeout=120)

    stats, paths = {}, {}
    for name, bucket, back in (("day_7d", "day", 7), ("day_30d", "day", 30), ("hour_31d", "hour", 31),
                               ("week_all", "week", min(days, 1830))):
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - back * 86400 + 60))
        query = paths[name] = f"/api/emotions/stats?bucket={bucket}&tz=Europe/Paris&from={since}"
        latencies = []
        for _ in range(requests):
            t0 = time.perf_counter()
            with get(query) as resp:
                body = json.load(resp)
            latencies.append(time.perf_counter() - t0)
        changes = sum(total["count"] for total in body["totals"].values())
        stats[name] = {"buckets": len(body["buckets"]), "events_in_range": changes, "latency_ms": percentiles(latencies)}

    stall = _ping_during(server, token, get, paths["week_all"])

    export = {}
    for fmt in ("csv", "json"):
        before = server.rss_bytes()
        peak, size, chunks = before, 0, 0
        t0 = time.perf_counter()
        with get(f"/api/emotions/export?format={fmt}") as resp:
            while chunk := resp.read(1 << 16):
                size += len(chunk)
                chunks += 1
                if chunks % 16 == 0 and before is not None:
                    peak = max(peak, server.rss_bytes())
        elapsed = time.perf_counter() - t0
        export[fmt] = {"mb": round(size / 1e6, 1), "seconds": round(elapsed, 2), "events_per_s": int(events / elapsed),
                       "server_rss_growth_mb": round((peak - before) / 1e6, 1) if before is not None else None}
    return {"scenario": "history", "events": events, "days": days, "requests": requests,
            "seed_seconds": round(seeded_s, 1), "stats": stats, "export": export, "ping_during_stats_ms": stall}


def _ping_during(server, token, get, path):
    """Ping round trips (ms percentiles) of another socket of the worker while `path` is computed."""
    import websocket  # websocket-client, a test dependency: a plain blocking client is all this needs

    ws = websocket.create_connection(f"{server.ws_url}?token={token}", timeout=30)
    ws.recv()  # connection_established
    done = threading.Event()
    worker = threading.Thread(target=lambda: (get(path).read(), done.set()))
    worker.start()
    rtts = []
    while not done.is_set():
        t0 = time.perf_counter()
        ws.send('{"type":"ping"}')
        while json.loads(ws.recv())["type"] != "pong":
            pass
        rtts.append(time.perf_counter() - t0)
        time.sleep(0.01)
    worker.join()
    ws.close()
    return percentiles(rtts)


def _utc(epoch):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, timezone.utc).replace(tzinfo=None)
