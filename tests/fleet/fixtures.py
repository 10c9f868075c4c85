"""pytest fixtures for fleet tests: import them into a test module (`from tests.fleet.fixtures import *`).

`fleet` is session-scoped: a primary mirror host with a loop block device and two clients, a downstream
mirror (its own loop device) and its client, booted once and torn down at the end of the session, also
when tests fail. Phase timings are printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from .artifacts import uv_binary
from .commands import FleetUnavailable, require_root
from .fleet import Fleet
from .host import HostSpec

MIRROR_VOLUME_MB = 512
UV_PATH_ON_HOST = "/usr/local/bin/uv"

TIMINGS: dict[str, float] = {}


# client2 has a shell start-up file that adds another index for pip: the client role must report it.
OTHER_INDEX_PROFILE = "/etc/profile.d/other-index.sh"
OTHER_INDEX_URL = "http://198.18.0.1:9/other/simple/"


def fleet_specs(uv: Path | None, other_index_profile: Path | None = None) -> list[HostSpec]:
    """The primary mirror and two of its clients; a downstream mirror of the primary (issue 5) and a
    client that installs through the downstream."""
    client_files = ((UV_PATH_ON_HOST, uv, 0o755),) if uv is not None else ()
    client2_files = client_files + (
        ((OTHER_INDEX_PROFILE, other_index_profile, 0o644),) if other_index_profile is not None else ()
    )
    return [
        HostSpec("mirror1", 1, ("mirror",), volume_mb=MIRROR_VOLUME_MB),
        HostSpec("client1", 2, ("clients",), files=client_files),
        HostSpec("client2", 3, ("clients",), files=client2_files),
        HostSpec("mirror2", 4, ("mirror_downstream",), volume_mb=MIRROR_VOLUME_MB),
        HostSpec("client3", 5, ("clients",), files=client_files,
                 hostvars=(("pypi_mirror_client_mirror_group", "mirror_downstream"),)),
    ]


@pytest.fixture(scope="session")
def uv_on_clients() -> tuple[Path | None, str]:
    try:
        return uv_binary()
    except Exception as exc:  # noqa: BLE001 - uv is optional: no uv means its test skips, says why
        return None, str(exc)


@pytest.fixture(scope="session")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Fleet]:
    started = time.monotonic()
    try:
        require_root()
    except FleetUnavailable as exc:
        pytest.skip(f"no test fleet on this machine: {exc}")
    uv: Path | None = request.getfixturevalue("uv_on_clients")[0]
    profile = tmp_path_factory.mktemp("client-files") / "other-index.sh"
    profile.write_text(f"export PIP_EXTRA_INDEX_URL={OTHER_INDEX_URL}\n")
    with ExitStack() as stack:
        try:
            fl = stack.enter_context(
                Fleet.session(fleet_specs(uv, profile), log_dir=tmp_path_factory.mktemp("fleet-logs"))
            )
        except FleetUnavailable as exc:
            pytest.skip(f"no test fleet on this machine: {exc}")
        TIMINGS.update({f"fleet {k}": v for k, v in fl.timings.items()})
        yield fl
        teardown_started = time.monotonic()
        stack.close()
        TIMINGS["fleet teardown_s"] = round(time.monotonic() - teardown_started, 1)
    TIMINGS["fleet session total_s"] = round(time.monotonic() - started, 1)
    _report(pytestconfig, "fleet timings: " + ", ".join(f"{k}={v}" for k, v in TIMINGS.items()))


def _report(config: pytest.Config, line: str) -> None:
    """Write a line to the terminal now, past output capturing (shown also when tests pass)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:
        reporter.write_line(line)


@pytest.fixture(scope="session")
def fleet_inventory(fleet: Fleet) -> Path:
    return fleet.write_inventory(fleet.workdir / "inventory.yml")
