"""The policy end to end (issue 13, "Done when"): a real loopback upstream, the CLI as a
subprocess, the mirror served over HTTP, and pip and uv installing from it.

One test per rule: the cooldown hides a new release until the clock (MIRROR_SYNC_NOW) passes its
maturity, a MAL- advisory removes a mirrored release (and its withdrawal brings it back), the
exemption lets one named fix through, the closure resolves around a cooling dependency,
provenance links resolve inside the mirror, a local package shadows an upstream project of the
same name, `vulnerable: high` blocks by CVSS score and `allow` lifts an advisory; and the dry run
lists exactly what the run then keeps out.

Clients install with `--target` into a fresh directory each time (pip ignores what is installed
elsewhere then, and so does uv), isolated from this machine's configuration: PIP_CONFIG_FILE=/dev/null,
UV_NO_CONFIG=1, no other PIP_*/UV_* variable, no cache.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin

import pytest
from packaging.utils import canonicalize_name

from tests.conftest import PIP_TIMEOUT, Venv, clean_pip_env
from tests.support.dists import build_wheel
from tests.support.index_tree import IndexTree
from tests.support.mirror_check import check_mirror
from tests.support.osv_export import advisory, dumps, write_zip
from tests.support.upstream_server import JSON_TYPE, UpstreamServer
from tests.syncutil import mirrored_files, run_cli, write_config

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
OLD = NOW - dt.timedelta(days=30)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
VECTOR_9_8 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # critical
VECTOR_5_3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"  # moderate
CLIENTS = ("pip", "uv")


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def wheel(project: str, version: str) -> str:
    return f"{project}-{version}-py3-none-any.whl"


# -- the engine ------------------------------------------------------------------------------------


def sync(monkeypatch: pytest.MonkeyPatch, cfg: Path, now: dt.datetime, *args: str) -> dict[str, Any]:
    """`mirror-sync -c CFG sync ARGS --json` with the policy's clock at `now`; it must succeed."""
    monkeypatch.setenv("MIRROR_SYNC_NOW", iso(now))
    rc, summary, stderr = run_cli(cfg, "sync", *args)
    assert rc == 0, (summary, stderr[-3000:])
    assert summary["ok"], summary
    return summary


def refused(summary: dict[str, Any], kind: str) -> set[tuple[str, str]]:
    """(project, filename) of what the summary's policy section lists as held or blocked."""
    return {(e["project"], e["filename"]) for e in summary["policy"][kind]}


def on_disk(mirror: Path) -> set[str]:
    """The distributions in the mirror's web/packages (not .metadata, not .provenance)."""
    return {name for name in mirrored_files(mirror) if name.endswith((".whl", ".tar.gz", ".zip"))}


# -- the served mirror -----------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


