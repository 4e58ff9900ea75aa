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
  storm       N devices connected when the server restarts (SIGTERM: every socket closed with 1012, then a
              new server on the same port); they reconnect as the README tells clients to (short delays
              for a while after the 1012), each resuming with `since`, while updates keep coming: how
              long until all are back and resumed, the attempts and refusals, and whether every device
              got every event of its user exactly once.

Runs against a server it started also report the CPU time the server and the generator used
(server_cpu_percent, generator_cpu_percent; fanout also server_cpu_us_per_update): on a small
machine both compete for the same cores, and these tell which side ran out first.

By default it starts its own server (gunicorn + gevent, as `scripts/serve.sh` does) on a free port of
127.0.0.1 with a fresh SQLite database; `--env KEY=VALUE` configures it (e.g. DATABASE_URL, REDIS_URL,
WEB_CONCURRENCY). `--url` points it at a server that is already running instead (memory is then not
measured). Every loop is bounded in count and time, and only 127.0.0.1 is ever contacted.

The code is split by job: bench/servers.py starts and measures the servers and makes users,
bench/measure.py holds the percentiles and the readable summaries, bench/scenarios/ one module per
scenario, bench/rawclient.py the raw-socket WebSocket client.
"""
import argparse
import asyncio
import json
import os
import resource
import secrets
import sys
import tempfile
from pathlib import Path

# Run as `python bench/loadgen.py`, only bench/ is on the path: the repository root goes first.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.measure import summary  # noqa: E402
from bench.scenarios.detect import detect  # noqa: E402
from bench.scenarios.fanout import fanout  # noqa: E402
from bench.scenarios.handshakes import handshakes, handshakes_against_reference  # noqa: E402
from bench.scenarios.history import history  # noqa: E402
from bench.scenarios.idle import idle  # noqa: E402
from bench.scenarios.storm import storm  # noqa: E402
from bench.servers import ReferenceServer, Server  # noqa: E402


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
    p = sub.add_parser("storm")
    p.add_argument("--devices", type=int, default=5000, help="connected devices when the server restarts")
    p.add_argument("--users", type=int, default=500, help="devices are spread over this many users")
    p.add_argument("--workers", type=int, help="gunicorn workers (WEB_CONCURRENCY); more than one needs "
                                                "--env DATABASE_URL=postgresql+psycopg://... and --env REDIS_URL=...")
    p.add_argument("--rate", type=float, default=20, help="emotion updates per second over HTTP through the run")
    p.add_argument("--offline-events", type=int, default=100,
                   help="events written straight to the database while the server is down")
    p.add_argument("--backoff-base", type=float, default=0.5, help="seconds: the first failed attempt's longest wait")
    p.add_argument("--backoff-cap", type=float, default=30, help="seconds: the longest wait between attempts")
    p.add_argument("--restart-backoff-cap", type=float, default=2,
                   help="seconds: the longest wait between attempts within --restart-window of a device's 1012, "
                        "until it is back (equal to --backoff-cap: no restart rule)")
    p.add_argument("--restart-window", type=float, default=30,
                   help="seconds after a device's 1012 during which --restart-backoff-cap applies")
    p.add_argument("--backlog", type=int,
                   help="the server's listen backlog (gunicorn --backlog; its default is 2048, the kernel caps it "
                        "at net.core.somaxconn)")
    p.add_argument("--timeout", type=float, default=180, help="seconds from SIGTERM to give up waiting for devices")
    p.add_argument("--restart", choices=("restart", "reload"), default="restart",
                   help="restart: SIGTERM, wait for the exit, start again (systemctl restart); reload: SIGHUP, "
                        "new workers start and the old ones drain, the port stays open (systemctl reload)")
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
    if args.scenario == "storm":
        if args.url:
            parser.error("storm restarts the server itself: it cannot be used with --url")
        if not (1 <= args.devices <= 15_000 and 1 <= args.users <= 2_000 and 0 < args.rate <= 500
                and 0 <= args.offline_events <= 100_000 and args.timeout <= 600 and args.backoff_cap <= 60
                and 0 < args.restart_backoff_cap <= 60 and 0 <= args.restart_window <= 600):
            parser.error("storm is bounded to 15,000 devices, 2,000 users, 500 updates/s, 100,000 offline events, "
                         "a 60 s backoff cap (restart cap too, and above 0), a 600 s restart window and 600 s")

    # Many sockets need many file descriptors, in this process and in the server it starts.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = dict(kv.split("=", 1) for kv in args.env)
    if args.scenario == "idle":
        env.setdefault("WORKER_CONNECTIONS", str(args.sockets + 100))
        env.setdefault("WS_MAX_SOCKETS", str(args.sockets))
    if args.scenario == "storm":
        # Room for every device on any one worker (workers do not share the sockets evenly), plus HTTP.
        env.setdefault("WORKER_CONNECTIONS", str(args.devices + 200))
        env.setdefault("WS_MAX_SOCKETS", str(args.devices))
        if args.workers:
            env["WEB_CONCURRENCY"] = str(args.workers)
        if args.backlog:
            env["GUNICORN_CMD_ARGS"] = f"--backlog {args.backlog}"
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
        elif args.scenario == "storm":
            result = run(storm(server, args.devices, args.users, args.rate, args.offline_events, args.backoff_base,
                               args.backoff_cap, args.timeout, mode=args.restart,
                               restart_backoff_cap=args.restart_backoff_cap, restart_window=args.restart_window))
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
