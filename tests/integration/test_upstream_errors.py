"""Upstreams that misbehave: close-delimited bodies ended by a FIN that rides on the last data,
malformed responses, and responses cut off in the body. Each cause is named in the error log
(with the endpoint), in the access log, and in `citadel_upstream_errors_total`."""
import json
import socket
import threading
import time

import pytest

from conftest import config_head, raw_exchange, wait_until


class RawUpstream:
    """An upstream on 127.0.0.1 that reads one request head per connection, answers with the
    bytes `respond(path)` returns, and closes; with `fin_with_data` the last data and the FIN
    leave in one segment (TCP_CORK held over shutdown)."""

    def __init__(self, respond, fin_with_data=True):
        self.respond = respond
        self.fin_with_data = fin_with_data
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop_flag.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        try:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ", 2)[1].decode()
            data = self.respond(path)
            if self.fin_with_data:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)  # corked: the FIN joins the last data segment
            if self.fin_with_data:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
            conn.settimeout(2)
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass
        except OSError:
            pass
        finally:
            conn.close()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def close(self):
        self.stop_flag.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def raw_upstream():
    started = []

    def make(respond, **kw):
        u = RawUpstream(respond, **kw)
        started.append(u)
        return u
    yield make
    for u in started:
        u.close()


def config(up, idle="30s"):
    return config_head(workers=1, access_log='{ path: "-" }') + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
        timeouts: {{ response: 30s, idle: {idle} }}
        retry: {{ attempts: 0 }}
    routes:
      - to: {{ cluster: app }}
    """


def get(port, path, timeout=5):
    """A raw GET: the whole answer up to the server's close (HTTP/1.0 semantics not needed:
    Connection: close makes Citadel close after the response)."""
    return raw_exchange(port, b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                        % path.encode(), timeout=timeout)


def test_close_delimited_bodies_with_fin_on_the_last_segment_complete(raw_upstream, citadel):
    # Before: most of these stalled until the upstream idle timeout, because the EOF that came
    # with the last data was never read, and were then cut off.
    body = b"".join(b"line %d\n" % i for i in range(2000))
    up = raw_upstream(lambda path: b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)
    c = citadel(config(up, idle="20s"))
    for i in range(20):
        t0 = time.monotonic()
        out = get(c.port, "/n%d" % i, timeout=5)
        assert time.monotonic() - t0 < 3, "request %d stalled" % i
        head, _, got = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        # Citadel re-frames the body for the client (chunked) and must deliver all of it.
        assert b"Transfer-Encoding: chunked" in head
        decoded, rest = b"", got
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            decoded += rest[:size]
            rest = rest[size + 2:]
        assert decoded == body, "request %d: %d of %d bytes" % (i, len(decoded), len(body))


def test_close_delimited_small_body_in_one_segment_with_head(raw_upstream, citadel):
    up = raw_upstream(lambda path: b"HTTP/1.1 200 OK\r\n\r\nsmall")
    c = citadel(config(up, idle="20s"))
    for i in range(20):
        status, _, body = c.request("GET", "/s%d" % i, timeout=3)
        assert status == 200 and body == b"small"


BROKEN = {
    "/status-line": (b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok", "invalid status"),
    "/cl-and-te": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"2\r\nok\r\n0\r\n\r\n", ""),
    "/huge-head": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\nok", "too large"),
}


@pytest.mark.parametrize("path", sorted(BROKEN))
def test_malformed_upstream_response_is_named_and_counted(raw_upstream, citadel, path):
    up = raw_upstream(lambda p: BROKEN[p][0])
    c = citadel(config(up))
    out = get(c.port, path)
    assert out.startswith(b"HTTP/1.1 502 "), out[:100]
    assert b"invalid upstream response" in out
    assert c.metric('citadel_upstream_errors_total{cluster="app",cause="protocol_error"}') == 1
    c.wait_for(r"cluster app: endpoint %s: protocol_error: .*%s" % (up.address, BROKEN[path][1]))
    wait_until(lambda: c.access_lines, what="access log line")
    rec = json.loads(c.access_lines[-1])
    assert rec["http.response.status_code"] == 502
    assert rec["citadel.termination"].startswith("upstream protocol_error: ")
    assert rec["upstream.address"] == up.address


def test_bad_chunk_size_after_head_resets_client_and_is_a_protocol_error(raw_upstream, citadel):
    up = raw_upstream(lambda p: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"4\r\npart\r\nzz\r\n")
    c = citadel(config(up))
    out = get(c.port, "/x")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert not out.endswith(b"0\r\n\r\n"), "a truncated response must not look complete"
    assert c.metric('citadel_upstream_errors_total{cluster="app",cause="protocol_error"}') == 1
    c.wait_for(r"endpoint %s: protocol_error: .*chunk" % up.address)
    wait_until(lambda: c.access_lines, what="access log line")
    rec = json.loads(c.access_lines[-1])
    assert rec["event.outcome"] == "failure"
    assert "protocol_error" in rec["citadel.termination"]


def test_body_cut_off_is_logged_as_failure_not_as_200(raw_upstream, citadel):
    up = raw_upstream(lambda p: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
    c = citadel(config(up))
    out = get(c.port, "/x")
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"only ten..")
    assert c.metric('citadel_upstream_errors_total{cluster="app",cause="reset_in_body"}') == 1
    c.wait_for(r"endpoint %s: reset_in_body: upstream closed in the response body" % up.address)
    wait_until(lambda: c.access_lines, what="access log line")
    rec = json.loads(c.access_lines[-1])
    assert rec["event.outcome"] == "failure"
    assert rec["citadel.termination"] == "upstream reset_in_body: upstream closed in the response body"
    # Counted as a failed request on its route, not as a 2xx.
    _, text = c.admin("GET", "/metrics")
    counts = {l.split('class="')[1].split('"')[0]: float(l.split()[-1])
              for l in text.splitlines() if l.startswith("citadel_requests_total{")}
    assert counts["reset"] == 1 and counts["2xx"] == 0, counts


def test_upstream_closing_before_responding_is_named(raw_upstream, citadel):
    up = raw_upstream(lambda p: b"")
    c = citadel(config(up))
    out = get(c.port, "/x")
    assert out.startswith(b"HTTP/1.1 502 ")
    assert c.metric(
        'citadel_upstream_errors_total{cluster="app",cause="reset_before_response"}') == 1
    c.wait_for(r"endpoint %s: reset_before_response" % up.address)


@pytest.mark.parametrize("raw,status,why,parsed", [
    (b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n", 400, "invalid", False),
    (b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "chunk",
     True),
])
def test_requests_refused_by_the_codec_are_in_the_access_log(citadel, upstreams, raw, status, why,
                                                             parsed):
    # Before: a malformed head was answered and counted but left no access log line (a scan made
    # of bad requests left no trace), and a malformed body was logged with status 0 although the
    # client got a 400.
    up = upstreams("a")
    c = citadel(config(up))
    out = raw_exchange(c.port, raw)
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
    wait_until(lambda: c.access_lines, what="access log line")
    time.sleep(0.2)  # a second line for the same request would show up by now
    assert len(c.access_lines) == 1, c.access_lines
    rec = json.loads(c.access_lines[-1])
    assert rec["http.response.status_code"] == status
    assert rec["source.address"] == "127.0.0.1"
    assert why in rec["citadel.termination"]
    if parsed:
        assert rec["url.original"] == "/up"
    else:
        assert rec["event.outcome"] == "failure"
        assert "url.original" not in rec  # nothing of the unparsed request is repeated
    assert c.metric("citadel_downstream_protocol_errors_total") == 1
    # Counted on the route as what the client got, not as a reset.
    if parsed:
        assert c.metric('citadel_requests_total{route="route0",class="4xx"}') == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\nPRI * HTTP/2.0",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\nanything",
])
def test_a_switch_to_a_protocol_the_client_did_not_name_gets_502(raw_upstream, citadel, answer):
    # From an outside attack: on a websocket route, an upstream answering 101 with Upgrade: h2c
    # (or with no Upgrade at all) was tunnelled, and the client got a cleartext HTTP/2 preface.
    up = raw_upstream(lambda p: answer)
    c = citadel(config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
        retry: {{ attempts: 0 }}
    routes:
      - upgrades: [websocket]
        to: {{ cluster: app }}
    """)
    out = raw_exchange(c.port, b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                               b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 502 "), out[:120]
    assert b"PRI *" not in out


def test_an_endless_series_of_interim_responses_is_a_protocol_error(raw_upstream, citadel):
    # From an outside attack: every 1xx was passed on, so an upstream sending 103s without end
    # made Citadel buffer them for a client that did not read (1.2 GB in 8 s).
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    up = raw_upstream(lambda p: hint * (3 if p == "/few" else 1000) + ok)
    c = citadel(config(up))
    out = get(c.port, "/few")
    assert out.count(b"HTTP/1.1 103 ") == 3 and b"HTTP/1.1 200 " in out, out[:300]
    out = get(c.port, "/many")
    assert b"HTTP/1.1 502 " in out and out.count(b"HTTP/1.1 103 ") <= 16, out[:200]
    assert c.metric('citadel_upstream_errors_total{cluster="app",cause="protocol_error"}') == 1
