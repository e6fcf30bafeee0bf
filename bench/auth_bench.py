#!/usr/bin/env python3
"""Identity and the jwt filter, measured against their own baselines in one run.

Scenarios:
  jwt      proxied GETs/s through a route with the `jwt` filter (an Ed25519 key from a JWKS file,
           one token, so after the first request each worker answers from its verified-token
           cache) against the same route without it; the same request (with its Authorization
           header) for both. Target: at least 0.9x.
  login    logins/s (POST {prefix}/login, the password grant) with the service's default
           Argon2id parameters (19 MiB, 2 passes) against the raw Argon2id verification rate on
           one thread (citadel_micro_bench, BM_Argon2idVerify). Target: at least 0.9x.
  refresh  refresh-token grants/s on the embedded SQLite store: each connection spends its
           token and goes on with the one it got back (wrk with bench/refresh.lua).
           PocketBase: about 6,800/s on 16 vCPU; Keycloak: 120/s per vCPU. Target: 5,000/s.

Citadel runs with one worker on core 0 (its blocking pool and store threads with it); wrk and
the upstream on core 1. Loopback only, OS-picked ports. Ratios are medians over the rounds.
Usage: bench/auth_bench.sh [--duration 6] [--rounds 3] [--scenarios "jwt login refresh"]
"""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (CITADEL, TICK, Proc, cpu_ticks, free_port, parse_wrk,  # noqa: E402
                         start_upstream, wait_port)

HERE = os.path.dirname(os.path.abspath(__file__))
MICRO = os.path.join(os.path.dirname(CITADEL), "citadel_micro_bench")


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def make_token(tmp):
    """An Ed25519 JWKS file and a token it verifies (valid for a day)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    key = Ed25519PrivateKey.generate()
    x = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    path = os.path.join(tmp, "jwks.json")
    with open(path, "w") as f:
        json.dump({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64e(x), "kid": "b1",
                             "alg": "EdDSA"}]}, f)
    now = int(time.time())
    head = b64e(json.dumps({"alg": "EdDSA", "kid": "b1"}).encode())
    body = b64e(json.dumps({"iss": "https://bench", "aud": "api", "sub": "user-1",
                            "iat": now, "exp": now + 86400, "roles": ["a", "b"]}).encode())
    sig = b64e(key.sign((head + "." + body).encode()))
    return path, head + "." + body + "." + sig


def start_citadel(tmp, port, up_port, cpus, scenario, jwks=None, with_filter=True):
    conf = os.path.join(tmp, "citadel-%d.yaml" % port)
    data = os.path.join(tmp, "data-%d" % port)
    filters = ""
    if scenario == "jwt" and with_filter:
        filters = (f"    filters: [ {{ jwt: {{ issuer: https://bench, audiences: [api], "
                   f"jwks_file: {jwks}, forward: {{ sub: X-User-Id }} }} }} ]\n")
    with open(conf, "w") as f:
        f.write(f"""
workers: 1
listeners:
  - name: bench
    address: 127.0.0.1:{port}
    timeouts: {{ keepalive: 300s }}
access_log: off
error_log: {{ level: warn }}
store: {{ data_dir: {data} }}
services:
  identity:
    issuer: http://127.0.0.1:{port}/auth
clusters:
  - name: up
    endpoints: [127.0.0.1:{up_port}]
    pool: {{ max_idle: 1024 }}
