"""Load generator for emotion_app: speaks the client contract and measures what devices experience.

Scenarios (each prints one JSON line, then a readable summary):

  fanout      U users x D devices; device 0 of each user sends updates, all users together at an
              open-loop rate R for T seconds; every device times each update from send to receipt.
  idle        open C sockets in batches, hold them, report how many succeeded and the server's memory
              per socket (RSS of the whole gunicorn process tree, before and after).
  handshakes  connect + authenticate + first frame, as many per second as N concurrent clients manage
              (a raw-socket client, so that the generator is not what limits the figure). With
              --reference, the same against a Flask-SocketIO server (bench/reference/) started beside
              ours, in alternating rounds with the same users: both rates and the ratio ours/reference.
  history     one user with a long history (E events over D days, written straight to the database):
              latency of the statistics endpoint for the page's ranges, and the export's rows per second
              and the server's memory while it streams.
  detect      the fan-out load of `fanout` twice, first alone, then while C clients send detection
              requests (a sentence, or a 640 px photo) back to back: detections per second and their
              latency, and what the detections cost the sockets' delivery latency.

Runs against a server it started also report the CPU time the server and the generator used
(server_cpu_percent, generator_cpu_percent; fanout also server_cpu_us_per_update): on a small
machine both compete for the same cores, and these tell which side ran out first.

By default it starts its own server (gunicorn + gevent, as `scripts/serve.sh` does) on a free port of
127.0.0.1 with a fresh SQLite database; `--env KEY=VALUE` configures it (e.g. DATABASE_URL, REDIS_URL,
WEB_CONCURRENCY). `--url` points it at a server that is already running instead (memory is then not
measured). Every loop is bounded in count and time, and only 127.0.0.1 is ever contacted.
"""
import argparse
import asyncio
import base64
import json
import os
import resource
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "benchmark-password"
sys.path.insert(0, str(ROOT))
from bench.rawclient import raw_handshake, raw_socketio_handshake  # noqa: E402 - the repository root is on the path from here on
# All load comes from one address and a few users, far above what the abuse limits let one client do:
# the server we start has them off (--env can set them again). A server at --url needs the same.
from config import LIMITS_OFF  # noqa: E402


# ------------------------------------------------------------------------------------------ the server


class Server:
    """The service under test: a gunicorn process tree we start (and measure), or one at --url."""

    def __init__(self, url=None, env=None, workdir=None, config="gunicorn.conf.py"):
        self.proc = None
        self.config = config  # gunicorn's configuration file (bench/memprobe.py starts it with its own)
        self.database_url = (env or {}).get("DATABASE_URL")
        self.url = url
        self.env = env or {}
        self.workdir = workdir

    def __enter__(self):
        if self.url:
            return self
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warning",
               "DATABASE_URL": f"sqlite:///{self.workdir}/bench.db",
               "PROMETHEUS_MULTIPROC_DIR": f"{self.workdir}/metrics", **LIMITS_OFF, **self.env}
        self.database_url = env["DATABASE_URL"]
        subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        return self._spawn([str(BIN / "gunicorn"), "-c", self.config, "wsgi:app"], env, ROOT, "server.log")

    def _spawn(self, command, env, cwd, log_name):
        """Start `command` in a session of its own and wait until its /healthz answers."""
        self.log = open(Path(self.workdir) / log_name, "wb")
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("server exited; see " + self.log.name) from None
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        if self.proc:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()

    def rss_bytes(self):
        """Resident memory of the whole process tree (master and workers), or None for --url."""
        if not self.proc:
            return None
        total = 0
        for pid in process_tree(self.proc.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def cpu_seconds(self):
        """CPU time (user + system) used so far by the whole process tree, or None for --url."""
        if not self.proc:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in process_tree(self.proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total / tick

    @property
    def address(self):
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        return host, int(port)

    @property
    def ws_url(self):
        return self.url.replace("http://", "ws://") + "/api/ws"

    def post(self, path, body, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)


class ReferenceServer(Server):
    """The Flask-SocketIO reference (bench/reference/server.py), one gevent worker under gunicorn, on a free
    port of 127.0.0.1; `env` gives it the JWT_SECRET_KEY (and JWT_ISSUER, JWT_AUDIENCE) of our server."""

    def __enter__(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        # Its own folder as the working directory: gunicorn would otherwise read our gunicorn.conf.py.
        command = [str(BIN / "gunicorn"), "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}",
                   "--log-level", "warning", "server:app"]
        return self._spawn(command, {**os.environ, **self.env}, ROOT / "bench/reference", "reference.log")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(root):
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    pids, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        pids.append(pid)
        frontier += children.get(pid, [])
    return pids


def make_users(server, count, concurrency=8):
    """Register and log in `count` users (in parallel: hashing is the slow part); return their tokens."""
    from concurrent.futures import ThreadPoolExecutor

    run = uuid.uuid4().hex[:6]

    def one(n):
        name = f"bench_{run}_{n}"
        status, body = server.post("/api/auth/register", {"username": name, "password": PASSWORD})
        assert status == 201, body
        status, body = server.post("/api/auth/login", {"username": name, "password": PASSWORD})
        assert status == 200, body
        return body["access_token"]

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def percentiles(values):
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1] * 1000, 2)}


