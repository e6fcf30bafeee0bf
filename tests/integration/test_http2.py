"""HTTP/2 downstream: ALPN h2 over TLS and h2c with prior knowledge, the same routes, filters and
upstreams as HTTP/1.1, flow control with bounded memory, GOAWAY on reload, and each defence
provoked at the frame level: concurrent streams, header list size, HPACK bombs, rapid reset,
CONTINUATION, SETTINGS, PING and empty-frame floods, a client that never reads.

Clients: curl (--http2, --http2-prior-knowledge), h2load, and raw frames written here with
python3-h2's HPACK encoder (the h2 state machine itself refuses to send the attacks)."""
import json
import os
import socket
import ssl
import struct
import subprocess
import time

import hpack
import pytest

from conftest import config_head, wait_until
from test_tls import Pki, pki  # noqa: F401  (the fixture)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = \
    range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
ENHANCE_YOUR_CALM, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM = 0xb, 0x1, 0x2, 0x7


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


class Raw:
    """A client writing frames by hand, reading frames back."""

    def __init__(self, port, settings=b""):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.buf = b""
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send(self, data, quiet=False):
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if not quiet:
                raise

    def headers_block(self, path="/", method="GET", extra=()):
        return self.enc.encode([(":method", method), (":scheme", "http"), (":path", path),
                                (":authority", "localhost")] + list(extra))

    def request(self, stream, path="/", end=True, method="GET", extra=()):
        block = self.headers_block(path, method, extra)
        pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = b""
        for i, p in enumerate(pieces):
            last = END_HEADERS if i == len(pieces) - 1 else 0
            if i == 0:
                out += frame(HEADERS, last | (END_STREAM if end else 0), stream, p)
            else:
                out += frame(CONTINUATION, last, stream, p)
        self.send(out)

    def read_frame(self, timeout=5):
        """(type, flags, stream, payload), or None when the server closed."""
        self.s.settimeout(timeout)
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            try:
                b = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not b:
                return None
            self.buf += b
        n = int.from_bytes(self.buf[:3], "big")
        f = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
             self.buf[9:9 + n])
        self.buf = self.buf[9 + n:]
        if f[0] == SETTINGS and not f[1] & ACK:
            self.send(frame(SETTINGS, ACK, 0), quiet=True)
        return f

    def frames_until(self, pred, timeout=10):
        """Frames until pred(frame) is true (included) or the connection ends."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            f = self.read_frame(timeout=max(0.1, deadline - time.monotonic()))
            if f is None:
                break
            out.append(f)
            if pred(f):
                break
        return out

    def response(self, stream, timeout=10):
        """(status, headers, body, trailers) of `stream`; (None, None, body, ("rst", code)) when
        it was reset, (None, None, body, ("goaway", code)) when the connection ended."""
        hdrs, body, trailers = None, b"", None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            f = self.read_frame(timeout=max(0.1, deadline - time.monotonic()))
            if f is None:
                return None, None, body, ("closed", None)
            if f[0] == GOAWAY:
                return None, None, body, ("goaway", int.from_bytes(f[3][4:8], "big"))
            if f[2] != stream:
                continue
            if f[0] == HEADERS:
                decoded = self.dec.decode(f[3])
                if hdrs is None or dict(hdrs).get(":status", "200")[0] == "1":
                    hdrs = decoded
                else:
                    trailers = decoded
            elif f[0] == DATA:
                body += f[3]
                if f[3]:  # a reading client gives the windows back
                    self.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", len(f[3]))) +
                              frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", len(f[3]))))
            elif f[0] == RST_STREAM:
                return None, None, body, ("rst", int.from_bytes(f[3], "big"))
            if f[0] in (DATA, HEADERS) and f[1] & END_STREAM:
                break
        status = int(dict(hdrs)[":status"]) if hdrs else None
        return status, dict(hdrs or {}), body, trailers

    def close(self):
        self.s.close()


def goaway_code(frames):
    for f in frames:
        if f[0] == GOAWAY:
            return int.from_bytes(f[3][4:8], "big")
    return None


def h2_config(upstream=None, tls="", extra_routes="", listener_extra=""):
    routes = f"""
    clusters:
      - name: app
        endpoints: [{upstream.address}]
    routes:
      - match: {{ path_prefix: /local }}
        to: {{ respond: {{ status: 200, body: "local\\n" }} }}
{extra_routes}      - to: {{ cluster: app }}
    """ if upstream else """
    routes:
      - to: { respond: { status: 200, body: "local\\n" } }
    """
    return config_head(listener="        http2: true\n" + tls + listener_extra) + routes


def curl(*args, timeout=20):
    r = subprocess.run(["curl", "-s", "--max-time", "15", *args], capture_output=True,
                       timeout=timeout)
    return r.returncode, r.stdout


# --- the protocol works -------------------------------------------------------------------------

def test_h2_over_tls_with_alpn_reaches_the_upstream(pki, citadel, upstreams):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    up = upstreams("app")
    tls = f"        tls: {{ certificates: [ {{ cert: {cert[0]}, key: {cert[1]} }} ] }}\n"
    c = citadel(h2_config(up, tls))
    url = f"https://localhost:{c.port}"
    rc, out = curl("--http2", "--cacert", pki.path("ca.pem"), "--resolve",
                   f"localhost:{c.port}:127.0.0.1", "-w", "\n%{http_version}",
                   "-H", "Cookie: a=1", "-H", "Cookie: b=2", url + "/echo?q=1")
    assert rc == 0, out
    body, _, version = out.rpartition(b"\n")
    assert version == b"2"
    seen = json.loads(body)
    assert seen["target"] == "/echo?q=1"
    hdrs = {k.lower(): v for k, v in seen["headers"]}
    assert hdrs["host"] == f"localhost:{c.port}"
    assert hdrs["cookie"] == "a=1; b=2"  # split cookies joined for HTTP/1.1 (RFC 9113 8.2.3)
    assert hdrs["via"] == "2 citadel"  # the protocol the client spoke (RFC 9110 7.6.3)
    # A body of unknown length goes on chunked; one with a length goes on with it.
    rc, out = curl("--http2", "--cacert", pki.path("ca.pem"), "--resolve",
                   f"localhost:{c.port}:127.0.0.1", "--data-binary", "x" * 100000, url + "/sink")
    assert rc == 0 and json.loads(out)["received"] == 100000, out
    # Python's ssl offering both protocols gets h2 (the server's preference).
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    ctx.set_alpn_protocols(["http/1.1", "h2"])
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", c.port)),
                         server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "h2"


def test_without_http2_alpn_offers_only_http11(pki, citadel):
    cert = pki.issue("s", "localhost", dns=["localhost"])
    c = citadel(config_head(listener=f"""        tls: {{ certificates: [ {{ cert: {cert[0]}, key: {cert[1]} }} ] }}
