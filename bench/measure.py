"""What a run reports: latency percentiles, and the readable one-line summary of each scenario's result."""


def percentiles(values):
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1] * 1000, 2)}


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
    if result["scenario"] == "storm":
        env = result.get("server_env", {})
        setup = (f"{env.get('WEB_CONCURRENCY', '1')} worker(s), "
                 f"{'PostgreSQL' if env.get('DATABASE_URL', 'sqlite').startswith('postgresql') else 'SQLite'}"
                 f"{', Redis' if env.get('REDIS_URL') else ''}")
        backoff = result["backoff"]
        setup += (f"; backoff cap {backoff['cap_s']:g} s, {backoff['restart_cap_s']:g} s for "
                  f"{backoff['restart_window_s']:g} s after a 1012")
        rec, refused = result["reconnect_ms"], sum(result["refusals"].values())
        why = ", ".join(f"{n} {kind}" for kind, n in result["refusals"].items())
        return (f"storm: {result['devices']} devices of {result['users']} users, {setup}: "
                f"{result['closed_with_1012']} closed with 1012; old server gone {result['old_server_exit_s']} s, "
                f"new one's port open {result['new_server_port_open_s']} s, /readyz 200 {result['new_server_ready_s']} s "
                f"after SIGTERM; {result['back']} back {result['all_back_after_port_open_s']} s and {result['resumed']} "
                f"resumed {result['all_resumed_after_port_open_s']} s after its port opened "
                f"({result['all_back_after_ready_s']} s and {result['all_resumed_after_ready_s']} s after /readyz); "
                f"reconnect p50 {rec['p50']} ms, "
                f"p99 {rec['p99']} ms, max {rec['max']} ms; {result['attempts']} attempts, {refused} refused"
                f"{' (' + why + ')' if why else ''}; {result['events_stored']} events, "
                f"{result['deliveries']}/{result['deliveries_expected']} deliveries: {result['missed']} missed, "
                f"{result['duplicated']} duplicated")
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
