"""idle: many sockets opened in batches and held; the server's memory per socket."""
import asyncio
import time

import websockets

from bench.scenarios.fanout import open_device
from bench.servers import make_users


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
