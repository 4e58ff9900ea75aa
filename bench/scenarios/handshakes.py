"""handshakes: connect + authenticate + first frame, as many per second as N concurrent raw clients manage,
alone or in alternating rounds against the Flask-SocketIO reference."""
import asyncio
import statistics
import sys
import time

from bench.measure import percentiles
from bench.rawclient import raw_handshake, raw_socketio_handshake
from bench.servers import CpuMeter, make_users


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
