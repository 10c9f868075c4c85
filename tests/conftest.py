"""Shared fixtures: a fake upstream index (files + a real HTTP server) and throwaway venvs."""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.support.index_tree import IndexTree
from tests.support.upstream_server import UpstreamServer

PIP_TIMEOUT = 300


def clean_pip_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment minus every ``PIP_*`` variable, with ``PIP_CONFIG_FILE=/dev/null`` so pip
    reads no configuration file: pip then uses only the index it is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_NO_INPUT": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Venv:
    """A virtual environment made by the ``make_venv`` fixture."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def pip(self, *args: str, index_url: Optional[str] = None, timeout: float = PIP_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``python -m pip <args>`` in a clean environment; ``index_url`` adds
        ``--index-url`` (and nothing else: no extra index, no find-links)."""
        cmd = [str(self.python), "-m", "pip", *args]
        if index_url is not None:
            cmd += ["--index-url", index_url]
        proc = subprocess.run(cmd, env=clean_pip_env(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the venv's python with ``args``."""
        proc = subprocess.run([str(self.python), *args], env=clean_pip_env(), capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"python {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture
def index_tree(tmp_path: Path) -> IndexTree:
    """An empty upstream tree under ``tmp_path/upstream`` (call ``.write()`` to publish)."""
    return IndexTree(tmp_path / "upstream")


@pytest.fixture
def upstream(index_tree: IndexTree) -> Iterator[UpstreamServer]:
    """A running UpstreamServer over ``index_tree`` (written once first); stopped afterwards."""
    index_tree.write()
    with UpstreamServer(index_tree.root) as server:
        yield server


@pytest.fixture(scope="session")
def make_venv(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Venv]:
    """A function ``make_venv(name="venv") -> Venv`` creating a fresh venv (with pip, from the
    interpreter's bundled wheel, no network) in a session temp dir."""
    base = tmp_path_factory.mktemp("venvs")
    counter = iter(range(10_000))

    def _make(name: str = "venv") -> Venv:
        path = base / f"{name}-{next(counter)}"
        venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(path)
        python = path / "bin" / "python"
        # ensurepip runs in a subprocess with the clean env so no global pip config leaks in
        subprocess.run([str(python), "-m", "ensurepip", "--default-pip"], env=clean_pip_env(),
                       check=True, capture_output=True, timeout=PIP_TIMEOUT)
        return Venv(path)

    assert sys.version_info >= (3, 9)
    return _make
