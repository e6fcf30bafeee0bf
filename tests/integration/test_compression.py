"""The compress filter: gzip, brotli and zstd chosen from Accept-Encoding, streamed over chunked
upstream responses, and the responses it must leave alone. Decoded with Python's zlib and the
Debian packages python3-brotli and python3-zstandard."""
import gzip
import socket
from urllib.parse import quote

import brotli
import pytest
import zstandard

from conftest import config_head, read_until_close

DECODE = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
}


def cfg(up, options="{}"):
    return config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - filters: [ {{ compress: {options} }} ]
        to: {{ cluster: app }}
    """


def get(port, path, accept=None, method="GET"):
    """One request; the response's status, fields (lower-case names) and decoded body
    (chunked framing undone)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        req = "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" % (method, path)
        if accept is not None:
            req += "Accept-Encoding: %s\r\n" % accept
        s.sendall((req + "\r\n").encode())
        raw = read_until_close(s, 10)
    finally:
        s.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        fields[k.strip().lower()] = v.strip()
    if fields.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2:]
        body = out
    return status, fields, body


def h(*pairs):
    return "".join("&h=" + quote(p) for p in pairs)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_each_encoding_round_trips_over_a_chunked_upstream(upstreams, citadel, encoding):
    up = upstreams("app")
    c = citadel(cfg(up))
    path = "/chunked?n=64&size=1000" + h("Content-Type:application/json")
    status, fields, body = get(c.port, path, accept=encoding)
    assert status == 200
    assert fields["content-encoding"] == encoding
    assert fields["vary"] == "Accept-Encoding"
    assert "content-length" not in fields
    plain = DECODE[encoding](body)
    assert plain == b"x" * 64000
    assert len(body) < 2000  # it did compress


def test_a_known_length_body_is_compressed_too_and_its_length_dropped(upstreams, citadel):
    up = upstreams("app")
    c = citadel(cfg(up))
    status, fields, body = get(c.port, "/bytes?n=300000" + h("Content-Type:text/plain",
                                                              'ETag:"v1"'), accept="gzip")
    assert fields["content-encoding"] == "gzip" and "content-length" not in fields
    assert gzip.decompress(body) == b"y" * 300000
    assert fields["etag"] == 'W/"v1"'  # the bytes differ: a strong validator would lie


def test_q_values_and_the_servers_preference(upstreams, citadel):
    up = upstreams("app")
    c = citadel(cfg(up, "{ encodings: [gzip, br] }"))
    path = "/chunked?n=4&size=1000" + h("Content-Type:text/html; charset=utf-8")
    assert get(c.port, path, accept="gzip, br")[1]["content-encoding"] == "gzip"  # tie: ours
    assert get(c.port, path, accept="gzip;q=0.5, br")[1]["content-encoding"] == "br"
    assert get(c.port, path, accept="zstd")[1].get("content-encoding") is None  # not offered
    assert get(c.port, path, accept="gzip;q=0, br;q=0")[1].get("content-encoding") is None


@pytest.mark.parametrize("what,path", [
    ("no Accept-Encoding", "/chunked?n=4&size=1000" + h("Content-Type:text/plain")),
    ("below min_length", "/bytes?n=500" + h("Content-Type:text/plain")),
    ("not a listed type", "/bytes?n=5000" + h("Content-Type:image/png")),
    ("no-transform", "/bytes?n=5000" + h("Content-Type:text/plain",
                                          "Cache-Control:public, no-transform")),
    ("already encoded", "/bytes?n=5000" + h("Content-Type:text/plain", "Content-Encoding:br")),
    ("trailers announced", "/bytes?n=5000" + h("Content-Type:text/plain", "Trailer:X-Sum")),
])
def test_what_is_left_alone(upstreams, citadel, what, path):
    up = upstreams("app")
    c = citadel(cfg(up))
    accept = None if what == "no Accept-Encoding" else "gzip, br, zstd"
    status, fields, body = get(c.port, path, accept=accept)
    assert status == 200, what
    if what == "already encoded":
        assert fields["content-encoding"] == "br"  # the upstream's own, untouched
    else:
        assert "content-encoding" not in fields, what
    # A compressible type varies by Accept-Encoding whether or not this answer was compressed.
    if what in ("no Accept-Encoding", "no-transform", "already encoded"):
        assert fields["vary"] == "Accept-Encoding", what


