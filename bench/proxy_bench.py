#!/usr/bin/env python3
"""Runs Citadel, nginx and haproxy as reverse proxies in front of one shared upstream (nginx
returning a fixed 100-byte body), each under wrk with 64 connections, in interleaved rounds.
nginx and haproxy are configured to add the forwarding headers Citadel always adds
(X-Forwarded-For/-Proto/-Host, Via, X-Request-Id, traceparent), so that each contender does the
same work and the upstream parses the same request.

For each contender and worker count it prints requests/s, p50 and p99 latency, the proxy's own
CPU time per request (user+sys from /proc divided by requests served), and the ratios against
nginx and haproxy (medians over the rounds). It then measures memory per idle keep-alive
connection with 10,000 connections (Citadel against nginx).

With one worker, the proxy under test runs on core 0 and wrk plus the upstream on core 1, for
every contender alike. Everything listens on 127.0.0.1 with ports picked by the OS.
"""
import argparse
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CITADEL = os.path.join(ROOT, "build", "release", "citadel")
BODY = "x" * 99 + "\n"  # 100 bytes
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def children(pid):
    out = [pid]
    try:
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        for k in kids.split():
            out.extend(children(int(k)))
    except OSError:
        pass
    return out


def sum_proc(pids, name, value):
    """Sums value(text of /proc/<pid>/<name>) over `pids`, skipping processes that are gone."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/%s" % (pid, name)) as f:
                total += value(f.read())
        except OSError:
            pass
    return total


def cpu_ticks(pids):
    def utime_stime(stat):
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    return sum_proc(pids, "stat", utime_stime)


def rss_kb(pids):
    def vmrss(status):
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
    return sum_proc(pids, "status", vmrss)


class Proc:
    def __init__(self, argv, cpus=None, cwd=None, env=None):
        if cpus is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", cpus] + argv
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)

    def pids(self):
        return children(self.p.pid)

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


# nginx's location body for proxying to the `up` upstream with the forwarding headers Citadel
# always adds, so that the upstream parses the same request from every contender (nginx has no
# W3C trace context: a fixed span id stands in). Shared by the HTTP/2 benchmark.
NGINX_PROXYING = """      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header Via "1.1 nginx";
      proxy_set_header X-Request-Id $request_id;
      proxy_set_header traceparent "00-$request_id-00f067aa0ba902b7-01";
"""


def nginx_conf(tmp, name, body):
    path = os.path.join(tmp, name + ".conf")
    with open(path, "w") as f:
        f.write(body)
    return path


def start_upstream(tmp, port, cpus):
    conf = nginx_conf(tmp, "upstream", f"""
worker_processes 1;
daemon off;
pid {tmp}/upstream.pid;
error_log {tmp}/upstream.err warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{ default_type text/plain; return 200 "{BODY.strip()}\\n"; }}
  }}
}}
""")
    p = Proc(["nginx", "-c", conf, "-p", tmp, "-e", tmp + "/upstream.err"], cpus=cpus)
    wait_port(port)
    return p


def start_citadel(tmp, port, up_port, workers, cpus, env=None, binary=None):
    conf = os.path.join(tmp, "citadel-%d.yaml" % port)
    with open(conf, "w") as f:
        f.write(f"""
workers: {workers}
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    timeouts: {{ keepalive: 300s }}
access_log: off
error_log: {{ level: warn }}
clusters:
  - name: up
    endpoints: [127.0.0.1:{up_port}]
    pool: {{ max_idle: 1024 }}
routes:
  - match: {{ path_prefix: / }}
    to: {{ cluster: up }}
""")
    p = Proc([binary or CITADEL, "-c", conf], cpus=cpus, env=env)
    wait_port(port)
    return p


def start_nginx(tmp, port, up_port, workers, cpus, env=None):
    conf = nginx_conf(tmp, "proxy", f"""
worker_processes {workers};
worker_rlimit_nofile 40000;
daemon off;
pid {tmp}/proxy.pid;
error_log {tmp}/proxy.err warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream up {{ server 127.0.0.1:{up_port}; keepalive 1024; }}
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location / {{
{NGINX_PROXYING}    }}
  }}
}}
""")
    p = Proc(["nginx", "-c", conf, "-p", tmp, "-e", tmp + "/proxy.err"], cpus=cpus, env=env)
    wait_port(port)
    return p


def start_haproxy(tmp, port, up_port, workers, cpus, env=None):
    conf = os.path.join(tmp, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""
global
  nbthread {workers}
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option http-keep-alive
frontend bench
  bind 127.0.0.1:{port}
  default_backend up
backend up
  http-reuse always
  # The forwarding headers Citadel always adds, so that the upstream parses the same request
  # from every contender.
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Via "1.1 haproxy"
  http-request set-header X-Request-Id %[uuid,regsub(-,,g)]
  http-request set-header traceparent 00-%[uuid,regsub(-,,g)]-%[rand,hex]%[rand,hex]-01
  server s1 127.0.0.1:{up_port}
""")
    p = Proc(["haproxy", "-f", conf], cpus=cpus, env=env)
    wait_port(port)
    return p


STARTERS = {"citadel": start_citadel, "nginx": start_nginx, "haproxy": start_haproxy}


