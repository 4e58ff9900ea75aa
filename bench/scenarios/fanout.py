"""fanout: U users x D devices; device 0 of each user sends updates, all users together at an open-loop rate,
and every device times each update from send to receipt."""
import asyncio
import json
import sys
import time

import websockets

from bench.measure import percentiles
from bench.servers import CpuMeter, make_users


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
