#!/usr/bin/env python3
"""Counts system calls and heap allocations per proxied request for Citadel, nginx and haproxy,
in the setup of bench/proxy_bench.py (one worker on core 0, wrk -c64 and the upstream on core 1,
the same forwarding headers added by each contender).

Allocations: each proxy runs with build/release/libcitadel_alloc_count.so preloaded, which counts
every malloc-family call of every process of the proxy into one shared counter; the counter is
read before and after a wrk run and the difference divided by the requests wrk completed.
System calls: `strace -c -f` is attached to every process of the proxy during a second wrk run;
its per-syscall counts are divided by the requests completed in that run (strace slows the proxy
down, which changes the rate but not the work per request).

Usage: bench/per_request.py [--duration 5]
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import proxy_bench as pb  # noqa: E402

ALLOC_LIB = os.path.join(pb.ROOT, "build", "release", "libcitadel_alloc_count.so")


def wrk(port, duration, load_cpus):
    argv = ["taskset", "-c", load_cpus, "wrk", "-t", "1", "-c", "64", "-d", "%ds" % duration,
            "--latency", "http://127.0.0.1:%d/" % port]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    rps, reqs, p50, p99, bad, sock = pb.parse_wrk(out)
    if bad:
        raise RuntimeError("wrk saw %d bad responses" % bad)
    return reqs


def read_counter(path):
    with open(path, "rb") as f:
        data = f.read(8)
    return int.from_bytes(data, sys.byteorder) if len(data) == 8 else 0


def strace_counts(pids, port, duration, load_cpus):
    argv = ["strace", "-c", "-f", "-U", "calls,name"]
    for pid in pids:
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let strace attach to every thread
    try:
        reqs = wrk(port, duration, load_cpus)
    finally:
        tracer.send_signal(signal.SIGINT)
        err = tracer.communicate(timeout=30)[1]
    calls = {}
    for line in err.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1] != "total":
            calls[parts[1]] = int(parts[0])
    return calls, reqs


def measure(name, tmp, up_port, duration):
    counter = os.path.join(tmp, name + ".allocs")
    env = dict(os.environ, LD_PRELOAD=ALLOC_LIB, CITADEL_ALLOC_COUNT_FILE=counter)
    port = pb.free_port()
    proc = pb.STARTERS[name](tmp, port, up_port, 1, "0", env=env)
    try:
        wrk(port, 1, "1")  # warm-up: pools, upstream connections
        before = read_counter(counter)
        reqs = wrk(port, duration, "1")
        allocs = (read_counter(counter) - before) / max(reqs, 1)
        calls, sreqs = strace_counts(proc.pids(), port, duration, "1")
        per = {k: v / max(sreqs, 1) for k, v in calls.items()}
        return allocs, per
    finally:
        proc.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()
    for tool in ("nginx", "haproxy", "wrk", "strace", "taskset"):
        if not shutil.which(tool):
            sys.exit("bench: %s is missing; run scripts/install-deps --bench" % tool)
    for path in (pb.CITADEL, ALLOC_LIB):
        if not os.path.exists(path):
            sys.exit("bench: %s is missing; run make build" % path)
    tmp = tempfile.mkdtemp(prefix="citadel-per-request-")
    up_port = pb.free_port()
    upstream = pb.start_upstream(tmp, up_port, "1")
    names = ["citadel", "nginx", "haproxy"]
    results = {}
    try:
        for n in names:
            results[n] = measure(n, tmp, up_port, args.duration)
    finally:
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("Per proxied request, one worker, wrk -c64 (strace -c for system calls, a preloaded "
          "counter for malloc-family calls)")
    print("%-8s %12s %12s   %s" % ("proxy", "allocations", "syscalls", "syscalls by name (>= 0.01)"))
    for n in names:
        allocs, per = results[n]
        detail = ", ".join("%s %.2f" % (k, v) for k, v in sorted(per.items(), key=lambda kv: -kv[1])
                           if v >= 0.01)
        print("%-8s %12.2f %12.2f   %s" % (n, allocs, sum(per.values()), detail))


if __name__ == "__main__":
    main()
