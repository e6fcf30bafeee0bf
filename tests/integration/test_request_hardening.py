"""What the upstream receives must be what routing decided on: the host of an absolute-form
target, the path routing matched, Citadel's own request headers, and only the protocol switches
a route allows; TRACE only where a route lists it."""
import json
import socket

from conftest import config_head, raw_exchange
from upstream import make_ws_frame, read_ws_frame


def cfg(up, listener="", app_route_extra=""):
    return config_head(workers=1, listener=listener) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - name: deny-secret
        match: {{ path_prefix: /secret }}
        to: {{ respond: {{ status: 403, body: "denied\\n" }} }}
      - name: admin-host
        match: {{ host: admin.internal }}
        to: {{ respond: {{ status: 403, body: "admin host\\n" }} }}
      - name: api
        match: {{ path_prefix: /api/ }}
        rewrite: {{ strip_prefix: /api }}
        to: {{ cluster: app }}
      - name: ws
        match: {{ path_prefix: /ws }}
        upgrades: [WebSocket]
        to: {{ cluster: app }}
      - name: traceable
        match: {{ path_prefix: /trace-me, methods: [TRACE, GET] }}
        to: {{ cluster: app }}
      - name: app
        match: {{ path_prefix: / }}{app_route_extra}
        to: {{ cluster: app }}
    """


def parse_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def upstream_saw(body):
    info = json.loads(body)
    info["h"] = {k.lower(): v for k, v in info["headers"]}
    return info


# --- Item: absolute-form targets -----------------------------------------------------------

def test_absolute_form_authority_replaces_host_for_routing_and_upstream(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    raw = raw_exchange(c.port, b"GET http://www.example.com/x?q=1 HTTP/1.1\r\n"
                                b"Host: admin.internal\r\nConnection: close\r\n\r\n")
    status, _, body = parse_response(raw)
    assert status == 200, raw
    info = upstream_saw(body)
    assert info["target"] == "/x?q=1"  # origin-form upstream
    assert info["h"]["host"] == "www.example.com"
    assert info["h"]["x-forwarded-host"] == "www.example.com"
    # The Host field alone decides when the target is in origin-form.
    status, _, body = c.request("GET", "/x", headers={"Host": "admin.internal"})
    assert status == 403 and body == b"admin host\n"
    # HTTP/1.0 without Host: the authority becomes Host.
    raw = raw_exchange(c.port, b"GET http://www.example.com:8080/y HTTP/1.0\r\n\r\n")
    status, _, body = parse_response(raw)
    assert status == 200 and upstream_saw(body)["h"]["host"] == "www.example.com:8080"


def test_absolute_form_with_an_invalid_authority_is_refused(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    for target in [b"http:///x", b"http://a b/", b"http://u@h/", b"http://u:p@h/x", b"http://",
                   b"http://[/x", b"ftp://h/x"]:
        raw = raw_exchange(c.port, b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 400 "), (target, raw)


# --- Item: the path routing matched is the path forwarded ------------------------------------

def test_escaped_slashes_are_refused_by_default(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    for path in ["/%2fsecret/file", "/%2Fsecret/file", "/x/..%2fsecret/file", "/x/..%5Csecret",
                 "/%5csecret/file", "/api/a%2Fb"]:
        status, _, body = c.request("GET", path)
        assert status == 400, (path, status, body)


def test_dot_segments_are_resolved_in_the_forwarded_path(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    for path in ["/x/../secret", "/%2e%2e/secret", "/x/%2E%2E/secret/file", "/./secret",
                 "//secret"]:
        status, _, body = c.request("GET", path)
        assert status == 403, (path, status, body)
    # What the upstream receives is the normalised path; the query is left as it came.
    for path, want in [("/x/../public/file", "/public/file"),
                       ("/%2e%2e/ok", "/ok"),
                       ("/a/./b//c?x=%2F&y=/../z", "/a/b/c?x=%2F&y=/../z"),
                       ("/p%41th?", "/pAth?"),
                       ("/plain/path?k=v", "/plain/path?k=v")]:
        status, _, body = c.request("GET", path)
        assert status == 200, (path, status)
        assert upstream_saw(body)["target"] == want, path


def test_rewrite_applies_to_the_path_routing_matched(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    status, _, body = c.request("GET", "/public/../api/users?id=1")
    assert status == 200
    assert upstream_saw(body)["target"] == "/users?id=1"


def test_a_rewrite_that_makes_a_dot_segment_is_refused(upstreams, citadel):
    # From an outside attack: "/e../x" matches path_prefix /e, and stripping it left "/../x",
    # which the upstream resolved to a path no route had matched.
    up = upstreams("a")
    c = citadel(config_head() + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - match: {{ path_prefix: /e }}
        rewrite: {{ strip_prefix: /e }}
        to: {{ cluster: app }}
    """)
    for path in ("/e../x", "/e.%2e/x", "/e..", "/e."):
        status, _, body = c.request("GET", path)
        assert status == 400, (path, body)
    status, _, body = c.request("GET", "/e/x")
    assert status == 200 and upstream_saw(body)["target"] == "/x"


