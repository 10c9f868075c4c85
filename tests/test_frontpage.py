"""The mirror's front page (mirror_sync/observe/frontpage.py): static HTML and inline SVG from the status and the
download statistics. Rendered from plain dicts here; served by nginx and drawn by headless Chromium in
test_front_page_renders_in_chromium when Debian's chromium is installed."""
from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mirror_sync.observe.frontpage import (
    PLACEHOLDER_ORIGIN,
    bar_chart_svg,
    daily_chart_svg,
    human_bytes,
    human_duration,
    render_front_page,
    write_front_page,
)

NOW = datetime(2026, 11, 24, 13, 0, tzinfo=timezone.utc)
STATUS: dict[str, Any] = {
    "command": "status", "initialized": True, "directory": "/srv/pypi-mirror", "upstream": "https://up.example/simple/",
    "last_sync_started": "2026-11-24T12:30:00Z", "last_sync_finished": "2026-11-24T12:30:07Z",
    "last_success": "2026-11-24T12:30:07Z", "last_result": "ok", "upstream_serial": 120, "mirror_serial": 117,
    "lag_serials": 3, "lag_seconds": 1800.0, "projects": 1234, "files": 56789, "bytes": 3_400_000_000,
}
STATS: dict[str, Any] = {
    "generated": "2026-11-24T12:45:00Z", "today": "2026-11-24",
    "totals": {"downloads": 42},
    "top": {"last_30_days": [{"project": "requests", "downloads": 30}, {"project": "urllib3", "downloads": 10},
                             {"project": "<evil>", "downloads": 2}], "all_time": []},
    "days": {"2026-11-20": {"downloads": 12, "metadata": 1, "pages": 3}, "2026-11-24": {"downloads": 30}},
}


