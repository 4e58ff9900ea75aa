"""storm: N devices connected when the server restarts under them.

The server gets SIGTERM (it closes every socket with 1012 and exits) and a new one is started on the same
port. Every device reconnects as the README tells clients to: at once after 1012, else after a random
delay up to a ceiling that doubles with each failed attempt (full jitter, never less than a `retry_after`
the server asked for), capped at the restart cap for the restart window after its 1012 (until it is back)
and at the usual cap otherwise, each time with `?since=` the id of the last event it saw. Meanwhile emotion updates keep
coming over HTTP (each one sent again with the same `client_msg_id` until it is stored), and while the
server is down more are written straight to the database, as another server of the deployment would.

Reported: how long after the new server was ready every device was back (`connection_established`) and
resumed (`synced`), each device's time from its 1012 to being back, the connection attempts and what
refused them, the 1012s, and whether every device received every event of its user exactly once.
"""
import asyncio
import base64
import json
import random
import resource
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timezone

import sqlalchemy as sa

from bench.measure import percentiles
from bench.rawclient import client_frame
from bench.servers import make_users, process_tree

CLOSE_RESTART = 1012
# What the browser client allows for a connection to reach connection_established (socket.js).
HANDSHAKE_TIMEOUT = 15.0
# A connection that lasted this long starts the backoff schedule over (both clients).
STABLE_AFTER = 10.0
# Devices connecting at once before the storm: the first connections are not what is measured.
CONNECTING = 100
EMOTIONS = ("happy", "sad", "angry", "surprised", "fearful", "disgusted", "neutral")


class Refused(Exception):
    """A connection attempt that did not reach connection_established; `kind` says why."""

    def __init__(self, kind, retry_after=None):
        super().__init__(kind)
        self.kind = kind
        self.retry_after = retry_after


class Fleet:
    """What all devices share: where to connect, how to back off, and the run's clock marks and counts."""

    def __init__(self, host, port, count, backoff_base, backoff_cap, restart_backoff_cap=2.0, restart_window=30.0):
        self.host, self.port = host, port
        self.count = count
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.restart_backoff_cap, self.restart_window = restart_backoff_cap, restart_window
        self.sigterm_at = None  # set (by the restarting thread) just before SIGTERM
        self.spawned_at = None  # the new server's start: a connection after it is to the new server
        self.stopping = False
        self.settled = 0  # devices connected and caught up before the storm
        self.back = 0
        self.resumed = 0
        self.all_settled = asyncio.Event()
        self.first_back_at = None
        self.all_back_at = None
        self.all_resumed = asyncio.Event()
        self.all_resumed_at = None
        self.attempts = 0  # connection attempts after SIGTERM, the successful ones included
        self.refusals = Counter()
        self.closes = Counter()  # how sockets ended after SIGTERM: their close code, or "no close frame"
        self.errors = Counter()  # error frames, by code
        self.last_1012_at = None

    def delay(self, failures, retry_after=None, restarted_at=None):
        """The wait before the next attempt after `failures` failed ones in a row (full jitter); with the
        restart cap while `restarted_at` (a device's last 1012, None once it is back) is recent."""
        cap = self.backoff_cap
        if restarted_at is not None and time.monotonic() - restarted_at < self.restart_window:
            cap = min(cap, self.restart_backoff_cap)
        ceiling = min(cap, self.backoff_base * 2.0 ** min(failures - 1, 64))
        return max(random.random() * ceiling, retry_after or 0.0)