def test_head_is_not_compressed_and_an_existing_vary_is_extended(upstreams, citadel):
    up = upstreams("app")
    c = citadel(cfg(up))
    path = "/bytes?n=5000" + h("Content-Type:text/plain", "Vary:Origin")
    status, fields, _ = get(c.port, path, accept="gzip", method="HEAD")
    assert status == 200 and "content-encoding" not in fields
    status, fields, body = get(c.port, path, accept="gzip")
    assert fields["vary"] == "Origin, Accept-Encoding"
    assert gzip.decompress(body) == b"y" * 5000


def test_bad_options_are_refused(tmp_path):
    import subprocess
    from conftest import CITADEL
    p = tmp_path / "c.yaml"
    p.write_text("listeners: [{ name: p, address: \"127.0.0.1:0\" }]\n"
                 "routes:\n"
                 "  - filters: [ { compress: { encodings: [deflate], levels: { gzip: 12 },\n"
                 "                             types: [html] } } ]\n"
                 "    to: { respond: { status: 200 } }\n")
    r = subprocess.run([CITADEL, "validate", "-c", str(p)], capture_output=True, text=True)
    assert r.returncode != 0
    assert 'unknown encoding "deflate"' in r.stderr
    assert "levels.gzip" in r.stderr
    assert 'expected media types such as text/html or text/*, got "html"' in r.stderr


# --- request decompression ----------------------------------------------------------------------

ENCODE = {
    "gzip": gzip.compress,
    "br": brotli.compress,
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


def dcfg(up, options="{}"):
    return config_head(workers=1) + f"""
    clusters:
      - name: app
        endpoints: [{up.address}]
    routes:
      - filters: [ {{ decompress: {options} }} ]
        to: {{ cluster: app }}
    """


def post(port, body, encoding, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = ("POST /sink HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                "Content-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (encoding, len(body)))
        s.sendall(head.encode())
        try:
            s.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body went: the answer is still there
        return read_until_close(s, timeout)
    finally:
        s.close()


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_request_bodies_reach_the_upstream_decoded(upstreams, citadel, encoding):
    up = upstreams("app")
    c = citadel(dcfg(up))
    plain = b"".join(b"line %d of a json log\n" % i for i in range(20000))
    out = post(c.port, ENCODE[encoding](plain), encoding)
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]
    assert b'"received": %d' % len(plain) in out


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_a_decompression_bomb_gets_413_with_bounded_memory(upstreams, citadel, encoding):
    up = upstreams("app")
    c = citadel(dcfg(up, "{ max_size: 4MiB }"))
    base = c.rss_kb()
    bomb = ENCODE[encoding](b"\0" * (256 << 20))  # 256 MiB of zeros in a few hundred KiB
    out = post(c.port, bomb, encoding)
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    assert (c.rss_kb() - base) / 1024 < 32


def test_a_high_ratio_below_the_size_limit_is_refused_too(upstreams, citadel):
    up = upstreams("app")
    c = citadel(dcfg(up, "{ max_size: 100MiB, max_ratio: 20 }"))
    out = post(c.port, gzip.compress(b"a" * (8 << 20)), "gzip")
    assert out.startswith(b"HTTP/1.1 413 "), out[:200]
    # Small and repetitive is fine (the first 64 KiB are always allowed).
    out = post(c.port, gzip.compress(b"a" * 60000), "gzip")
    assert out.startswith(b"HTTP/1.1 200 "), out[:200]


def test_invalid_or_unknown_encodings(upstreams, citadel):
    up = upstreams("app")
    c = citadel(dcfg(up))
    assert post(c.port, b"not gzip at all", "gzip").startswith(b"HTTP/1.1 400 ")
    assert post(c.port, gzip.compress(b"x" * 1000)[:-10], "gzip").startswith(b"HTTP/1.1 400 ")
    # An unknown coding goes to the upstream as it is.
    out = post(c.port, b"opaque", "compress")
    assert out.startswith(b"HTTP/1.1 200 ") and b'"received": 6' in out


def test_several_accept_encoding_lines_are_one_list(upstreams, citadel):
    # From an outside attack: only the first line was read (gzip chosen over the preferred br).
    up = upstreams("app")
    c = citadel(cfg(up, "{ encodings: [br, gzip] }"))
    s = socket.create_connection(("127.0.0.1", c.port), timeout=10)
    try:
        path = "/bytes?n=5000" + h("Content-Type:text/plain")
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAccept-Encoding: gzip\r\n"
                   "Accept-Encoding: br\r\n\r\n" % path).encode())
        raw = read_until_close(s, 10)
    finally:
        s.close()
    assert b"\r\nContent-Encoding: br\r\n" in raw.split(b"\r\n\r\n")[0] + b"\r\n", raw[:300]
