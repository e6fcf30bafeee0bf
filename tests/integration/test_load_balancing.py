"""Load-balancing distribution through the real binary."""
import collections
import http.client
import json

from conftest import config_head


def cfg(policy, endpoints, extra=""):
    eps = "\n".join("          - %s" % e for e in endpoints)
    return config_head(workers=1) + f"""
    clusters:
      - name: app
        lb: {policy}
{extra}
        endpoints:
{eps}
    routes:
      - match: {{ path_prefix: / }}
        to: {{ cluster: app }}
    """


def names(c, n, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    seen = collections.Counter()
    for _ in range(n):
        conn.request("GET", "/echo", headers=headers or {})
        r = conn.getresponse()
        seen[json.loads(r.read())["name"]] += 1
    conn.close()
    return seen


def test_round_robin_spreads_evenly(upstreams, citadel):
    ups = [upstreams(n) for n in "abc"]
    c = citadel(cfg("round_robin", [u.address for u in ups]))
    seen = names(c, 300)
    assert set(seen) == {"a", "b", "c"}
    assert all(v == 100 for v in seen.values()), seen


def test_weighted_follows_weights(upstreams, citadel):
    a, b = upstreams("a"), upstreams("b")
    eps = ["{ address: %s, weight: 3 }" % a.address, "{ address: %s, weight: 1 }" % b.address]
    c = citadel(cfg("weighted", eps))
    seen = names(c, 400)
    assert seen["a"] == 300 and seen["b"] == 100, seen


def test_least_request_uses_every_endpoint(upstreams, citadel):
    ups = [upstreams(n) for n in "ab"]
    c = citadel(cfg("least_request", [u.address for u in ups]))
    seen = names(c, 200)
    assert seen["a"] > 40 and seen["b"] > 40, seen


def test_consistent_hash_is_sticky_by_header(upstreams, citadel):
    ups = [upstreams(n) for n in "abcd"]
    c = citadel(cfg("consistent_hash", [u.address for u in ups],
                    extra="        hash: { header: X-User }"))
    owners = {}
    for user in range(40):
        seen = names(c, 5, headers={"X-User": "user-%d" % user})
        assert len(seen) == 1, seen  # every request of one user reaches one endpoint
        owners[user] = next(iter(seen))
    assert len(set(owners.values())) >= 3  # and users spread over the endpoints
