"""scripts/check-layers: the include-order check that `make test` runs on src/."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "scripts", "check-layers")


def run(src):
    return subprocess.run(["/usr/bin/python3", CHECK, "--src", str(src)], capture_output=True,
                          text=True)


def write(tmp_path, rel, text):
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_the_tree_follows_the_layering():
    r = run(os.path.join(ROOT, "src"))
    assert r.returncode == 0, r.stdout


def test_a_filter_including_proxy_is_refused_with_file_and_line(tmp_path):
    write(tmp_path, "filters/x/x.cc", '#include <string>\n#include "proxy/router.h"\n')
    write(tmp_path, "http/pipeline/filter.h", '#include "http/message.h"\n')
    r = run(tmp_path)
    assert r.returncode == 1
    assert "src/filters/x/x.cc:2: filters includes proxy/router.h" in r.stdout


def test_pipeline_may_not_reach_up_and_http_may_not_reach_pipeline(tmp_path):
    write(tmp_path, "http/pipeline/chain.cc", '#include "proxy/worker.h"\n')
    write(tmp_path, "http/http1/codec.cc", '#include "http/pipeline/filter.h"\n')
    write(tmp_path, "core/a.cc", '#include "observe/log.h"\n')
    r = run(tmp_path)
    assert r.returncode == 1
    assert "http/pipeline/chain.cc:1: pipeline includes proxy/worker.h" in r.stdout
    assert "http/http1/codec.cc:1: http includes http/pipeline/filter.h" in r.stdout
    assert "core/a.cc:1: core includes observe/log.h" in r.stdout


def test_cli_may_include_everything(tmp_path):
    write(tmp_path, "cli/main.cc", '#include "proxy/worker.h"\n#include "filters/h/h.h"\n')
    assert run(tmp_path).returncode == 0