async def open_device(url, token, tries=3):
    """Connect and read connection_established; return the socket."""
    for attempt in range(tries):
        try:
            ws = await websockets.connect(f"{url}?token={token}", max_size=2**20, ping_interval=None,
                                          compression=None, open_timeout=30)
            first = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert first["type"] == "connection_established", first
            return ws
        except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException):
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


class CpuMeter:
    """CPU time used by the server and by this generator since it was made.

    On a machine this size both compete for two cores, so CPU time per unit of work is a steadier
    figure than latency alone, and shows which side ran out first.
    """

    def __init__(self, server):
        self.server = server
        self.started = time.perf_counter()
        self.server_start = server.cpu_seconds()
        self.self_start = self._own()

    @staticmethod
    def _own():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def read(self):
        """Server and generator CPU seconds, and percent of one core, since start (server: None for --url)."""
        wall = time.perf_counter() - self.started
        server = self.server.cpu_seconds()
        server = server - self.server_start if server is not None else None
        own = self._own() - self.self_start
        return {
            "server_cpu_seconds": round(server, 2) if server is not None else None,
            "server_cpu_percent": round(100 * server / wall, 1) if server is not None else None,
            "generator_cpu_percent": round(100 * own / wall, 1),
        }


# ------------------------------------------------------------------------------------------ scenarios


async def fanout(server, users, devices, rate, duration, grace=5.0):
    tokens = make_users(server, users)
    sockets = []
    for token in tokens:
        group = [await open_device(server.ws_url, token) for _ in range(devices)]
        sockets.append(group)
    sent_at = {}
    latencies = []
    received = 0

    marker = '"client_msg_id":"'

    async def reader(ws):
        nonlocal received
        try:
            async for raw in ws:
                now = time.perf_counter()
                # Cheaper than parsing every frame: the generator must not be what limits the run.
                at = raw.find(marker)
                if at >= 0 and raw.startswith('{"type":"emotion_update"'):
                    start = at + len(marker)
                    msg_id = raw[start:raw.index('"', start)]
                    if msg_id in sent_at:
                        latencies.append(now - sent_at[msg_id])
                        received += 1
                elif raw.startswith('{"type":"error"'):
                    print("error frame:", raw, file=sys.stderr)
        except websockets.exceptions.ConnectionClosed:
            pass

    readers = [asyncio.create_task(reader(ws)) for group in sockets for ws in group]
    print(f"{users * devices} sockets open; sending {rate:g} updates/s for {duration:g} s", file=sys.stderr, flush=True)
    total = int(rate * duration)
    interval = 1.0 / rate
    cpu = CpuMeter(server)
    started = time.perf_counter()
    emotions = ["happy", "sad", "angry", "neutral"]
    behind = 0
    for n in range(total):
        # Open loop: each send has its own slot in time, whatever the answers do.
        slot = started + n * interval
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.05:
            behind += 1
        msg_id = f"{n}"
        sent_at[msg_id] = time.perf_counter()
        await sockets[n % users][0].send(
            json.dumps({"type": "emotion_update", "emotion": emotions[n % 4], "client_msg_id": msg_id})
        )
    send_seconds = time.perf_counter() - started
    expected = total * devices
    deadline = time.perf_counter() + grace
    while received < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    cpu_used = cpu.read()
    for group in sockets:
        for ws in group:
            await ws.close()
    for task in readers:
        task.cancel()
    return {
        "scenario": "fanout", "users": users, "devices": devices, "rate": rate, "duration": duration,
        "updates_sent": total, "send_seconds": round(send_seconds, 2), "sender_fell_behind": behind,
        "deliveries_expected": expected, "deliveries": received, "lost": expected - received,
        "delivered_per_s": round(received / send_seconds, 1), "latency_ms": percentiles(latencies),
        **cpu_used,
        "server_cpu_us_per_update": round(1e6 * cpu_used["server_cpu_seconds"] / total)
        if cpu_used["server_cpu_seconds"] is not None else None,
    }


