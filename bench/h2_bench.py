#!/usr/bin/env python3
"""HTTP/2 and TLS side by side: Citadel against nginx in front of one shared upstream (nginx,
100-byte body, HTTP/1.1 keep-alive), in interleaved rounds.

Scenarios (each contender with the same certificate, a P-256 key, TLS 1.3):
  h2-tls     h2load over TLS (ALPN h2): 16 connections x 10 concurrent streams, proxied
  h2c        h2load with prior knowledge, same load, proxied (nginx: `listen ... http2` plain)
  h1-tls     wrk over TLS keep-alive (HTTP/1.1): 64 connections, proxied
  handshake  h2load: one request per new TLS connection (full handshakes, no resumption)
  grpc       unary gRPC calls over h2c: h2load POSTs a gRPC frame (content-type application/grpc,
             te: trailers) through the proxy to an HTTP/2 upstream (nginx over h2c) that answers
             a gRPC frame and a grpc-status trailer; Citadel `protocol: h2`, nginx `grpc_pass`
  gzip, br, zstd
             a 100 KB JSON response compressed by the proxy (HTTP/1.1, wrk, 16 connections,
             `Accept-Encoding` naming that coding): Citadel's `compress` filter at its default
             levels (gzip 5, br 4, zstd 3) against nginx's gzip at level 5 (nginx has no brotli
             or zstd in Debian's nginx-light: those rows compare with nginx's gzip)

For each it prints requests/s, the proxy's CPU time per request (user+sys from /proc) and the
ratios citadel/nginx (medians over the rounds). With 2+ cores the proxy runs on core 0, the load
generator and the upstream on core 1, for both contenders alike. Loopback only, OS-picked ports.
Usage: bench/h2_bench.sh [--duration 8] [--rounds 3]
                        [--scenarios "h2-tls h2c h1-tls handshake grpc gzip br zstd"]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (CITADEL, NGINX_PROXYING, TICK, Proc, cpu_ticks,  # noqa: E402
                         free_port, nginx_conf, parse_wrk, start_upstream, wait_port)


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                    "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


COMPRESSED = ("gzip", "br", "zstd")


def start_citadel(tmp, port, up_port, cpus, tls, cert, key, scenario):
    conf = os.path.join(tmp, "citadel-%d.yaml" % port)
    cluster_extra = "    protocol: h2\n" if scenario == "grpc" else ""
    route_extra = ("    filters: [ { compress: { encodings: [%s] } } ]\n" % scenario
                   if scenario in COMPRESSED else "")
    tls_block = (f"    tls: {{ certificates: [ {{ cert: {cert}, key: {key} }} ], "
                 f"min_version: \"1.3\", session_tickets: false, session_cache: 0 }}\n"
                 if tls else "")
    with open(conf, "w") as f:
        f.write(f"""
workers: 1
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    http2: true
    timeouts: {{ keepalive: 300s }}
{tls_block}access_log: off
error_log: {{ level: warn }}
clusters:
  - name: up
    endpoints: [127.0.0.1:{up_port}]
    pool: {{ max_idle: 1024 }}
{cluster_extra}routes:
  - to: {{ cluster: up }}
{route_extra}""")
    p = Proc([CITADEL, "-c", conf], cpus=cpus)
    wait_port(port)
    return p


def start_nginx(tmp, port, up_port, cpus, tls, cert, key, scenario):
    proxying = NGINX_PROXYING
    if scenario == "grpc":
        proxying = "      grpc_pass grpc://up;\n"
    elif scenario in COMPRESSED:
        proxying += ("      gzip on; gzip_comp_level 5; gzip_proxied any; gzip_min_length 1024;\n"
                     "      gzip_types application/json;\n")
    listen = (f"listen 127.0.0.1:{port} ssl http2 reuseport backlog=4096;\n"
              f"    ssl_certificate {cert}; ssl_certificate_key {key};\n"
              f"    ssl_protocols TLSv1.3; ssl_session_tickets off; ssl_session_cache off;"
              if tls else f"listen 127.0.0.1:{port} reuseport backlog=4096;"
              if scenario in COMPRESSED  # HTTP/1.1: a plain `http2` listener speaks only h2c
              else f"listen 127.0.0.1:{port} http2 reuseport backlog=4096;")
    conf = nginx_conf(tmp, "proxy-%d" % port, f"""