def fetch(url: str, accept: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with _OPENER.open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[tuple[str, dict[str, str | None]]] = []
        self._attrs: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._attrs is not None:
            self.anchors.append((self._text.strip(), self._attrs))
            self._attrs = None


@dataclass
class Page:
    """A project page as the served mirror gives it, in both formats."""

    url: str
    json: dict[str, Any]
    html: list[tuple[str, dict[str, str | None]]]

    @property
    def files(self) -> set[str]:
        return {f["filename"] for f in self.json["files"]}

    def entry(self, filename: str) -> dict[str, Any]:
        return next(f for f in self.json["files"] if f["filename"] == filename)

    def anchor(self, filename: str) -> dict[str, str | None]:
        return next(attrs for text, attrs in self.html if text == filename)


def page(served: UpstreamServer, project: str) -> Page:
    """The served project page; its JSON and HTML forms must list the same files."""
    url = f"{served.url}{project}/"
    status, body = fetch(url, JSON_TYPE)
    assert status == 200, (url, status, body[:300])
    doc = json.loads(body)
    status, body = fetch(url, "text/html")
    assert status == 200, (url, status, body[:300])
    parser = _Anchors()
    parser.feed(body.decode("utf-8"))
    result = Page(url, doc, parser.anchors)
    assert {text for text, _ in result.html} == result.files, (result.json, result.html)
    return result


def listed(served: UpstreamServer, project: str) -> set[str]:
    return page(served, project).files


# -- the clients -----------------------------------------------------------------------------------


def _uv() -> str:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        pytest.fail("uv is not installed (it is in the test extra)")
    return uv


class Clients:
    """pip (in a venv of its own) and uv, each installing into a fresh --target directory."""

    def __init__(self, venv: Venv, work: Path) -> None:
        self.venv = venv
        self.work = work
        self.uv = _uv()
        self._count = 0

    def _target(self, client: str) -> Path:
        self._count += 1
        target = self.work / f"{client}-{self._count}"
        target.mkdir(parents=True)
        return target

    def _run(self, client: str, index_url: str, target: Path, *requirements: str, download: bool = False) -> subprocess.CompletedProcess[str]:
        if client == "pip":
            verb = ["download", "--no-deps", "-d", str(target)] if download else ["install", "--target", str(target)]
            cmd = [str(self.venv.python), "-m", "pip", *verb, "--index-url", index_url, *requirements]
            env = clean_pip_env()
        else:
            assert not download
            cmd = [self.uv, "pip", "install", "--python", str(self.venv.python), "--target", str(target),
                   "--index-url", index_url, "--no-cache", *requirements]
            env = {k: v for k, v in clean_pip_env().items() if not k.startswith("UV_")}
            env["UV_NO_CONFIG"] = "1"
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)

    def install(self, client: str, index_url: str, *requirements: str) -> dict[str, str]:
        """Install `requirements` from the index; {canonical project: version} installed."""
        target = self._target(client)
        proc = self._run(client, index_url, target, *requirements)
        assert proc.returncode == 0, f"{client} install {requirements} failed:\n{proc.stdout}\n{proc.stderr}"
        return {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions(path=[str(target)])}

    def refuses(self, client: str, index_url: str, *requirements: str, download: bool = False) -> str:
        """The client finds nothing that satisfies `requirements`: it fails, and installs nothing."""
        target = self._target(client)
        proc = self._run(client, index_url, target, *requirements, download=download)
        assert proc.returncode != 0, f"{client} got {requirements} from the mirror:\n{proc.stdout}\n{proc.stderr}"
        files = [p.name for p in target.iterdir() if p.name != ".lock"]  # uv's lock of the target
        assert not files, files
        return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def pip_venv(make_venv: Callable[..., Venv]) -> Venv:
    return make_venv("policy-e2e")


@pytest.fixture
def clients(pip_venv: Venv, tmp_path: Path) -> Clients:
    return Clients(pip_venv, tmp_path / "clients")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path], UpstreamServer]]:
    """serve(mirror) -> a running server of mirror/web (made if missing); all stopped afterwards."""
    servers: list[UpstreamServer] = []

    def _serve(mirror: Path) -> UpstreamServer:
        (mirror / "web").mkdir(parents=True, exist_ok=True)
        server = UpstreamServer(mirror / "web").start()
        servers.append(server)
        return server

    yield _serve
    for server in servers:
        server.stop()


def project_pages_read(upstream: UpstreamServer) -> list[str]:
    """The project pages the engine asked upstream for (the root excluded), in order."""
    return [r.path for r in upstream.requests("/simple/") if r.path not in ("/simple/", "/simple")]


# -- 1. cooldown -----------------------------------------------------------------------------------