def parse_wrk(out):
    def dur(s):
        m = re.match(r"([\d.]+)(us|ms|s|m|h)$", s)
        if not m:
            raise ValueError("cannot read wrk's duration %r in:\n%s" % (s, out))
        v = float(m.group(1))
        return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}[m.group(2)]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = dur(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))
    p99 = dur(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return rps, reqs, p50, p99, (int(errors.group(1)) if errors else 0), (sock.group(1) if sock else "")


def run_one(name, tmp, up_port, workers, duration, proxy_cpus, load_cpus, clients):
    port = free_port()
    proc = STARTERS[name](tmp, port, up_port, workers, proxy_cpus)
    try:
        wrk = ["wrk", "-t", str(max(1, workers)), "-c", str(clients), "-d", "1s", "--latency",
               "http://127.0.0.1:%d/" % port]
        if load_cpus is not None:
            wrk = ["taskset", "-c", load_cpus] + wrk
        subprocess.run(wrk, capture_output=True, text=True, timeout=60)  # warm-up
        pids = proc.pids()
        t0 = cpu_ticks(pids)
        wrk[wrk.index("1s")] = "%ds" % duration
        out = subprocess.run(wrk, capture_output=True, text=True, timeout=duration + 60).stdout
        t1 = cpu_ticks(pids)
        rps, reqs, p50, p99, bad, sock = parse_wrk(out)
        cpu_us = (t1 - t0) / TICK * 1e6 / max(reqs, 1)
        return {"rps": rps, "p50": p50, "p99": p99, "cpu_us": cpu_us, "bad": bad, "sock": sock}
    finally:
        proc.stop()


def idle_memory(name, tmp, up_port, conns):
    port = free_port()
    proc = STARTERS[name](tmp, port, up_port, 1, None)
    socks = []
    try:
        time.sleep(0.3)
        # One warm request so that lazy start-up allocations are not counted per connection.
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        s.recv(4096)
        s.close()
        time.sleep(0.2)
        before = rss_kb(proc.pids())
        req = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n"
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(req)
            got = b""
            while b"\r\n\r\n" not in got or not got.endswith(b"\n"):
                got += s.recv(4096)
            socks.append(s)
        time.sleep(1.0)
        after = rss_kb(proc.pids())
        return (after - before) * 1024 / conns
    finally:
        for s in socks:
            s.close()
        proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1 2")
    ap.add_argument("--clients", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--conns", type=int, default=10000,
                    help="idle connections for the memory measurement (0 skips it)")
    ap.add_argument("--quick", action="store_true", help="3 s runs, one round (a smoke test)")
    ap.add_argument("--baseline", metavar="BIN",
                    help="another Citadel binary (an earlier build) run as a fourth contender, "
                         "for before/after ratios of a change on the request path")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 3, 1
    for tool in ("nginx", "haproxy", "wrk"):
        if not shutil.which(tool):
            sys.exit("bench: %s is missing; run scripts/install-deps --bench" % tool)
    if not os.path.exists(CITADEL):
        sys.exit("bench: %s is missing; run make build" % CITADEL)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ncpu = os.cpu_count() or 1
    tmp = tempfile.mkdtemp(prefix="citadel-bench-")
    up_port = free_port()
    names = ["citadel", "nginx", "haproxy"]
    if args.baseline:
        STARTERS["baseline"] = lambda *a, **kw: start_citadel(*a, binary=args.baseline, **kw)
        names.append("baseline")
    print("Citadel vs nginx vs haproxy: wrk -c%d, %ds x %d rounds, interleaved; upstream: nginx, "
          "100-byte body" % (args.clients, args.duration, args.rounds))
    for workers in [int(w) for w in args.workers.split()]:
        pin = workers == 1 and ncpu >= 2
        proxy_cpus, load_cpus = ("0", "1") if pin else (None, None)
        upstream = start_upstream(tmp, up_port, load_cpus)
        try:
            results = {n: [] for n in names}
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for n in order:
                    results[n].append(run_one(n, tmp, up_port, workers, args.duration,
                                              proxy_cpus, load_cpus, args.clients))
        finally:
            upstream.stop()
        med = {n: {k: statistics.median(x[k] for x in results[n])
                   for k in ("rps", "p50", "p99", "cpu_us")} for n in names}
        print()
        print("workers=%d%s" % (workers, " (proxy on core 0; wrk and upstream on core 1)" if pin else ""))
        print("%-8s %12s %10s %10s %14s %8s" % ("proxy", "requests/s", "p50 ms", "p99 ms",
                                              "CPU us/req", "errors"))
        for n in names:
            bad = sum(x["bad"] for x in results[n])
            sock = "; ".join(sorted({x["sock"] for x in results[n] if x["sock"]}))
            print("%-8s %12.0f %10.3f %10.3f %14.2f %8d %s" % (
                n, med[n]["rps"], med[n]["p50"], med[n]["p99"], med[n]["cpu_us"], bad, sock))
        for other in [n for n in names if n != "citadel"]:
            print("ratio citadel/%-8s throughput %.2fx   CPU/req %.2fx   p99 %.2fx" % (
                other, med["citadel"]["rps"] / med[other]["rps"],
                med["citadel"]["cpu_us"] / med[other]["cpu_us"],
                med["citadel"]["p99"] / med[other]["p99"]))
    if args.conns > 0:
        upstream = start_upstream(tmp, up_port, None)
        try:
            c = idle_memory("citadel", tmp, up_port, args.conns)
            n = idle_memory("nginx", tmp, up_port, args.conns)
        finally:
            upstream.stop()
        print()
        print("idle keep-alive memory, %d connections: citadel %.0f B/conn, nginx %.0f B/conn, "
              "ratio %.2fx" % (args.conns, c, n, c / n if n > 0 else float("nan")))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