worker_processes 1;
worker_rlimit_nofile 40000;
daemon off;
pid {tmp}/proxy-{port}.pid;
error_log {tmp}/proxy.err warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  http2_max_requests 10000000;
  upstream up {{ server 127.0.0.1:{up_port}; keepalive 1024; }}
  server {{
    {listen}
    location / {{
{proxying}    }}
  }}
}}
""")
    p = Proc(["nginx", "-c", conf, "-p", tmp, "-e", tmp + "/proxy.err"], cpus=cpus)
    wait_port(port)
    return p


STARTERS = {"citadel": start_citadel, "nginx": start_nginx}


def parse_h2load(out):
    done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded",
                         out).group(2))
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    return rps, done


def served_dir(tmp):
    """A directory nginx's workers (an unprivileged user) may read, apart from the one that holds
    the benchmark's private key."""
    www = os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    os.chmod(tmp, 0o711)  # traversable, not listable
    os.chmod(www, 0o755)
    return www


def start_grpc_upstream(tmp, port, cpus):
    """nginx over h2c answering every call with an empty gRPC message and grpc-status 0 (a POST
    to a static file is turned into its GET by error_page)."""
    www = served_dir(tmp)
    with open(os.path.join(www, "grpc-reply"), "wb") as f:
        f.write(b"\x00\x00\x00\x00\x00")
    conf = nginx_conf(tmp, "grpc-upstream", f"""
worker_processes 1;
daemon off;
pid {tmp}/grpc-upstream.pid;
error_log {tmp}/grpc-upstream.err warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  http2_max_requests 10000000;
  server {{
    listen 127.0.0.1:{port} http2 reuseport backlog=4096;
    location / {{
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      add_trailer grpc-message "" always;
      error_page 405 =200 /grpc-reply;
      try_files /grpc-reply =404;
      root {www};
    }}
  }}
}}
""")
    p = Proc(["nginx", "-c", conf, "-p", tmp, "-e", tmp + "/grpc-upstream.err"], cpus=cpus)
    wait_port(port)
    return p


def start_json_upstream(tmp, port, cpus):
    """nginx serving a 100 KB JSON document (uncompressed, with its length)."""
    items = ",".join('{"id":%d,"name":"user-%d","email":"user%d@example.com","active":%s,'
                     '"roles":["reader","writer"],"score":%d.%d}' %
                     (i, i, i, "true" if i % 3 else "false", i * 7 % 1000, i % 10)
                     for i in range(1200))
    doc = '{"users":[' + items + "]}"
    while len(doc) > 100 * 1024:  # whole records off the end: still valid JSON
        doc = doc[:doc.rindex(',{"id"')] + "]}"
    json.loads(doc)
    www = served_dir(tmp)
    with open(os.path.join(www, "data.json"), "w") as f:
        f.write(doc)
    conf = nginx_conf(tmp, "json-upstream", f"""
worker_processes 1;
daemon off;
pid {tmp}/json-upstream.pid;
error_log {tmp}/json-upstream.err warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ default_type application/json; try_files /data.json =404; root {www}; }}
  }}
}}
""")
    p = Proc(["nginx", "-c", conf, "-p", tmp, "-e", tmp + "/json-upstream.err"], cpus=cpus)
    wait_port(port)
    return p