def test_kept_escaped_slashes_are_opaque_for_routing_and_forwarding(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up, listener="        escaped_slashes: keep"))
    for path, want in [("/%2fsecret/file", "/%2Fsecret/file"),
                       ("/x/..%2fsecret/file", "/x/..%2Fsecret/file"),
                       ("/x/..%5csecret", "/x/..%5Csecret")]:
        status, _, body = c.request("GET", path)
        assert status == 200, path
        assert upstream_saw(body)["target"] == want


def test_decoded_escaped_slashes_are_routed_and_forwarded_decoded(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up, listener="        escaped_slashes: decode"))
    for path in ["/%2fsecret/file", "/x/..%2fsecret/file", "/x/..%5Csecret"]:
        status, _, _ = c.request("GET", path)
        assert status == 403, path
    status, _, body = c.request("GET", "/a%2Fb%5cc?q=%2F")
    assert status == 200 and upstream_saw(body)["target"] == "/a/b/c?q=%2F"


def test_redirected_escaped_slashes(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up, listener="        escaped_slashes: redirect"))
    status, headers, _ = c.request("POST", "/x/..%2fsecret/file?a=1", body=b"hi")
    assert status == 307
    assert headers["Location"] == "/secret/file?a=1"
    status, _, body = c.request("GET", "/x/../public")
    assert status == 200 and upstream_saw(body)["target"] == "/public"


def test_forward_path_original_sends_the_target_as_received(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up, listener="        forward_path: original"))
    status, _, body = c.request("GET", "/static/../public/%78")
    assert status == 200
    assert upstream_saw(body)["target"] == "/static/../public/%78"
    # Routing still sees /secret, and escaped slashes are still refused.
    assert c.request("GET", "/x/../secret")[0] == 403
    assert c.request("GET", "/x/..%2fsecret")[0] == 400


# --- Item: Citadel's own request headers survive `Connection` --------------------------------

