"""The servers a benchmark runs against, and what it needs from them: our service (a gunicorn process tree
it starts and measures, or one already running at --url), the Flask-SocketIO reference, users with tokens,
and the CPU time both sides use."""
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "benchmark-password"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# All load comes from one address and a few users, far above what the abuse limits let one client do:
# the server we start has them off (--env can set them again). A server at --url needs the same.
from config import LIMITS_OFF  # noqa: E402 - the repository root is on the path from here on

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc/*/stat CPU times


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
               "PROMETHEUS_MULTIPROC_DIR": f"{self.workdir}/metrics",
               # A Redis namespace of its own: presence left behind by an earlier run's killed server (kept
               # until it expires) would otherwise lengthen this run's device lists.
               "BROKER_PREFIX": f"bench_{uuid.uuid4().hex[:8]}", **LIMITS_OFF, **self.env}
        self.database_url = env["DATABASE_URL"]
        subprocess.run([str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        return self._spawn([str(BIN / "gunicorn"), "-c", self.config, "wsgi:app"], env, ROOT, "server.log")

    def _spawn(self, command, env, cwd, log_name):
        """Start `command` in a session of its own and wait until its /healthz answers."""
        self._launch(command, env, cwd, log_name)
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

    def _launch(self, command, env, cwd, log_name):
        """Start `command` in a session of its own; return at once."""
        self._launched = (command, env, cwd)
        self.log = open(Path(self.workdir) / log_name, "wb")
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self, timeout=30):
        """Stop the server as systemd does (SIGTERM to gunicorn's master alone, which drains its workers)
        and wait until it has exited; return its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def start_again(self, log_name):
        """Start the stopped server again, same command on the same port, and return at once: the caller
        times when it answers."""
        self.log.close()
        self._launch(*self._launched, log_name)

    def __exit__(self, *exc):
        if self.proc:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                return  # stopped already, workers and all
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
        total = 0.0
        for pid in process_tree(self.proc.pid):
            try:
                total += _stat_cpu(Path(f"/proc/{pid}/stat").read_text())[1]
            except (OSError, IndexError, ValueError):  # gone meanwhile
                pass
        return total

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


class CpuMeter:
    """CPU time used by the server, by this generator, by the local PostgreSQL and Redis, and by the whole
    machine, since it was made.

    On a machine this size all of them compete for two cores, so CPU time per unit of work is a steadier
    figure than latency alone, and shows which side ran out first.
    """

    BACKENDS = {"database": ("postgres",), "redis": ("redis-server",)}

    def __init__(self, server):
        self.server = server
        self.started = time.perf_counter()
        self.server_start = server.cpu_seconds()
        self.self_start = self._own()
        self.backends_start = {name: _cpu_of_commands(commands) for name, commands in self.BACKENDS.items()}
        self.machine_start = _machine_busy()

    @staticmethod
    def _own():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def read(self):
        """CPU seconds of the server, and percent of one core for it, the generator, the local PostgreSQL
        and Redis, and the machine as a whole (100 per busy core), since start (server: None for --url)."""
        wall = time.perf_counter() - self.started
        server = self.server.cpu_seconds()
        server = server - self.server_start if server is not None else None
        own = self._own() - self.self_start
        result = {
            "server_cpu_seconds": round(server, 2) if server is not None else None,
            "server_cpu_percent": round(100 * server / wall, 1) if server is not None else None,
            "generator_cpu_percent": round(100 * own / wall, 1),
        }
        for name, commands in self.BACKENDS.items():
            used = _cpu_of_commands(commands) - self.backends_start[name]
            result[f"{name}_cpu_percent"] = round(100 * used / wall, 1)
        busy = _machine_busy()
        if busy is not None and self.machine_start is not None:
            result["machine_cpu_percent"] = round(100 * (busy - self.machine_start) / wall, 1)
        return result


def _stat_cpu(text):
    """(command name, CPU seconds used so far) from the text of a process's /proc/<pid>/stat."""
    name, rest = text[text.index("(") + 1:].rsplit(")", 1)
    fields = rest.split()
    return name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def _cpu_of_commands(commands):
    """CPU seconds used so far by every process whose command name is one of `commands` (0 if none)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, cpu = _stat_cpu(stat.read_text())
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        if name in commands:
            total += cpu
    return total


def _machine_busy():
    """CPU seconds the machine's cores have spent busy (not idle or waiting for I/O) since boot."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLOCK_TICKS