class Device:
    """One device: its socket through the run, and every event id it received, repeats included."""

    def __init__(self, fleet, user, token):
        self.fleet = fleet
        self.user = user
        self.token = token
        self.ids = []
        self.last_id = 0
        self.connected_at = None
        self.awaiting_sync = False
        self.settled = False
        self.cut_at = None  # when the storm reached it: its socket's end after SIGTERM
        self.cut_by = None
        self.back_at = None  # connection_established from the new server
        self.resumed_at = None  # the end of that connection's replay
        self.attempts = 0  # after SIGTERM
        self.restarted_at = None  # its last 1012, until a connection is established
        self.writer = None

    async def run(self, gate):
        """Stay connected until the run ends, reconnecting as a client of the contract does."""
        fleet = self.fleet
        failures = 0
        while not fleet.stopping:
            if fleet.sigterm_at is not None:
                self.attempts += 1
                fleet.attempts += 1
            try:
                if self.settled:
                    reader, writer = await self._connect()
                else:
                    async with gate:
                        reader, writer = await self._connect()
            except Refused as exc:
                if fleet.sigterm_at is not None:
                    fleet.refusals[exc.kind] += 1
                failures += 1
                await asyncio.sleep(fleet.delay(failures, exc.retry_after, self.restarted_at))
                continue
            code = await self._serve(reader, writer)
            if fleet.stopping:
                return
            if time.monotonic() - self.connected_at >= STABLE_AFTER:
                failures = 0
            if fleet.sigterm_at is not None:
                now = time.monotonic()
                fleet.closes[code or "no close frame"] += 1
                if code == CLOSE_RESTART:
                    fleet.last_1012_at = now
                if self.cut_at is None:
                    self.cut_at, self.cut_by = now, code
            if code == CLOSE_RESTART:
                self.restarted_at = time.monotonic()
            else:
                failures += 1
                await asyncio.sleep(fleet.delay(failures))

    async def _connect(self):
        """Open a socket with `since` and read connection_established; raise Refused otherwise."""
        try:
            return await asyncio.wait_for(self._handshake(), HANDSHAKE_TIMEOUT)
        except asyncio.TimeoutError:
            raise Refused("timeout") from None
        except ConnectionRefusedError:
            raise Refused("connection refused") from None
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
            raise Refused("connection reset") from None
        except OSError as exc:
            raise Refused(f"connect failed: {exc.strerror or exc}") from None
        except ValueError:
            raise Refused("not an HTTP answer") from None

    async def _handshake(self):
        reader, writer = await asyncio.open_connection(self.fleet.host, self.fleet.port)
        try:
            writer.write(
                f"GET /api/ws?token={self.token}&since={self.last_id} HTTP/1.1\r\n"
                f"Host: {self.fleet.host}:{self.fleet.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {base64.b64encode(random.randbytes(16)).decode()}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            if status != 101:
                raise await _refusal(reader, head, status)
            opcode, payload = await _read_frame(reader)
            if opcode != 0x1 or not payload.startswith(b'{"type":"connection_established"'):
                first = json.loads(payload) if opcode == 0x1 else {"type": f"opcode {opcode}"}
                raise Refused(f"first frame {first.get('code') or first.get('type')}")
        except BaseException:
            writer.close()
            raise
        self.writer = writer
        self.connected_at = time.monotonic()
        self.restarted_at = None
        self.awaiting_sync = True
        fleet = self.fleet
        if fleet.spawned_at is not None and self.back_at is None:
            self.back_at = self.connected_at
            fleet.back += 1
            if fleet.back == 1:
                fleet.first_back_at = self.connected_at
            if fleet.back == fleet.count:
                fleet.all_back_at = self.connected_at
        return reader, writer

    async def _serve(self, reader, writer):
        """Read frames until the socket ends; return the server's close code (None: no close frame)."""
        try:
            while True:
                opcode, payload = await _read_frame(reader)
                if opcode == 0x1:
                    self._text(payload, writer)
                elif opcode == 0x9:
                    writer.write(client_frame(0xA, payload))
                elif opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    writer.write(client_frame(0x8, payload[:2]))  # the close handshake echoes the code
                    return code
        except (asyncio.IncompleteReadError, OSError):
            return None
        finally:
            writer.close()
            self.writer = None

    def _text(self, payload, writer):
        # Only the frames this run needs are parsed: presence frames, the most common, are not.
        if payload.startswith(b'{"type":"emotion_update"'):
            event_id = json.loads(payload)["id"]
            self.ids.append(event_id)
            self.last_id = event_id
        elif payload.startswith(b'{"type":"synced"'):
            frame = json.loads(payload)
            if frame["has_more"]:
                writer.write(client_frame(0x1, json.dumps({"type": "sync", "since": frame["last_id"]}).encode()))
            elif self.awaiting_sync:
                self.awaiting_sync = False
                self._caught_up()
        elif payload.startswith(b'{"type":"error"'):
            self.fleet.errors[json.loads(payload).get("code")] += 1

    def _caught_up(self):
        fleet = self.fleet
        if not self.settled:
            self.settled = True
            fleet.settled += 1
            if fleet.settled == fleet.count:
                fleet.all_settled.set()
        if self.back_at is not None and self.resumed_at is None:
            self.resumed_at = time.monotonic()
            fleet.resumed += 1
            if fleet.resumed == fleet.count:
                fleet.all_resumed_at = self.resumed_at
                fleet.all_resumed.set()

    def close(self):
        """End the socket with a normal close, as a device that is done."""
        if self.writer is not None:
            self.writer.write(client_frame(0x8, (1000).to_bytes(2, "big")))
            self.writer.close()


async def _read_frame(reader):
    """The next whole server message: (opcode, payload). Servers do not mask; fragments are joined."""
    opcode, parts = None, []
    while True:
        first, size = await reader.readexactly(2)
        size &= 0x7F
        if size >= 126:
            size = int.from_bytes(await reader.readexactly(2 if size == 126 else 8), "big")
        payload = await reader.readexactly(size) if size else b""
        if first & 0x0F >= 0x8:  # control frames come whole, even between fragments
            return first & 0x0F, payload
        opcode = opcode or first & 0x0F
        parts.append(payload)
        if first & 0x80:
            return opcode, b"".join(parts)


async def _refusal(reader, head, status):
    """The Refused of an HTTP answer other than 101, with its JSON error code and retry_after."""
    code, retry_after = None, None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            try:
                body = json.loads(await reader.readexactly(int(line.split(b":", 1)[1])))
                code, retry_after = body.get("error"), body.get("retry_after")
            except (ValueError, AttributeError, asyncio.IncompleteReadError):
                pass
    return Refused(f"{status} {code}" if code else str(status), retry_after)


class Updates(threading.Thread):
    """Emotion updates over HTTP, one user after another at up to `rate` a second. Each is sent until the
    server stores it, again with the same client_msg_id after a failure, as the README asks."""

    def __init__(self, server, tokens, rate):
        super().__init__(daemon=True)
        self.server, self.tokens, self.rate = server, tokens, rate
        self.halt = threading.Event()
        self.stored = 0
        self.retries = 0
        self.unconfirmed = 0  # given up on when the run ended (stored or not: the database says)

    def run(self):
        due, n = time.monotonic(), 0
        while not self.halt.is_set():
            # Paced, not open loop: after an outage it carries on at the rate instead of catching up.
            due = max(due + 1 / self.rate, time.monotonic())
            self.halt.wait(max(0.0, due - time.monotonic()))
            token = self.tokens[n % len(self.tokens)]
            body = {"emotion": EMOTIONS[n % len(EMOTIONS)], "client_msg_id": uuid.uuid4().hex}
            n += 1
            while True:
                try:
                    status, _ = self.server.post("/api/emotions", body, token)
                    if status in (200, 201):
                        self.stored += 1
                        break
                except (OSError, ValueError):  # refused, reset, or not JSON: not known to be stored
                    pass
                self.retries += 1
                if self.halt.wait(0.1):
                    self.unconfirmed += 1
                    break


def restart(server, fleet, engine, user_ids, offline_events, timeout, mode="restart"):
    """Restart the server under its devices and note when it is ready again. Runs in a thread of its own,
    beside the devices' event loop; returns the clock marks and how the polls of /readyz went.

    `restart` (systemctl restart): SIGTERM to gunicorn, wait until it has exited, write `offline_events`
    straight to the database, and start it again on the same port. `reload` (systemctl reload, a deploy on
    one host): SIGHUP to gunicorn, which starts new workers and then sends SIGTERM to the old ones; the
    listening socket stays open throughout, and the offline events are written while the old workers
    drain. Either way the server is ready when its /readyz answers 200 (each poll waits 2 s for an answer,
    as a load balancer's health check would).
    """
    marks = {"readyz_polls": Counter()}
    fleet.sigterm_at = marks["sigterm"] = time.monotonic()
    if mode == "reload":
        old_workers = set(process_tree(server.proc.pid)) - {server.proc.pid}
        server.proc.send_signal(signal.SIGHUP)
        fleet.spawned_at = marks["spawned"] = time.monotonic()
        marks["offline_ids"] = write_offline(engine, user_ids, offline_events)
        while old_workers & set(process_tree(server.proc.pid)):
            time.sleep(0.01)
        marks["exited"], marks["exit_status"] = time.monotonic(), None
    else:
        marks["exit_status"] = server.stop()
        marks["exited"] = time.monotonic()
        marks["offline_ids"] = write_offline(engine, user_ids, offline_events)
        server.start_again("server-restarted.log")
        fleet.spawned_at = marks["spawned"] = time.monotonic()
    deadline = marks["sigterm"] + timeout
    while "port_open" not in marks:
        try:
            socket.create_connection(server.address, timeout=1).close()
            marks["port_open"] = time.monotonic()
        except OSError:
            if server.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the restarted server did not start; see " + server.log.name) from None
            time.sleep(0.01)
    while "ready" not in marks:
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=2):
                marks["ready"] = time.monotonic()
                marks["readyz_polls"]["200"] += 1
        except urllib.error.HTTPError as exc:  # a check failed: the answer says which
            try:
                failed = " ".join(name for name, state in json.load(exc)["checks"].items() if state != "ok")
            except (ValueError, KeyError, AttributeError):
                failed = ""
            marks["readyz_polls"][f"{exc.code} {failed}".strip()] += 1
        except (OSError, ValueError) as exc:  # no answer in time, or none at all
            marks["readyz_polls"]["timed out" if "timed out" in str(exc) else "no answer"] += 1
        if "ready" not in marks:
            if time.monotonic() > deadline:
                raise RuntimeError("the restarted server never became ready") from None
            time.sleep(0.02)
    return marks


