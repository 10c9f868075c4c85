"""Target environments: marker values for dependency closure, wheel-tag matching for filtering."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms, parse_tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .config import Environment

_PLATFORM_MARKERS = {
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"},
    "macos": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix", "platform_machine": "arm64"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
}
_WINDOWS_ARCH = {"amd64": "win_amd64", "x86_64": "win_amd64", "x86": "win32", "i686": "win32", "win32": "win32", "arm64": "win_arm64", "aarch64": "win_arm64"}


def marker_environments(envs: Optional[tuple[Environment, ...]]) -> list[dict[str, str]]:
    """Marker environments to evaluate Requires-Dist for; an environment with no platform
    stands for every platform."""
    if envs is None:
        from packaging.markers import default_environment

        return [{k: str(v) for k, v in default_environment().items()}]
    out: list[dict[str, str]] = []
    for env in envs:
        impl = {"cpython": ("cpython", "CPython"), "pypy": ("pypy", "PyPy")}[env.implementation]
        full = env.python if env.python.count(".") == 2 else f"{env.python}.0"
        short = ".".join(env.python.split(".")[:2])
        for platform in [env.platform] if env.platform else sorted(_PLATFORM_MARKERS):
            values = {
                "implementation_name": impl[0],
                "platform_python_implementation": impl[1],
                "implementation_version": full,
                "python_version": short,
                "python_full_version": full,
                "platform_release": "",
                "platform_version": "",
                **_PLATFORM_MARKERS[platform],
            }
            if env.machine:
                values["platform_machine"] = env.machine
            values.update(dict(env.markers))
            out.append(values)
    return out


def _linux_platform_ok(platform: str, machine: Optional[str]) -> bool:
    for prefix in ("manylinux", "musllinux", "linux"):
        if platform.startswith(prefix):
            if machine is None:
                return True
            arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())
            return platform.endswith("_" + arch)
    return False


@dataclass(frozen=True)
class _EnvMatcher:
    env: Environment
    interp_abi: frozenset[tuple[str, str]]
    mac: frozenset[str]
    explicit: frozenset[Tag]

    def platform_ok(self, platform: str) -> bool:
        if platform == "any":
            return True
        if self.env.platform is None:
            return True
        if self.env.platform == "linux":
            return _linux_platform_ok(platform, self.env.machine)
        if self.env.platform == "macos":
            if self.env.machine is None:
                return platform.startswith("macosx_")
            return platform in self.mac
        arch = _WINDOWS_ARCH.get((self.env.machine or "").lower())
        return platform == arch if arch else platform.startswith("win")

    def wheel_ok(self, tags: frozenset[Tag]) -> bool:
        for tag in tags:
            if tag in self.explicit:
                return True
            if (tag.interpreter, tag.abi) in self.interp_abi and self.platform_ok(tag.platform):
                return True
            if self.env.implementation == "pypy" and tag.interpreter.startswith("pp") and self.platform_ok(tag.platform):
                if tag.interpreter == "pp" + self.env.python.replace(".", "")[:3]:
                    return True
        return False

    def python_ok(self, requires_python: Optional[str]) -> bool:
        return python_admits(requires_python, self.env.python)


def python_admits(requires_python: Optional[str], python: str) -> bool:
    """Whether a Requires-Python admits some release of a two-part Python version."""
    if not requires_python:
        return True
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True  # upstream's junk must not hide a file
    if python.count(".") == 2:
        candidates = [python]
    else:
        candidates = [f"{python}.0", f"{python}.99"]
    try:
        return any(spec.contains(Version(c), prereleases=True) for c in candidates)
    except InvalidVersion:
        return True


@lru_cache(maxsize=64)
def _matcher(env: Environment) -> _EnvMatcher:
    major, minor = (int(x) for x in env.python.split(".")[:2])
    pyver = (major, minor)
    probe = "probe_platform"
    tags = list(cpython_tags(pyver, platforms=[probe, "any"])) + list(
        compatible_tags(pyver, interpreter=f"cp{major}{minor}", platforms=[probe, "any"])
    )
    interp_abi = frozenset((t.interpreter, t.abi) for t in tags)
    mac: frozenset[str] = frozenset()
    if env.platform == "macos" and env.machine:
        mac = frozenset(mac_platforms(version=(26, 0), arch=env.machine))
    explicit = frozenset(t for tag in env.tags for t in parse_tag(tag))
    return _EnvMatcher(env, interp_abi, mac, explicit)


def environment_label(env: Environment) -> str:
    """How an environment is named in messages: 'python 3.11 linux x86_64'."""
    parts = [env.implementation if env.implementation != "cpython" else "python", env.python]
    parts += [p for p in (env.platform, env.machine) if p]
    return " ".join(parts)


class FileFilter:
    """Decides which files of a release to keep for the configured environments."""

    def __init__(self, envs: Optional[tuple[Environment, ...]]) -> None:
        self.envs = envs
        self.matchers = None if envs is None else [_matcher(e) for e in envs]

    def keep(self, filename: str, requires_python: Optional[str]) -> bool:
        """Some configured environment can install the file (every file, without environments)."""
        if self.matchers is None:
            return True
        return any(self.fits(i, filename, requires_python) for i in range(len(self.matchers)))

    def fits(self, index: int, filename: str, requires_python: Optional[str]) -> bool:
        """Environment number `index` can install the file."""
        if self.matchers is None:
            return True
        m = self.matchers[index]
        if filename.endswith(".whl"):
            try:
                tags = _wheel_tags(filename)
            except (InvalidWheelFilename, InvalidVersion):
                return False
            return m.wheel_ok(tags) and m.python_ok(requires_python)
        if filename.endswith((".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz")):
            return m.python_ok(requires_python)
        return False  # eggs, installers: no environment asks for them


@lru_cache(maxsize=4096)
def _wheel_tags(filename: str) -> frozenset[Tag]:
    return parse_wheel_filename(filename)[3]
