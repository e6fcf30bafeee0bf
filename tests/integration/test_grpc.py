"""gRPC through Citadel, end to end with Debian's python3-grpcio on both sides: a client to a
listener with http2 (h2c, or TLS with ALPN h2), a server behind a cluster with protocol: h2 (h2c,
or TLS). Unary and streaming calls, trailers (grpc-status, grpc-message, custom metadata),
deadlines, an upstream that dies mid-stream, an upstream that is down (UNAVAILABLE from Citadel
itself), multiplexing on one upstream connection, and the gRPC health protocol as the cluster's
health check."""
import json
import os
import re
import subprocess
import threading
import time

import grpc
import pytest

from conftest import PYTHON, HERE, config_head, wait_until
from test_tls import Pki, pki  # noqa: F401  (the fixture)


def ident(x):
    return x


class GrpcUpstream:
    def __init__(self, env=None):
        self.proc = subprocess.Popen([PYTHON, os.path.join(HERE, "grpc_upstream.py")],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=dict(os.environ, **(env or {})))
        line = self.proc.stdout.readline()
        m = re.match(r"PORT (\d+)", line or "")
        assert m, "grpc upstream did not start: %r" % line
        self.port = int(m.group(1))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def grpc_upstream():
    started = []

    def make(env=None):
        u = GrpcUpstream(env)
        started.append(u)
        return u
    yield make
    for u in started:
        u.kill()


def grpc_config(port, listener="", cluster=""):
    return config_head(listener="        http2: true\n" + listener) + f"""
    clusters:
      - name: grpc
        protocol: h2
        endpoints: [127.0.0.1:{port}]
{cluster}
    routes:
      - match: {{ path_prefix: /test.Echo/ }}
        to: {{ cluster: grpc }}
      - to: {{ respond: {{ status: 404, body: "no such service\\n" }} }}
    """


def calls(ch):
    return {
        "unary": ch.unary_unary("/test.Echo/Unary", request_serializer=ident,
                                response_deserializer=ident),
        "server": ch.unary_stream("/test.Echo/ServerStream", request_serializer=ident,
                                  response_deserializer=ident),
        "client": ch.stream_unary("/test.Echo/ClientStream", request_serializer=ident,
                                  response_deserializer=ident),
        "bidi": ch.stream_stream("/test.Echo/BidiStream", request_serializer=ident,
                                 response_deserializer=ident),
        "fail": ch.unary_unary("/test.Echo/Fail", request_serializer=ident,
                               response_deserializer=ident),
        "slow": ch.unary_unary("/test.Echo/Slow", request_serializer=ident,
                               response_deserializer=ident),
        "die": ch.unary_stream("/test.Echo/Die", request_serializer=ident,
                               response_deserializer=ident),
        "other": ch.unary_unary("/other.Svc/Method", request_serializer=ident,
                                response_deserializer=ident),
    }


def test_unary_and_streaming_calls_with_trailers(citadel, grpc_upstream):
    up = grpc_upstream()
    c = citadel(grpc_config(up.port))
    with grpc.insecure_channel("127.0.0.1:%d" % c.port) as ch:
        k = calls(ch)
        resp, call = k["unary"].with_call(b"hello", timeout=10)
        assert resp == b"olleh"
        assert ("x-trailer", "yes") in [(m.key, m.value) for m in call.trailing_metadata()]
        assert list(k["server"](b"50", timeout=10)) == [b"m%d" % i for i in range(50)]
        assert k["client"](iter([b"abcd"] * 100), timeout=10) == b"100/400"
        assert list(k["bidi"](iter([b"x", b"yz", b"q" * 100000]), timeout=10)) == \
            [b"X", b"YZ", b"Q" * 100000]
        with pytest.raises(grpc.RpcError) as e:
            k["fail"](b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and e.value.details() == "nope"


def test_a_deadline_cancels_the_upstream_call(citadel, grpc_upstream):
    up = grpc_upstream()
    c = citadel(grpc_config(up.port))
    with grpc.insecure_channel("127.0.0.1:%d" % c.port) as ch:
        k = calls(ch)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as e:
            k["slow"](b"3000", timeout=0.5)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 2
        # The connection to the upstream goes on serving other calls.
        assert k["unary"](b"ab", timeout=10) == b"ba"


def test_many_concurrent_calls_share_one_upstream_connection(citadel, grpc_upstream):
    up = grpc_upstream()
    c = citadel(grpc_config(up.port))
    results = []
    with grpc.insecure_channel("127.0.0.1:%d" % c.port) as ch:
        k = calls(ch)
        futures = [k["slow"].future(b"200", timeout=10) for _ in range(40)]
        results = [f.result() for f in futures]
    assert results == [b"slept"] * 40
    assert c.metric('citadel_upstream_connections_total{cluster="grpc"}') == 1


def test_an_upstream_that_dies_mid_stream_ends_the_call_with_an_error(citadel, grpc_upstream):
    up = grpc_upstream()
    c = citadel(grpc_config(up.port))
    with grpc.insecure_channel("127.0.0.1:%d" % c.port) as ch:
        got = []
        with pytest.raises(grpc.RpcError) as e:
            for m in calls(ch)["die"](b"", timeout=10):
                got.append(m)
        assert got == [b"one", b"two"]
        assert e.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.UNKNOWN), e.value