async def detect(server, kind, clients, duration, users, devices, rate):
    """Fan-out alone, then fan-out while `clients` threads run detections of `kind` as fast as answered."""
    alone = await fanout(server, users, devices, rate, duration)
    token = make_users(server, 1)[0]
    if kind == "image":
        body = (ROOT / "data/detection/faces/astronaut-640.jpg").read_bytes()
        boundary = uuid.uuid4().hex
        payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"me.jpg\"\r\n"
                   f"Content-Type: image/jpeg\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
        content_type = f"multipart/form-data; boundary={boundary}"
    else:
        payload = json.dumps({"text": "ugh, the train is late again and I will miss the meeting"}).encode()
        content_type = "application/json"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    # The first detection of a worker loads the models: not part of the figures.
    status, answer, _ = _detect_once(server, payload, headers)
    if status != 200:
        raise SystemExit(f"detection answered {status}: {answer}")
    times, failures, stop = [], [], threading.Event()

    def client():
        while not stop.is_set():
            status, _, elapsed = _detect_once(server, payload, headers)
            if status == 200:
                times.append(elapsed)
            else:
                failures.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    loaded = await fanout(server, users, devices, rate, duration)
    stop.set()
    await asyncio.to_thread(lambda: [thread.join() for thread in threads])
    elapsed = time.perf_counter() - started
    return {
        "scenario": "detect", "kind": kind, "clients": clients, "duration": duration, "users": users,
        "devices": devices, "rate": rate, "models": answer.get("models"),
        "detections": len(times), "detection_failures": len(failures), "detections_per_s": round(len(times) / elapsed, 1),
        "detection_latency_ms": percentiles(times),
        "fanout_alone": {k: alone[k] for k in ("latency_ms", "lost", "deliveries", "server_cpu_percent")},
        "fanout_with_detection": {k: loaded[k] for k in ("latency_ms", "lost", "deliveries", "server_cpu_percent")},
    }


def _detect_once(server, payload, headers):
    """One detection request: (status, answer body, seconds)."""
    req = urllib.request.Request(server.url + "/api/emotions/detect", data=payload, headers=headers)
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.load(resp), time.perf_counter() - t0
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc), time.perf_counter() - t0


async def drain(ws):
    """Read and drop what a held socket receives (presence frames), as a device would."""
    try:
        async for _ in ws:
            pass
    except websockets.exceptions.ConnectionClosed:
        pass


async def idle_open(server, tokens, sockets_wanted, batch, failures=None):
    """Open `sockets_wanted` sockets, `batch` at a time, spread over the users of `tokens`; each is read
    (and what it receives dropped) until it closes. Returns the open ones; failures are appended to `failures`."""
    opened = []
    for start in range(0, sockets_wanted, batch):
        results = await asyncio.gather(
            *(open_device(server.ws_url, tokens[i % len(tokens)]) for i in range(start, min(start + batch, sockets_wanted))),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):
                if failures is not None:
                    failures.append(result)
            else:
                opened.append(result)
                result.drain_task = asyncio.create_task(drain(result))
    return opened


