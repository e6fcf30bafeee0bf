"""Reverse proxy behaviour: routing, rewrites, header handling, local targets."""
import json
import socket
import time

from conftest import config_head, raw_exchange


def basic_config(up, extra_routes=""):
    return config_head(workers=2, access_log='{ path: "-" }') + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:{extra_routes}
      - name: v2
        match: {{ path_prefix: /api/v2/ }}
        rewrite: {{ strip_prefix: /api/v2 }}
        filters:
          - headers:
              request: {{ set: {{ X-Api-Version: "2" }}, remove: [X-Debug] }}
              response: {{ add: {{ X-Citadel: "yes" }}, remove: [X-Upstream] }}
        to: {{ cluster: app }}
      - name: regex
        match: {{ path_regex: "^/users/[0-9]+$" }}
        rewrite: {{ regex: {{ pattern: "^/users/([0-9]+)$", substitution: "/v1/user?id=$1" }} }}
        to: {{ cluster: app }}
      - name: replace
        match: {{ path_prefix: /old/ }}
        rewrite: {{ replace_prefix: {{ from: /old/, to: /new/ }} }}
        to: {{ cluster: app }}
      - name: host
        match: {{ host: "*.example.com", path_prefix: / }}
        to: {{ respond: {{ status: 200, body: "wildcard host\\n" }} }}
      - name: post-only
        match: {{ path: /only-post, methods: [POST] }}
        to: {{ respond: {{ status: 201, body: "posted\\n" }} }}
      - name: header
        match: {{ path_prefix: /, headers: [{{ name: X-Canary, exact: "1" }}] }}
        to: {{ respond: {{ status: 200, body: "canary\\n" }} }}
      - name: moved
        match: {{ path_prefix: /moved }}
        to: {{ redirect: {{ status: 301, scheme: https, host: new.example.org }} }}
      - name: api
        match: {{ path_prefix: /api/ }}
        to: {{ cluster: app }}
      - name: small
        match: {{ path_prefix: /small }}
        max_body: 10B
        to: {{ cluster: app }}
      - name: fallback
        match: {{ path_prefix: / }}
        to: {{ respond: {{ status: 404, body: "not found\\n" }} }}
    """


def test_path_rewrite_reaches_upstream_path(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    status, headers, body = c.request("GET", "/api/v2/users?limit=5", headers={"X-Debug": "1"})
    assert status == 200
    info = json.loads(body)
    assert info["target"] == "/users?limit=5"
    sent = {k.lower(): v for k, v in info["headers"]}
    assert sent["x-api-version"] == "2"
    assert "x-debug" not in sent
    assert headers.get("X-Citadel") == "yes"
    assert "X-Upstream" not in headers

    status, _, body = c.request("GET", "/users/42")
    assert status == 200 and json.loads(body)["target"] == "/v1/user?id=42"
    status, _, body = c.request("GET", "/old/thing")
    assert json.loads(body)["target"] == "/new/thing"


def test_upstream_receives_the_normalised_path_that_routing_used(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    # Routing sees /api/x (dot segments and encoded unreserved characters resolved), and so does
    # the upstream (more in test_request_hardening.py).
    status, _, body = c.request("GET", "/static/../api/%78")
    assert status == 200
    assert json.loads(body)["target"] == "/api/x"


def test_forwarding_headers(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    status, headers, body = c.request(
        "GET", "/api/h", headers={"X-Forwarded-For": "10.1.2.3", "Connection": "X-Hop",
                                  "X-Hop": "secret", "Keep-Alive": "timeout=5",
                                  "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert status == 200
    sent = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert sent["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"].startswith("127.0.0.1:")
    assert sent["via"] == "1.1 citadel"
    assert len(sent["x-request-id"]) == 32
    assert "x-hop" not in sent and "keep-alive" not in sent
    tp = sent["traceparent"].split("-")
    assert tp[0] == "00" and tp[1] == "4bf92f3577b34da6a3ce929d0e0e4736" and tp[3] == "01"
    assert tp[2] != "00f067aa0ba902b7" and len(tp[2]) == 16  # a new span for this hop

    # No traceparent: one is started. An incoming request id is kept.
    status, _, body = c.request("GET", "/api/h", headers={"X-Request-Id": "abc-123"})
    sent = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert sent["x-request-id"] == "abc-123"
    assert len(sent["traceparent"]) == 55


def test_access_log_is_json_with_ecs_fields(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    c.request("GET", "/api/logme?x=1", headers={"X-Request-Id": "rid-1"})

    def logged():
        with c.lock:
            return [l for l in c.access_lines if "rid-1" in l]
    from conftest import wait_until
    lines = wait_until(logged, 5, what="access log line")
    rec = json.loads(lines[0])
    assert rec["http.request.method"] == "GET"
    assert rec["url.path"] == "/api/logme"
    assert rec["http.response.status_code"] == 200
    assert rec["http.request.id"] == "rid-1"
    assert rec["event.duration"] > 0
    assert rec["upstream.address"] == up.address
    assert len(rec["trace.id"]) == 32
    import re
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rec["@timestamp"]), rec
    assert c.metric("citadel_access_log_dropped_total") == 0


def test_match_by_host_method_header_and_local_targets(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    assert c.request("GET", "/x", headers={"Host": "shop.example.com"})[2] == b"wildcard host\n"
    assert c.request("GET", "/x", headers={"Host": "example.com"})[0] == 404
    assert c.request("POST", "/only-post", body=b"")[0] == 201
    assert c.request("GET", "/only-post")[0] == 404
    assert c.request("GET", "/anything", headers={"X-Canary": "1"})[2] == b"canary\n"
    status, headers, _ = c.request("GET", "/moved/here?q=1")
    assert status == 301
    assert headers["Location"] == "https://new.example.org/moved/here?q=1"


def test_body_limit_gives_413(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    assert c.request("POST", "/small", body=b"x" * 5)[0] == 200
    assert c.request("POST", "/small", body=b"x" * 11)[0] == 413
    # Chunked body over the limit: 413 once the limit is crossed.
    data = (b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
    assert raw_exchange(c.port, data).startswith(b"HTTP/1.1 413 ")


def test_head_and_keep_alive_and_expect_continue(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    try:
        s.sendall(b"HEAD /api/v2/bytes?n=1234 HTTP/1.1\r\nHost: a\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"Content-Length: 1234" in head
        # Same connection: the HEAD response had no body, the next request works.
        s.sendall(b"POST /api/sink HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        resp = b""
        deadline = time.monotonic() + 5
        while b'"received": 5' not in resp and time.monotonic() < deadline:
            resp += s.recv(4096)
        assert b"HTTP/1.1 200" in resp and b'"received": 5' in resp
    finally:
        s.close()


def test_pipelined_requests_are_answered_in_order(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    reqs = b"".join(b"GET /api/v2/slow?ms=%d&i=%d HTTP/1.1\r\nHost: a\r\n\r\n" % (ms, i)
                    for i, ms in enumerate([150, 10, 60, 0, 5]))
    reqs += b"GET /api/last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    out = raw_exchange(c.port, reqs, timeout=10)
    assert out.count(b"HTTP/1.1 200 OK") == 6
    # Responses come back in request order: the slow first one is first.
    assert out.index(b"slow a") < out.index(b'"/api/last"')
    assert out.rstrip().endswith(b"}")


def test_upstream_chunked_response_is_streamed(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    status, headers, body = c.request("GET", "/api/v2/chunked?n=50&size=1000")
    assert status == 200 and len(body) == 50000
    assert headers.get("Transfer-Encoding") == "chunked"


def test_http10_client_gets_close_delimited_or_length(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    out = raw_exchange(c.port, b"GET /api/v2/chunked?n=3&size=4 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Transfer-Encoding" not in head
    assert body == b"xxxx" * 3


def test_endpoint_by_dns_name_is_resolved_and_refreshed(upstreams, citadel):
    up = upstreams("named")
    c = citadel(f"""
    listeners:
      - name: public
        address: 127.0.0.1:0
    admin:
      address: 127.0.0.1:0
    clusters:
      - name: app
        endpoints: [localhost:{up.port}]
        dns_refresh: 100ms
    routes:
      - to: {{ cluster: app }}
    """)
    assert json.loads(c.request("GET", "/x")[2])["name"] == "named"
    time.sleep(0.5)  # several refreshes: the address is unchanged, so no new snapshot
    assert c.metric("citadel_config_version") == 1
    assert json.loads(c.request("GET", "/y")[2])["name"] == "named"


def test_access_log_file_is_reopened_on_sigusr1(upstreams, citadel, tmp_path):
    import os
    import signal
    from conftest import wait_until
    up = upstreams("a")
    log = tmp_path / "access.log"
    c = citadel(basic_config(up).replace('access_log: { path: "-" }',
                                         'access_log: { path: "%s" }' % log))
    c.request("GET", "/api/one", headers={"X-Request-Id": "before-rotate"})
    wait_until(lambda: log.exists() and b"before-rotate" in log.read_bytes(), 5, what="log")
    os.rename(log, str(log) + ".1")  # what logrotate does
    n = len(c.snapshot_lines())
    c.signal(signal.SIGUSR1)
    c.wait_for("reopening logs", start=n)
    time.sleep(0.1)
    c.request("GET", "/api/two", headers={"X-Request-Id": "after-rotate"})
    wait_until(lambda: log.exists() and b"after-rotate" in log.read_bytes(), 5, what="new log")
    assert b"after-rotate" not in open(str(log) + ".1", "rb").read()


def test_interim_1xx_from_upstream_reaches_the_client(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    out = raw_exchange(c.port, b"GET /api/v2/early HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 103 Early Hints\r\n")
    assert b"Link: </app.css>; rel=preload" in out
    assert b"HTTP/1.1 200 OK" in out and out.endswith(b"final\n")
    # HTTP/1.0 clients get no interim responses.
    out = raw_exchange(c.port, b"GET /api/v2/early HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK")


def test_http10_request_without_host_gets_a_host_upstream(upstreams, citadel):
    up = upstreams("a")
    c = citadel(basic_config(up))
    out = raw_exchange(c.port, b"GET /api/nohost HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    sent = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert sent["host"] == "app"


def test_local_responses_carry_date(upstreams, citadel):
    from email.utils import parsedate_to_datetime
    up = upstreams("a")
    c = citadel(basic_config(up))

    def date_of(raw):
        for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"date":
                return value.strip().decode()
        return None

    answers = {
        "respond": raw_exchange(c.port, b"GET /nothing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        "redirect": raw_exchange(c.port, b"GET /moved HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        "codec error": raw_exchange(c.port, b"GET / HTTP/1.1\r\n\r\n"),  # no Host: 400
        "413": raw_exchange(c.port, b"POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 99\r\n"
                                    b"Connection: close\r\n\r\n" + b"x" * 99),
        "admin": raw_exchange(c.admin_port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    }
    for what, raw in answers.items():
        d = date_of(raw)
        assert d is not None, "%s: no Date in %r" % (what, raw[:300])
        assert d.endswith(" GMT") and abs(parsedate_to_datetime(d).timestamp() - time.time()) < 5
    # A proxied response keeps the upstream's own Date (exactly one).
    raw = raw_exchange(c.port, b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert raw.split(b"\r\n\r\n")[0].lower().count(b"\r\ndate:") == 1


def test_listener_filters_run_before_routing_on_their_own_listener_only(upstreams, citadel):
    # Before: every listener's filters were merged into one list that ran on all listeners,
    # after routing, and early answers (404) passed no filter at all.
    up = upstreams("app")
    c = citadel(config_head(listener="""        filters:
          - headers:
              request: { set: { X-Tier: gold } }
              response: { set: { X-Edge: public } }
      - name: internal
        address: 127.0.0.1:0
        filters:
          - headers: { response: { set: { X-Edge: internal } } }
""") + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - match: {{ path_prefix: /app, headers: [ {{ name: X-Tier, exact: gold }} ] }}
        to: {{ cluster: app }}
      - match: {{ path_prefix: /app }}
        to: {{ respond: {{ status: 402, body: "upgrade your tier\\n" }} }}
    """)
    # The listener's filter set X-Tier before routing: the gold route serves it.
    status, headers, body = c.request("GET", "/app/x", listener="public")
    assert status == 200 and headers["X-Edge"] == "public"
    seen = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert seen["x-tier"] == "gold"
    # The other listener has only its own filter.
    status, headers, _ = c.request("GET", "/app/x", listener="internal")
    assert status == 402 and headers["X-Edge"] == "internal"
    # An early answer (no route) passes the listener's filters too.
    status, headers, _ = c.request("GET", "/nothing", listener="public")
    assert status == 404 and headers["X-Edge"] == "public"
    status, headers, _ = c.request("GET", "/%2f", listener="internal")
    assert status == 400 and headers["X-Edge"] == "internal"
