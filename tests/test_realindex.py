"""The real index as a test input: mirror a small allowlist with its closure from the default
upstream (the index pip itself would use here, read from pip's configuration at run time), serve
it with the role's own nginx vhost, install from it with pip and with uv in environments that see
no other index, then sync twice more and see nothing downloaded or deleted.

A few MB and well under a minute. When the default index cannot be reached, the tier skips and
says so.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import Venv, clean_pip_env
from tests.support.mirror_check import check_mirror
from tests.syncutil import run_cli, write_config
from tests.test_nginx_vhost import Nginx, free_port, render_vhost

pytestmark = pytest.mark.realindex

ENVIRONMENTS = [
    {"python": "3.11", "platform": "linux", "machine": "x86_64"},
    {"python": "3.12", "platform": "linux", "machine": "aarch64"},
]
CLOSURE = {"requests", "urllib3", "idna", "certifi", "charset-normalizer"}


def default_upstream_url() -> str:
    """What pip would use, read with the engine's own lookup in a process that sees the
    machine's pip configuration (the tests' clients never do)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from mirror_sync.pip_default import default_upstream; print(default_upstream())"],
        capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "PIP_CONFIG_FILE"},
    )
    if proc.returncode != 0:
        pytest.skip(f"the default upstream cannot be read from pip's configuration: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip()


@dataclass
class RealMirror:
    upstream: str
    config: Path
    directory: Path
    first: dict[str, Any]


@pytest.fixture(scope="module")
def real_mirror(tmp_path_factory: pytest.TempPathFactory) -> RealMirror:
    upstream = default_upstream_url().rstrip("/") + "/"
    try:
        with urllib.request.urlopen(urllib.request.Request(upstream + "pip/"), timeout=20) as response:
            response.read(1)
    except urllib.error.HTTPError:
        raise  # reached, and it answered something else than a page: that is a failure, not a skip
    except OSError as exc:
        pytest.skip(f"the default index {upstream} cannot be reached from here ({exc}); the real-index tier needs it")
    base = tmp_path_factory.mktemp("realindex")
    directory = base / "mirror"
    config = write_config(base / "mirror.yml", upstream, directory, workers=8, timeout=60, retries=3,
                          projects=["requests"], environments=ENVIRONMENTS, prereleases=False, latest=1)
    rc, summary, stderr = run_cli(config, "sync", timeout=300)
    assert rc == 0, (summary, stderr[-2000:])
    return RealMirror(upstream, config, directory, summary)


@pytest.fixture(scope="module")
def served(real_mirror: RealMirror, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("realindex-nginx")
    port = free_port()
    nginx = Nginx(base, render_vhost(base, real_mirror.directory / "web", port,
                                     pypi_mirror_nginx_serials_map=str(real_mirror.directory / "serials.map")), port)
    nginx.start()
    try:
        yield f"{nginx.base_url}/simple/"
    finally:
        nginx.stop()


def test_the_allowlist_and_its_closure_are_mirrored(real_mirror: RealMirror) -> None:
    summary = real_mirror.first
    assert summary["ok"] and not summary["failures"]
    pages = check_mirror(real_mirror.directory)  # every link resolves, every hash matches
    assert set(pages) == CLOSURE
    assert summary["projects"]["total"] == len(CLOSURE)
    assert summary["files"]["bytes_total"] < 20 * 1024 * 1024  # a few MB: the tier stays small
    # latest: 1 keeps, for each environment, the newest release it can install; charset-normalizer
    # ships binary wheels, so each environment got its own
    wheels = [f for f in pages["charset-normalizer"] if f.endswith(".whl")]
    assert any("x86_64" in f and "cp311" in f for f in wheels), wheels
    assert any("aarch64" in f and "cp312" in f for f in wheels), wheels
    # the root index is never read for an allowlist: its pages say where the mirror stands
    assert summary["upstream_serial"] is None or summary["upstream_serial"] > 0


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.fail("uv is not installed (it is in the test extra: tests/run installs it)")
    return uv


def test_pip_installs_from_the_mirror_alone(served: str, make_venv: Callable[..., Venv]) -> None:
    venv = make_venv("realindex-pip")
    venv.pip("install", "requests", index_url=served)
    out = venv.run("-c", "import requests, urllib3, idna, certifi, charset_normalizer; print(requests.__version__)")
    assert out.stdout.strip()


def test_uv_installs_from_the_mirror_alone(served: str, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {k: v for k, v in clean_pip_env().items() if not k.startswith("UV_")}
    env["UV_NO_CONFIG"] = "1"  # no uv.toml of this machine's either
    proc = subprocess.run(
        [_uv(), "pip", "install", "--python", str(venv / "bin/python"), "--index-url", served,
         "--cache-dir", str(tmp_path / "uv-cache"), "requests"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run([str(venv / "bin/python"), "-c", "import requests, charset_normalizer"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_two_more_syncs_download_and_delete_nothing(real_mirror: RealMirror) -> None:
    before = sorted(p.relative_to(real_mirror.directory) for p in (real_mirror.directory / "web").rglob("*") if p.is_file())
    for _ in range(2):
        rc, summary, stderr = run_cli(real_mirror.config, "sync", timeout=300)
        assert rc == 0, (summary, stderr[-2000:])
        assert summary["files"]["downloaded"] == 0
        assert summary["files"]["deleted"] == 0 and summary["projects"]["deleted"] == 0
        assert summary["projects"]["synced"] == 0
        assert summary["changed"] is False
    after = sorted(p.relative_to(real_mirror.directory) for p in (real_mirror.directory / "web").rglob("*") if p.is_file())
    assert after == before


def test_a_dry_run_plans_what_the_run_did(real_mirror: RealMirror, tmp_path: Path) -> None:
    """On a fresh mirror, the dry run's plan lists exactly the files the run then fetches; on a
    mirror that is up to date, it plans nothing."""
    rc, plan, stderr = run_cli(real_mirror.config, "sync", "--dry-run", timeout=300)
    assert rc == 0, (plan, stderr[-2000:])
    assert plan["plan"]["fetch"] == [] and plan["plan"]["delete"] == []
    fresh = write_config(tmp_path / "fresh.yml", real_mirror.upstream, tmp_path / "fresh", workers=8, timeout=60,
                         retries=3, projects=["requests"], environments=ENVIRONMENTS, prereleases=False, latest=1)
    rc, plan, stderr = run_cli(fresh, "sync", "--dry-run", timeout=300)
    assert rc == 0, (plan, stderr[-2000:])
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").rglob("*.whl"))
    planned = sorted(f["filename"] for f in plan["plan"]["fetch"])
    mirrored = sorted(f for files in check_mirror(real_mirror.directory).values() for f in files)
    assert planned == mirrored
