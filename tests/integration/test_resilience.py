"""Failures upstream: killed endpoints, slow endpoints, retries, ejection, recovery."""
import json
import time

from conftest import config_head, LoadGenerator, read_until_close, wait_until


def cfg(endpoints, health="", outlier="", retry="", timeouts=""):
    eps = "\n".join("          - %s" % e for e in endpoints)
    return config_head(workers=2, access_log='{ path: "-" }') + f"""
    clusters:
      - name: app
        endpoints:
{eps}
{health}
{outlier}
{retry}
{timeouts}
    routes:
      - match: {{ path_prefix: / }}
        to: {{ cluster: app }}
    """


def endpoint_state(c, address):
    _, text = c.admin("GET", "/clusters")
    for e in json.loads(text)["clusters"][0]["endpoints"]:
        if e["address"] == address:
            return e
    raise AssertionError(address)


def test_killed_upstream_under_load_fails_no_get_and_is_ejected_then_returns(upstreams, citadel):
    a, b = upstreams("a"), upstreams("b")
    interval = 0.5
    c = citadel(cfg(
        [a.address, b.address],
        health="        health_check: { path: /health, interval: 500ms, timeout: 250ms, healthy: 1, unhealthy: 2 }",
        # Every client may be retrying at once when an endpoint dies: the budget's floor
        # (min_concurrency) must cover them, or the budget refuses retries by design.
        retry="        retry: { attempts: 2, on: [connect_failure, reset, 502, 503], min_concurrency: 8 }"))
    with LoadGenerator(c.port, "/echo", threads=4) as load:
        time.sleep(0.5)
        a.kill()
        t_kill = time.monotonic()
        wait_until(lambda: not endpoint_state(c, a.address)["healthy"], timeout=5,
                   what="health check marks the killed endpoint down")
        t_down = time.monotonic() - t_kill
        time.sleep(0.5)
        a.restart()
        wait_until(lambda: endpoint_state(c, a.address)["healthy"], timeout=5,
                   what="health check brings the endpoint back")
        time.sleep(0.5)
    bad = [l for l in c.access_lines if 'status_code":200' not in l]
    assert load.failed == [], (load.failed[:5], bad[:5])
    assert load.ok > 100
    # Marked down within two health intervals (plus one timeout and scheduling slack).
    assert t_down <= 2 * interval + 0.25 + 0.5, t_down
    # After recovery, traffic reaches it again.
    seen = set()
    for _ in range(20):
        seen.add(json.loads(c.request("GET", "/echo")[2])["name"])
    assert seen == {"a", "b"}


def test_slow_upstream_gives_504_at_the_configured_timeout(upstreams, citadel):
    a = upstreams("a")
    c = citadel(cfg([a.address], timeouts="        timeouts: { connect: 1s, response: 300ms }"))
    t0 = time.monotonic()
    status, _, body = c.request("GET", "/slow?ms=2000")
    took = time.monotonic() - t0
    assert status == 504
    assert 0.25 < took < 1.0, took
    assert c.metric('citadel_upstream_timeouts_total{cluster="app"}') >= 1
    # A fast request right after still works.
    assert c.request("GET", "/slow?ms=10")[0] == 200


def test_connect_failure_is_retried_on_another_endpoint(upstreams, citadel):
    a, b = upstreams("a"), upstreams("b")
    a.kill()
    c = citadel(cfg([a.address, b.address],
                    retry="        retry: { attempts: 2, on: [connect_failure] }"))
    for _ in range(10):
        status, _, body = c.request("GET", "/echo")
        assert status == 200 and json.loads(body)["name"] == "b"
    assert c.metric('citadel_upstream_retries_total{cluster="app"}') >= 1


def test_retry_on_status_then_502_without_retry(upstreams, citadel):
    a = upstreams("a")
    c = citadel(cfg([a.address], retry="        retry: { attempts: 2, on: [503], backoff_base: 1ms }"))
    status, _, _ = c.request("GET", "/status/503")
    assert status == 503
    assert c.metric('citadel_upstream_retries_total{cluster="app"}') == 2
    # POST is not a safe method: never retried on a status.
    status, _, _ = c.request("POST", "/status/503", body=b"")
    assert c.metric('citadel_upstream_retries_total{cluster="app"}') == 2


def test_no_endpoint_gives_502_and_no_healthy_503(upstreams, citadel):
    a = upstreams("a")
    a.kill()
    c = citadel(cfg(
        [a.address],
        health="        health_check: { path: /health, interval: 200ms, timeout: 100ms, healthy: 1, unhealthy: 1 }\n        panic_threshold: 0"))
    status, _, body = c.request("GET", "/echo")
    assert status in (502, 503)
    wait_until(lambda: not endpoint_state(c, a.address)["healthy"], timeout=5, what="unhealthy")
    status, _, body = c.request("GET", "/echo")
    assert status == 503 and b"no healthy upstream" in body
    assert c.metric('citadel_upstream_no_healthy_total{cluster="app"}') >= 1