def test_connection_cannot_remove_citadels_own_headers(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    status, _, body = c.request("GET", "/h", headers={
        "Connection": "close, X-Forwarded-For, traceparent, X-Request-Id, Via, "
                      "X-Forwarded-Proto, X-Forwarded-Host, X-Other",
        "X-Request-Id": "client-id", "X-Other": "gone", "X-Forwarded-For": "10.9.9.9",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    assert status == 200
    sent = upstream_saw(body)["h"]
    assert "x-other" not in sent and "connection" not in sent
    # The fields the client named are its own, dropped; Citadel's are added after that.
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-forwarded-host"].startswith("127.0.0.1:")
    assert sent["via"] == "1.1 citadel"
    assert len(sent["x-request-id"]) == 32 and sent["x-request-id"] != "client-id"
    tp = sent["traceparent"].split("-")
    assert len(tp) == 4 and tp[1] != "4bf92f3577b34da6a3ce929d0e0e4736"


# --- Item: upgrades only where a route allows them -------------------------------------------

def upgrade_request(path, proto, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: a\r\nUpgrade: %s\r\nConnection: Upgrade%s\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, proto, extra)).encode()


def read_one_response(f):
    status_line = f.readline()
    headers = {}
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def test_upgrade_not_allowed_is_forwarded_as_a_plain_request(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    try:
        f = s.makefile("rb")
        for path, proto in [("/echo", "websocket"), ("/ws-echo", "h2c"),
                            ("/ws-echo", "websocket, h2c")]:
            extra = ", HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA" \
                if "h2c" in proto else ""
            s.sendall(upgrade_request(path, proto, extra))
            status, _, body = read_one_response(f)
            assert status == 200, (path, proto)
            sent = upstream_saw(body)["h"]
            assert "upgrade" not in sent and "http2-settings" not in sent, (path, proto, sent)
            assert "upgrade" not in sent.get("connection", "").lower()
        # No tunnel was opened: the connection still carries plain requests.
        s.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        status, _, body = read_one_response(f)
        assert status == 200 and upstream_saw(body)["path"] == "/after"
    finally:
        s.close()


def test_an_upstream_switching_protocols_unasked_gets_502(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    # upstream.py answers /ws with 101 whatever the request says: without an Upgrade, or with
    # one the route does not allow (sent upstream as a plain request), that is no tunnel.
    for req in [b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n", upgrade_request("/ws", "h2c")]:
        raw = raw_exchange(c.port, req)
        assert raw.startswith(b"HTTP/1.1 502 "), raw


def test_allowed_websocket_upgrade_is_tunnelled(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=5)
    try:
        s.sendall(upgrade_request("/ws", "websocket"))
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 101 ")
        while f.readline() not in (b"\r\n", b""):
            pass
        s.sendall(make_ws_frame(1, b"hello"))
        assert read_ws_frame(f) == (1, b"hello")
    finally:
        s.close()


# --- Item: TRACE --------------------------------------------------------------------------------

def test_trace_needs_a_route_that_lists_it(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    status, headers, _ = c.request("TRACE", "/anything", headers={"Cookie": "s=1"})
    assert status == 405
    assert "GET" in headers["Allow"] and "TRACE" not in headers["Allow"]
    raw = raw_exchange(c.port, b"trace /anything HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 405 "), raw
    status, _, body = c.request("TRACE", "/trace-me")
    assert status == 200 and upstream_saw(body)["method"] == "TRACE"


def test_a_trailing_dot_does_not_walk_past_a_host_rule(upstreams, citadel):
    # "admin.internal." is the same host as "admin.internal" (found by an outside attack).
    up = upstreams("a")
    c = citadel(config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - match: {{ host: admin.internal, path_prefix: /adm }}
        to: {{ respond: {{ status: 403, body: "no\\n" }} }}
      - match: {{ host: "*.internal", path_prefix: /w }}
        to: {{ respond: {{ status: 403, body: "no\\n" }} }}
      - to: {{ cluster: app }}
    """)
    for host in ("admin.internal.", "ADMIN.INTERNAL.", "admin.internal.:8080"):
        assert c.request("GET", "/adm", headers={"Host": host})[0] == 403, host
    assert c.request("GET", "/w", headers={"Host": "x.internal."})[0] == 403
    out = raw_exchange(c.port, b"GET http://ADMIN.INTERNAL./adm HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403 "), out[:100]
    for bad in (b".internal", b"a..b", b".", b"admin.internal.."):
        out = raw_exchange(c.port, b"GET /adm HTTP/1.1\r\nHost: " + bad +
                           b"\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 "), (bad, out[:100])


def test_an_empty_or_invalid_host_field_is_refused(upstreams, citadel):
    up = upstreams("a")
    c = citadel(config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - to: {{ cluster: app }}
    """)
    for raw in (b"GET /x HTTP/1.1\r\nHost: \r\n",
                b"GET /x HTTP/1.0\r\nHost: \r\n",
                b"GET http://a/x HTTP/1.1\r\nHost: \r\n",
                b"GET http://a/x HTTP/1.1\r\nHost: [\r\n",
                b"GET http://a/x HTTP/1.1\r\nHost: a:99999\r\n"):
        out = raw_exchange(c.port, raw + b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400 "), (raw, out[:100])


def test_a_path_redirect_never_points_at_another_host(upstreams, citadel):
    # With merge_slashes off, "/%2F%2Fevil.com" decodes to "//evil.com": a Location that
    # browsers read as another host (found by an outside attack).
    up = upstreams("a")
    c = citadel(config_head(workers=1, listener="        escaped_slashes: redirect\n"
                                                "        merge_slashes: false") + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - to: {{ cluster: app }}
    """)
    for target in (b"/%2F%2Fevil.com/x", b"/a/..%2f%2fevil.com?q", b"/%5C%5Cevil.com"):
        out = raw_exchange(c.port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 307 "), out[:100]
        location = [l for l in out.split(b"\r\n") if l.lower().startswith(b"location:")][0]
        value = location.split(b":", 1)[1].strip()
        assert value.startswith(b"/") and not value.startswith(b"//"), value