""") + """
    routes:
      - to: { respond: { status: 200, body: "x\\n" } }
    """)
    rc, out = curl("--http2", "--cacert", pki.path("ca.pem"), "--resolve",
                   f"localhost:{c.port}:127.0.0.1", "-w", "%{http_version}",
                   f"https://localhost:{c.port}/")
    assert rc == 0 and out.endswith(b"1.1"), out


def test_h2c_prior_knowledge_and_http11_share_a_listener(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up))
    rc, out = curl("--http2-prior-knowledge", "-w", "%{http_version}",
                   f"http://127.0.0.1:{c.port}/local")
    assert rc == 0 and out == b"local\n2", out
    status, _, body = c.request("GET", "/local")
    assert status == 200 and body == b"local\n"
    # A listener without http2 takes the preface for a malformed HTTP/1 request.
    c2 = citadel(config_head() + """
    routes:
      - to: { respond: { status: 200, body: "x\\n" } }
    """)
    s = socket.create_connection(("127.0.0.1", c2.port), timeout=5)
    s.sendall(PREFACE)
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 505"), data
    s.close()


def test_many_streams_multiplexed_with_h2load(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up))
    r = subprocess.run(["h2load", "-n", "3000", "-c", "4", "-m", "32",
                        f"http://127.0.0.1:{c.port}/local"], capture_output=True, text=True,
                       timeout=60)
    assert "3000 succeeded" in r.stdout, r.stdout
    r = subprocess.run(["h2load", "-n", "300", "-c", "2", "-m", "16",
                        f"http://127.0.0.1:{c.port}/echo"], capture_output=True, text=True,
                       timeout=60)
    assert "300 succeeded" in r.stdout, r.stdout


def test_response_trailers_and_a_large_download(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up))
    h = Raw(c.port)
    h.request(1, "/trailers?n=3", extra=[("te", "trailers")])
    status, _, body, trailers = h.response(1)
    assert status == 200 and body == b"part" * 3
    # The forwardable trailers, and not the ones a proxy must drop (Set-Cookie, Content-Length).
    assert dict(trailers) == {"x-checksum": "sha256=abc", "server-timing": "app;dur=3"}, trailers
    h.request(3, "/bytes?n=3000000")
    status, hdrs, body, _ = h.response(3, timeout=30)
    assert status == 200 and len(body) == 3000000
    h.close()


def test_encoded_and_dot_segment_paths_reach_the_upstream_normalized(citadel, upstreams):
    # Routing and the upstream see one path whatever the protocol: dot segments and encoded
    # dots are resolved, an encoded slash refused (escaped_slashes: reject), as over HTTP/1.1.
    up = upstreams("app")
    c = citadel(h2_config(up, extra_routes="""      - match: { path_prefix: /admin/ }
        to: { respond: { status: 403, body: "no\\n" } }
