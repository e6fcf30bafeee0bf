"""Every YAML example in docs/configuration.md and examples/ is a valid config."""
import glob
import os
import re
import shutil
import subprocess

from conftest import CITADEL, ROOT


def examples():
    text = open(os.path.join(ROOT, "docs", "configuration.md")).read()
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_configuration_reference_examples_validate(tmp_path):
    # The TLS examples name cert.pem, key.pem and ca.pem beside the config: make them.
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
                    "-days", "2", "-subj", "/CN=localhost"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=30)
    (tmp_path / "ca.pem").write_bytes((tmp_path / "cert.pem").read_bytes())
    blocks = examples()
    assert len(blocks) >= 5
    for i, block in enumerate(blocks):
        path = tmp_path / ("example%d.yaml" % i)
        path.write_text(block)
        r = subprocess.run([CITADEL, "validate", "-c", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, "docs example %d:\n%s\n%s" % (i, block, r.stderr)


def test_shipped_examples_validate(tmp_path):
    # A copy, with the certificate scripts/quickstart makes before it starts Citadel.
    shutil.copytree(os.path.join(ROOT, "examples"), tmp_path / "examples",
                    ignore=shutil.ignore_patterns("certs", "data"))
    certs = tmp_path / "examples" / "quickstart" / "certs"
    certs.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "key.pem", "-out", "cert.pem",
                    "-days", "2", "-subj", "/CN=localhost"], cwd=certs, check=True,
                   capture_output=True, timeout=30)
    files = glob.glob(str(tmp_path / "examples" / "**" / "*.yaml"), recursive=True)
    assert files
    for f in files:
        r = subprocess.run([CITADEL, "validate", "-c", f], capture_output=True, text=True)
        assert r.returncode == 0, "%s:\n%s" % (f, r.stderr)


def test_identity_walk_through_runs_step_by_step(citadel, tmp_path):
    """docs/identity.md: its configuration, then every shell step of its walk-through, in order,
    with the output the text promises."""
    from conftest import free_port
    text = open(os.path.join(ROOT, "docs", "identity.md")).read()
    config = re.findall(r"```yaml\n(.*?)```", text, re.S)[0]
    walk = text[text.index("## Walk-through"):]
    steps = re.findall(r"```sh\n(.*?)```", walk, re.S)
    assert len(steps) >= 7
    port = free_port()
    c = citadel(config.replace("8080", str(port)))
    script = ["set -euo pipefail"]
    for step in steps:
        for line in step.replace("8080", str(port)).splitlines():
            if not line.startswith("citadel -c"):  # the test started it
                script.append(line)
    r = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    # The JSON answers end without a newline: the first line holds sign-up, userinfo and the
    # session count, then the lines of step 5 and the revocation's {}.
    out = r.stdout.splitlines()
    assert out[0].startswith('{"id":') and '"email":"ada@example.com"}{"sub":' in out[0]
    assert out[0].endswith("}1")  # one session
    assert out[1:] == ["invalid_grant", "401", "{}"]
    assert c.proc.poll() is None