async def idle(server, sockets_wanted, batch, hold, users):
    tokens = make_users(server, users)
    before = server.rss_bytes()
    failures = []
    started = time.perf_counter()
    opened = await idle_open(server, tokens, sockets_wanted, batch, failures)
    failed = len(failures)
    open_seconds = time.perf_counter() - started
    await asyncio.sleep(hold)
    after = server.rss_bytes()
    alive = sum(1 for ws in opened if ws.state == websockets.protocol.State.OPEN)
    await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
    for ws in opened:
        ws.drain_task.cancel()
    per_socket = (after - before) / len(opened) if before and opened else None
    return {
        "scenario": "idle", "sockets": sockets_wanted, "opened": len(opened), "failed": failed,
        "alive_after_hold": alive, "open_seconds": round(open_seconds, 2), "hold_seconds": hold,
        "rss_before_mb": round(before / 2**20, 1) if before else None,
        "rss_after_mb": round(after / 2**20, 1) if after else None,
        "rss_per_socket_kb": round(per_socket / 1024, 1) if per_socket else None,
    }


async def measure_handshakes(server, connect, tokens, concurrency, duration):
    """Handshakes per second that `concurrency` clients running `connect` get from `server` in `duration` s."""
    host, port = server.address
    times, failures = [], 0
    stop = time.perf_counter() + duration

    async def worker(n):
        nonlocal failures
        while time.perf_counter() < stop:
            try:
                times.append(await connect(host, port, tokens[n % len(tokens)]))
            except Exception as exc:  # noqa: BLE001 - counted, the run goes on
                failures += 1
                if failures <= 3:
                    print("handshake failed:", repr(exc), file=sys.stderr)

    cpu = CpuMeter(server)
    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"handshakes": len(times), "failures": failures, "per_second": round(len(times) / elapsed, 1),
            "latency_ms": percentiles(times), **cpu.read()}


async def handshakes(server, concurrency, duration, users):
    tokens = make_users(server, users)
    measured = await measure_handshakes(server, raw_handshake, tokens, concurrency, duration)
    return {"scenario": "handshakes", "concurrency": concurrency, "duration": duration, **measured}


async def handshakes_against_reference(server, reference, concurrency, duration, users, rounds):
    """Our handshakes and the Flask-SocketIO reference's, in alternating rounds, with the same tokens.

    Both servers run through the whole run and take turns, so that whatever else loads the machine
    weighs on both alike; the ratio of the medians is the figure that carries from one machine to another.
    """
    from importlib.metadata import version

    tokens = make_users(server, users)
    sides = (("ours", server, raw_handshake), ("reference", reference, raw_socketio_handshake))
    for _, srv, connect in sides:  # warm up: the first requests of a worker import and cache more
        for token in tokens[:10]:
            await connect(*srv.address, token)
    rounds_measured = {name: [] for name, _, _ in sides}
    for n in range(rounds):
        for name, srv, connect in sides:
            measured = await measure_handshakes(srv, connect, tokens, concurrency, duration)
            rounds_measured[name].append(measured)
            print(f"round {n + 1}/{rounds} {name}: {measured['per_second']} per second "
                  f"({measured['failures']} failed)", file=sys.stderr, flush=True)

    def side(measured):
        return {
            "per_second": [m["per_second"] for m in measured],
            "median_per_second": statistics.median(m["per_second"] for m in measured),
            "handshakes": sum(m["handshakes"] for m in measured),
            "failures": sum(m["failures"] for m in measured),
            "latency_p50_ms": [m["latency_ms"]["p50"] for m in measured],
            "latency_p99_ms": [m["latency_ms"]["p99"] for m in measured],
            "server_cpu_percent": [m["server_cpu_percent"] for m in measured],
            "generator_cpu_percent": [m["generator_cpu_percent"] for m in measured],
        }

    ours, ref = side(rounds_measured["ours"]), side(rounds_measured["reference"])
    return {
        "scenario": "handshakes", "concurrency": concurrency, "duration": duration, "users": users,
        "rounds": rounds, "reference_server": f"Flask-SocketIO {version('flask-socketio')} + gevent, one worker",
        "ours": ours, "reference": ref,
        "ratio": round(ours["median_per_second"] / ref["median_per_second"], 2) if ref["median_per_second"] else None,
        "failures": ours["failures"] + ref["failures"],
    }


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


