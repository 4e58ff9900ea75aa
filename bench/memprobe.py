"""Where an idle socket's memory goes: snapshots taken inside the gunicorn worker, before and after opening
sockets, and their difference per socket.

    .venv/bin/python bench/memprobe.py --sockets 2000

starts the server as `bench/loadgen.py idle` does (one gevent worker, SQLite), but with
`bench/memprobe_gunicorn.py` as gunicorn's configuration: the worker then traces Python allocations
(tracemalloc) and, on request, writes a snapshot of itself to a folder. The snapshot holds:

- the traced Python allocations (tracemalloc), grouped here by the library that made them;
- the live objects the garbage collector tracks, by type;
- every greenlet: its Python stack (depth, innermost and outermost function) and the bytes of C stack
  greenlet keeps for it while it is switched out (`_stack_saved`);
- the worker's memory as the kernel sees it (`/proc/self/smaps`: heap, anonymous) and as glibc's malloc
  sees it (`mallinfo2`), and CPython's small-object allocator (`sys._debugmallocstats`).

Tracing costs memory of its own, so the RSS figures of this run are larger than those of `loadgen.py idle`,
which is the figure to quote for RSS; the per-socket Python objects and stacks are what this adds. Nothing
here is part of the service: the worker is only probed when started with this configuration.
"""
import argparse
import asyncio
import collections
import ctypes
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

PROBE_DIR = "EMOTION_MEMORY_PROBE"  # the folder requests and snapshots go through
TRACE_FRAMES = "EMOTION_MEMORY_PROBE_FRAMES"


# ------------------------------------------------------------------------------------ inside the worker


def install():
    """Start tracing, and answer snapshot requests (`<name>.request` files in the probe folder)."""
    import tracemalloc

    import gevent

    folder = Path(os.environ[PROBE_DIR])
    frames = int(os.environ.get(TRACE_FRAMES, "0"))
    if frames:
        tracemalloc.start(frames)

    def serve():
        while True:
            for request in folder.glob("*.request"):
                name = request.stem
                try:
                    take(folder, name)
                finally:
                    request.unlink()
            gevent.sleep(0.2)

    gevent.spawn(serve)


def take(folder, name):
    """Write `<name>.tracemalloc` and `<name>.json` into `folder`, then `<name>.done`."""
    import tracemalloc

    import greenlet

    gc.collect()
    # Memory first: what follows allocates (and looking at a greenlet's frames makes objects of them).
    stats = {"pid": os.getpid(), "smaps": _smaps(), "mallinfo": _mallinfo()}
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(folder / f"{name}.tracemalloc"))
    else:  # tracing replaces the allocator, and pymalloc then gives no statistics
        stats["pymalloc"] = _pymalloc()
    stats["gc_types"] = dict(collections.Counter(type(o).__qualname__ for o in gc.get_objects()))
    glets = []
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet) and not obj.dead:
            frames = []
            frame = obj.gr_frame
            while frame is not None:
                frames.append(frame.f_code)
                frame = frame.f_back
            glets.append({
                "type": type(obj).__qualname__,
                "stack_saved": obj._stack_saved,
                "depth": len(frames),
                # Frame slots (locals, cells, value stack) of the Python frames now on its stack.
                "frame_slots": sum(c.co_stacksize + c.co_nlocals + len(c.co_cellvars) + len(c.co_freevars) for c in frames),
                "innermost": f"{frames[0].co_filename.rsplit('/', 2)[-1]}:{frames[0].co_name}" if frames else None,
                "outermost": f"{frames[-1].co_filename.rsplit('/', 2)[-1]}:{frames[-1].co_name}" if frames else None,
                "functions": [c.co_name for c in frames],
            })
    stats["greenlets"] = glets
    stats["inventory"] = _inventory([o for o in gc.get_objects() if isinstance(o, greenlet.greenlet) and not o.dead
                                     and o.gr_frame is not None])
    (folder / f"{name}.json").write_text(json.dumps(stats))
    (folder / f"{name}.done").touch()


# Objects of the whole worker, which lead to every socket (the hub to its connections, the app to
# everything): not followed.
SHARED_TYPES = {"Flask", "Hub", "MemoryBroker", "RedisBroker", "GroupCommitter", "Engine", "Logger", "Hub",
                "WSGIServer", "StreamServer", "Pool", "GeventWorker", "Config", "SQLAlchemy", "loop"}