routes:
  - match: {{ path_prefix: /auth/ }}
    to: {{ service: identity }}
  - to: {{ cluster: up }}
{filters}""")
    p = Proc([CITADEL, "-c", conf], cpus=cpus)
    wait_port(port)
    return p


def post(port, path, body, ctype="application/json"):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body.encode(),
                                 headers={"Content-Type": ctype}, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def measure(proc, wrk, duration, warmup=None):
    if warmup is None:
        warmup = wrk[:wrk.index("-d") + 1] + ["1s"] + wrk[wrk.index("-d") + 2:]
    subprocess.run(warmup, capture_output=True, text=True, timeout=60)
    pids = proc.pids()
    t0 = cpu_ticks(pids)
    out = subprocess.run(wrk, capture_output=True, text=True, timeout=duration + 60).stdout
    t1 = cpu_ticks(pids)
    rps, reqs, p50, p99, bad, sock = parse_wrk(out)
    return {"rps": rps, "cpu_us": (t1 - t0) / TICK * 1e6 / max(reqs, 1), "p99": p99,
            "bad": bad, "sock": sock}


def run_jwt(tmp, up_port, duration, proxy_cpus, load_cpus, jwks, token, with_filter):
    port = free_port()
    proc = start_citadel(tmp, port, up_port, proxy_cpus, "jwt", jwks, with_filter)
    try:
        wrk = ["wrk", "-t", "1", "-c", "64", "-d", "%ds" % duration, "--latency", "-H",
               "Authorization: Bearer " + token, "http://127.0.0.1:%d/api/x" % port]
        return measure(proc, (["taskset", "-c", load_cpus] if load_cpus else []) + wrk, duration)
    finally:
        proc.stop()


def run_identity(tmp, up_port, duration, proxy_cpus, load_cpus, scenario):
    port = free_port()
    proc = start_citadel(tmp, port, up_port, proxy_cpus, scenario)
    pin = ["taskset", "-c", load_cpus] if load_cpus else []
    try:
        creds = json.dumps({"email": "bench@example.com", "password": "correct horse battery"})
        post(port, "/auth/signup", creds)
        if scenario == "login":
            lua = os.path.join(tmp, "login.lua")
            with open(lua, "w") as f:
                f.write('wrk.method = "POST"\nwrk.body = %s\n'
                        'wrk.headers["Content-Type"] = "application/json"\n' % json.dumps(creds))
            # Argon2id is the work: a few connections keep the pool busy.
            wrk = pin + ["wrk", "-t", "1", "-c", "2", "-d", "%ds" % duration, "--latency",
                         "-s", lua, "http://127.0.0.1:%d/auth/login" % port]
            return measure(proc, wrk, duration)
        conns = 32
        # Each run spends its tokens and keeps their successors to itself: the warm-up and the
        # measurement get a set each.
        files = []
        for run in ("warmup", "measure"):
            files.append(os.path.join(tmp, "tokens-%d-%s" % (port, run)))
            with open(files[-1], "w") as f:
                # wrk asks its script for one request more than it sends at the start: spares.
                for _ in range(conns + 4):
                    f.write(post(port, "/auth/login", creds)["refresh_token"] + "\n")

        def wrk(seconds, tokens):
            return pin + ["wrk", "-t", "1", "-c", str(conns), "-d", "%ds" % seconds, "--latency",
                          "-s", os.path.join(HERE, "refresh.lua"),
                          "http://127.0.0.1:%d/auth/token" % port, "--", tokens]
        return measure(proc, wrk(duration, files[1]), duration, warmup=wrk(1, files[0]))
    finally:
        proc.stop()


def argon2_rate(cpus):
    argv = [MICRO, "--benchmark_filter=Argon2idVerify", "--benchmark_format=json",
            "--benchmark_min_time=2"]
    if cpus is not None:
        argv = ["taskset", "-c", cpus] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    b = json.loads(out)["benchmarks"][0]
    return b["items_per_second"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scenarios", default="jwt login refresh")
    args = ap.parse_args()
    ncpu = os.cpu_count() or 1
    proxy_cpus, load_cpus = ("0", "1") if ncpu >= 2 else (None, None)
    tmp = tempfile.mkdtemp(prefix="citadel-auth-bench-")
    up_port = free_port()
    upstream = start_upstream(tmp, up_port, load_cpus)
    scenarios = args.scenarios.split()
    try:
        if "jwt" in scenarios:
            jwks, token = make_token(tmp)
            rows = {"jwt": [], "none": []}
            for _ in range(args.rounds):
                for name, flt in (("jwt", True), ("none", False)):
                    rows[name].append(run_jwt(tmp, up_port, args.duration, proxy_cpus,
                                              load_cpus, jwks, token, flt))
            for name in rows:
                r = rows[name]
                print("jwt %-5s %10.0f req/s  %6.1f us CPU/req  p99 %.2f ms  non-2xx %d" % (
                    name, statistics.median(x["rps"] for x in r),
                    statistics.median(x["cpu_us"] for x in r),
                    statistics.median(x["p99"] for x in r), sum(x["bad"] for x in r)))
            ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(rows["jwt"],
                                                                          rows["none"]))
            cpu = statistics.median(a["cpu_us"] / b["cpu_us"] for a, b in zip(rows["jwt"],
                                                                              rows["none"]))
            print("jwt/none: throughput %.2fx, CPU per request %.2fx (target >= 0.9x)" % (
                ratio, cpu))
        if "login" in scenarios:
            ratios = []
            for _ in range(args.rounds):
                raw = argon2_rate(proxy_cpus)
                r = run_identity(tmp, up_port, args.duration, proxy_cpus, load_cpus, "login")
                ratios.append(r["rps"] / raw)
                print("login %8.1f logins/s (non-2xx %d)  raw Argon2id %8.1f/s  ratio %.2fx" % (
                    r["rps"], r["bad"], raw, r["rps"] / raw))
            print("login/raw Argon2id: %.2fx (target >= 0.9x)" % statistics.median(ratios))
        if "refresh" in scenarios:
            rates = []
            for _ in range(args.rounds):
                r = run_identity(tmp, up_port, args.duration, proxy_cpus, load_cpus, "refresh")
                rates.append(r["rps"])
                print("refresh %8.0f grants/s on one core (SQLite), non-2xx %d, p99 %.2f ms, "
                      "%.1f us CPU/grant" % (r["rps"], r["bad"], r["p99"], r["cpu_us"]))
            print("refresh: median %.0f/s per core (target >= 5000/s)" % statistics.median(rates))
    finally:
        upstream.stop()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