def summary(result):
    if result["scenario"] == "fanout":
        lat = result["latency_ms"]
        return (f"fanout: {result['users']} users x {result['devices']} devices, {result['rate']} updates/s for "
                f"{result['duration']} s: {result['deliveries']}/{result['deliveries_expected']} delivered "
                f"({result['lost']} lost), {result['delivered_per_s']} deliveries/s; latency p50 {lat['p50']} ms, "
                f"p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    if result["scenario"] == "idle":
        return (f"idle: {result['opened']}/{result['sockets']} sockets open ({result['failed']} failed), "
                f"{result['alive_after_hold']} alive after {result['hold_seconds']} s; server RSS "
                f"{result['rss_before_mb']} -> {result['rss_after_mb']} MB = {result['rss_per_socket_kb']} KB per socket")
    if result["scenario"] == "history":
        stats = ", ".join(f"{name} ({r['buckets']} buckets, {r['events_in_range']} events) p50 {r['latency_ms']['p50']} ms "
                          f"p95 {r['latency_ms']['p95']} ms" for name, r in result["stats"].items())
        export = ", ".join(f"{fmt} {r['mb']} MB in {r['seconds']} s ({r['events_per_s']} events/s, server RSS "
                           f"+{r['server_rss_growth_mb']} MB)" for fmt, r in result["export"].items())
        ping = result["ping_during_stats_ms"]
        return (f"history: {result['events']} events over {result['days']} days; stats {stats}; export {export}; "
                f"another socket's ping during week_all p50 {ping['p50']} ms, max {ping['max']} ms")
    if result["scenario"] == "detect":
        alone, loaded, lat = result["fanout_alone"], result["fanout_with_detection"], result["detection_latency_ms"]
        return (f"detect: {result['clients']} clients, {result['kind']}: {result['detections_per_s']} detections/s "
                f"(p50 {lat['p50']} ms, p99 {lat['p99']} ms, {result['detection_failures']} failed); fan-out at "
                f"{result['rate']:g} updates/s p99 {alone['latency_ms']['p99']} ms alone -> "
                f"{loaded['latency_ms']['p99']} ms beside detection ({alone['lost']} -> {loaded['lost']} lost)")
    if "ratio" in result:
        ours, ref = result["ours"], result["reference"]
        return (f"handshakes: {result['rounds']} alternating rounds of {result['duration']:g} s with "
                f"{result['concurrency']} concurrent clients: ours {' / '.join(map(str, ours['per_second']))} per second "
                f"(median {ours['median_per_second']}, {ours['failures']} failed), {result['reference_server']} "
                f"{' / '.join(map(str, ref['per_second']))} (median {ref['median_per_second']}, {ref['failures']} "
                f"failed): ours / reference = {result['ratio']}")
    lat = result["latency_ms"]
    return (f"handshakes: {result['per_second']} per second with {result['concurrency']} concurrent clients "
            f"({result['failures']} failed); latency p50 {lat['p50']} ms, p99 {lat['p99']} ms")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:8000 (loopback only)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="setting for the started server")
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("fanout")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--duration", type=float, default=20)
    p = sub.add_parser("idle")
    p.add_argument("--sockets", type=int, default=10000)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--hold", type=float, default=10)
    p.add_argument("--users", type=int, default=500, help="sockets are spread over this many users")
    p = sub.add_parser("handshakes")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--reference", action="store_true",
                   help="also start the Flask-SocketIO reference server (bench/reference/) and measure both in "
                        "alternating rounds of --duration seconds, with the same users")
    p.add_argument("--rounds", type=int, default=3, help="rounds for each server, with --reference")
    p = sub.add_parser("history")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--requests", type=int, default=20, help="requests per statistics range")
    p = sub.add_parser("detect")
    p.add_argument("--kind", choices=("text", "image"), default="text")
    p.add_argument("--clients", type=int, default=4, help="detection requests in flight at once")
    p.add_argument("--duration", type=float, default=20, help="seconds of each phase")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--rate", type=float, default=500, help="emotion updates per second, both phases")
    args = parser.parse_args(argv)

    if args.url and not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("--url must be a loopback address")
    # Bounds: every run stops by itself, in count and in time.
    if args.scenario == "fanout" and not (args.rate * args.duration <= 200_000 and args.duration <= 300
                                          and args.users * args.devices <= 20_000):
        parser.error("fanout is bounded to 200,000 updates, 300 s and 20,000 sockets")
    if args.scenario == "idle" and not (args.sockets <= 15_000 and args.hold <= 300):
        parser.error("idle is bounded to 15,000 sockets held for 300 s")
    if args.scenario == "handshakes" and not (args.concurrency <= 500 and args.duration <= 300):
        parser.error("handshakes is bounded to 500 concurrent clients for 300 s")
    if args.scenario == "handshakes" and args.reference:
        if args.url:
            parser.error("--reference starts both servers itself: it cannot be used with --url")
        if not (1 <= args.rounds <= 10 and 2 * args.rounds * args.duration <= 600):
            parser.error("handshakes --reference is bounded to 10 rounds and 600 s of measuring in all")
    if args.scenario == "history" and not (args.events <= 2_000_000 and 1 <= args.days <= 3650
                                           and args.requests <= 200):
        parser.error("history is bounded to 2,000,000 events over 10 years and 200 requests per range")
    if args.scenario == "detect" and not (args.clients <= 64 and args.duration <= 120 and args.rate * args.duration <= 100_000
                                          and args.users * args.devices <= 5_000):
        parser.error("detect is bounded to 64 clients, 120 s a phase, 100,000 updates and 5,000 sockets")

    # Many sockets need many file descriptors, in this process and in the server it starts.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = dict(kv.split("=", 1) for kv in args.env)
    if args.scenario == "idle":
        env.setdefault("WORKER_CONNECTIONS", str(args.sockets + 100))
        env.setdefault("WS_MAX_SOCKETS", str(args.sockets))
    try:
        import uvloop  # a faster event loop keeps the generator's own overhead out of the figures

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    reference = args.scenario == "handshakes" and args.reference
    # Both servers must accept the same tokens: one secret for the run, kept out of the printed result.
    secret = {"JWT_SECRET_KEY": env.get("JWT_SECRET_KEY") or secrets.token_urlsafe(48)} if reference else {}
    with tempfile.TemporaryDirectory(prefix="emotion-bench-") as workdir, \
            Server(args.url, {**env, **secret}, workdir) as server:
        if args.scenario == "fanout":
            result = run(fanout(server, args.users, args.devices, args.rate, args.duration))
        elif args.scenario == "idle":
            result = run(idle(server, args.sockets, args.batch, args.hold, args.users))
        elif args.scenario == "history":
            result = history(server, args.events, args.days, args.requests)
        elif args.scenario == "detect":
            result = run(detect(server, args.kind, args.clients, args.duration, args.users, args.devices, args.rate))
        elif reference:
            shared = {**{k: env[k] for k in ("JWT_ISSUER", "JWT_AUDIENCE") if k in env}, **secret}
            with ReferenceServer(env=shared, workdir=workdir) as ref:
                result = run(handshakes_against_reference(server, ref, args.concurrency, args.duration, args.users,
                                                          args.rounds))
        else:
            result = run(handshakes(server, args.concurrency, args.duration, args.users))
    result["server_env"] = env
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result))
    print(summary(result))
    return result


if __name__ == "__main__":
    main()