def _reachable(roots, exclude=frozenset()):
    """Objects reachable from `roots` (id -> object), not crossing modules, classes, functions or code, nor
    anything in `exclude` (ids). A frame counts through its locals, and the frame above it."""
    import types

    stop = (types.ModuleType, type, types.FunctionType, types.CodeType, types.BuiltinFunctionType)
    seen = {}
    todo = list(roots)
    while todo:
        obj = todo.pop()
        if id(obj) in seen or id(obj) in exclude or isinstance(obj, stop) or type(obj).__name__ in SHARED_TYPES:
            continue
        seen[id(obj)] = obj
        if isinstance(obj, types.FrameType):
            todo.extend(obj.f_locals.values())
            if obj.f_back is not None:
                todo.append(obj.f_back)
        else:
            todo.extend(gc.get_referents(obj))
    return seen


def _inventory(handlers):
    """The objects one socket's handler greenlet reaches and another's does not, by type: (count, bytes)."""
    import types

    def first(glet):
        frame = glet.gr_frame
        while frame.f_back is not None:
            frame = frame.f_back
        return frame

    # Sockets' handlers: greenlets started by the server whose stack ends in a wait for the socket.
    handlers = [g for g in handlers if "baseserver" in first(g).f_code.co_filename]
    if len(handlers) < 2:
        return None
    shared = _reachable([handlers[-1].gr_frame, handlers[-1]])
    mine = _reachable([handlers[0].gr_frame, handlers[0]], exclude=shared.keys())
    out = collections.defaultdict(lambda: [0, 0])
    for obj in mine.values():
        if isinstance(obj, types.FrameType):
            continue  # the frames themselves are in the greenlet's stack, not objects (until looked at, as here)
        row = out[type(obj).__module__ + "." + type(obj).__qualname__]
        row[0] += 1
        row[1] += sys.getsizeof(obj)
    return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def _smaps():
    """The worker's resident memory by kind of mapping, in bytes."""
    out = collections.Counter()
    kind = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if not head:
            continue
        if "-" in head[0] and not head[0].endswith(":"):  # a mapping's first line
            path = head[5] if len(head) > 5 else ""
            kind = "heap" if path == "[heap]" else "stack" if path == "[stack]" else "anonymous" if not path else "file"
            out[f"{kind}_mappings"] += 1
        elif head[0] == "Rss:":
            out[f"{kind}_rss"] += int(head[1]) * 1024
            out["rss"] += int(head[1]) * 1024
    return dict(out)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo():
    """glibc's view: bytes in use and free in its heap (arena), and in blocks it mapped on their own (hblkhd)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return None
    return {name: getattr(info, name) for name in ("arena", "hblks", "hblkhd", "uordblks", "fordblks")}


def _pymalloc():
    """CPython's small-object allocator: arenas, and the bytes in blocks in use, from `sys._debugmallocstats`."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    wanted = {"# arenas allocated current": "arenas", "# bytes in allocated blocks": "allocated_blocks",
              "# bytes in available blocks": "free_blocks", "# bytes lost to pool headers": "pool_headers",
              "# bytes lost to quantization": "quantization", "Total": "total"}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        key = key.strip()
        if key in wanted and wanted[key] not in out:  # the first "Total": that of the arenas
            out[wanted[key]] = int(value.strip().replace(",", ""))
    return out


# ------------------------------------------------------------------------------------ the driver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Which library made an allocation: the innermost traced frame inside one of these (else the innermost).
LIBRARIES = [
    ("emotion_app/", "emotion_app"), ("simple_websocket/", "simple_websocket"), ("flask_sock/", "flask_sock"),
    ("wsproto/", "wsproto"), ("h11/", "h11"), ("flask/", "flask"), ("werkzeug/", "werkzeug"),
    ("flask_jwt_extended/", "flask_jwt_extended"), ("jwt/", "PyJWT"), ("gunicorn/", "gunicorn"),
    ("gevent/", "gevent"), ("sqlalchemy/", "sqlalchemy"), ("threading.py", "threading (stdlib)"),
    ("selectors.py", "selectors (stdlib)"),
]