def run_one(name, scenario, tmp, up_port, duration, proxy_cpus, load_cpus, cert, key):
    port = free_port()
    tls = scenario not in ("h2c", "grpc") + COMPRESSED
    proc = STARTERS[name](tmp, port, up_port, proxy_cpus, tls, cert, key, scenario)
    pin = ["taskset", "-c", load_cpus] if load_cpus is not None else []
    scheme = "https" if tls else "http"
    url = "%s://127.0.0.1:%d/" % (scheme, port)
    try:
        if scenario in ("h2-tls", "h2c"):
            def load(d):
                return pin + ["h2load", "-c", "16", "-m", "10", "-t", "1", "-D", str(d), url]
        elif scenario == "grpc":
            frame = os.path.join(tmp, "grpc-request")
            with open(frame, "wb") as f:
                f.write(b"\x00\x00\x00\x00\x0a" + b"\x0a\x08citadel!")  # one 10-byte message
            grpc_url = url + "bench.Echo/Unary"

            def load(d):
                return pin + ["h2load", "-c", "16", "-m", "10", "-t", "1", "-D", str(d), "-d",
                              frame, "-H", "content-type: application/grpc", "-H",
                              "te: trailers", grpc_url]
        elif scenario in COMPRESSED:
            # nginx has gzip only: its row of the br and zstd tables is its gzip.
            coding = scenario if name == "citadel" else "gzip"

            def load(d):
                return pin + ["wrk", "-t", "1", "-c", "16", "-d", "%ds" % d, "--latency", "-H",
                              "Accept-Encoding: " + coding, url]
        elif scenario == "handshake":
            def load(d):
                # h2load has no duration mode for one request per connection: a count sized to
                # the duration at roughly the rate a core handshakes at.
                n = 400 * d
                return pin + ["h2load", "-n", str(n), "-c", str(n), "-m", "1", "-t", "1", url]
        else:
            def load(d):
                return pin + ["wrk", "-t", "1", "-c", "64", "-d", "%ds" % d, "--latency", url]
        subprocess.run(load(1), capture_output=True, text=True, timeout=120)  # warm-up
        pids = proc.pids()
        t0 = cpu_ticks(pids)
        out = subprocess.run(load(duration), capture_output=True, text=True,
                             timeout=duration + 120).stdout
        t1 = cpu_ticks(pids)
        if scenario == "h1-tls" or scenario in COMPRESSED:
            rps, reqs, _, _, bad, _ = parse_wrk(out)
            if scenario in COMPRESSED:
                # What was measured was compressed with the coding asked for, and decodes.
                head = subprocess.run(["curl", "-s", "-D", "-", "-o", "/dev/null", "-w",
                                       "size=%{size_download}", "-H", "Accept-Encoding: " + coding,
                                       url], capture_output=True, text=True, timeout=30).stdout
                size = int(re.search(r"size=(\d+)", head).group(1))
                enc = re.search(r"(?im)^content-encoding:\s*(\S+)", head)
                if enc is None or enc.group(1) != coding or not 0 < size < 50 * 1024:
                    sys.exit("bench: %s did not compress with %s:\n%s" % (name, coding, head))
        else:
            rps, reqs = parse_h2load(out)
            if scenario == "grpc":
                # The calls went through as gRPC: status 200, the message, grpc-status 0 in the
                # trailers (h2load counts only the status).
                frames = subprocess.run(
                    ["nghttp", "-v", "-d", frame, "-H", "content-type: application/grpc", "-H",
                     "te: trailers", grpc_url], capture_output=True, timeout=30).stdout
                if (b":status: 200" not in frames or b"grpc-status: 0" not in frames):
                    sys.exit("bench: %s did not pass the gRPC call through" % name)
        cpu_us = (t1 - t0) / TICK * 1e6 / max(reqs, 1)
        return {"rps": rps, "cpu_us": cpu_us, "reqs": reqs}
    finally:
        proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", default="h2-tls h2c h1-tls handshake grpc gzip br zstd")
    args = ap.parse_args()
    for tool in ("nginx", "h2load", "wrk", "openssl"):
        if not shutil.which(tool):
            sys.exit("bench: %s is missing; run scripts/install-deps --bench" % tool)
    tmp = tempfile.mkdtemp(prefix="citadel-h2bench-")
    cert, key = make_cert(tmp)
    pin = (os.cpu_count() or 1) >= 2
    proxy_cpus, load_cpus = ("0", "1") if pin else (None, None)
    up_port = free_port()
    upstream = start_upstream(tmp, up_port, load_cpus)
    grpc_port, json_port = free_port(), free_port()
    extra = [start_grpc_upstream(tmp, grpc_port, load_cpus),
             start_json_upstream(tmp, json_port, load_cpus)]
    names = ["citadel", "nginx"]
    print("Citadel vs nginx, HTTP/2 and TLS: %ds x %d rounds, interleaved%s" % (
        args.duration, args.rounds, "; proxy on core 0, load and upstream on core 1" if pin else ""))
    try:
        for scenario in args.scenarios.split():
            results = {n: [] for n in names}
            for r in range(args.rounds):
                port = (grpc_port if scenario == "grpc"
                        else json_port if scenario in COMPRESSED else up_port)
                for n in (names if r % 2 == 0 else names[::-1]):
                    results[n].append(run_one(n, scenario, tmp, port, args.duration,
                                              proxy_cpus, load_cpus, cert, key))
            med = {n: {k: statistics.median(x[k] for x in results[n]) for k in ("rps", "cpu_us")}
                   for n in names}
            print()
            print("%s:" % scenario)
            for n in names:
                label = "nginx(gz)" if n == "nginx" and scenario in ("br", "zstd") else n
                print("  %-9s %12.0f req/s %10.2f CPU us/req" % (label, med[n]["rps"],
                                                                  med[n]["cpu_us"]))
            print("  ratio citadel/nginx   throughput %.2fx   CPU/req %.2fx" % (
                med["citadel"]["rps"] / med["nginx"]["rps"],
                med["citadel"]["cpu_us"] / med["nginx"]["cpu_us"]))
    finally:
        upstream.stop()
        for p in extra:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