def test_citadels_own_errors_reach_grpc_clients_as_grpc_statuses(citadel, grpc_upstream):
    up = grpc_upstream()
    c = citadel(grpc_config(up.port))
    up.kill()
    with grpc.insecure_channel("127.0.0.1:%d" % c.port) as ch:
        k = calls(ch)
        with pytest.raises(grpc.RpcError) as e:
            k["unary"](b"x", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
        assert "upstream" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            k["other"](b"x", timeout=10)  # no route: 404, which gRPC calls UNIMPLEMENTED
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, e.value


def test_grpc_over_tls_both_ways(pki, citadel, grpc_upstream):
    down = pki.issue("down", "localhost", dns=["localhost"])
    upc = pki.issue("upc", "localhost", dns=["localhost"], ips=["127.0.0.1"])
    up = grpc_upstream({"GRPC_TLS_CERT": upc[0], "GRPC_TLS_KEY": upc[1]})
    tls = f"        tls: {{ certificates: [ {{ cert: {down[0]}, key: {down[1]} }} ] }}\n"
    c = citadel(grpc_config(up.port, listener=tls,
                            cluster=f"        tls: {{ ca: {pki.path('ca.pem')} }}"))
    with open(pki.path("ca.pem"), "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    with grpc.secure_channel("127.0.0.1:%d" % c.port, creds,
                             options=(("grpc.ssl_target_name_override", "localhost"),)) as ch:
        k = calls(ch)
        assert k["unary"](b"tls", timeout=10) == b"slt"
        assert list(k["server"](b"3", timeout=10)) == [b"m0", b"m1", b"m2"]


def test_grpc_health_checks(citadel, grpc_upstream):
    up = grpc_upstream()
    c = citadel(grpc_config(up.port, cluster="""        health_check: { grpc: true, interval: 100ms, timeout: 100ms, healthy: 1, unhealthy: 1 }"""))

    def healthy():
        _, body = c.admin("GET", "/clusters")
        return json.loads(body)["clusters"][0]["endpoints"][0]["healthy"]
    time.sleep(0.6)
    assert healthy() is True, "\n".join(c.snapshot_lines())
    with grpc.insecure_channel("127.0.0.1:%d" % up.port) as ch:
        ch.unary_unary("/test.Echo/Sick", request_serializer=ident,
                       response_deserializer=ident)(b"", timeout=5)
    wait_until(lambda: healthy() is False, timeout=5)
    c.wait_for("not SERVING")

    def answer(message):
        with grpc.insecure_channel("127.0.0.1:%d" % up.port) as ch:
            ch.unary_unary("/test.Echo/HealthBytes", request_serializer=ident,
                           response_deserializer=ident)(message, timeout=5)
    # The protobuf is read, not matched: an unknown field before status is still SERVING...
    answer(b"\x10\x07\x08\x01")
    wait_until(lambda: healthy() is True, timeout=5)
    # ...and a malformed message (a field key without its value) is not.
    answer(b"\x08\x01\x10")
    wait_until(lambda: healthy() is False, timeout=5)


def test_grpc_health_checks_need_protocol_h2(tmp_path):
    from conftest import CITADEL
    p = tmp_path / "c.yaml"
    p.write_text(config_head() + """
    clusters:
      - name: grpc
        endpoints: [127.0.0.1:9]
        health_check: { grpc: true }
    routes:
      - to: { cluster: grpc }
    """)
    r = subprocess.run([CITADEL, "validate", "-c", str(p)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "protocol: h2" in r.stderr, r.stderr


def h2_upstream(respond):
    """An HTTP/2 upstream (python3-h2) answering each request with respond(path) ->
    (headers, body); one connection at a time is enough for these tests."""
    import socket as sk
    import h2.config
    import h2.connection
    import h2.events
    srv = sk.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conn.settimeout(5)
            h2c = h2.connection.H2Connection(h2.config.H2Configuration(
                client_side=False, validate_outbound_headers=False,
                normalize_outbound_headers=False))
            h2c.initiate_connection()
            conn.sendall(h2c.data_to_send())
            pending = {}  # stream -> body not yet sent (flow control)

            def pump():
                for sid in list(pending):
                    body = pending[sid]
                    while body:
                        n = min(len(body), h2c.local_flow_control_window(sid),
                                h2c.max_outbound_frame_size)
                        if n <= 0:
                            break
                        h2c.send_data(sid, body[:n])
                        body = body[n:]
                    if body:
                        pending[sid] = body
                    else:
                        h2c.end_stream(sid)
                        del pending[sid]
            try:
                while not stop.is_set():
                    data = conn.recv(65536)
                    if not data:
                        break
                    for ev in h2c.receive_data(data):
                        if isinstance(ev, h2.events.RequestReceived):
                            path = dict(ev.headers)[b":path"].decode()
                            headers, body = respond(path)
                            h2c.send_headers(ev.stream_id, headers)
                            pending[ev.stream_id] = body
                    pump()
                    conn.sendall(h2c.data_to_send())
            except Exception:
                pass
            finally:
                conn.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, stop


def test_an_h2_upstream_head_over_32k_is_a_502(citadel):
    # From an outside attack: a 70 KB response head from an HTTP/2 upstream left HTTP/2
    # clients waiting on a stream that never answered.
    def respond(path):
        n = 40 if path == "/big" else 1
        return [(":status", "200")] + [("x-h%d" % i, "v" * 1000) for i in range(n)], b"ok"
    srv, stop = h2_upstream(respond)
    try:
        c = citadel(config_head(listener="        http2: true\n") + f"""
    clusters:
      - name: up
        protocol: h2
        endpoints: [127.0.0.1:{srv.getsockname()[1]}]
        retry: {{ attempts: 0 }}
    routes:
      - to: {{ cluster: up }}
    """)
        assert c.request("GET", "/small")[0] == 200
        status, _, _ = c.request("GET", "/big")
        assert status == 502
        r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--max-time", "5", "-o",
                            "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/big" % c.port], capture_output=True, text=True)
        assert r.stdout == "502", r
    finally:
        stop.set()
        srv.close()


def test_a_slow_client_gets_the_whole_response_of_an_h2_upstream(citadel):
    # The upstream finishes (END_STREAM) while the slow client's request has reading paused:
    # the rest must still reach the client, and the other streams on that upstream connection
    # must not stall behind it.
    body = bytes(range(256)) * 8192  # 2 MiB
    srv, stop = h2_upstream(lambda path: ([(":status", "200"),
                                           ("content-length", str(len(body)))], body))
    try:
        c = citadel(config_head() + f"""
    clusters:
      - name: up
        protocol: h2
        endpoints: [127.0.0.1:{srv.getsockname()[1]}]
        retry: {{ attempts: 0 }}
    routes:
      - to: {{ cluster: up }}
    """)
        import socket as sk
        slow = sk.socket()
        slow.setsockopt(sk.SOL_SOCKET, sk.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", c.port))
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)  # the upstream has sent everything; Citadel holds what the client lacks
        # Meanwhile another request on the same upstream connection goes through.
        status, _, other = c.request("GET", "/other")
        assert status == 200 and len(other) == len(body)
        got = b""
        slow.settimeout(10)
        while True:
            chunk = slow.recv(65536)
            if not chunk:
                break
            got += chunk
        slow.close()
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and rest == body, (head, len(rest))
    finally:
        stop.set()
        srv.close()
