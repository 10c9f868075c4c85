"""End to end: mirror an allowlist with its dependencies, serve it, `pip install` from it."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

from tests.support.index_tree import IndexTree
from tests.support.mirror_check import check_mirror
from tests.syncutil import run_cli, write_config


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["PIP_CONFIG_FILE"] = "/dev/null"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_CACHE_DIR"] = "1"
    return env


def test_pip_installs_from_the_served_mirror(index_tree: IndexTree, upstream, tmp_path: Path) -> None:
    from tests.support.upstream_server import UpstreamServer

    index_tree.add_wheel("webapp", "1.0", requires_dist=["helper>=2", 'speedups; extra == "fast"'])
    index_tree.add_wheel("helper", "1.0")
    index_tree.add_wheel("helper", "2.0", requires_dist=["tinyutil"])
    index_tree.add_wheel("helper", "2.1", requires_dist=["tinyutil"])
    index_tree.yank("helper", "helper-2.1-py3-none-any.whl", "do not use")
    index_tree.add_wheel("tinyutil", "0.5")
    index_tree.add_wheel("speedups", "3.0")
    index_tree.add_wheel("unwanted", "1.0")
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, projects=["webapp[fast]"])
    rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    assert set(check_mirror(mirror)) == {"webapp", "helper", "tinyutil", "speedups"}

    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    with UpstreamServer(mirror / "web") as served:
        proc = subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "install", "--index-url", served.url, "webapp[fast]"],
            capture_output=True, text=True, env=clean_env(), timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        accepts = {r.accept for r in served.requests() if r.path.startswith("/simple/")}
    assert any("application/vnd.pypi.simple.v1+json" in (a or "") for a in accepts)
    freeze = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True, env=clean_env())
    installed = set(freeze.stdout.split())
    # the yanked 2.1 is skipped by pip: the yank made it through the mirror
    assert {"webapp==1.0", "helper==2.0", "tinyutil==0.5", "speedups==3.0"} <= installed, freeze.stdout
    check = subprocess.run([str(target / "bin" / "python"), "-c", "import webapp, helper, tinyutil, speedups"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