def write_offline(engine, user_ids, count):
    """Store `count` events, one user after another, as another server of the deployment would (the seq
    taken under the user's row lock, as the app does); return their ids."""
    ids = []
    with engine.begin() as conn:
        for n in range(count):
            user_id = user_ids[n % len(user_ids)]
            conn.execute(sa.text("UPDATE users SET last_seq = last_seq + 1 WHERE id = :u"), {"u": user_id})
            seq = conn.execute(sa.text("SELECT last_seq FROM users WHERE id = :u"), {"u": user_id}).scalar()
            ids.append(conn.execute(
                sa.text("INSERT INTO emotion_events (user_id, emotion, created_at, seq, device) "
                        "VALUES (:u, :e, :t, :s, 'offline writer') RETURNING id"),
                {"u": user_id, "e": EMOTIONS[n % len(EMOTIONS)], "s": seq,
                 "t": datetime.now(timezone.utc).replace(tzinfo=None)},
            ).scalar())
    return ids


def stored_events(engine, user_ids):
    """Every stored event id of these users: {user_id: set of ids}."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT user_id, id FROM emotion_events WHERE user_id IN :users")
                            .bindparams(sa.bindparam("users", expanding=True)), {"users": list(user_ids)}).all()
    stored = {user_id: set() for user_id in user_ids}
    for user_id, event_id in rows:
        stored[user_id].add(event_id)
    return stored


def _own_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def storm(server, devices, users, rate, offline_events, backoff_base, backoff_cap, timeout, grace=10.0,
                mode="restart", restart_backoff_cap=2.0, restart_window=30.0):
    if not server.proc:
        raise SystemExit("storm restarts the server: it cannot be used with --url")
    tokens = make_users(server, users)
    # Made now: the restart's own thread should not spend the outage importing and connecting.
    engine = sa.create_engine(server.database_url)
    user_ids = [int(json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "=="))["sub"]) for t in tokens]
    host, port = server.address
    fleet = Fleet(host, port, devices, backoff_base, backoff_cap, restart_backoff_cap, restart_window)
    fleet_devices = [Device(fleet, n % users, tokens[n % users]) for n in range(devices)]
    gate = asyncio.Semaphore(CONNECTING)
    tasks = [asyncio.create_task(device.run(gate)) for device in fleet_devices]
    started = time.monotonic()
    try:
        await asyncio.wait_for(fleet.all_settled.wait(), 60 + devices / 20)
    except asyncio.TimeoutError:
        raise SystemExit(f"only {fleet.settled} of {devices} devices connected; see {server.log.name}") from None
    connect_seconds = time.monotonic() - started
    print(f"{devices} devices connected in {connect_seconds:.1f} s; restarting the server", file=sys.stderr,
          flush=True)

    updates = Updates(server, tokens, rate)
    updates.start()
    await asyncio.sleep(1.0)  # updates delivered live before the restart
    own_before = _own_cpu()
    restarting = asyncio.create_task(asyncio.to_thread(restart, server, fleet, engine, user_ids, offline_events,
                                                     timeout, mode))
    all_resumed = asyncio.create_task(fleet.all_resumed.wait())
    done, _ = await asyncio.wait({restarting, all_resumed}, timeout=timeout)
    all_resumed.cancel()
    if restarting not in done:
        raise SystemExit(f"the restart took longer than {timeout} s; see {server.log.name}")
    marks = restarting.result()  # raises what went wrong with the restart
    storm_seconds = time.monotonic() - marks["sigterm"]
    server_cpu = server.cpu_seconds()  # the new server's process tree, since it started
    own_cpu = _own_cpu() - own_before
    await asyncio.sleep(1.0)  # live updates to devices that are all back
    updates.halt.set()
    await asyncio.to_thread(updates.join)

    stored = await asyncio.to_thread(stored_events, engine, user_ids)
    engine.dispose()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(stored[user_ids[d.user]] - set(d.ids) for d in fleet_devices):
        await asyncio.sleep(0.1)
    fleet.stopping = True
    for device in fleet_devices:
        device.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    missed = duplicated = out_of_order = unexpected = short = 0
    for device in fleet_devices:
        expected, seen = stored[user_ids[device.user]], set(device.ids)
        missed += len(expected - seen)
        short += bool(expected - seen)
        unexpected += len(seen - expected)
        duplicated += len(device.ids) - len(seen)
        out_of_order += sum(1 for a, b in zip(device.ids, device.ids[1:]) if b < a)
    cut = [d for d in fleet_devices if d.cut_at is not None]
    ready = marks["ready"]
    since = marks["sigterm"]

    def after(mark, origin):
        return round(mark - origin, 2) if mark is not None else None

    return {
        "scenario": "storm", "restart": mode, "devices": devices, "users": users,
        "backoff": {"base_s": backoff_base, "cap_s": backoff_cap, "restart_cap_s": restart_backoff_cap,
                    "restart_window_s": restart_window, "handshake_timeout_s": HANDSHAKE_TIMEOUT},
        "connect_seconds": round(connect_seconds, 1),
        "closed_with_1012": sum(1 for d in cut if d.cut_by == CLOSE_RESTART),
        "closes_after_sigterm": {str(k): v for k, v in fleet.closes.items()},
        "last_1012_after_sigterm_s": after(fleet.last_1012_at, since),
        "old_server_exit_s": after(marks["exited"], since), "old_server_exit_status": marks["exit_status"],
        "new_server_started_s": after(marks["spawned"], since),
        "new_server_port_open_s": after(marks["port_open"], since),
        "new_server_ready_s": after(ready, since), "readyz_polls": dict(marks["readyz_polls"]),
        "first_back_s": after(fleet.first_back_at, since), "all_back_s": after(fleet.all_back_at, since),
        # Under a storm /readyz waits its turn behind the handshakes, so the port opening is the sturdier mark.
        "all_back_after_port_open_s": after(fleet.all_back_at, marks["port_open"]),
        "all_resumed_after_port_open_s": after(fleet.all_resumed_at, marks["port_open"]),
        "all_back_after_ready_s": after(fleet.all_back_at, ready),
        "all_resumed_after_ready_s": after(fleet.all_resumed_at, ready),
        "back": fleet.back, "resumed": fleet.resumed,
        "reconnect_ms": percentiles([d.back_at - d.cut_at for d in cut if d.back_at is not None]),
        "resume_ms": percentiles([d.resumed_at - d.cut_at for d in cut if d.resumed_at is not None]),
        "attempts": fleet.attempts, "max_attempts_per_device": max((d.attempts for d in fleet_devices), default=0),
        "refusals": dict(fleet.refusals.most_common()),
        "error_frames": {str(k): v for k, v in fleet.errors.items()},
        "updates_http": updates.stored, "updates_http_retries": updates.retries,
        "updates_http_unconfirmed": updates.unconfirmed, "updates_offline": len(marks["offline_ids"]),
        "events_stored": sum(len(ids) for ids in stored.values()),
        "deliveries_expected": sum(len(stored[user_ids[d.user]]) for d in fleet_devices),
        "deliveries": sum(len(d.ids) for d in fleet_devices),
        "missed": missed, "devices_missing_events": short, "duplicated": duplicated,
        "out_of_order": out_of_order, "unexpected": unexpected,
        "new_server_cpu_seconds": round(server_cpu, 2) if server_cpu is not None else None,
        "generator_cpu_percent": round(100 * own_cpu / storm_seconds, 1),
    }