def request(folder, name, timeout=120):
    """Ask the worker for a snapshot named `name`; return its stats and tracemalloc snapshot."""
    import tracemalloc

    (folder / f"{name}.request").touch()
    deadline = time.monotonic() + timeout
    while not (folder / f"{name}.done").exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not answer the snapshot request")
        time.sleep(0.2)
    traced = folder / f"{name}.tracemalloc"
    return json.loads((folder / f"{name}.json").read_text()), tracemalloc.Snapshot.load(str(traced)) if traced.exists() else None


_FUNCTIONS = {}


def function_at(filename, lineno):
    """The name of the innermost function of `filename` around line `lineno` ("" if none)."""
    import ast

    if filename not in _FUNCTIONS:
        spans = []
        try:
            tree = ast.parse(Path(filename).read_text())
        except (OSError, SyntaxError, ValueError):
            tree = None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                spans.append((node.lineno, node.end_lineno, node.name))
        _FUNCTIONS[filename] = sorted(spans, key=lambda span: span[1] - span[0])  # innermost first
    return next((name for first, last, name in _FUNCTIONS[filename] if first <= lineno <= last), "")


# What a socket's allocations were made for, by the functions on their tracebacks (outermost first).
PARTS = [
    ("emotion_socket", "the socket: our route, connection and the wait for frames"),
    ("websocket_route", "simple-websocket's server and wsproto's connection"),
    ("preprocess_request", "what the checks before the handshake left (g, log context)"),
]
REQUEST = "the HTTP request as gunicorn and Flask hold it while the route runs"


def part_of(traceback):
    names = {function_at(frame.filename, frame.lineno) for frame in traceback}
    return next((label for name, label in PARTS if name in names), REQUEST)


def library_of(traceback):
    for frame in reversed(traceback):  # innermost first
        for marker, name in LIBRARIES:
            if marker in frame.filename:
                return name
    return traceback[-1].filename.rsplit("/", 1)[-1] if len(traceback) else "?"


def breakdown(before, after, snap_before, snap_after, sockets):
    """Per-socket differences between two snapshots."""
    per = 1 / sockets
    diff = snap_after.compare_to(snap_before, "traceback") if snap_after else []
    by_library = collections.Counter()
    by_line = collections.Counter()
    by_part = collections.Counter()
    for stat in diff:
        by_library[library_of(stat.traceback)] += stat.size_diff
        by_part[part_of(stat.traceback)] += stat.size_diff
        frame = stat.traceback[-1]
        by_line[f"{library_of(stat.traceback)} {frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"] += stat.size_diff
    types = collections.Counter(after["gc_types"])
    types.subtract(before["gc_types"])

    def glet_table(stats):
        table = collections.defaultdict(lambda: {"count": 0, "stack_saved": 0, "depth": 0, "frame_slots": 0})
        for g in stats["greenlets"]:
            row = table[f"{g['outermost']} .. {g['innermost']}"]
            row["count"] += 1
            row["stack_saved"] += g["stack_saved"]
            row["depth"] += g["depth"]
            row["frame_slots"] += g["frame_slots"]
        return table

    glets_before, glets_after = glet_table(before), glet_table(after)
    greenlets = {}
    for key, row in glets_after.items():
        old = glets_before.get(key, {"count": 0, "stack_saved": 0})
        added = row["count"] - old["count"]
        if added > 0:
            greenlets[key] = {
                "per_socket": round(added * per, 2),
                "stack_saved_bytes_each": round(row["stack_saved"] / row["count"]),
                "python_depth_each": round(row["depth"] / row["count"], 1),
                "frame_slots_each": round(row["frame_slots"] / row["count"]),
            }
    smaps = {k: round((after["smaps"].get(k, 0) - before["smaps"].get(k, 0)) * per) for k in after["smaps"]}
    mall = {k: round((after["mallinfo"][k] - before["mallinfo"][k]) * per) for k in after["mallinfo"]} \
        if after["mallinfo"] else None
    pym = {k: round((after["pymalloc"][k] - before["pymalloc"][k]) * per) for k in after["pymalloc"]} \
        if "pymalloc" in after else None
    py_bytes = sum(stat.size_diff for stat in diff) if snap_after else None
    stack_saved = round(
        (sum(g["stack_saved"] for g in after["greenlets"]) - sum(g["stack_saved"] for g in before["greenlets"])) * per)
    summary = None
    if pym and mall:
        summary = {
            "rss": smaps.get("rss"),
            # greenlet copies a switched-out greenlet's C stack to the heap (PyMem_Malloc, glibc's malloc above 512 B)
            "greenlet_c_stacks": stack_saved,
            "python_objects_small": pym["allocated_blocks"],  # pymalloc's blocks in use (objects of up to 512 B)
            "malloc_other": mall["uordblks"] - stack_saved,  # larger objects (dict tables, ...)
            # anonymous memory outside pymalloc's arenas: mostly the pages each greenlet's Python frame
            # stack (a 16 KB chunk mapped per greenlet) has touched
            "python_frame_stacks": smaps.get("anonymous_rss", 0) - pym["total"],
            "allocator_slack": (smaps.get("heap_rss", 0) - mall["uordblks"]) + (pym["total"] - pym["allocated_blocks"]),
        }
    return {
        "sockets": sockets,
        "rss_per_socket": smaps.get("rss"),
        "summary_per_socket": summary,
        "smaps_per_socket": smaps,
        "mallinfo_per_socket": mall,
        "pymalloc_per_socket": pym,
        "traced_python_bytes_per_socket": round(py_bytes * per) if py_bytes is not None else None,
        # The saved C stack is traced too (greenlet copies it with PyMem_Malloc), inside the socket's part.
        "traced_by_part_per_socket": {k: round(v * per) for k, v in by_part.most_common()},
        "traced_by_library_per_socket": {k: round(v * per) for k, v in by_library.most_common() if abs(v * per) >= 8},
        "traced_top_lines_per_socket": {k: round(v * per) for k, v in by_line.most_common(40) if abs(v * per) >= 8},
        "gc_objects_per_socket": round(sum(types.values()) * per, 1),
        "gc_types_per_socket": {k: round(v * per, 2) for k, v in types.most_common(60) if v * per >= 0.5},
        "greenlets_added": greenlets,
        "one_socket_objects": after.get("inventory"),
        "stack_saved_per_socket": stack_saved,
    }


