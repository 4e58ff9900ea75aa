"""The benchmark keeps working: each scenario, tiny, against a server it starts (no timing asserted)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def run_bench(*args):
    out = subprocess.run(
        [sys.executable, "bench/loadgen.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.splitlines()[0])
    assert out.stdout.splitlines()[1].startswith(result["scenario"] + ":")  # the readable summary
    return result


def test_fanout_smoke():
    result = run_bench("fanout", "--users", "2", "--devices", "3", "--rate", "20", "--duration", "1")
    assert result["updates_sent"] == 20
    assert result["deliveries_expected"] == 60 and result["lost"] == 0
    assert set(result["latency_ms"]) == {"p50", "p95", "p99", "max"}
    # The CPU time of the server it started is measured (None would mean it was not).
    assert isinstance(result["server_cpu_us_per_update"], int) and result["server_cpu_seconds"] >= 0


def test_idle_smoke():
    result = run_bench("idle", "--sockets", "20", "--batch", "10", "--hold", "0.5", "--users", "2")
    assert result["opened"] == 20 and result["failed"] == 0 and result["alive_after_hold"] == 20
    assert result["rss_after_mb"] > 0


def test_handshakes_smoke():
    result = run_bench("handshakes", "--concurrency", "2", "--duration", "1", "--users", "2")
    assert result["handshakes"] > 0 and result["failures"] == 0
    assert result["server_cpu_seconds"] > 0 and result["generator_cpu_percent"] >= 0


def test_handshakes_against_reference_smoke():
    result = run_bench("handshakes", "--reference", "--concurrency", "2", "--duration", "1", "--users", "2",
                       "--rounds", "1")
    assert result["ours"]["handshakes"] > 0 and result["reference"]["handshakes"] > 0
    assert result["failures"] == 0 and result["ratio"] > 0
    assert "JWT_SECRET_KEY" not in json.dumps(result)  # the run's shared secret stays out of the output


def test_reference_server_refuses_bad_tokens_and_relays_updates(tmp_path):
    import asyncio
    import time

    import jwt
    import websocket

    from bench.servers import ReferenceServer
    from bench.rawclient import raw_socketio_handshake

    def token(sub, secret="s" * 40, **claims):
        claims = {"sub": sub, "type": "access", "iss": "emotion_app", "aud": "emotion_app",
                  "exp": int(time.time()) + 60, **claims}
        return jwt.encode(claims, secret, algorithm="HS256")

    with ReferenceServer(env={"JWT_SECRET_KEY": "s" * 40}, workdir=tmp_path) as ref:
        assert asyncio.run(raw_socketio_handshake(*ref.address, token("7"))) > 0
        for bad in (token("7", secret="t" * 40), token("7", aud="other"), token("7", type="refresh"), "junk"):
            with pytest.raises(RuntimeError, match="unexpected packet: 44"):
                asyncio.run(raw_socketio_handshake(*ref.address, bad))

        url = ref.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        devices = [websocket.create_connection(url, timeout=10) for _ in range(2)]
        for ws in devices:
            assert ws.recv().startswith("0{")
            ws.send(json.dumps({"token": token("7")}).join(("40", "")))
            assert sorted(ws.recv()[:2] for _ in range(2)) == ["40", "42"]  # the ack and connection_established
        devices[0].send('42["emotion_update",{"emotion":"happy","client_msg_id":"m1"}]')
        for ws in devices:
            event, body = json.loads(ws.recv()[2:])
            assert event == "emotion_update" and body["client_msg_id"] == "m1" and body["user_id"] == 7
            ws.close()


def test_history_smoke():
    result = run_bench("history", "--events", "300", "--days", "10", "--requests", "1")
    assert result["stats"]["day_7d"]["buckets"] == 8  # 7 days back from a time of day: 8 local dates
    assert 0 < result["stats"]["day_7d"]["events_in_range"] < 300
    assert result["stats"]["week_all"]["events_in_range"] >= 299
    assert {fmt: r["events_per_s"] > 0 for fmt, r in result["export"].items()} == {"csv": True, "json": True}
    assert result["export"]["csv"]["server_rss_growth_mb"] is not None
    assert result["ping_during_stats_ms"]["max"] > 0


@pytest.mark.parametrize("kind", ["text", "image"])
def test_detect_smoke(kind):
    result = run_bench("detect", "--kind", kind, "--clients", "1", "--duration", "1", "--users", "2", "--devices", "2",
                       "--rate", "20")
    assert result["detections"] > 0 and result["detection_failures"] == 0
    assert result["fanout_alone"]["lost"] == 0 and result["fanout_with_detection"]["lost"] == 0
    assert set(result["models"]) == ({"text"} if kind == "text" else {"face"})


@pytest.mark.parametrize("restart", ["restart", "reload"])
def test_storm_smoke(restart):
    # A short backoff cap keeps the smoke test short; the schedule is otherwise the clients'.
    result = run_bench("storm", "--devices", "20", "--users", "4", "--rate", "20", "--offline-events", "10",
                       "--backoff-cap", "1", "--restart", restart)
    assert result["restart"] == restart and result["closed_with_1012"] == 20 and result["closes_after_sigterm"] == {"1012": 20}
    assert result["back"] == 20 and result["resumed"] == 20 and result["all_resumed_after_ready_s"] is not None
    assert result["updates_offline"] == 10 and result["updates_http"] > 0 and result["updates_http_unconfirmed"] == 0
    assert result["deliveries"] == result["deliveries_expected"] == 5 * result["events_stored"]
    assert result["missed"] == result["duplicated"] == result["out_of_order"] == result["unexpected"] == 0
    assert result["attempts"] >= 20 and result["reconnect_ms"]["p50"] > 0


def test_storm_devices_follow_the_restart_rule(monkeypatch):
    from bench.scenarios import storm

    monkeypatch.setattr(storm.random, "random", lambda: 1.0)  # each delay is its ceiling
    fleet = storm.Fleet("127.0.0.1", 1, 1, backoff_base=0.5, backoff_cap=30, restart_backoff_cap=2, restart_window=30)
    now = storm.time.monotonic()
    # After a 1012 the ceiling doubles up to the restart cap; a refusal's retry_after is still the floor.
    assert [fleet.delay(n, restarted_at=now) for n in range(1, 6)] == [0.5, 1, 2, 2, 2]
    assert fleet.delay(5, retry_after=5, restarted_at=now) == 5
    # After the window, or without a 1012, the usual cap, with the failures so far counted.
    assert fleet.delay(8, restarted_at=now - 31) == fleet.delay(8) == 30


@pytest.mark.parametrize(
    "args",
    [
        ["fanout", "--rate", "100000", "--duration", "100"],
        ["idle", "--sockets", "50000"],
        ["handshakes", "--concurrency", "10000"],
        ["handshakes", "--reference", "--rounds", "5", "--duration", "100"],
        ["history", "--events", "5000000"],
        ["detect", "--clients", "100"],
        ["storm", "--devices", "20000"],
        ["storm", "--restart-backoff-cap", "0"],
        ["storm", "--restart-window", "1000"],
        ["--url", "http://10.0.0.1:8000", "handshakes"],
    ],
)
def test_runs_are_bounded_and_loopback_only(args):
    out = subprocess.run([sys.executable, "bench/loadgen.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and ("bounded" in out.stderr or "loopback" in out.stderr)