def test_outlier_detection_ejects_failing_endpoint(upstreams, citadel):
    a, b = upstreams("a"), upstreams("b")
    c = citadel(cfg(
        [a.address, b.address],
        outlier="        outlier: { consecutive_failures: 3, base_ejection: 2s, max_ejection_percent: 50 }"))
    # /status/500 from every endpoint: whoever collects 3 in a row is ejected, at most one of two.
    for _ in range(12):
        c.request("GET", "/status/500")
    states = [endpoint_state(c, u.address) for u in (a, b)]
    assert sum(1 for s in states if s["ejected"]) == 1, states
    assert c.metric('citadel_upstream_ejections_total{cluster="app"}') == 1
    ejected = a if states[0]["ejected"] else b
    other = b if ejected is a else a
    # While ejected, healthy traffic goes to the other endpoint only.
    for _ in range(6):
        assert json.loads(c.request("GET", "/echo")[2])["name"] == other.name
    # The ejection ends by itself.
    wait_until(lambda: not endpoint_state(c, ejected.address)["ejected"], timeout=5, what="return")


def test_route_timeout(upstreams, citadel):
    a = upstreams("a")
    c = citadel(cfg([a.address]).replace(
        "      - match: { path_prefix: / }\n        to: { cluster: app }",
        "      - match: { path_prefix: / }\n        timeout: 300ms\n        to: { cluster: app }"))
    t0 = time.monotonic()
    status, _, _ = c.request("GET", "/slow?ms=2000")
    assert status == 504
    assert time.monotonic() - t0 < 1.5


def test_body_arriving_during_a_retry_backoff_is_sent_with_the_next_attempt(upstreams, citadel):
    # One endpoint refuses connections; a POST's first attempt that lands there is retried
    # (connect failures retry any method) after a backoff, and the body the client sends during
    # that backoff must go with the next attempt. Before: it was parked and never sent (504).
    import socket
    up = upstreams("a")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connect is refused
    c = citadel(cfg(
        ["127.0.0.1:%d" % dead_port, up.address],
        retry="        retry: { attempts: 2, on: [connect_failure], backoff_base: 400ms, backoff_max: 400ms }",
        timeouts="        timeouts: { connect: 1s, response: 5s }"))
    for i in range(6):
        s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
        try:
            s.sendall(b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
            time.sleep(0.05)  # the first attempt fails at once; the retry waits 0-400 ms
            s.sendall(b"hello")
            out = read_until_close(s, 10)
        finally:
            s.close()
        assert out.startswith(b"HTTP/1.1 200 "), (i, out[:300])
        assert b'"received": 5' in out
    retried = c.metric('citadel_upstream_retries_total{cluster="app"}') or 0
    assert retried >= 1, "no request hit the refusing endpoint first"


def _partial_upload(port):
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nConnection: close\r\n\r\nab")
    return s


def test_cluster_limits_cap_upstream_connections_and_queue_the_rest(upstreams, citadel):
    # Before: every slow upload held an upstream connection of its own, without limit.
    up = upstreams("a")
    c = citadel(config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
        limits: {{ max_connections: 4, max_pending: 2 }}
        timeouts: {{ connect: 5s, response: 10s }}
    routes:
      - to: {{ cluster: app }}
    """)
    socks = []
    for _ in range(8):
        socks.append(_partial_upload(c.port))
        time.sleep(0.05)
    try:
        # The last two find four connections busy and two requests waiting: 503 at once.
        for s in socks[6:]:
            out = read_until_close(s, 3)
            assert out.startswith(b"HTTP/1.1 503 "), out[:200]
        assert c.metric('citadel_upstream_overflow_total{cluster="app",limit="max_pending"}') == 2
        assert c.metric('citadel_upstream_connections_total{cluster="app"}') == 4
        # The queued two are still waiting; finishing the uploads frees connections for them.
        for s in socks[:6]:
            s.sendall(b"cdefghij")
        for i, s in enumerate(socks[:6]):
            out = read_until_close(s, 5)
            assert out.startswith(b"HTTP/1.1 200 "), (i, out[:200])
            assert b'"received": 10' in out
        # Still never more than four connections (two were reused).
        assert c.metric('citadel_upstream_connections_total{cluster="app"}') <= 4
    finally:
        for s in socks:
            s.close()


def test_cluster_max_requests_refuses_the_excess_at_once(upstreams, citadel):
    up = upstreams("a")
    c = citadel(config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
        limits: {{ max_requests: 3 }}
    routes:
      - to: {{ cluster: app }}
    """)
    socks = [_partial_upload(c.port) for _ in range(3)]
    time.sleep(0.2)
    extra = _partial_upload(c.port)
    try:
        out = read_until_close(extra, 3)
        assert out.startswith(b"HTTP/1.1 503 "), out[:200]
        assert c.metric('citadel_upstream_overflow_total{cluster="app",limit="max_requests"}') == 1
        for s in socks:
            s.sendall(b"cdefghij")
            assert read_until_close(s, 5).startswith(b"HTTP/1.1 200 ")
        # Below the limit again: served.
        assert c.request("GET", "/x")[0] == 200
    finally:
        for s in socks + [extra]:
            s.close()


def test_waiting_for_a_connection_is_bounded_by_the_connect_timeout(upstreams, citadel):
    up = upstreams("a")
    c = citadel(config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
        limits: {{ max_connections: 1, max_pending: 5 }}
        timeouts: {{ connect: 300ms, response: 10s }}
    routes:
      - to: {{ cluster: app }}
    """)
    holder = _partial_upload(c.port)
    time.sleep(0.1)
    waiter = _partial_upload(c.port)
    try:
        t0 = time.monotonic()
        out = read_until_close(waiter, 5)
        assert out.startswith(b"HTTP/1.1 503 "), out[:200]
        assert 0.2 < time.monotonic() - t0 < 3
        assert c.metric(
            'citadel_upstream_overflow_total{cluster="app",limit="pending_timeout"}') == 1
    finally:
        holder.close()
        waiter.close()
