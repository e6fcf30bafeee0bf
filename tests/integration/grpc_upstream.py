#!/usr/bin/env python3
"""A gRPC server for the integration tests (Debian's python3-grpcio), without generated code:
generic handlers over raw bytes. Run as `grpc_upstream.py [PORT]`; prints `PORT <n>`.

  /test.Echo/Unary         answers the request reversed, with trailing metadata x-trailer: yes
  /test.Echo/ServerStream  the request is a count N: N messages "m0".."m<N-1>"
  /test.Echo/ClientStream  answers the number of messages and bytes received ("3/12")
  /test.Echo/BidiStream    echoes each message upper-cased
  /test.Echo/Fail          fails with NOT_FOUND "nope"
  /test.Echo/Slow          the request is milliseconds to sleep before answering
  /test.Echo/Die           sends two messages of a stream, then the process exits
  /test.Echo/HealthBytes   the request becomes the health answer's message, as sent
  /grpc.health.v1.Health/Check   SERVING (bytes 08 01), NOT_SERVING after /test.Echo/Sick

With GRPC_TLS_CERT and GRPC_TLS_KEY (PEM files) in the environment it serves over TLS (ALPN h2).
"""
import os
import sys
import time
from concurrent import futures

import grpc

STATE = {"serving": True, "health": None}


def unary(req, ctx):
    ctx.set_trailing_metadata((("x-trailer", "yes"),))
    return req[::-1]


def server_stream(req, ctx):
    for i in range(int(req or b"0")):
        yield b"m%d" % i


def client_stream(it, ctx):
    n = size = 0
    for m in it:
        n += 1
        size += len(m)
    return b"%d/%d" % (n, size)


def bidi(it, ctx):
    for m in it:
        yield m.upper()


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "nope")


def slow(req, ctx):
    time.sleep(int(req) / 1000.0)
    return b"slept"


def die(req, ctx):
    yield b"one"
    yield b"two"
    time.sleep(0.2)
    os._exit(1)


def sick(req, ctx):
    STATE["serving"] = False
    return b""


def health_bytes(req, ctx):
    STATE["health"] = req
    return b""


def health(req, ctx):
    if STATE["health"] is not None:
        return STATE["health"]
    return b"\x08\x01" if STATE["serving"] else b"\x08\x02"


def ident(x):
    return x


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    u = lambda f: grpc.unary_unary_rpc_method_handler(f, ident, ident)  # noqa: E731
    handlers = {
        "Unary": u(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
        "BidiStream": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
        "Fail": u(fail),
        "Slow": u(slow),
        "Die": grpc.unary_stream_rpc_method_handler(die, ident, ident),
        "Sick": u(sick),
        "HealthBytes": u(health_bytes),
    }
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("test.Echo", handlers),
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": u(health)}),
    ))
    cert = os.environ.get("GRPC_TLS_CERT")
    if cert:
        with open(cert, "rb") as c, open(os.environ["GRPC_TLS_KEY"], "rb") as k:
            creds = grpc.ssl_server_credentials(((k.read(), c.read()),))
        port = server.add_secure_port("127.0.0.1:%d" % port, creds)
    else:
        port = server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    print("PORT %d" % port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
