"""The admin listener: metrics, health, readiness, effective config, clusters."""
import json
import re

from conftest import config_head


def cfg(up):
    return config_head(workers=2) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}, {{ address: {up.address}, weight: 3 }}]
        health_check: {{ path: /health, interval: 1s }}
    routes:
      - name: api
        match: {{ path_prefix: /api/ }}
        rewrite: {{ strip_prefix: /api }}
        to: {{ cluster: app }}
      - name: home
        match: {{ path_prefix: / }}
        filters:
          - headers: {{ request: {{ set: {{ X-Api-Token: "s3cr3t-value" }} }} }}
        to: {{ respond: {{ status: 200, body: "home\\n" }} }}
    """


def test_metrics_count_requests_by_route_and_class(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    for _ in range(5):
        assert c.request("GET", "/api/x")[0] == 200
    for _ in range(3):
        assert c.request("GET", "/api/status/404")[0] == 404
    c.request("GET", "/")
    _, text = c.admin("GET", "/metrics")
    assert 'citadel_requests_total{route="api",class="2xx"} 5' in text
    assert 'citadel_requests_total{route="api",class="4xx"} 3' in text
    assert 'citadel_requests_total{route="home",class="2xx"} 1' in text
    assert 'citadel_upstream_requests_total{cluster="app",class="2xx"} 5' in text
    assert re.search(r'citadel_request_duration_seconds_count\{route="api"\} 8', text)
    assert re.search(r'citadel_upstream_latency_seconds_bucket\{cluster="app",le="\+Inf"\} 8', text)
    assert 'citadel_endpoint_healthy{cluster="app",endpoint="%s"} 1' % up.address in text
    assert re.search(r'citadel_build_info\{version="[^"]+",revision="[^"]+"\} 1', text)
    assert "citadel_downstream_connections_total 9" in text
    assert "citadel_config_version 1" in text
    assert "citadel_ready 1" in text
    # Every sample line is name{labels} value.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^[a-z_]+(\{[^}]*\})? -?[0-9.e+]+$', line), line


def test_health_ready_config_clusters(upstreams, citadel):
    up = upstreams("a")
    c = citadel(cfg(up))
    assert c.admin("GET", "/healthz") == (200, "ok\n")
    assert c.admin("GET", "/readyz")[0] == 200
    status, text = c.admin("GET", "/config")
    assert status == 200
    conf = json.loads(text)
    assert conf["version"] == 1 and conf["workers"] == 2
    assert conf["listeners"][0]["name"] == "public"
    assert conf["config"]["routes"][0]["name"] == "api"
    # Secrets are redacted: a header whose name says token.
    assert "s3cr3t-value" not in text and "[redacted]" in text
    status, text = c.admin("GET", "/clusters")
    eps = json.loads(text)["clusters"][0]["endpoints"]
    assert [e["weight"] for e in eps] == [1, 3]
    assert all(e["healthy"] and not e["ejected"] for e in eps)
    assert c.admin("GET", "/nope")[0] == 404
    assert c.admin("GET", "/config/reload")[0] == 405
