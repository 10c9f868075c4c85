"""The Ansible roles and playbooks converged on a real fleet of booted hosts (issues 4 and 5).

One primary mirror host (mirror1, with a loop block device handed in) and two clients, plus a
downstream mirror (mirror2, group mirror_downstream: its upstream is mirror1) and a client of the
downstream (client3), boot as systemd-nspawn containers on a private bridge (tests/fleet). Needs
root; skips with the reason otherwise. Run: `pytest -m fleet tests/test_fleet.py`.
"""

# ruff: noqa: F811  - the fixtures imported from tests.fleet.fixtures are test parameters here

from __future__ import annotations

import configparser
import datetime
import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import yaml

from tests.fleet import Fleet, Host
from tests.fleet.ansible_run import (
    AnsibleResult,
    ansible_tool,
    missing_collections,
    run_ansible,
)
from tests.fleet.artifacts import build_wheelhouse
from tests.fleet.fixtures import (  # noqa: F401
    OTHER_INDEX_URL,
    TIMINGS,
    UV_PATH_ON_HOST,
    fleet,
    fleet_inventory,
    uv_on_clients,
)
from tests.fleet.hoststate import SNAPSHOT, diff_snapshots, parse_snapshot
from tests.fleet.static_index import serve_index
from tests.support.index_tree import IndexTree

pytestmark = pytest.mark.fleet

REPO = Path(__file__).resolve().parent.parent


def _ansible(inventory: Path, *args: str, timeout: float = 300) -> AnsibleResult:
    if ansible_tool("ansible") is None:
        pytest.skip("ansible-core is not installed (pip install '.[test]')")
    return run_ansible("ansible", inventory, args, repo=REPO, timeout=timeout)


# -- the fleet itself ---------------------------------------------------------------------------------


def test_ansible_reaches_every_host_over_ssh(fleet: Fleet, fleet_inventory: Path) -> None:
    proc = _ansible(fleet_inventory, "all", "-m", "ansible.builtin.ping", "-o")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pongs = {line.split()[0] for line in proc.stdout.splitlines() if '"ping": "pong"' in line}
    assert pongs == ALL_HOSTS


def test_hosts_booted_systemd(fleet: Fleet) -> None:
    for host in fleet.hosts.values():
        state = host.ssh("systemctl is-system-running", check=False).stdout.strip()
        assert state == "running", f"{host.name}: {state}; failed units: {host.failed_units()}"
        assert host.ssh("hostname").stdout.strip() == host.name


def test_mirror_host_can_format_and_mount_its_device(fleet: Fleet) -> None:
    mirror = fleet.host("mirror1")
    device = mirror.device
    assert device is not None
    script = (
        f"set -e; test -b {device}; mkfs.ext4 -q -F {device}; d=$(mktemp -d); mount {device} $d; "
        f"findmnt -n -o FSTYPE $d; echo ok > $d/probe; cat $d/probe; umount $d; rmdir $d"
    )
    try:
        proc = mirror.ssh(script, check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["ext4", "ok"]
    finally:
        # Leave the device blank again: the storage role must see a device without a filesystem.
        mirror.ssh(f"wipefs --all --quiet {device}", check=False)
    assert mirror.ssh(f"blkid -p {device}", check=False).returncode == 2  # 2: nothing found


# -- the roles and playbooks, converged on the fleet -----------------------------------------------------

SITE = REPO / "playbooks" / "site.yml"
MIRROR_ROOT = "/srv/pypi-mirror"
SYNC_USER = "pypi-mirror"
SYNC_CONFIG = "/etc/pypi-mirror/mirror.yml"
CRON_FILE = "/etc/cron.d/pypi-mirror"
SYNC_EXECUTABLE = "/opt/pypi-mirror/venv/bin/mirror-sync"
# what cron runs: the engine as pypi-mirror (and, with pypi_mirror_sync_reload_nginx, then an nginx reload as root)
SYNC_JOB = "/opt/pypi-mirror/bin/pypi-mirror-sync"
REMOVE = REPO / "playbooks" / "remove.yml"
# What the generated upstream holds: fleet-app needs fleet-lib>=1.1, which needs fleet-util.
ALLOWLIST = ["fleet-app"]
ALL_HOSTS = {"mirror1", "client1", "client2", "mirror2", "client3"}
SERIALS_PATH_UNIT = "pypi-mirror-serials.path"
MIRRORED = {"fleet-app", "fleet-lib", "fleet-util"}
NOT_MIRRORED = "fleet-unrelated"
PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
)