def main(argv=None):
    import resource

    from bench.scenarios.idle import idle_open
    from bench.servers import Server, make_users

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--hold", type=float, default=3, help="seconds between the last socket and the snapshot")
    parser.add_argument("--frames", type=int, default=0,
                        help="trace Python allocations (tracemalloc), keeping this many frames of each; 0: no "
                             "tracing, which leaves RSS and pymalloc's figures undisturbed")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="setting for the server")
    parser.add_argument("--keep", metavar="FOLDER", help="leave the snapshots in FOLDER")
    args = parser.parse_args(argv)
    if not (0 < args.sockets <= 15_000 and args.hold <= 300):
        parser.error("bounded to 15,000 sockets held for 300 s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = dict(kv.split("=", 1) for kv in args.env)
    env.setdefault("WORKER_CONNECTIONS", str(args.sockets + 100))
    env.setdefault("WS_MAX_SOCKETS", str(args.sockets))
    with tempfile.TemporaryDirectory(prefix="emotion-probe-") as workdir:
        folder = Path(args.keep or workdir) / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        env.update({PROBE_DIR: str(folder), TRACE_FRAMES: str(args.frames)})
        with Server(env=env, workdir=workdir, config="bench/memprobe_gunicorn.py") as server:
            tokens = make_users(server, args.users)

            async def scenario():
                # One socket first: whatever is made once per worker (the broker's listener...) is not counted.
                warm = await idle_open(server, tokens[:1], 1, 1)
                await asyncio.sleep(1)
                before = request(folder, "before")
                opened = await idle_open(server, tokens, args.sockets, args.batch)
                await asyncio.sleep(args.hold)
                after = request(folder, "after")
                alive = sum(1 for ws in opened if ws.state.name == "OPEN")
                await asyncio.gather(*(ws.close() for ws in opened + warm), return_exceptions=True)
                return before, after, len(opened), alive

            (before, snap_before), (after, snap_after), opened, alive = asyncio.run(scenario())
        result = breakdown(before, after, snap_before, snap_after, opened)
        result.update({"opened": opened, "alive": alive, "server_env": {k: v for k, v in env.items() if k != PROBE_DIR}})
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
