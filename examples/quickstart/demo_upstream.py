#!/usr/bin/env python3
"""The quickstart's demo application: answers JSON naming the instance that served it.

Usage: demo_upstream.py NAME PORT
"""
import http.server
import json
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
            ctype = "text/plain"
        else:
            body = (json.dumps({"instance": sys.argv[1], "path": self.path,
                                "request_id": self.headers.get("X-Request-Id")}) + "\n").encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