"""))
    h = Raw(c.port)
    h.request(1, "/x/../admin/keys")
    assert h.response(1)[0] == 403
    h.request(3, "/x/%2e%2e/admin/keys")
    assert h.response(3)[0] == 403
    h.request(5, "/admin%2Fkeys")
    assert h.response(5)[0] == 400
    h.request(7, "/a/./b/../echo?q=%2F")
    status, _, body, _ = h.response(7)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/a/echo" and seen["query"] == "q=%2F", seen
    h.close()


def test_a_connection_that_never_sends_a_request_gets_goaway_at_the_header_timeout(citadel):
    c = citadel(h2_config(listener_extra="        timeouts: { header: 1s }\n"))
    h = Raw(c.port)  # the preface and SETTINGS, then nothing
    t0 = time.monotonic()
    frames = h.frames_until(lambda f: f[0] == GOAWAY, timeout=10)
    assert goaway_code(frames) == 0 and time.monotonic() - t0 < 5, frames
    h.close()


def test_bad_requests_get_answers_and_the_connection_goes_on(citadel):
    c = citadel(h2_config())
    h = Raw(c.port)
    h.request(1, "/a b")
    r = h.response(1)
    assert r[0] == 400 or r[3] == ("rst", PROTOCOL_ERROR), r
    h.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, h.enc.encode(
        [(":method", "GET"), (":scheme", "http"), (":path", "/")])))
    r = h.response(3)
    assert r[0] == 400 or r[3] == ("rst", PROTOCOL_ERROR), r  # no :authority and no Host
    h.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, h.enc.encode(
        [(":method", "CONNECT"), (":authority", "example.com:443")])))
    assert h.response(5)[0] == 501
    h.request(7, "/fine")
    assert h.response(7)[0] == 200
    h.close()


def test_expect_100_continue_is_answered(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up))
    h = Raw(c.port)
    h.request(1, "/sink", end=False, method="POST", extra=[("expect", "100-continue")])
    frames = h.frames_until(lambda f: f[0] == HEADERS and f[2] == 1, timeout=5)
    heads = [h.dec.decode(f[3]) for f in frames if f[0] == HEADERS and f[2] == 1]
    assert heads and dict(heads[0])[":status"] == "100", heads
    h.send(frame(DATA, END_STREAM, 1, b"abc"))
    status, _, body, _ = h.response(1)
    assert status == 200 and json.loads(body)["received"] == 3


def test_a_stalled_request_body_gets_408_per_stream(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up, listener_extra="        timeouts: { body_idle: 1s }\n"))
    h = Raw(c.port)
    h.request(1, "/sink", end=False, method="POST")
    h.send(frame(DATA, 0, 1, b"some"))
    h.request(3, "/local")  # the connection and other streams go on meanwhile
    assert h.response(3)[0] == 200
    t0 = time.monotonic()
    status, _, _, _ = h.response(1, timeout=10)
    assert status == 408 and time.monotonic() - t0 < 5


def test_pseudo_headers_do_not_count_as_fields(citadel):
    c = citadel(h2_config())
    h = Raw(c.port)
    h.request(1, "/", extra=[("x-f%d" % i, "v") for i in range(99)])
    assert h.response(1)[0] == 200
    h.request(3, "/", extra=[("x-f%d" % i, "v") for i in range(101)])
    assert h.response(3)[0] == 431


# --- the defences -------------------------------------------------------------------------------

def test_concurrent_streams_beyond_the_limit_are_refused(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up, listener_extra="        http2: { max_concurrent_streams: 8 }\n"
                          ).replace("        http2: true\n", ""))
    h = Raw(c.port)
    for i in range(20):  # slow requests, all open at once
        h.request(1 + 2 * i, "/slow?ms=1500")
    frames = h.frames_until(lambda f: False, timeout=4)
    refused = [f for f in frames if f[0] == RST_STREAM]
    answered = {f[2] for f in frames if f[0] == HEADERS}
    assert len(refused) >= 12 and len(answered) <= 8, (len(refused), answered)
    assert goaway_code(frames) in (None, PROTOCOL_ERROR)


def test_a_header_list_over_the_limit_gets_431(citadel):
    c = citadel(h2_config())
    h = Raw(c.port)
    h.request(1, "/", extra=[("x-big-%d" % i, "v" * 1000) for i in range(40)])
    r = h.response(1)
    assert r[0] == 431, r
    h.request(3, "/")
    assert h.response(3)[0] == 200
    h.close()


def test_an_hpack_bomb_ends_the_connection_with_bounded_memory(citadel):
    c = citadel(h2_config())
    rss = c.rss_kb()
    h = Raw(c.port)
    # One 4 KiB field into the dynamic table, then a block that names it 4000 times: 4 KiB of
    # HPACK that decodes to 16 MiB.
    big = hpack.Encoder()
    first = big.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                        (":authority", "localhost"), ("x-bomb", "b" * 4000)])
    h.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, first))
    ref = bytes([0x80 | 62])  # indexed field 62: the newest dynamic entry
    block = big.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"),
                        (":authority", "localhost")]) + ref * 4000
    h.send(frame(HEADERS, END_HEADERS | END_STREAM, 3, block))
    frames = h.frames_until(lambda f: f[0] == GOAWAY or (f[0] == HEADERS and f[2] == 3), 5)
    got431 = any(f[0] == HEADERS and f[2] == 3 and h.dec.decode(f[3])[0][1] == "431"
                 for f in frames if f[2] == 3 and f[0] == HEADERS)
    assert goaway_code(frames) is not None or got431, frames
    assert c.rss_kb() - rss < 32 * 1024
    assert c.request("GET", "/")[0] == 200


def test_rapid_reset_gets_goaway(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up))
    h = Raw(c.port)
    burst = b""
    for i in range(600):
        sid = 1 + 2 * i
        burst += frame(HEADERS, END_HEADERS | END_STREAM, sid, h.headers_block("/slow?ms=200"))
        burst += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))  # CANCEL
    try:
        h.send(burst)
    except (BrokenPipeError, ConnectionResetError):
        pass
    frames = h.frames_until(lambda f: f[0] == GOAWAY, timeout=5)
    # nghttp2's reset budget (Http2Limits reset_burst, reset_rate) says INTERNAL_ERROR.
    assert goaway_code(frames) in (ENHANCE_YOUR_CALM, INTERNAL_ERROR), [f[:3] for f in frames]
    last = int.from_bytes([f for f in frames if f[0] == GOAWAY][0][3][:4], "big")
    assert last < 2 * 600, last  # cut off before the burst was all taken
    assert c.request("GET", "/local")[0] == 200


def test_continuation_flood_gets_goaway(citadel):
    c = citadel(h2_config())
    h = Raw(c.port)
    h.send(frame(HEADERS, 0, 1, h.headers_block("/")))
    try:
        for i in range(200):
            h.send(frame(CONTINUATION, 0, 1, h.enc.encode([("x-c%d" % i, "v")])))
    except (BrokenPipeError, ConnectionResetError):
        pass
    frames = h.frames_until(lambda f: f[0] == GOAWAY, timeout=5)
    assert goaway_code(frames) is not None, frames
    assert c.request("GET", "/")[0] == 200


@pytest.mark.parametrize("flood", ["ping", "settings", "empty_data", "priority"])
def test_control_and_empty_frame_floods_get_goaway(citadel, upstreams, flood):
    c = citadel(h2_config(upstreams("app")))
    h = Raw(c.port)
    if flood == "ping":
        one = frame(PING, 0, 0, b"12345678")
    elif flood == "settings":
        one = frame(SETTINGS, 0, 0)
    elif flood == "priority":
        one = frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 16))
    else:
        # On a stream that stays open (its upstream answers late): a stream already answered
        # was closed with RST_STREAM, and nghttp2 drops frames for it unread.
        h.request(1, "/slow?ms=5000", end=False, method="POST")
        one = frame(DATA, 0, 1)
    frames = []
    try:
        for _ in range(30):  # read as we go: a client that reads and floods anyway
            h.send(one * 200)
            frames += h.frames_until(lambda f: f[0] == GOAWAY, timeout=0.05)
            if goaway_code(frames) is not None:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    frames += h.frames_until(lambda f: f[0] == GOAWAY, timeout=3)
    assert goaway_code(frames) == ENHANCE_YOUR_CALM, flood
    assert c.request("GET", "/")[0] == 200


def test_a_client_that_never_reads_costs_bounded_memory(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up))
    rss = c.rss_kb()
    # A stream window of 1 MiB given, then never read: 100 streams of 8 MiB each. The streams
    # share one buffer budget, so this costs about what one slow HTTP/1.1 download does.
    h = Raw(c.port, settings=struct.pack(">HI", 4, 1 << 20))
    h.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", (1 << 30))))
    for i in range(100):
        h.request(1 + 2 * i, "/bytes?n=8000000")
    # And PINGs it never reads the answers of.
    try:
        for _ in range(50):
            h.send(frame(PING, 0, 0, b"abcdefgh") * 100)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    time.sleep(3)
    assert c.rss_kb() - rss < 40 * 1024
    assert c.request("GET", "/local")[0] == 200
    h.close()


def test_an_upload_to_an_upstream_that_does_not_read_is_held_to_the_windows(citadel):
    # An upstream that accepts and never reads (small receive buffer): the request body backs
    # up into Citadel, whose stream stops giving window back; a client that ignores the window
    # gets FLOW_CONTROL_ERROR, and nothing is buffered beyond the windows.
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    up = type("U", (), {"address": "127.0.0.1:%d" % hole.getsockname()[1]})
    try:
        c = citadel(h2_config(up))
        rss = c.rss_kb()
        h = Raw(c.port)
        h.request(1, "/upload", end=False, method="POST")
        sent, reply = 0, None
        h.s.settimeout(0.5)
        chunk = frame(DATA, 0, 1, b"u" * 16384)
        deadline = time.monotonic() + 10
        try:
            while sent < (32 << 20) and time.monotonic() < deadline:
                h.s.sendall(chunk)
                sent += 16384
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            pass
        frames = h.frames_until(lambda f: f[0] in (GOAWAY, RST_STREAM), timeout=3)
        codes = [int.from_bytes(f[3][-4:], "big") for f in frames if f[0] in (GOAWAY, RST_STREAM)]
        FLOW_CONTROL_ERROR = 0x3
        assert FLOW_CONTROL_ERROR in codes or sent < (32 << 20), (sent, codes)
        assert c.rss_kb() - rss < 24 * 1024
        assert c.request("GET", "/local")[0] == 200
    finally:
        hole.close()


# --- drains -------------------------------------------------------------------------------------

def test_shutdown_sends_goaway_and_finishes_the_streams_in_flight(citadel, upstreams):
    up = upstreams("app")
    c = citadel(h2_config(up))
    h = Raw(c.port)
    h.request(1, "/slow?ms=1500")
    time.sleep(0.2)
    c.signal(15)  # SIGTERM: drain, then exit
    frames = h.frames_until(lambda f: f[2] == 1 and f[0] == DATA and f[1] & END_STREAM,
                            timeout=10)
    codes = [int.from_bytes(f[3][4:8], "big") for f in frames if f[0] == GOAWAY]
    assert codes and all(code == 0 for code in codes), frames
    assert any(f[0] == HEADERS and f[2] == 1 for f in frames), "the stream in flight finished"
    # The connection closes once its streams are done.
    assert h.frames_until(lambda f: False, timeout=5) is not None
    c.proc.wait(timeout=15)


def test_a_reload_keeps_h2_connections_and_applies_new_routes(citadel):
    c = citadel(h2_config())
    h = Raw(c.port)
    h.request(1, "/")
    assert h.response(1)[2] == b"local\n"
    c.write_config(h2_config().replace("local\\n", "reloaded\\n"))
    c.signal(1)
    c.wait_for("config reloaded")
    time.sleep(0.3)
    h.request(3, "/")
    assert h.response(3)[2] == b"reloaded\n"
    h.close()
