"""Endpoints given as DNS names: one endpoint per address, the family policy, and the periodic
refresh following changes without failing a request.

Citadel runs with Debian's nss_wrapper preloaded (libnss-wrapper), which makes getaddrinfo read
the names from a hosts file the test owns and rewrites, so the test controls what the name
resolves to. The addresses are loopback ones (127.0.0.1, 127.0.0.2, ::1), one upstream on each,
all on the same port.
"""
import collections
import http.client
import json
import os
import time

import pytest

from conftest import config_head, wait_until

NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"


def write_hosts(path, addresses):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for a in addresses:
            f.write("%s svc.test\n" % a)
    os.replace(tmp, path)


def dns_env(hosts):
    assert os.path.exists(NSS_WRAPPER), "libnss-wrapper is missing: run scripts/install-deps"
    # A name missing from the file falls through to the real resolver, which nss_wrapper opens
    # with RTLD_DEEPBIND unless told not to (the sanitizer runtimes refuse deep binding).
    env = dict(os.environ, LD_PRELOAD=NSS_WRAPPER, NSS_WRAPPER_HOSTS=hosts,
               NSS_WRAPPER_DISABLE_DEEPBIND="1")
    # ASan wants its runtime first among the preloaded libraries; nss_wrapper comes first here.
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    # TSan reports nss_wrapper's own lock handling (not Citadel's code).
    supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nss_wrapper.tsan.supp")
    env["TSAN_OPTIONS"] = (env.get("TSAN_OPTIONS", "") + ":suppressions=" + supp).lstrip(":")
    return env


def upstreams_on_one_port(upstreams, hosts):
    """One upstream per loopback address in `hosts`, all on the same OS-picked port."""
    for _ in range(20):
        first = upstreams(hosts[0], 0, hosts[0])
        started = [first]
        try:
            for h in hosts[1:]:
                started.append(upstreams(h, first.port, h))
            return first.port, started
        except AssertionError:  # that port is taken on another address: pick another
            for u in started:
                u.kill()
    pytest.fail("no port free on every address")


def config(port, extra=""):
    return config_head(workers=2) + f"""
    clusters:
      - name: app
        lb: round_robin
{extra}
        endpoints:
          - svc.test:{port}
    routes:
      - match: {{ path_prefix: / }}
        to: {{ cluster: app }}
    """


def names(c, n):
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    seen = collections.Counter()
    try:
        for _ in range(n):
            conn.request("GET", "/echo")
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, body
            seen[json.loads(body)["name"]] += 1
    finally:
        conn.close()
    return seen


def endpoints(c):
    status, body = c.admin("GET", "/clusters")
    assert status == 200
    return sorted(e["address"] for e in json.loads(body)["clusters"][0]["endpoints"])


def test_a_name_becomes_one_endpoint_per_address(tmp_path, upstreams, citadel):
    port, _ = upstreams_on_one_port(upstreams, ["127.0.0.1", "127.0.0.2"])
    hosts = str(tmp_path / "hosts")
    write_hosts(hosts, ["127.0.0.2", "127.0.0.1", "::1"])
    c = citadel(config(port), env=dns_env(hosts))
    # IPv4 preferred (the default): the IPv6 address is left out.
    assert endpoints(c) == ["svc.test:%d (127.0.0.1)" % port, "svc.test:%d (127.0.0.2)" % port]
    seen = names(c, 40)
    assert seen == {"127.0.0.1": 20, "127.0.0.2": 20}


@pytest.mark.parametrize("family,expected", [
    ("all", ["127.0.0.1", "::1"]),
    ("v6", ["::1"]),
    ("v4", ["127.0.0.1"]),
])
def test_dns_family_picks_the_addresses(tmp_path, upstreams, citadel, family, expected):
    port, _ = upstreams_on_one_port(upstreams, ["127.0.0.1", "::1"])
    hosts = str(tmp_path / "hosts")
    write_hosts(hosts, ["127.0.0.1", "::1"])
    c = citadel(config(port, "        dns_family: %s" % family), env=dns_env(hosts))
    assert endpoints(c) == sorted("svc.test:%d (%s)" % (port, a) for a in expected)
    seen = names(c, 10 * len(expected))
    assert seen == {a: 10 for a in expected}


def test_dns_refresh_follows_changes_without_failing_a_request(tmp_path, upstreams, citadel):
    port, _ = upstreams_on_one_port(upstreams, ["127.0.0.1", "127.0.0.2"])
    hosts = str(tmp_path / "hosts")
    write_hosts(hosts, ["127.0.0.1"])
    c = citadel(config(port, "        dns_refresh: 100ms"), env=dns_env(hosts))
    assert set(names(c, 10)) == {"127.0.0.1"}
    version = c.metric("citadel_config_version")
    time.sleep(0.5)  # several refreshes with the same answer: nothing is rebuilt
    assert c.metric("citadel_config_version") == version

    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    seen = collections.Counter()

    def one():
        conn.request("GET", "/echo")
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, body
        name = json.loads(body)["name"]
        seen[name] += 1
        return name

    write_hosts(hosts, ["127.0.0.1", "127.0.0.2"])
    wait_until(lambda: one() == "127.0.0.2", timeout=10, what="the added address in rotation")
    write_hosts(hosts, ["127.0.0.2"])

    def only_second():
        return all(one() == "127.0.0.2" for _ in range(10))
    wait_until(only_second, timeout=10, what="the removed address out of rotation")
    conn.close()
    assert c.metric("citadel_config_version") >= version + 2
    assert endpoints(c) == ["svc.test:%d (127.0.0.2)" % port]


def test_a_name_that_stops_resolving_keeps_the_old_addresses(tmp_path, upstreams, citadel):
    port, _ = upstreams_on_one_port(upstreams, ["127.0.0.1"])
    hosts = str(tmp_path / "hosts")
    write_hosts(hosts, ["127.0.0.1"])
    c = citadel(config(port, "        dns_refresh: 100ms"), env=dns_env(hosts))
    write_hosts(hosts, [])
    c.wait_for(r"DNS refresh failed, keeping the old addresses", timeout=10)
    assert names(c, 5) == {"127.0.0.1": 5}
    write_hosts(hosts, ["127.0.0.1"])  # back: still the same cluster
    assert endpoints(c) == ["svc.test:%d (127.0.0.1)" % port]