@dataclass
class Upstream:
    tree: IndexTree
    url: str  # root of the simple index, e.g. http://198.18.0.1:PORT/simple/


@dataclass
class Converge:
    extra_vars: dict[str, object]  # for every host
    group_vars: dict[str, dict[str, object]]  # per inventory group (extra vars would override them)
    first: AnsibleResult
    second: AnsibleResult | None
    inventory: Path
    before: dict[str, dict[str, list[str]]]  # each host as it was before the first converge (hoststate)


def _populate(tree: IndexTree) -> None:
    tree.add_wheel("fleet-app", "1.0", requires_dist=["fleet-lib>=1.1"])
    tree.add_sdist("fleet-app", "1.0")
    tree.add_wheel("fleet-lib", "1.0")
    tree.add_wheel("fleet-lib", "1.1", requires_dist=["fleet-util"])
    tree.add_wheel("fleet-util", "2.0")
    tree.add_wheel(NOT_MIRRORED, "1.0")
    tree.write()


@pytest.fixture(scope="session")
def upstream(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """A generated index on this machine's bridge address (the only way out the mirror host has)."""
    tree = IndexTree(tmp_path_factory.mktemp("upstream"))
    _populate(tree)
    with serve_index(tree.root, fleet.controller_address) as base:
        yield Upstream(tree=tree, url=f"{base}/simple/")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mirror_sync and its dependencies as wheels, built here: the hosts have no route out."""
    dest = tmp_path_factory.mktemp("wheelhouse")
    started = time.monotonic()
    build_wheelhouse(REPO, dest)
    TIMINGS["wheelhouse_s"] = round(time.monotonic() - started, 1)
    return dest


def _quiet_cron_hour() -> str:
    # The periodic sync must not run while tests compare the mirror before and after something.
    return str((datetime.datetime.now(datetime.timezone.utc).hour + 12) % 24)


@pytest.fixture(scope="session")
def converged(
    fleet: Fleet, fleet_inventory: Path, upstream: Upstream, wheelhouse: Path
) -> Converge:
    if not SITE.is_file():
        pytest.skip(f"{SITE.relative_to(REPO)} does not exist yet")
    if ansible_tool("ansible-playbook") is None:
        pytest.skip("ansible-core is not installed (pip install '.[test]')")
    missing = missing_collections(["community.general", "ansible.posix"], repo=REPO)
    if missing:
        pytest.fail(
            f"the roles need the collections {', '.join(missing)}: install them (./setup-mirror does, "
            "from requirements.yml or the 'ansible' package that bundles them)"
        )
    # Per group: each mirror its own loop device; the upstream and the allowlist only on the primary
    # (the downstream's upstream is the primary, and it mirrors everything the primary holds).
    group_vars: dict[str, dict[str, object]] = {
        "mirror": {
            "pypi_mirror_storage_device": fleet.host("mirror1").device,
            "pypi_mirror_sync_upstream": upstream.url,
            "pypi_mirror_sync_projects": ALLOWLIST,
            # the primary reloads nginx after syncs that rewrote serials.map (off by default: njs needs none)
            "pypi_mirror_sync_reload_nginx": True,
        },
        "mirror_downstream": {"pypi_mirror_storage_device": fleet.host("mirror2").device},
    }
    inventory = fleet.write_inventory(fleet_inventory.with_name("inventory-site.yml"), group_vars)
    before = {name: _snapshot(host) for name, host in fleet.hosts.items()}
    extra: dict[str, object] = {
        "pypi_mirror_sync_directory": MIRROR_ROOT,
        "pypi_mirror_sync_wheelhouse": str(wheelhouse),
        "pypi_mirror_sync_cron_minute": "7",
        "pypi_mirror_sync_cron_hour": _quiet_cron_hour(),
    }
    started = time.monotonic()
    first = run_ansible("ansible-playbook", inventory, [str(SITE)], repo=REPO, extra_vars=extra)
    TIMINGS["first converge_s"] = round(time.monotonic() - started, 1)
    second = None
    if first.returncode == 0:
        started = time.monotonic()
        second = run_ansible("ansible-playbook", inventory, [str(SITE)], repo=REPO, extra_vars=extra)
        TIMINGS["second converge_s"] = round(time.monotonic() - started, 1)
    return Converge(extra_vars=extra, group_vars=group_vars, first=first, second=second, inventory=inventory,
                    before=before)


def _snapshot(host: Host) -> dict[str, list[str]]:
    return parse_snapshot(host.ssh(SNAPSHOT, timeout=180).stdout)


@pytest.fixture
def converged_ok(converged: Converge) -> Converge:
    """The converged fleet, for tests that only make sense once site.yml went through."""
    if converged.first.returncode != 0:
        pytest.fail("playbooks/site.yml did not converge: see test_site_playbook_converges_the_fleet")
    return converged


def _infra(fleet: Fleet, name: str) -> testinfra.host.Host:
    spec, kwargs = fleet.host(name).testinfra_spec()
    return testinfra.get_host(spec, **kwargs)


def _http(url: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_site_playbook_converges_the_fleet(converged: Converge) -> None:
    first = converged.first
    assert first.returncode == 0, first.output[-8000:]
    assert set(first.recap) == ALL_HOSTS, first.output[-3000:]
    assert first.total("failed") == 0 and first.total("unreachable") == 0
    assert all(counts["changed"] > 0 for counts in first.recap.values()), first.recap


def test_second_converge_changes_nothing(converged_ok: Converge) -> None:
    second = converged_ok.second
    assert second is not None, "the first converge failed"
    assert second.returncode == 0, second.output[-8000:]
    changed = {host: counts["changed"] for host, counts in second.recap.items()}
    assert changed == dict.fromkeys(ALL_HOSTS, 0), second.output[-8000:]


def test_mirror_root_is_the_ext4_volume_with_fstab_entry(fleet: Fleet, converged_ok: Converge) -> None:
    host = _infra(fleet, "mirror1")
    mount = host.mount_point(MIRROR_ROOT)
    assert mount.exists
    assert mount.filesystem == "ext4"
    assert mount.device == fleet.host("mirror1").device
    assert "noatime" in mount.options
    fstab = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()]
    entries = [f for f in fstab if len(f) >= 4 and f[1] == MIRROR_ROOT]
    assert len(entries) == 1, fstab
    assert entries[0][0] == fleet.host("mirror1").device and entries[0][2] == "ext4"
    assert "noatime" in entries[0][3].split(",")


def test_mirror_tree_config_and_cron_have_their_owners_and_modes(fleet: Fleet, converged_ok: Converge) -> None:
    host = _infra(fleet, "mirror1")
    assert host.user(SYNC_USER).exists
    root = host.file(MIRROR_ROOT)
    assert root.is_directory and root.user == SYNC_USER and root.group == SYNC_USER
    assert host.file(f"{MIRROR_ROOT}/web/simple/index.v1_json").user == SYNC_USER

    config = host.file(SYNC_CONFIG)
    assert config.is_file and config.user == "root" and config.group == SYNC_USER and config.mode == 0o640
    data = yaml.safe_load(config.content_string)
    assert data["directory"] == MIRROR_ROOT
    assert data["upstream"] == converged_ok.group_vars["mirror"]["pypi_mirror_sync_upstream"]
    assert data["projects"] == ALLOWLIST

    cron = host.file(CRON_FILE)
    assert cron.is_file and cron.user == "root" and cron.mode == 0o644
    jobs = [line for line in cron.content_string.splitlines() if line and not line.startswith("#")]
    sync_jobs = [job for job in jobs if SYNC_JOB in job]
    assert len(sync_jobs) == 1, jobs
    fields = sync_jobs[0].split()
    assert fields[:2] == ["7", converged_ok.extra_vars["pypi_mirror_sync_cron_hour"]]
    assert fields[5] == "root"  # with the reload on: the engine runs as pypi-mirror, the reload as root
    job = host.file(SYNC_JOB)
    assert job.user == "root" and job.mode == 0o755
    assert f"runuser -u {SYNC_USER}" in job.content_string and f"{SYNC_EXECUTABLE} -c {SYNC_CONFIG} sync" in job.content_string
    log = host.file("/var/log/pypi-mirror/sync.log")
    assert log.user == SYNC_USER and log.mode == 0o640
    assert "flock" in sync_jobs[0] and "timeout" in sync_jobs[0] and ">>" in sync_jobs[0]
    assert host.service("cron").is_running


def test_mirror_holds_the_allowlist_with_its_dependencies(fleet: Fleet, converged_ok: Converge) -> None:
    host = _infra(fleet, "mirror1")
    root = json.loads(host.file(f"{MIRROR_ROOT}/web/simple/index.v1_json").content_string)
    assert {p["name"] for p in root["projects"]} == MIRRORED


def test_nginx_serves_json_and_html_by_accept_header(fleet: Fleet, converged_ok: Converge) -> None:
    host = _infra(fleet, "mirror1")
    assert host.service("nginx").is_running
    assert host.service("nginx").is_enabled
    base = f"http://{fleet.host('mirror1').address}/simple/fleet-app/"

    status, headers, body = _http(base, PIP_ACCEPT)  # pip's own weighted Accept header
    assert status == 200
    assert headers["content-type"].startswith("application/vnd.pypi.simple.v1+json")
    assert "accept" in headers.get("vary", "").lower()
    page = json.loads(body)
    assert page["name"] == "fleet-app"
    assert {f["filename"] for f in page["files"]} == {"fleet_app-1.0-py3-none-any.whl", "fleet_app-1.0.tar.gz"}

    status, headers, body = _http(base, "text/html")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"fleet_app-1.0-py3-none-any.whl" in body

    status, headers, body = _http(base, "application/vnd.pypi.simple.v1+html")
    assert status == 200 and headers["content-type"].startswith("application/vnd.pypi.simple.v1+html")

    # ?format= overrides the Accept header.
    status, headers, body = _http(base + "?format=application/vnd.pypi.simple.v1+json", "text/html")
    assert status == 200 and headers["content-type"].startswith("application/vnd.pypi.simple.v1+json")
    assert json.loads(body)["name"] == "fleet-app"

    # A file link from the JSON page resolves and serves the bytes upstream had.
    wheel = next(f for f in page["files"] if f["filename"].endswith(".whl"))
    status, _headers, data = _http(urllib.parse.urljoin(base, wheel["url"]))
    assert status == 200
    assert hashlib.sha256(data).hexdigest() == wheel["hashes"]["sha256"]
    if wheel.get("core-metadata"):
        status, headers, _body = _http(urllib.parse.urljoin(base, wheel["url"]) + ".metadata")
        assert status == 200 and headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("client", ["client1", "client2"])
def test_clients_point_pip_and_uv_at_the_mirror(fleet: Fleet, converged_ok: Converge, client: str) -> None:
    host = _infra(fleet, client)
    mirror = fleet.host("mirror1").address
    pip_conf = host.file("/etc/pip.conf")
    assert pip_conf.is_file and pip_conf.user == "root" and pip_conf.mode == 0o644
    parser = configparser.ConfigParser()
    parser.read_string(pip_conf.content_string)
    assert parser["global"]["index-url"] == f"http://{mirror}/simple/"
    assert parser["global"]["trusted-host"] == mirror  # plain http: pip must be told to trust it
    uv_conf = host.file("/etc/uv/uv.toml")
    assert uv_conf.is_file and uv_conf.mode == 0o644
    tomllib = pytest.importorskip("tomllib")  # stdlib from Python 3.11
    uv = tomllib.loads(uv_conf.content_string)
    assert [(i["url"], i.get("default")) for i in uv["index"]] == [(f"http://{mirror}/simple/", True)]


CLIENT_ENV = "env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root"


def _pip_install_fleet_app(host: Host, venv: str, *pip_args: str) -> dict[str, str]:
    """In a fresh venv on `host`, `pip install fleet-app` with the host's own pip configuration
    and import it and its dependencies; returns {distribution: version} of what got installed."""
    script = (
        f"set -e; rm -rf {venv}; python3 -m venv {venv}; "
        f"{CLIENT_ENV} {venv}/bin/pip install {' '.join(pip_args)} fleet-app; "
        f"{venv}/bin/python -c 'import fleet_app, fleet_lib, fleet_util'; "
        f"{venv}/bin/pip list --format=json"
    )
    proc = host.ssh(script, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {d["name"]: d["version"] for d in json.loads(proc.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("client", ["client1", "client2"])
def test_pip_install_through_the_mirror_with_no_flags(fleet: Fleet, converged_ok: Converge, client: str) -> None:
    host = fleet.host(client)
    venv = "/root/pip-check"
    installed = _pip_install_fleet_app(host, venv)
    assert installed["fleet-app"] == "1.0" and installed["fleet-lib"] == "1.1" and installed["fleet-util"] == "2.0"
    # Only the mirror is asked: what it does not hold cannot be installed.
    refused = host.ssh(f"{CLIENT_ENV} {venv}/bin/pip install {NOT_MIRRORED}", check=False)
    assert refused.returncode != 0
    assert "No matching distribution" in refused.stderr + refused.stdout


@pytest.mark.parametrize("client", ["client1", "client2"])
def test_uv_pip_install_through_the_mirror(
    fleet: Fleet, converged_ok: Converge, client: str, uv_on_clients: tuple[Path | None, str]
) -> None:
    host = fleet.host(client)
    if host.ssh(f"test -x {UV_PATH_ON_HOST}", check=False).returncode != 0:
        pytest.skip(f"no uv on the clients: {uv_on_clients[1]}")
    venv = "/root/uv-check"
    script = (
        f"set -e; rm -rf {venv}; {CLIENT_ENV} uv venv --quiet {venv}; "
        f"{CLIENT_ENV} VIRTUAL_ENV={venv} uv pip install fleet-app; "
        f"{venv}/bin/python -c 'import fleet_app, fleet_lib, fleet_util'"
    )
    proc = host.ssh(script, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_module_check_mode_reports_a_plan_and_changes_nothing(
    fleet: Fleet, fleet_inventory: Path, converged_ok: Converge, upstream: Upstream
) -> None:
    mirror = fleet.host("mirror1")
    page = f"{MIRROR_ROOT}/web/simple/fleet-util/index.v1_json"
    # Every file's path, size and mtime, and every directory's path. Left out: directory mtimes and
    # the SQLite WAL index (state.sqlite-shm), which any reader of the WAL-mode state maps and touches.
    snapshot = (
        f"sha256sum {page}; find {MIRROR_ROOT} \\( -type d -printf '%y %p\\n' \\) "
        f"-o \\( -name '*.sqlite-shm' -printf '%y %p\\n' \\) -o -printf '%y %p %s %T@\\n' | sort"
    )
    entry = upstream.tree.add_wheel("fleet-util", "2.1")
    upstream.tree.write()
    try:
        before = mirror.ssh(snapshot).stdout
        result = run_ansible(
            "ansible", fleet_inventory,
            ["mirror", "-m", "pypi_mirror_sync", "-a", f"config={SYNC_CONFIG} executable={SYNC_EXECUTABLE}",
             "--check", "--become", "--become-user", SYNC_USER, "-o"],
            repo=REPO, timeout=300,
        )
        after = mirror.ssh(snapshot).stdout
    finally:
        upstream.tree.delete_file("fleet-util", entry.filename)
        upstream.tree.write()
    assert result.returncode == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("mirror1 "))
    outcome = json.loads(line.split("=>", 1)[1])
    assert outcome["changed"] is True
    assert outcome["dry_run"] is True
    fetch = outcome["plan"]["fetch"]
    assert [f["filename"] for f in fetch] == [entry.filename]
    assert outcome["plan"]["fetch_bytes"] == entry.size
    changed_lines = sorted(set(before.splitlines()) ^ set(after.splitlines()))
    assert not changed_lines, "check mode changed the mirror:\n" + "\n".join(changed_lines)


# -- mirrors of mirrors (issue 5): the downstream mirror2 syncs from mirror1; client3 installs from mirror2 --


def _sync_as_mirror_user(host_name: str, fleet: Fleet) -> dict[str, object]:
    """`mirror-sync sync --json` on a mirror host, as the mirror user (what the cron job runs)."""
    proc = fleet.host(host_name).ssh(
        f"runuser -u {SYNC_USER} -- {SYNC_EXECUTABLE} -c {SYNC_CONFIG} sync --json", check=False, timeout=600
    )
    assert proc.returncode == 0, f"{host_name}: {proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _served_serial(base: str, accept: str) -> tuple[int, str | None]:
    """(the page's _last-serial from its JSON, the X-PyPI-Last-Serial header sent with `accept`)."""
    status, _headers, body = _http(base, PIP_ACCEPT)
    assert status == 200, base
    serial = json.loads(body)["meta"]["_last-serial"]
    status, headers, _body = _http(base, accept)
    assert status == 200, base
    return serial, headers.get("x-pypi-last-serial")


def _wait_for_header(base: str, accept: str) -> tuple[int, str | None]:
    """The header follows a new serials.map once the path unit has reloaded nginx: poll (bounded)."""
    serial, header = _served_serial(base, accept)
    for _ in range(60):
        if header == str(serial):
            break
        time.sleep(1)
        serial, header = _served_serial(base, accept)
    return serial, header


def test_downstream_mirrors_everything_the_primary_holds(fleet: Fleet, converged_ok: Converge) -> None:
    host = _infra(fleet, "mirror2")
    mount = host.mount_point(MIRROR_ROOT)
    assert mount.exists and mount.filesystem == "ext4" and mount.device == fleet.host("mirror2").device
    config = yaml.safe_load(host.file(SYNC_CONFIG).content_string)
    assert config["upstream"] == f"http://{fleet.host('mirror1').address}/simple/"
    assert "projects" not in config  # the allowlist lives on the primary only
    primary = json.loads(_infra(fleet, "mirror1").file(f"{MIRROR_ROOT}/web/simple/index.v1_json").content_string)
    downstream = json.loads(host.file(f"{MIRROR_ROOT}/web/simple/index.v1_json").content_string)
    assert {p["name"] for p in downstream["projects"]} == MIRRORED
    assert downstream["projects"] == primary["projects"]
    assert downstream["meta"]["_last-serial"] == primary["meta"]["_last-serial"]
    cron = [line.split() for line in host.file(CRON_FILE).content_string.splitlines() if SYNC_JOB in line]
    assert len(cron) == 1 and cron[0][5] == SYNC_USER  # the default: no reload, so no root


@pytest.mark.parametrize("mirror", ["mirror1", "mirror2"])
def test_last_serial_header_on_primary_and_downstream(fleet: Fleet, converged_ok: Converge, mirror: str) -> None:
    host = _infra(fleet, mirror)
    # njs reads the serial from the pages: no unit reloads nginx for serials.map any more
    assert not host.file(f"/etc/systemd/system/{SERIALS_PATH_UNIT}").exists
    serials_map = host.file(f"{MIRROR_ROOT}/serials.map")
    assert serials_map.user == SYNC_USER and "/simple/fleet-app/ " in serials_map.content_string
    base = f"http://{fleet.host(mirror).address}/simple/"
    for path in ("", "fleet-app/", "fleet-util/"):
        for accept in (PIP_ACCEPT, "text/html", "application/vnd.pypi.simple.v1+html"):
            serial, header = _served_serial(base + path, accept)
            assert header == str(serial), (mirror, path, accept)


def test_client_of_the_downstream_points_at_it(fleet: Fleet, converged_ok: Converge) -> None:
    host = _infra(fleet, "client3")
    parser = configparser.ConfigParser()
    parser.read_string(host.file("/etc/pip.conf").content_string)
    downstream = fleet.host("mirror2").address
    assert parser["global"]["index-url"] == f"http://{downstream}/simple/"
    assert parser["global"]["trusted-host"] == downstream


def test_upstream_release_reaches_the_downstream_client_after_two_syncs(
    fleet: Fleet, converged_ok: Converge, upstream: Upstream
) -> None:
    client = fleet.host("client3")

    def installed_app_version() -> str:
        return _pip_install_fleet_app(client, "/root/downstream-check", "--no-cache-dir")["fleet-app"]

    assert installed_app_version() == "1.0"
    entry = upstream.tree.add_wheel("fleet-app", "1.1", requires_dist=["fleet-lib>=1.1"])
    upstream.tree.write()
    new_serial = upstream.tree.project_serial("fleet-app")

    primary = _sync_as_mirror_user("mirror1", fleet)
    assert primary["changed"] is True and primary["files"]["downloaded"] == 1  # type: ignore[index]
    assert installed_app_version() == "1.0"  # the downstream has not synced yet

    downstream = _sync_as_mirror_user("mirror2", fleet)
    assert downstream["changed"] is True and downstream["files"]["downloaded"] == 1  # type: ignore[index]
    assert installed_app_version() == "1.1"

    # Both mirrors' path units reloaded nginx for the new serials.map: the header carries the new serial.
    for mirror in ("mirror1", "mirror2"):
        base = f"http://{fleet.host(mirror).address}/simple/fleet-app/"
        for accept in (PIP_ACCEPT, "text/html"):
            serial, header = _wait_for_header(base, accept)
            assert serial == new_serial and header == str(new_serial), (mirror, accept, serial, header)
    page = json.loads(_http(f"http://{fleet.host('mirror2').address}/simple/fleet-app/", PIP_ACCEPT)[2])
    assert entry.filename in {f["filename"] for f in page["files"]}


# -- the operator's path (issue 14): report other sources, reload without the path unit, remove ------------


def _task_block(output: str, task: str) -> str:
    """The output of one task of a playbook run (from its TASK line to the next one)."""
    blocks = [b for b in output.split("\nTASK [") if b.split("]", 1)[0].endswith(task)]
    return "\n".join(blocks)


def test_client_role_reports_other_package_sources(converged_ok: Converge) -> None:
    """client2 has PIP_EXTRA_INDEX_URL in /etc/profile.d: the converge says so (and changes nothing for it)."""
    block = _task_block(converged_ok.first.stdout, "Report other package sources")
    assert "ok: [client2]" in block, block or converged_ok.first.stdout[-4000:]
    assert OTHER_INDEX_URL in block and "/etc/profile.d/other-index.sh" in block
    assert "ok: [client1]" not in block and "ok: [client3]" not in block


def test_sync_job_reloads_nginx_for_a_new_serials_map_without_the_path_unit(
    fleet: Fleet, converged_ok: Converge, upstream: Upstream
) -> None:
    """What a host without systemd relies on: the cron job's script itself reloads nginx after a sync that
    rewrote serials.map (the path unit is stopped here, so only the script can have done it)."""
    mirror = fleet.host("mirror1")
    mirror.ssh(f"systemctl stop {SERIALS_PATH_UNIT}", check=False)  # the role no longer installs it
    try:
        upstream.tree.add_wheel("fleet-util", "2.2")
        upstream.tree.write()
        new_serial = upstream.tree.project_serial("fleet-util")
        proc = mirror.ssh(f"{SYNC_JOB} --json", check=False, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["changed"] is True
        assert "event=nginx-reloaded" in proc.stderr, proc.stderr[-2000:]
        serial, header = _wait_for_header(f"http://{mirror.address}/simple/fleet-util/", "text/html")
        assert serial == new_serial and header == str(new_serial)
        # Nothing new: the map is not rewritten and nginx is left alone.
        again = mirror.ssh(f"{SYNC_JOB} --json", check=False, timeout=600)
        assert again.returncode == 0 and "event=nginx-reloaded" not in again.stderr, again.stderr[-2000:]
    finally:
        mirror.ssh(f"systemctl start {SERIALS_PATH_UNIT}", check=False)


def _remove(converged: Converge, *, purge: bool = False) -> AnsibleResult:
    extra = {**converged.extra_vars, "pypi_mirror_purge_data": purge}
    return run_ansible("ansible-playbook", converged.inventory, [str(REMOVE)], repo=REPO, extra_vars=extra,
                       vars_file=converged.inventory.with_name("remove-vars.json"))


def _assert_back_as_before(fleet: Fleet, converged: Converge) -> None:
    differences = {name: diff_snapshots(converged.before[name], _snapshot(host)) for name, host in fleet.hosts.items()}
    assert differences == {name: [] for name in fleet.hosts}, json.dumps(differences, indent=1)


def _volume_type(fleet: Fleet, name: str) -> str:
    host = fleet.host(name)
    return host.ssh(f"blkid -p -o value -s TYPE {host.device}", check=False).stdout.strip()


# Handed from the first removal test to the converge after it.
_KEPT: dict[str, str] = {}
PACKAGES_LISTING = f"find {MIRROR_ROOT}/web/packages -type f -printf '%p %s %T@ %u\\n' | sort"


def test_remove_gives_every_host_back_as_it_was_and_keeps_the_data(fleet: Fleet, converged_ok: Converge) -> None:
    files_before = fleet.host("mirror1").ssh(PACKAGES_LISTING).stdout
    assert files_before.strip()
    _KEPT["mirror1 packages"] = files_before
    started = time.monotonic()
    result = _remove(converged_ok)
    TIMINGS["remove_s"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.output[-8000:]
    assert set(result.recap) == ALL_HOSTS and result.total("failed") == 0
    assert all(counts["changed"] > 0 for counts in result.recap.values()), result.recap
    _assert_back_as_before(fleet, converged_ok)
    # The data stays: each mirror's device still holds its ext4 volume with the mirror on it.
    for name in ("mirror1", "mirror2"):
        assert _volume_type(fleet, name) == "ext4", name
        host = fleet.host(name)
        probe = host.ssh(
            f"set -e; d=$(mktemp -d); mount -o ro {host.device} $d; test -s $d/web/simple/index.v1_json; "
            f"test -s $d/state.sqlite; umount $d; rmdir $d", check=False,
        )
        assert probe.returncode == 0, (name, probe.stderr)
    # nginx answers again with Debian's default site, as it did before the mirror.
    status, _headers, body = _http(f"http://{fleet.host('mirror1').address}/")
    assert status == 200 and b"Welcome to nginx" in body


def test_a_second_remove_changes_nothing(fleet: Fleet, converged_ok: Converge) -> None:
    started = time.monotonic()
    result = _remove(converged_ok)
    TIMINGS["second remove_s"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, result.output[-8000:]
    assert {h: c["changed"] for h, c in result.recap.items()} == dict.fromkeys(ALL_HOSTS, 0), result.output[-8000:]
    _assert_back_as_before(fleet, converged_ok)


def test_converge_after_remove_takes_the_kept_mirror_back(fleet: Fleet, converged_ok: Converge) -> None:
    """The kept volume comes back under the new pypi-mirror user, and its files are not fetched again."""
    started = time.monotonic()
    again = run_ansible("ansible-playbook", converged_ok.inventory, [str(SITE)], repo=REPO,
                        extra_vars=converged_ok.extra_vars)
    TIMINGS["converge after remove_s"] = round(time.monotonic() - started, 1)
    assert again.returncode == 0, again.output[-8000:]
    mirror = fleet.host("mirror1")
    after = mirror.ssh(PACKAGES_LISTING).stdout
    before = _KEPT.get("mirror1 packages")
    assert before is not None, "test_remove_gives_every_host_back_as_it_was_and_keeps_the_data did not run"
    assert after.split() == before.split()  # same files, sizes, mtimes and owner: nothing re-downloaded
    assert mirror.ssh(f"stat -c %U {MIRROR_ROOT}").stdout.strip() == SYNC_USER
    proc = mirror.ssh(f"{SYNC_JOB} --json", check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["files"]["downloaded"] == 0


def test_remove_with_purge_data_wipes_the_volumes(fleet: Fleet, converged_ok: Converge) -> None:
    result = _remove(converged_ok, purge=True)
    assert result.returncode == 0, result.output[-8000:]
    assert result.total("failed") == 0
    for name in ("mirror1", "mirror2"):
        assert _volume_type(fleet, name) == "", name  # blank again, as it was handed in
    _assert_back_as_before(fleet, converged_ok)