class _Collector(html.parser.HTMLParser):
    """Text of the page, and the tags it has (a well-formed document parses without surprises)."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def test_page_tells_how_to_use_the_mirror_with_its_url() -> None:
    page = render_front_page(STATUS, STATS, index_url="http://pypi.internal/simple/", now=NOW)
    text = "".join(_parse(page).text)
    assert "pip install --index-url http://pypi.internal/simple/ PACKAGE" in text
    assert "index-url = http://pypi.internal/simple/\ntrusted-host = pypi.internal" in text
    assert 'url = "http://pypi.internal/simple/"\ndefault = true' in text
    assert "<script" not in page  # the URL is known: nothing to fill in


def test_page_without_a_known_url_fills_in_the_browsers_address() -> None:
    page = render_front_page(STATUS, None, now=NOW)
    assert f"{PLACEHOLDER_ORIGIN}/simple/" in page and "location.origin" in page
    assert "stands for the address of this page" in page


def test_https_mirror_needs_no_trusted_host() -> None:
    page = render_front_page(STATUS, None, index_url="https://pypi.internal/simple/", now=NOW)
    assert "trusted-host" not in page


def test_page_shows_state_lag_and_content() -> None:
    text = "".join(_parse(render_front_page(STATUS, STATS, index_url="http://m/simple/", now=NOW)).text)
    assert "Last sync 2026-11-24T12:30:07Z: succeeded." in text
    assert "3 serials; last success 30 min ago" in text
    assert "1,234" in text and "56,789" in text and "3.4 GB" in text
    assert "https://up.example/simple/" in text


def test_a_failed_sync_says_so_and_when_it_last_worked() -> None:
    status = {**STATUS, "last_result": "failed", "last_success": "2026-11-23T08:00:00Z"}
    page = render_front_page(status, None, index_url="http://m/simple/", now=NOW)
    assert 'class="sync bad"' in page
    assert "failed (last success: 2026-11-23T08:00:00Z)" in page


def test_a_new_mirror_has_not_synced_yet() -> None:
    page = render_front_page({"initialized": False, "projects": 0, "files": 0, "bytes": 0}, None,
                             index_url="http://m/simple/", now=NOW)
    assert "No sync has finished yet." in page and "No download statistics" in page


def test_charts_draw_one_bar_per_project_and_day() -> None:
    page = render_front_page(STATUS, STATS, index_url="http://m/simple/", now=NOW)
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.DOTALL)
    assert len(svgs) == 2
    projects, days = svgs
    assert projects.count('<rect class="bar"') == 3
    widths = [int(w) for w in re.findall(r'<rect class="bar" x="200" y="\d+" width="(\d+)"', projects)]
    assert widths[0] > widths[1] > widths[2] > 0  # proportional to 30, 10, 2
    assert "&lt;evil&gt;" in projects and "<evil>" not in page  # names are escaped
    assert days.count('<rect class="bar"') == 30
    heights = re.findall(r'<title>(2026-11-\d\d): (\d+)</title>', days)
    assert dict(heights)["2026-11-24"] == "30" and dict(heights)["2026-11-20"] == "12"
    assert dict(heights)["2026-11-21"] == "0"


def test_empty_statistics_say_so_instead_of_an_empty_chart() -> None:
    assert "no downloads counted yet" in bar_chart_svg([], title="Top")
    assert "no downloads counted yet" in daily_chart_svg({}, last_day=date(2026, 11, 24), title="Days")


def test_policy_lines_are_listed() -> None:
    page = render_front_page(STATUS, None, index_url="http://m/simple/", now=NOW,
                             policy=["files larger than 200 MB", "pre-releases"])
    assert "What this mirror leaves out" in page and "<li>pre-releases</li>" in page


@pytest.mark.parametrize(("n", "text"), [(0, "0 B"), (999, "999 B"), (1500, "1.5 KB"), (3_400_000_000, "3.4 GB"),
                                         (None, "?")])
def test_human_bytes(n: Any, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(("s", "text"), [(5, "5 s"), (1800, "30 min"), (7200, "2.0 h"), (3 * 86400, "3.0 days"),
                                         (None, "unknown")])
def test_human_duration(s: Any, text: str) -> None:
    assert human_duration(s) == text


def test_write_front_page_replaces_index_html_and_reads_the_statistics(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "stats").mkdir(parents=True)
    import json

    (web / "stats" / "summary.json").write_text(json.dumps(STATS))
    (web / "index.html").write_text("old")
    path = write_front_page(web, STATUS, index_url="http://m/simple/")
    assert path == web / "index.html"
    page = path.read_text()
    assert "Most downloaded projects" in page and "requests" in page
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in web.iterdir()) == ["index.html", "stats"]  # no temporary file left


def test_write_front_page_without_statistics(tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    page = write_front_page(web, STATUS).read_text()
    assert "No download statistics on this mirror." in page


# -- in a real browser ---------------------------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_front_page_renders_in_chromium(tmp_path: Path) -> None:
    """Headless Chromium loads the page from nginx (the way the mirror serves it) and its DOM holds the
    usage lines with the browser's own address and both charts' bars."""
    browser = _chromium()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if browser is None or nginx is None:
        pytest.skip("needs Debian's chromium and nginx (apt-get install chromium nginx-light)")
    web = tmp_path / "web"
    (web / "stats").mkdir(parents=True)
    import json
    import socket

    (web / "stats" / "summary.json").write_text(json.dumps(STATS))
    write_front_page(web, STATUS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        ""
        # as root, nginx's workers would run as nobody, who cannot read pytest's private temporary directory
        + ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log; daemon off;\n"
        f"events {{}}\nhttp {{ include /etc/nginx/mime.types; access_log off;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {web}; location / {{ autoindex on; }} }} }}\n"
    )
    server = subprocess.Popen([nginx, "-p", f"{tmp_path}/", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(50):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                subprocess.run(["sleep", "0.1"], check=True)
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  f"--user-data-dir={tmp_path}/profile"]
        dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert f"pip install --index-url http://127.0.0.1:{port}/simple/ PACKAGE" in dom.stdout
        assert "trusted-host = 127.0.0.1" in dom.stdout and "MIRROR-HOST" not in dom.stdout.split("<script", 1)[0]
        assert dom.stdout.count('class="bar"') == 3 + 30
        shot = tmp_path / "front.png"
        subprocess.run([*common, "--window-size=900,1400", f"--screenshot={shot}", url], capture_output=True,
                       timeout=120, check=True)
        assert shot.stat().st_size > 10_000
        keep = Path("/tmp/pypi-mirror-front-page.png")
        shutil.copyfile(shot, keep)  # for a person to look at
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_page_a_sync_writes_renders_in_chromium_with_its_numbers(tmp_path: Path) -> None:
    """End to end: a sync from a loopback upstream, downloads through the role's nginx vhost,
    `mirror-sync stats` over its access log; Chromium loads / from nginx and shows the sync's
    numbers and a bar for each downloaded project."""
    browser = _chromium()
    if browser is None or not Path("/usr/sbin/nginx").exists():
        pytest.skip("needs Debian's chromium and nginx (apt-get install chromium nginx-light)")
    import json
    import urllib.request

    from tests.support.index_tree import IndexTree
    from tests.support.upstream_server import UpstreamServer
    from tests.syncutil import run_cli, write_config
    from tests.test_nginx_vhost import Nginx, free_port, render_vhost

    tree = IndexTree(tmp_path / "upstream")
    for name in ("alpha", "beta", "gamma"):
        tree.add_wheel(name, "1.0")
    tree.write()
    mirror = tmp_path / "mirror"
    logs = tmp_path / "nginx-base" / "logs"
    with UpstreamServer(tree.root) as upstream:
        cfg = write_config(tmp_path / "m.yml", upstream.url, mirror, projects=["alpha", "beta", "gamma"],
                           statistics={"access_log_pattern": str(logs / "access.log*")})
        rc, summary, _ = run_cli(cfg, "sync")
    assert rc == 0, summary
    port = free_port()
    base = tmp_path / "nginx-base"
    base.mkdir(exist_ok=True)
    nginx = Nginx(base, render_vhost(base, mirror / "web", port), port)
    nginx.start()
    try:
        # downloads, as pip makes them: alpha three times, beta once
        for name, times in (("alpha", 3), ("beta", 1)):
            page = json.loads(urllib.request.urlopen(urllib.request.Request(
                f"{nginx.base_url}/simple/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})).read())
            url = f"{nginx.base_url}/simple/{name}/" + page["files"][0]["url"]
            for _ in range(times):
                urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "pip/24.0"})).read()
        nginx.stop()  # flush the access log
        rc, stats, err = run_cli(cfg, "stats")
        assert rc == 0, (stats, err)
        nginx.start()
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--no-first-run", f"--user-data-dir={tmp_path}/profile"]
        dom = subprocess.run([*common, "--dump-dom", nginx.base_url + "/"], capture_output=True, text=True,
                             timeout=120, check=False)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert f"<tr><th>Projects</th><td>{summary['projects']['total']}</td></tr>" in dom.stdout
        assert f"<tr><th>Files</th><td>{summary['files']['total']}</td></tr>" in dom.stdout
        assert "Most downloaded projects" in dom.stdout
        top = dom.stdout.split("Most downloaded projects", 1)[1]
        assert top.index("alpha") < top.index("beta")  # alpha, downloaded most, comes first
        shot = tmp_path / "front.png"
        subprocess.run([*common, "--window-size=900,1400", f"--screenshot={shot}", nginx.base_url + "/"],
                       capture_output=True, timeout=120, check=True)
        shutil.copyfile(shot, "/tmp/pypi-mirror-front-page-after-sync.png")  # for a person to look at
    finally:
        nginx.stop()
