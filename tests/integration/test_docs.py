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
                    ignore=shutil.ignore_patterns("certs"))
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