def test_cooldown_hides_a_new_release_until_the_clock_passes_it(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients, serve: Callable[[Path], UpstreamServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("app", "1.0", upload_time=OLD)
    index_tree.add_wheel("app", "2.0", upload_time=NOW - HOUR)
    for name in ("lib-a", "lib-b", "lib-c"):
        index_tree.add_wheel(name, "1.0", upload_time=OLD)
    index_tree.write()
    serial = index_tree.serial
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, cooldown="1d")  # a full mirror
    served = serve(mirror)

    first = sync(monkeypatch, cfg, NOW)
    assert refused(first, "held") == {("app", wheel("app", "2.0"))}
    (held,) = first["policy"]["held"]
    assert held["rule"] == "cooldown" and held["matures"] == iso(NOW - HOUR + DAY), held
    assert first["policy"]["next_maturity"] == iso(NOW - HOUR + DAY)
    assert first["policy"]["blocked"] == []
    assert listed(served, "app") == {wheel("app", "1.0")}
    assert wheel("app", "2.0") not in on_disk(mirror)
    for client in CLIENTS:
        assert clients.install(client, served.url, "app")["app"] == "1.0", client
        clients.refuses(client, served.url, "app==2.0")
    clients.refuses("pip", served.url, "app==2.0", download=True)  # `pip download app==2.0` fails too

    # half way: nothing has matured, and the run reads no project page
    upstream.clear_log()
    half = sync(monkeypatch, cfg, NOW + 12 * HOUR)
    assert half["files"]["downloaded"] == 0
    assert project_pages_read(upstream) == [], upstream.requests()
    assert refused(half, "held") == {("app", wheel("app", "2.0"))}

    # past its maturity, upstream unchanged: it appears, and only its project is read again
    assert index_tree.serial == serial
    upstream.clear_log()
    later = sync(monkeypatch, cfg, NOW + DAY)
    assert later["upstream_serial"] == first["upstream_serial"] == serial
    assert later["policy"]["held"] == [] and later["policy"]["next_maturity"] is None
    assert later["files"]["downloaded"] == 1, later
    assert project_pages_read(upstream) == ["/simple/app/"], [r.path for r in upstream.requests()]
    downloads = [r.path for r in upstream.requests("/packages/")]
    assert downloads == [index_tree.file("app", wheel("app", "2.0")).url_path], downloads
    assert listed(served, "app") == {wheel("app", "1.0"), wheel("app", "2.0")}
    for client in CLIENTS:
        assert clients.install(client, served.url, "app")["app"] == "2.0", client


def test_status_lists_what_the_policy_holds_back(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("app", "1.0", upload_time=OLD)
    index_tree.add_wheel("app", "2.0", upload_time=NOW - HOUR)
    index_tree.write()
    cfg = write_config(tmp_path / "m.yml", upstream.url, tmp_path / "mirror", cooldown="1d")
    summary = sync(monkeypatch, cfg, NOW)
    rc, status, stderr = run_cli(cfg, "status")
    assert rc == 0, (status, stderr)
    assert "policy" in status, status
    assert refused(status, "held") == refused(summary, "held") == {("app", wheel("app", "2.0"))}
    assert status["policy"]["next_maturity"] == iso(NOW - HOUR + DAY)


# -- 2. malicious releases -------------------------------------------------------------------------


class Export:
    """An OSV export in one of the two forms OSV gives: a directory of .json files, or the zip."""

    def __init__(self, where: Path, form: str) -> None:
        self.form = form
        self.entries: dict[str, bytes] = {}
        self.path = where / ("osv" if form == "directory" else "PyPI.zip")

    def put(self, doc: dict[str, Any]) -> None:
        self.entries[f"{doc['id']}.json"] = dumps(doc)
        self.write()

    def write(self) -> None:
        if self.form == "directory":
            self.path.mkdir(parents=True, exist_ok=True)
            for name, data in self.entries.items():
                (self.path / name).write_bytes(data)
        else:
            tmp = self.path.with_name(self.path.name + ".tmp")
            write_zip(tmp, self.entries)
            os.replace(tmp, self.path)


@pytest.mark.parametrize("form", ["directory", "zip"])
def test_a_malicious_advisory_removes_a_mirrored_release_and_its_withdrawal_brings_it_back(
    form: str, index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients,
    serve: Callable[[Path], UpstreamServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("app", "1.0", upload_time=OLD)
    index_tree.add_wheel("app", "2.0", upload_time=OLD + DAY)
    index_tree.add_wheel("other", "1.0", upload_time=OLD)
    index_tree.write()
    export = Export(tmp_path, form)
    export.put(advisory("MAL-2026-7", "someone-else", versions=["1.0"], summary="an unrelated malicious package"))
    mirror = tmp_path / "mirror"
    # a mirror of two projects: the one release the advisory takes out is 1 file of 3 (the guard has its own test)
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, advisories=str(export.path), block={"malicious": True},
                       max_delete_ratio=0.5)
    served = serve(mirror)

    before = sync(monkeypatch, cfg, NOW)
    assert before["policy"]["blocked"] == []
    assert listed(served, "app") == {wheel("app", "1.0"), wheel("app", "2.0")}
    assert clients.install("pip", served.url, "app")["app"] == "2.0"

    mal = advisory("MAL-2026-42", "app", versions=["2.0"], summary="app 2.0 steals credentials",
                   modified=iso(NOW - HOUR),
                   extra={"database_specific": {"malicious-packages-origins": [{"source": "ossf-package-analysis"}]}})
    export.put(mal)
    blocked = sync(monkeypatch, cfg, NOW)
    assert [(e["project"], e["filename"], e["kind"], e.get("advisory")) for e in blocked["policy"]["blocked"]] == [
        ("app", wheel("app", "2.0"), "blocked", "MAL-2026-42")], blocked["policy"]
    assert blocked["files"]["deleted"] == 1, blocked
    assert listed(served, "app") == {wheel("app", "1.0")}
    assert wheel("app", "2.0") not in on_disk(mirror)
    assert index_tree.file("app", wheel("app", "2.0")).sha256 not in {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (mirror / "web" / "packages").rglob("*.whl")}
    check_mirror(mirror)  # every page link still resolves
    for client in CLIENTS:
        assert clients.install(client, served.url, "app")["app"] == "1.0", client
        clients.refuses(client, served.url, "app==2.0")

    withdrawn = dict(mal, withdrawn=iso(NOW - HOUR / 2), modified=iso(NOW - HOUR / 2))
    export.put(withdrawn)
    back = sync(monkeypatch, cfg, NOW)
    assert back["policy"]["blocked"] == []
    assert listed(served, "app") == {wheel("app", "1.0"), wheel("app", "2.0")}
    assert wheel("app", "2.0") in on_disk(mirror)
    for client in CLIENTS:
        assert clients.install(client, served.url, "app")["app"] == "2.0", client


# -- 3. the exemption ------------------------------------------------------------------------------


def test_cooldown_exempt_lets_exactly_the_named_fix_through(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients,
    serve: Callable[[Path], UpstreamServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("dep", "1.0", upload_time=OLD)
    index_tree.add_wheel("dep", "2.0", upload_time=NOW - 2 * HOUR)  # the fix
    index_tree.add_wheel("dep", "2.1", upload_time=NOW - HOUR)  # newer, not named: it waits
    index_tree.add_wheel("app", "1.0", upload_time=OLD)
    index_tree.add_wheel("app", "1.1", upload_time=NOW - HOUR)  # another new release: it waits
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, cooldown="1d", cooldown_exempt=["dep==2.0"])
    served = serve(mirror)

    summary = sync(monkeypatch, cfg, NOW)
    assert refused(summary, "held") == {("dep", wheel("dep", "2.1")), ("app", wheel("app", "1.1"))}
    assert listed(served, "dep") == {wheel("dep", "1.0"), wheel("dep", "2.0")}
    assert listed(served, "app") == {wheel("app", "1.0")}
    for client in CLIENTS:
        got = clients.install(client, served.url, "dep", "app")
        assert (got["dep"], got["app"]) == ("2.0", "1.0"), (client, got)


# -- 4. the closure around a cooling dependency ----------------------------------------------------


def test_the_closure_resolves_around_a_cooling_dependency(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients,
    serve: Callable[[Path], UpstreamServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("app", "1.0", upload_time=OLD, requires_dist=["dep"])
    index_tree.add_wheel("app", "2.0", upload_time=NOW - 10 * DAY, requires_dist=["dep>=1"])  # old enough
    index_tree.add_wheel("dep", "1.0", upload_time=OLD)
    index_tree.add_wheel("dep", "1.5", upload_time=NOW - 20 * DAY)
    index_tree.add_wheel("dep", "2.0", upload_time=NOW - HOUR, requires_dist=["newthing"])  # cooling
    index_tree.add_wheel("newthing", "1.0", upload_time=OLD)
    index_tree.write()
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, projects=["app"], latest=1, cooldown="1d")
    served = serve(mirror)

    summary = sync(monkeypatch, cfg, NOW)
    assert refused(summary, "held") == {("dep", wheel("dep", "2.0"))}
    # the newest release of dep that passed, and nothing that only the cooling one requires
    assert check_mirror(mirror) == {"app": [wheel("app", "2.0")], "dep": [wheel("dep", "1.5")]}
    assert listed(served, "dep") == {wheel("dep", "1.5")}
    for client in CLIENTS:
        got = clients.install(client, served.url, "app")
        assert got == {"app": "2.0", "dep": "1.5"}, (client, got)


# -- 5. provenance ---------------------------------------------------------------------------------

PROVENANCE = json.dumps({
    "version": 1,
    "attestation_bundles": [{
        "publisher": {"kind": "GitHub", "repository": "example/app", "workflow": "release.yml", "environment": None},
        "attestations": [{"version": 1, "verification_material": {"certificate": "MIIC", "transparency_entries": []},
                          "envelope": {"statement": "eyJ0", "signature": "MEUC"}}],
    }],
}).encode()


def _give_provenance(index_tree: IndexTree, upstream: UpstreamServer, project: str, filename: str, document: bytes) -> str:
    """Make upstream's pages give `provenance` for one file (JSON `provenance`, HTML
    `data-provenance`), served as PyPI does at /integrity/<project>/<version>/<file>/provenance."""
    version = index_tree.file(project, filename).version
    rel = f"integrity/{project}/{version}/{filename}/provenance"
    (index_tree.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (index_tree.root / rel).write_bytes(document)
    url = f"{upstream.origin}/{rel}"
    serial = index_tree.project_serial(project)
    after = index_tree.serial + 2  # the project's serial once both pages are set (each setting bumps it)
    doc = json.loads(index_tree.page_path(project, "json").read_bytes())
    for entry in doc["files"]:
        if entry["filename"] == filename:
            entry["provenance"] = url
    doc["meta"].update({"api-version": "1.3", "_last-serial": after})
    body = index_tree.page_path(project, "html").read_text("utf-8")
    anchor_end = f">{filename}</a>"
    assert anchor_end in body and f"<!--SERIAL {serial}-->" in body
    body = body.replace(anchor_end, f' data-provenance="{url}"{anchor_end}').replace('content="1.1"', 'content="1.3"')
    body = body.replace(f"<!--SERIAL {serial}-->", f"<!--SERIAL {after}-->")
    index_tree.set_raw_page(project, "json", json.dumps(doc).encode())
    index_tree.set_raw_page(project, "html", body.encode())
    assert index_tree.project_serial(project) == after
    index_tree.write()
    return url


def test_provenance_links_resolve_inside_the_mirror(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients,
    serve: Callable[[Path], UpstreamServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("app", "1.0", upload_time=OLD)
    index_tree.add_wheel("app", "1.1", upload_time=OLD + DAY)  # no provenance upstream
    index_tree.write()
    filename = wheel("app", "1.0")
    upstream_url = _give_provenance(index_tree, upstream, "app", filename, PROVENANCE)
    status, body = fetch(upstream_url)
    assert (status, body) == (200, PROVENANCE)

    linked = tmp_path / "linked"
    served = serve(linked)
    public_url = served.origin + "/"
    cfg = write_config(tmp_path / "linked.yml", upstream.url, linked, public_url=public_url)
    sync(monkeypatch, cfg, NOW)
    app = page(served, "app")
    entry = app.entry(filename)
    assert "provenance" in entry, entry
    link = entry["provenance"]
    assert link.startswith(public_url), link  # never a link that leaves the mirror
    assert link == urljoin(app.url, entry["url"]).split("#")[0] + ".provenance", (link, entry["url"])
    assert (linked / "web" / link[len(public_url):]).is_file()
    assert fetch(link) == (200, PROVENANCE)  # resolves on the served mirror, to the bytes upstream served
    assert app.anchor(filename).get("data-provenance") == link
    assert "provenance" not in app.entry(wheel("app", "1.1"))
    assert "data-provenance" not in app.anchor(wheel("app", "1.1"))
    assert app.json["meta"]["api-version"] == "1.3"
    for client in CLIENTS:
        assert clients.install(client, served.url, "app==1.0")["app"] == "1.0", client

    # without public_url there is no fully qualified URL to give: no key at all
    unlinked = tmp_path / "unlinked"
    served_plain = serve(unlinked)
    cfg = write_config(tmp_path / "unlinked.yml", upstream.url, unlinked)
    sync(monkeypatch, cfg, NOW)
    plain = page(served_plain, "app")
    assert all("provenance" not in f for f in plain.json["files"]), plain.json
    assert all("data-provenance" not in attrs for _, attrs in plain.html), plain.html
    assert plain.files == {wheel("app", "1.0"), wheel("app", "1.1")}


# -- 6. our own packages ---------------------------------------------------------------------------


def _local_wheel(directory: Path, project: str, version: str, name: str | None = None) -> Path:
    """A real wheel of `project` `version` written into `directory` (as `name`, when given)."""
    filename, data, _metadata = build_wheel(project, version)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or filename)
    path.write_bytes(data)
    return path


def test_a_local_package_shadows_the_upstream_project_of_its_name(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients,
    serve: Callable[[Path], UpstreamServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("acme", "9.0", upload_time=OLD)  # a public name squatting ours
    index_tree.add_wheel("other", "1.0", upload_time=OLD)
    index_tree.write()
    local = tmp_path / "local"
    _local_wheel(local, "acme", "0.1")
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, local=str(local))
    served = serve(mirror)

    summary = sync(monkeypatch, cfg, NOW)
    assert summary["policy"]["reserved"] == ["acme"], summary["policy"]
    assert listed(served, "acme") == {wheel("acme", "0.1")}  # no upstream file
    assert wheel("acme", "9.0") not in on_disk(mirror)
    assert listed(served, "other") == {wheel("other", "1.0")}
    check_mirror(mirror)
    for client in CLIENTS:
        assert clients.install(client, served.url, "acme")["acme"] == "0.1", client
        clients.refuses(client, served.url, "acme==9.0")

    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, local=str(local), merge_upstream=["acme"])
    merged = sync(monkeypatch, cfg, NOW)
    assert "acme" not in merged["policy"]["reserved"], merged["policy"]
    assert listed(served, "acme") == {wheel("acme", "0.1"), wheel("acme", "9.0")}
    check_mirror(mirror)
    for client in CLIENTS:
        assert clients.install(client, served.url, "acme")["acme"] == "9.0", client
        assert clients.install(client, served.url, "acme==0.1")["acme"] == "0.1", client


def _tree(path: Path) -> dict[str, str]:
    """Every file under `path`, with the sha256 of its bytes."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def test_add_publishes_a_good_file_at_once_and_a_bad_one_changes_nothing(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients,
    serve: Callable[[Path], UpstreamServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("acme", "9.0", upload_time=OLD)
    index_tree.write()
    local = tmp_path / "local"
    _local_wheel(local, "acme", "0.1")
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, local=str(local))
    served = serve(mirror)
    sync(monkeypatch, cfg, NOW)
    assert listed(served, "acme") == {wheel("acme", "0.1")}

    built = tmp_path / "dist"
    good = _local_wheel(built, "acme", "0.2")
    rc, added, stderr = run_cli(cfg, "add", str(good))
    assert rc == 0, (added, stderr)
    assert added["command"] == "add" and added["ok"] is True, added
    assert [a["filename"] for a in added["added"]] == [good.name]
    assert (local / good.name).is_file()
    assert listed(served, "acme") == {wheel("acme", "0.1"), wheel("acme", "0.2")}  # published at once, no sync
    check_mirror(mirror)
    for client in CLIENTS:
        assert clients.install(client, served.url, "acme")["acme"] == "0.2", client

    # a wheel whose name says 0.4 and whose metadata says 0.3: refused, with a good one beside it
    bad = _local_wheel(built, "acme", "0.3", name=wheel("acme", "0.4"))
    also_good = _local_wheel(built, "acme", "0.5")
    before_local, before_web = _tree(local), _tree(mirror / "web")
    rc, report, stderr = run_cli(cfg, "add", str(also_good), str(bad))
    assert rc == 2, (report, stderr)
    assert report["ok"] is False and report["exit_code"] == 2, report
    error = report["error"]
    assert bad.name in error and "\n" not in error and error.count(". ") == 0, error  # one sentence, naming the file
    assert _tree(local) == before_local  # nothing added, not even the good file
    assert _tree(mirror / "web") == before_web
    assert listed(served, "acme") == {wheel("acme", "0.1"), wheel("acme", "0.2")}


# -- 7. vulnerable releases and allow --------------------------------------------------------------


def test_vulnerable_high_blocks_by_cvss_score_and_allow_lifts_a_named_advisory(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, clients: Clients,
    serve: Callable[[Path], UpstreamServer], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for version in ("1.0", "1.1", "1.2"):
        index_tree.add_wheel("lib", version, upload_time=OLD)
    for version in ("2.0", "2.1"):
        index_tree.add_wheel("web", version, upload_time=OLD)
    index_tree.write()
    export = Export(tmp_path, "directory")
    export.put(advisory("GHSA-9wx4-h78v-vm56", "lib", events=[{"introduced": "1.2"}], cvss=VECTOR_9_8,
                        aliases=["CVE-2026-1001"], summary="remote code execution"))
    export.put(advisory("GHSA-4jcv-vp96-94xr", "lib", versions=["1.1"], cvss=VECTOR_5_3,
                        aliases=["CVE-2026-1002"], summary="an information leak"))
    export.put(advisory("GHSA-q2x7-8rv6-6q7h", "web", events=[{"introduced": "0"}, {"fixed": "3.0"}], cvss=VECTOR_9_8,
                        aliases=["CVE-2026-1003"], summary="request smuggling, mitigated by our proxy"))
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, advisories=str(export.path),
                       block={"malicious": True, "vulnerable": "high"},
                       allow={"GHSA-q2x7-8rv6-6q7h": ["web==2.0"]})
    served = serve(mirror)

    summary = sync(monkeypatch, cfg, NOW)
    blocked = {(e["project"], e["filename"], e.get("advisory")) for e in summary["policy"]["blocked"]}
    assert blocked == {("lib", wheel("lib", "1.2"), "GHSA-9wx4-h78v-vm56"),  # 9.8: blocked
                       ("web", wheel("web", "2.1"), "GHSA-q2x7-8rv6-6q7h")}, summary["policy"]  # allow names 2.0 only
    assert listed(served, "lib") == {wheel("lib", "1.0"), wheel("lib", "1.1")}  # 5.3 is below high
    assert listed(served, "web") == {wheel("web", "2.0")}
    for client in CLIENTS:
        got = clients.install(client, served.url, "lib", "web")
        assert (got["lib"], got["web"]) == ("1.1", "2.0"), (client, got)


# -- the dry run -----------------------------------------------------------------------------------


def _plan(summary: dict[str, Any], part: str) -> dict[str, str]:
    key = "filename" if part == "fetch" else "path"
    return {e[key].rsplit("/", 1)[-1]: e["reason"] for e in summary["plan"][part]}


def _refusals(summary: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((e["project"], e["filename"], e["kind"], e["rule"], e.get("advisory"), e.get("matures"))
                  for kind in ("held", "blocked") for e in summary["policy"][kind])


def test_the_dry_run_lists_exactly_what_the_run_keeps_out(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    index_tree.add_wheel("app", "1.0", upload_time=OLD)
    index_tree.add_wheel("app", "2.0", upload_time=NOW - HOUR)  # held
    index_tree.add_wheel("bad", "1.0", upload_time=OLD)
    index_tree.add_wheel("bad", "1.1", upload_time=OLD)  # blocked
    index_tree.add_wheel("fine", "1.0", upload_time=OLD)
    index_tree.write()
    export = Export(tmp_path, "directory")
    export.put(advisory("MAL-2026-100", "bad", versions=["1.1"]))
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, cooldown="1d", advisories=str(export.path), max_delete_ratio=0.5)

    plan = sync(monkeypatch, cfg, NOW, "--dry-run")
    assert plan["dry_run"] is True
    assert not mirror.exists() or not on_disk(mirror)
    assert refused(plan, "held") == {("app", wheel("app", "2.0"))}
    assert refused(plan, "blocked") == {("bad", wheel("bad", "1.1"))}
    assert _plan(plan, "fetch") == {wheel("app", "1.0"): "new", wheel("bad", "1.0"): "new", wheel("fine", "1.0"): "new"}
    run = sync(monkeypatch, cfg, NOW)
    assert _refusals(run) == _refusals(plan)
    assert on_disk(mirror) == set(_plan(plan, "fetch"))

    # an advisory for a mirrored release: the dry run plans its deletion, with the advisory as the reason
    export.put(advisory("MAL-2026-101", "app", versions=["1.0"]))
    plan = sync(monkeypatch, cfg, NOW, "--dry-run")
    assert _plan(plan, "fetch") == {}
    assert _plan(plan, "delete") == {wheel("app", "1.0"): "blocked by MAL-2026-101"}, plan["plan"]
    assert refused(plan, "blocked") == {("bad", wheel("bad", "1.1")), ("app", wheel("app", "1.0"))}
    held_before = on_disk(mirror)
    run = sync(monkeypatch, cfg, NOW)
    assert _refusals(run) == _refusals(plan)
    assert held_before - on_disk(mirror) == set(_plan(plan, "delete"))
    assert on_disk(mirror) == {wheel("bad", "1.0"), wheel("fine", "1.0")}


def test_the_deletion_guard_holds_for_an_advisory_export_that_names_most_of_the_mirror(
    index_tree: IndexTree, upstream: UpstreamServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An export that suddenly blocks most of what the mirror holds (a bogus or hostile advisory
    with `introduced: 0` for many projects) is refused before anything changes: exit 4, one
    sentence; --allow-mass-delete lets it through."""
    for name in ("a", "b", "c", "d", "e"):
        index_tree.add_wheel(name, "1.0", upload_time=OLD)
    index_tree.write()
    export = Export(tmp_path, "directory")
    export.put(advisory("MAL-2026-1", "unrelated", versions=["1.0"]))
    mirror = tmp_path / "mirror"
    cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, advisories=str(export.path))
    sync(monkeypatch, cfg, NOW)
    before = on_disk(mirror)
    for name in ("a", "b", "c"):
        export.put(advisory(f"MAL-2026-{name}", name, events=[{"introduced": "0"}]))
    monkeypatch.setenv("MIRROR_SYNC_NOW", iso(NOW))
    rc, summary, stderr = run_cli(cfg, "sync")
    assert rc == 4, (summary, stderr[-2000:])
    assert summary["kind"] == "delete_guard" and "the policy would take 3 of the mirror's 5 files out" in summary["error"]
    assert "Traceback" not in stderr
    assert on_disk(mirror) == before and listed_locally(mirror, "a") == {wheel("a", "1.0")}
    rc, plan, _ = run_cli(cfg, "sync", "--dry-run")
    assert rc == 4  # the dry run says so too
    done = sync(monkeypatch, cfg, NOW, "--allow-mass-delete")
    assert refused(done, "blocked") == {(n, wheel(n, "1.0")) for n in ("a", "b", "c")}
    assert on_disk(mirror) == {wheel("d", "1.0"), wheel("e", "1.0")}


def listed_locally(mirror: Path, project: str) -> set[str]:
    """The filenames the mirror's JSON page for `project` lists, read from disk."""
    doc = json.loads((mirror / "web" / "simple" / project / "index.v1_json").read_text())
    return {f["filename"] for f in doc["files"]}
