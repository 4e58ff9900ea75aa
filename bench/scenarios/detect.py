"""detect: the fan-out load alone, then beside clients sending detection requests back to back."""
import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid

from bench.measure import percentiles
from bench.scenarios.fanout import fanout
from bench.servers import ROOT, make_users


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
